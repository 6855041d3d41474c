"""Small stand-ins for the Qt, CTK and qMRML widget classes the HCCAnalysis module uses.

`qt` and `ctk` exist only inside the Slicer application (PythonQt). These classes give just
the widgets, properties and signals that HCCAnalysis.py, its .ui file and Slicer's own
parameter node GUI connectors touch, with Qt's behaviour where it matters to the module:
a combo box selects its first item when filled, setting a property emits its change
signal only when the value changes, blocked signals are not delivered, PythonQt calls a
slot with as many arguments as it accepts, and `QUiLoader` builds the widget tree from the
real .ui file (properties, dynamic `SlicerParameterName` properties, layouts and the
designer's signal-slot connections). Everything else (the parameter node wrapper, the
ScriptedLoadableModule classes, MRML) is the real code.
"""

import inspect
import types
import xml.etree.ElementTree as ET


# ---------------------------------------------------------------- signals and objects

class Signal:
    """A bound signal: connect/disconnect/emit, silenced while its owner blocks signals."""

    def __init__(self, owner):
        self._owner = owner
        self._slots = []

    def connect(self, slot):
        self._slots.append(slot)

    def disconnect(self, slot):
        self._slots.remove(slot)  # Qt raises as well when the slot was not connected

    def emit(self, *args):
        if self._owner._blocked:
            return
        for slot in list(self._slots):
            slot(*args[:_arity(slot, len(args))])


def _arity(slot, available):
    """How many signal arguments PythonQt passes: as many as the callable accepts."""
    try:
        params = inspect.signature(slot).parameters.values()
    except (TypeError, ValueError):
        return available
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return available
    return min(available, sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params))


class signal:
    """Class attribute declaring a signal; each instance gets its own `Signal`."""

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, obj, owner=None):
        if obj is None:
            return self
        return obj.__dict__.setdefault("_signal_" + self.name, Signal(obj))


def _notifying(name, signal_names, convert=lambda v: v):
    """A property whose setter emits `signal_names` (value as argument) when the value changes."""

    def getter(self):
        return self.__dict__.get("_" + name, self._defaults.get(name))

    def setter(self, value):
        value = convert(value)
        if getter(self) == value:
            return
        self.__dict__["_" + name] = value
        for sig in signal_names:
            getattr(self, sig).emit(value)

    return property(getter, setter)


class QObject:
    _defaults = {}
    destroyed = signal()

    def __init__(self, parent=None):
        self._blocked = False
        self._parent = None
        self._children = []
        self._properties = {}
        self.objectName = ""
        self.deleted = False
        if parent is not None:
            self.setParent(parent)

    @property
    def name(self):
        return self.objectName

    def parent(self):
        return self._parent

    def setParent(self, parent):
        if self._parent is not None:
            self._parent._children.remove(self)
        self._parent = parent
        if parent is not None:
            parent._children.append(self)

    def children(self):
        return list(self._children)

    def findChildren(self, cls):
        found = []
        for child in self._children:
            if isinstance(child, cls):
                found.append(child)
            found += child.findChildren(cls)
        return found

    def property(self, name):
        return self._properties.get(name)

    def setProperty(self, name, value):
        self._properties[name] = value

    def blockSignals(self, block):
        previous, self._blocked = self._blocked, bool(block)
        return previous

    def connect(self, signature, slot):
        """PythonQt's `obj.connect("signal(args)", slot)`."""
        getattr(self, signature.split("(")[0]).connect(slot)

    def disconnect(self, signature, slot):
        getattr(self, signature.split("(")[0]).disconnect(slot)

    def isWidgetType(self):
        return False

    def deleteLater(self):
        """Deleted at once (Qt waits for the event loop): it leaves the widget tree."""
        self.setParent(None)
        self.deleted = True
        self.destroyed.emit()


class QWidget(QObject):
    _defaults = {"enabled": True, "visible": True, "toolTip": "", "text": ""}

    def __init__(self, parent=None):
        super().__init__(parent)
        self._layout = None
        self.enabled = True
        self.visible = True
        self.toolTip = ""

    def isWidgetType(self):
        return True

    def layout(self):
        return self._layout

    def setLayout(self, layout):
        self._layout = layout
        layout._widget = self
        for item in layout._items:
            item._widget.setParent(self)

    def show(self):
        self.visible = True


class _LayoutItem:
    def __init__(self, widget):
        self._widget = widget

    def widget(self):
        return self._widget


class QLayout:
    def __init__(self, parent=None):
        self._items = []
        self._widget = None
        self.objectName = ""
        if parent is not None:
            parent.setLayout(self)

    def addWidget(self, widget):
        self._items.append(_LayoutItem(widget))
        if self._widget is not None:
            widget.setParent(self._widget)

    def count(self):
        return len(self._items)

    def takeAt(self, index):
        return self._items.pop(index)


class QFormLayout(QLayout):
    def addRow(self, label, field=None):
        if field is None:
            self.addWidget(label)
            return
        self.addWidget(QLabel(label) if isinstance(label, str) else label)
        self.addWidget(field)


class QVBoxLayout(QLayout):
    pass


class QHBoxLayout(QLayout):
    pass


class QGridLayout(QLayout):
    pass


# ---------------------------------------------------------------- Qt widgets

class QLabel(QWidget):
    def __init__(self, text="", parent=None):
        super().__init__(parent)
        self.text = text
        self.wordWrap = False


class QPushButton(QWidget):
    clicked = signal()
    toggled = signal()
    checked = _notifying("checked", ("toggled",), bool)

    def __init__(self, text="", parent=None):
        super().__init__(parent)
        self.text = text
        self.checkable = False

    def click(self):
        """A user click: ignored by a disabled button, as in Qt."""
        if self.enabled:
            if self.checkable:
                self.checked = not self.checked
            self.clicked.emit(bool(self.checked))


class QCheckBox(QWidget):
    stateChanged = signal()
    toggled = signal()

    def __init__(self, text="", parent=None):
        super().__init__(parent)
        self.text = text
        self._checked = False

    @property
    def checked(self):
        return self._checked

    @checked.setter
    def checked(self, value):
        if bool(value) != self._checked:
            self._checked = bool(value)
            self.stateChanged.emit(2 if self._checked else 0)
            self.toggled.emit(self._checked)


class QLineEdit(QWidget):
    textChanged = signal()
    text = _notifying("text", ("textChanged",), str)

    def __init__(self, text="", parent=None):
        super().__init__(parent)
        self.text = text
        self.placeholderText = ""


class QComboBox(QWidget):
    currentIndexChanged = signal()
    currentTextChanged = signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self._items = []  # [text, data]
        self._index = -1

    def count(self):
        return len(self._items)

    def itemText(self, index):
        return self._items[index][0]

    def addItem(self, text, data=None):
        self._items.append([str(text), data])
        if self._index == -1:
            self.currentIndex = 0  # Qt selects the first item added to an empty combo box

    def addItems(self, texts):
        for text in texts:
            self.addItem(text)

    def clear(self):
        self._items = []
        self.currentIndex = -1

    @property
    def currentIndex(self):
        return self._index

    @currentIndex.setter
    def currentIndex(self, index):
        index = int(index) if -1 <= int(index) < len(self._items) else -1
        if index != self._index:
            self._index = index
            self.currentIndexChanged.emit(index)
            self.currentTextChanged.emit(self.currentText)

    @property
    def currentText(self):
        return self._items[self._index][0] if self._index >= 0 else ""

    def setCurrentText(self, text):
        texts = [t for t, _ in self._items]
        if text in texts:
            self.currentIndex = texts.index(text)

    @property
    def currentData(self):
        return self._items[self._index][1] if self._index >= 0 else None


class QProgressBar(QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.minimum, self.maximum, self.value = 0, 100, 0


class QTextEdit(QWidget):
    textChanged = signal()


class QSpinBox(QWidget):
    valueChanged = signal()


class QDoubleSpinBox(QSpinBox):
    pass


class QSlider(QSpinBox):
    pass


class QTimer(QObject):
    timeout = signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.interval = 0
        self._active = False

    def setInterval(self, msec):
        self.interval = msec

    def start(self, msec=None):
        if msec is not None:
            self.interval = msec
        self._active = True

    def stop(self):
        self._active = False

    def isActive(self):
        return self._active

    def fire(self):
        """One timeout, as the event loop would deliver it while the timer runs."""
        if self._active:
            self.timeout.emit()


class QAbstractItemView:
    NoSelection, SingleSelection, MultiSelection, ExtendedSelection = 0, 1, 2, 3


class QSettings:
    def value(self, key, default=None):
        return default

    def contains(self, key):
        return False

    def setValue(self, key, value):
        pass


class QIcon:
    def __init__(self, path=""):
        self.path = path


class QColor:
    def __init__(self, name="#000000"):
        self._name = name

    def name(self, *_):
        return self._name


class QUrl:
    TolerantMode = 0

    def __init__(self, url="", mode=0):
        self.url = url

    @staticmethod
    def fromLocalFile(path):
        return QUrl("file://" + path)


class QDesktopServices:
    opened = []

    @staticmethod
    def openUrl(url):
        QDesktopServices.opened.append(url.url)
        return True


class QInputDialog:
    @staticmethod
    def getItem(parent, title, label, items, current=0, editable=True):
        raise AssertionError("a test must replace QInputDialog.getItem before the panel asks")


class QFileDialog:
    @staticmethod
    def getOpenFileName(*args):
        raise AssertionError("a test must replace QFileDialog.getOpenFileName before the panel asks")


class QMessageBox:
    Ok, Cancel, Yes, No, Retry, Close = 0x400, 0x400000, 0x4000, 0x10000, 0x80000, 0x200000
    NoIcon, Information, Warning, Critical, Question = 0, 1, 2, 3, 4


class Qt:
    WaitCursor = 3
    ShiftModifier = 0x02000000
    NoModifier = 0


class QFile:
    ReadOnly = 1

    def __init__(self, path):
        self.path = str(path)

    def exists(self):
        import os

        return os.path.isfile(self.path)

    def open(self, mode):
        return True

    def close(self):
        pass


# ---------------------------------------------------------------- CTK widgets

class ctkCollapsibleButton(QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.text = ""
        self.collapsed = False


class ctkComboBox(QComboBox):
    pass


class ctkCheckBox(QCheckBox):
    pass


class _Unused(QWidget):
    """A CTK class Slicer's GUI connectors compare against; HCCAnalysis never makes one."""


class ctkRangeWidget(_Unused):
    pass


class ctkDoubleRangeSlider(_Unused):
    pass


class ctkPathLineEdit(_Unused):
    pass


class ctkDirectoryButton(_Unused):
    pass


class ctkSliderWidget(_Unused):
    pass


class ctkDoubleSlider(_Unused):
    pass


class ctkDoubleSpinBox(_Unused):
    pass


class ctkCheckablePushButton(_Unused):
    pass


class ctkColorPickerButton(_Unused):
    pass


# ---------------------------------------------------------------- qMRML widgets

class qMRMLWidget(QWidget):
    mrmlSceneChanged = signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self._scene = None
        self.isEntered = False  # qSlicerAbstractModuleWidget's property, for the module's widget

    def setMRMLScene(self, scene):
        self._scene = scene
        self.mrmlSceneChanged.emit(scene)

    def mrmlScene(self):
        return self._scene


class qMRMLNodeComboBox(qMRMLWidget):
    """Offers the scene's nodes of `nodeTypes` (subclasses only with showChildNodeTypes)."""

    currentNodeChanged = signal()
    currentNodeIDChanged = signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.nodeTypes = []
        self.showChildNodeTypes = True
        self.noneEnabled = False
        self.addEnabled = self.removeEnabled = self.renameEnabled = True
        self._current = None
        self._observed = None

    def nodes(self):
        """The nodes the user can pick."""
        if self._scene is None:
            return []
        found = []
        for index in range(self._scene.GetNumberOfNodes()):
            node = self._scene.GetNthNode(index)
            if self.showChildNodeTypes:
                if any(node.IsA(t) for t in self.nodeTypes):
                    found.append(node)
            elif node.GetClassName() in self.nodeTypes:
                found.append(node)
        return found

    def setMRMLScene(self, scene):
        if self._observed is not None:
            self._observed[0].RemoveObserver(self._observed[1])
        super().setMRMLScene(scene)
        self._observed = None
        if scene is not None:
            self._observed = (scene, scene.AddObserver(scene.NodeRemovedEvent, self._onNodeRemoved))
        if not self.noneEnabled and self._current is None and self.nodes():
            self.setCurrentNode(self.nodes()[0])  # a combo box without "None" always shows a node

    def _onNodeRemoved(self, caller, event):
        if self._current is not None and self._current not in self.nodes():
            self.setCurrentNode(None)

    def currentNode(self):
        return self._current

    def currentNodeID(self):
        return self._current.GetID() if self._current is not None else ""

    def setCurrentNode(self, node):
        """A node the combo box does not offer selects nothing, as in Slicer."""
        node = node if node is not None and node in self.nodes() else None
        if node is not self._current:
            self._current = node
            self.currentNodeChanged.emit(node)
            self.currentNodeIDChanged.emit(self.currentNodeID())


class qMRMLSegmentsTableView(qMRMLWidget):
    selectionChanged = signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.selectionMode = QAbstractItemView.SingleSelection
        self._segmentation = None
        self._selected = []

    def setSegmentationNode(self, node):
        self._segmentation = node
        self._selected = []

    def segmentationNode(self):
        return self._segmentation

    def selectedSegmentIDs(self):
        return list(self._selected)

    def setSelectedSegmentIDs(self, ids):
        self._selected = list(ids)
        self.selectionChanged.emit(None, None)


class qMRMLRangeWidget(_Unused):
    pass


class qMRMLSliderWidget(_Unused):
    pass


class qMRMLSpinBox(_Unused):
    pass


# ---------------------------------------------------------------- .ui loading

def _value(prop):
    """A designer property value, or None for kinds the module's .ui does not need (geometry)."""
    node = next(iter(prop))
    if node.tag == "string":
        return node.text or ""
    if node.tag == "bool":
        return node.text == "true"
    if node.tag == "number":
        return int(node.text)
    if node.tag == "stringlist":
        return [s.text or "" for s in node.findall("string")]
    return None


class QUiLoader:
    """Builds the widget tree of a .ui file from the stand-in classes."""

    def load(self, qfile):
        root = ET.parse(qfile.path).getroot()
        self._named = {}
        widget = self._widget(root.find("widget"), None)
        for connection in root.iter("connection"):
            sender = self._named[connection.findtext("sender")]
            receiver = self._named[connection.findtext("receiver")]
            slot = getattr(receiver, connection.findtext("slot").split("(")[0])
            sender.connect(connection.findtext("signal"), slot)
        return widget

    def _widget(self, element, parent):
        cls = WIDGET_CLASSES[element.get("class")]
        widget = cls()
        widget.objectName = element.get("name")
        self._named[widget.objectName] = widget
        if parent is not None:
            widget.setParent(parent)
        for prop in element.findall("property"):
            value = _value(prop)
            if value is None:
                continue
            if prop.get("stdset") == "0":
                widget.setProperty(prop.get("name"), value)
            else:
                setattr(widget, prop.get("name"), value)
        for item in element.findall("item"):  # combo box items
            widget.addItem(_value(item.find("property")))
        layout_element = element.find("layout")
        if layout_element is not None:
            layout = LAYOUT_CLASSES[layout_element.get("class")]()
            layout.objectName = layout_element.get("name")
            widget.setLayout(layout)
            for item in layout_element.findall("item"):
                child = item.find("widget")
                if child is not None:
                    layout.addWidget(self._widget(child, widget))
                elif item.find("layout") is not None:
                    raise NotImplementedError("nested layouts: extend the stand-in loader")
        return widget


# ---------------------------------------------------------------- the modules

_QT_NAMES = ("QObject", "QWidget", "QLayout", "QFormLayout", "QVBoxLayout", "QHBoxLayout", "QGridLayout",
             "QLabel", "QPushButton", "QCheckBox", "QLineEdit", "QComboBox", "QProgressBar", "QTextEdit",
             "QSpinBox", "QDoubleSpinBox", "QSlider", "QTimer", "QAbstractItemView", "QSettings", "QIcon",
             "QColor", "QUrl", "QDesktopServices", "QInputDialog", "QFileDialog", "QMessageBox", "Qt", "QFile",
             "QUiLoader")
_CTK_NAMES = ("ctkCollapsibleButton", "ctkComboBox", "ctkCheckBox", "ctkRangeWidget", "ctkDoubleRangeSlider",
              "ctkPathLineEdit", "ctkDirectoryButton", "ctkSliderWidget", "ctkDoubleSlider", "ctkDoubleSpinBox",
              "ctkCheckablePushButton", "ctkColorPickerButton")
#: Set on the `slicer` module: the Slicer application adds these widget classes there.
SLICER_WIDGETS = ("qMRMLWidget", "qMRMLNodeComboBox", "qMRMLSegmentsTableView", "qMRMLRangeWidget",
                  "qMRMLSliderWidget", "qMRMLSpinBox")

WIDGET_CLASSES = {name: globals()[name] for name in _QT_NAMES + _CTK_NAMES + SLICER_WIDGETS
                  if isinstance(globals()[name], type) and issubclass(globals()[name], QWidget)}
LAYOUT_CLASSES = {name: globals()[name] for name in ("QFormLayout", "QVBoxLayout", "QHBoxLayout", "QGridLayout")}


def make_modules():
    """Fresh `qt` and `ctk` module objects holding the stand-in classes."""
    qt = types.ModuleType("qt", "Stand-ins for PythonQt's qt module (Testing/slicer_module)")
    ctk = types.ModuleType("ctk", "Stand-ins for CTK's Python module (Testing/slicer_module)")
    for name in _QT_NAMES:
        setattr(qt, name, globals()[name])
    for name in _CTK_NAMES:
        setattr(ctk, name, globals()[name])
    return qt, ctk


class ModuleManager(QObject):
    moduleAboutToBeUnloaded = signal()


class App:
    """The part of `slicer.app` (qSlicerApplication) the module and the framework call."""

    applicationName = "Slicer"

    def __init__(self, app_logic):
        self._app_logic = app_logic
        self._manager = ModuleManager()
        self.cursor_depth = 0

    def moduleManager(self):
        return self._manager

    def testingEnabled(self):
        return True  # message boxes are logged and skipped, as in Slicer's own test runs

    def translate(self, context, text):
        return text

    def setOverrideCursor(self, cursor):
        self.cursor_depth += 1

    def restoreOverrideCursor(self):
        self.cursor_depth -= 1

    def processEvents(self):
        pass  # no event loop: tests deliver timer ticks themselves (QTimer.fire)

    def layoutManager(self):
        return None  # no views: results are not laid out

    def applicationLogic(self):
        return self._app_logic

    def userSettings(self):
        return QSettings()

    def settings(self):
        return QSettings()
