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

import types
import xml.etree.ElementTree as ET

from qt_standins import *  # noqa: F401,F403 - the basic widgets, re-exported for make_modules
from qt_standins import QObject, QWidget, signal


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


class QInputDialog(QWidget):
    """Qt's dialog as an object. A test answers with `QInputDialog.answer = (item index, accepted)`:
    exec() gives 1 (Accepted) or 0 (Rejected); textValue() is that item even on Cancel, as in Qt."""

    answer = None
    shown = []  # the item lists of the dialogs exec()-uted, for the tests to read

    def __init__(self, parent=None):
        super().__init__(None)
        self._items, self._index = [], 0

    def setWindowTitle(self, title):
        self.windowTitle = title

    def setLabelText(self, text):
        self.labelText = text

    def setComboBoxItems(self, items):
        self._items = list(items)

    def exec(self):
        if QInputDialog.answer is None:
            raise AssertionError("a test must set QInputDialog.answer before the panel asks")
        QInputDialog.shown.append(list(self._items))
        self._index, accepted = QInputDialog.answer
        return 1 if accepted else 0

    def textValue(self):
        return self._items[self._index] if self._items else ""

    @staticmethod
    def getItem(parent, title, label, items, current=0, editable=True):
        raise AssertionError("the static getItem returns the current item on Cancel: the panel must not use it")


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

    def topLevelWidgets(self):
        return []  # no main window: slicer.util.mainWindow() gives None, as in a Slicer without GUI

    def applicationLogic(self):
        return self._app_logic

    def userSettings(self):
        return QSettings()

    def settings(self):
        return QSettings()
