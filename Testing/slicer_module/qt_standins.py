"""Stand-ins for the basic Qt classes (signals, QObject, widgets, layouts, QTimer) the HCCAnalysis
module uses; slicer_standins.py builds the rest (dialogs, CTK, qMRML, the .ui loader, slicer.app) on
them. Behaviour as described in slicer_standins.py."""

import inspect


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

    def itemData(self, index):
        return self._items[index][1]

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
