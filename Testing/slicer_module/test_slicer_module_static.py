"""What can be checked of the Slicer module without the Slicer application (qt, ctk and the
parameter node wrapper do not exist outside it): build lists, the .ui, the parameter node,
the resources. HCCAnalysis.py is parsed, never imported.
"""

import ast
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
MODULE = ROOT / "HCCAnalysis"
MODULE_PY = MODULE / "HCCAnalysis.py"
UI = MODULE / "Resources" / "UI" / "HCCAnalysis.ui"
REGENERATE = ("run `.venv/bin/python tools/update_cmake_lists.py` (it lists "
              "every .py file under HCCAnalysisLib in MODULE_PYTHON_SCRIPTS)")

# Widget classes that exist in Slicer (qMRML*), CTK (ctk*) or Qt (Q*), with the Qt base each extends.
KNOWN_WIDGET_CLASSES = {
    "QWidget", "QLabel", "QComboBox", "QPushButton", "QCheckBox", "QProgressBar", "QLineEdit",
    "ctkCollapsibleButton", "qMRMLWidget", "qMRMLNodeComboBox", "qMRMLSegmentsTableView",
}
KNOWN_LAYOUT_CLASSES = {"QFormLayout", "QVBoxLayout", "QHBoxLayout", "QGridLayout"}
# Parameter type -> the widget class the parameter node wrapper binds it to (guiConnectors.py).
BINDINGS = {"choice": "QComboBox", "str": "QLineEdit", "bool": "QCheckBox", "node": "qMRMLNodeComboBox"}


def _source():
    return MODULE_PY.read_text(encoding="utf-8")


def _tree():
    return ast.parse(_source())


def _class(name):
    return next(n for n in _tree().body if isinstance(n, ast.ClassDef) and n.name == name)


def _module_constant(name):
    for node in _tree().body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"{name} not defined in HCCAnalysis.py")


def _ui():
    return ET.parse(UI).getroot()


def _widgets():
    return {w.get("name"): w for w in _ui().iter("widget")}


def _parameter_fields():
    """name -> annotation source of the @parameterNodeWrapper class."""
    cls = next(n for n in _tree().body if isinstance(n, ast.ClassDef)
               and any(getattr(d, "id", None) == "parameterNodeWrapper" for d in n.decorator_list))
    return {s.target.id: ast.unparse(s.annotation) for s in cls.body if isinstance(s, ast.AnnAssign)}


def _ui_parameters():
    """SlicerParameterName -> (widget element, stdset attribute)."""
    found = {}
    for widget in _ui().iter("widget"):
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                found[prop.find("string").text] = (widget, prop.get("stdset"))
    return found


def _cmake_list(path, variable):
    text = path.read_text(encoding="utf-8")
    block = re.search(rf"set\({variable}\s+(.*?)\)", text, re.S).group(1)
    return [line.strip() for line in block.splitlines() if line.strip() and not line.strip().startswith("#")]


def test_every_library_file_is_in_the_cmake_list():
    listed = _cmake_list(ROOT / "HCCAnalysisLib" / "CMakeLists.txt", "MODULE_PYTHON_SCRIPTS")
    present = sorted(p.relative_to(ROOT / "HCCAnalysisLib").as_posix()
                     for p in (ROOT / "HCCAnalysisLib").rglob("*.py") if "__pycache__" not in p.parts)
    assert sorted(set(present) - set(listed)) == [], REGENERATE
    assert sorted(set(listed) - set(present)) == [], REGENERATE
    assert "WITH_SUBDIR" in (ROOT / "HCCAnalysisLib" / "CMakeLists.txt").read_text()


def test_module_cmake_lists_existing_files_and_registers_tests():
    cmake = MODULE / "CMakeLists.txt"
    text = cmake.read_text()
    for variable in ("MODULE_PYTHON_SCRIPTS", "MODULE_PYTHON_RESOURCES"):
        for item in _cmake_list(cmake, variable):
            assert (MODULE / item.replace("${MODULE_NAME}", "HCCAnalysis")).is_file(), item
    assert "WITH_GENERIC_TESTS" in text and "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in text
    assert sorted(p.name for p in (MODULE).glob("*.py")) == ["HCCAnalysis.py"]  # nothing unlisted


def test_top_level_cmake_has_extension_metadata():
    text = (ROOT / "CMakeLists.txt").read_text()
    # URLs may be empty (no public repository yet): Testing/slicer_module/test_packaging.py checks them.
    for key in ("EXTENSION_CATEGORY", "EXTENSION_CONTRIBUTORS", "EXTENSION_DESCRIPTION"):
        assert re.search(rf'set\({key} "[^"]+"', text), key
    assert 'set(EXTENSION_DEPENDS "PyTorch")' in text
    assert "add_subdirectory(HCCAnalysisLib)" in text and "add_subdirectory(HCCAnalysis)" in text


def test_ui_widgets_are_known_classes_with_unique_names():
    names = [w.get("name") for w in _ui().iter("widget")]
    assert len(names) == len(set(names))
    unknown = {w.get("class") for w in _ui().iter("widget")} - KNOWN_WIDGET_CLASSES
    assert not unknown
    assert not {lay.get("class") for lay in _ui().iter("layout")} - KNOWN_LAYOUT_CLASSES
    custom = {c.findtext("class") for c in _ui().iter("customwidget")}
    assert {w.get("class") for w in _ui().iter("widget") if not w.get("class").startswith("Q")} <= custom
    assert _ui().find("widget").get("class") == "qMRMLWidget"


def test_every_widget_the_code_uses_exists_in_the_ui():
    widgets = _widgets()
    used = set(re.findall(r"self\.ui\.(\w+)", _source()))
    used |= {f"{b}Button" for b in _module_constant("BUTTONS")}
    assert used and sorted(used - set(widgets)) == []
    widget_class = _class("HCCAnalysisWidget")
    methods = {f.name for f in widget_class.body if isinstance(f, ast.FunctionDef)}
    for button in _module_constant("BUTTONS"):
        assert f"on{button[0].upper()}{button[1:]}Button" in methods, button


def test_mrml_widgets_get_the_scene():
    receivers = {c.findtext("receiver") for c in _ui().iter("connection")
                 if c.findtext("signal") == "mrmlSceneChanged(vtkMRMLScene*)"}
    mrml = {n for n, w in _widgets().items() if w.get("class") in ("qMRMLNodeComboBox", "qMRMLSegmentsTableView")}
    assert mrml == receivers


def test_parameter_node_fields_match_the_ui():
    fields = _parameter_fields()
    bound = _ui_parameters()
    unbound = set(_module_constant("UNBOUND_PARAMETERS"))
    assert set(bound) | unbound == set(fields) and not set(bound) & unbound
    for name, (widget, stdset) in bound.items():
        assert stdset == "0", f"{name}: dynamic properties need stdset=0"
        annotation = fields[name]
        cls = widget.get("class")
        if annotation.startswith("vtkMRML"):
            assert cls == BINDINGS["node"]
            types = [s.text for s in widget.find("property[@name='nodeTypes']").iter("string")]
            assert types == [annotation], name
        elif annotation.startswith("Annotated[str, Choice("):  # the combo-box connector needs Choice
            assert cls == BINDINGS["choice"], name
        else:
            assert cls == BINDINGS[annotation], name


def test_logic_is_documented_for_the_console():
    logic = _class("HCCAnalysisLogic")
    assert "logic.process(" in ast.get_docstring(logic)
    process = next(f for f in logic.body if isinstance(f, ast.FunctionDef) and f.name == "process")
    assert [a.arg for a in process.args.args][:4] == ["self", "task", "volumeNodes", "segmentationNode"]
    assert "wait" in [a.arg for a in process.args.args]  # blocking by default, async on request


def test_module_imports_slicer_only_where_allowed():
    # The library must import without Qt or slicer; the module file may use them.
    for path in (ROOT / "HCCAnalysisLib").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:  # module level only: imports inside functions are allowed
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                assert not any(n.split(".")[0] in ("qt", "ctk", "slicer") for n in names), path


def test_requirements_are_parseable_commented_and_leave_torch_to_the_extension():
    lines = [line for line in (MODULE / "Resources" / "requirements.txt").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert lines
    for line in lines:
        spec, _, why = line.partition("#")
        assert why.strip(), f"no reason given for {spec.strip()}"
        assert Requirement(spec.strip()).name not in ("torch", "torchvision")


def test_models_json_is_a_valid_registry():
    from HCCAnalysisLib.models.registry import load_registry

    registry = ROOT / "HCCAnalysisLib" / "models" / "Models.json"  # package data, read by the module too
    data = json.loads(registry.read_text())
    assert len(load_registry(registry)) == len(data["models"]) == len(load_registry())


def test_icon_is_a_128_pixel_png():
    from PIL import Image

    with Image.open(MODULE / "Resources" / "Icons" / "HCCAnalysis.png") as icon:
        assert icon.format == "PNG" and icon.size == (128, 128)


@pytest.mark.parametrize("path", [MODULE_PY, MODULE / "Scripts" / "batch.py"])
def test_module_files_compile_and_stay_small(path):
    compile(path.read_text(encoding="utf-8"), str(path), "exec")
    assert len(path.read_text(encoding="utf-8").splitlines()) < 450


def _is_module(dotted):
    import importlib.util

    try:
        return importlib.util.find_spec(dotted) is not None
    except ModuleNotFoundError:
        return False


def test_module_loads_before_its_dependencies_are_installed():
    """Slicer imports HCCAnalysis.py at start-up, before the first run installs torch, monai,
    scipy...: the library modules it imports at top level must not need them."""
    import subprocess
    import sys

    import importlib.util

    froms = [n for n in _tree().body if isinstance(n, ast.ImportFrom) and (n.module or "").startswith("HCCAnalysisLib")]
    submodules = {f"{n.module}.{a.name}" for n in froms for a in n.names}  # `from package import module`
    imported = sorted({n.module for n in froms}
                      | {m for m in submodules if importlib.util.find_spec(m.rsplit(".", 1)[0]) is not None
                         and _is_module(m)})
    heavy = ["torch", "monai", "sklearn", "timm", "scipy", "statsmodels", "matplotlib", "safetensors", "slicerio"]
    code = (
        "import importlib, importlib.abc, sys\n"
        f"HEAVY = {heavy!r}\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name.split('.')[0] in HEAVY: raise ImportError('not installed yet: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        f"for name in {imported!r}: importlib.import_module(name)\n"
        "from HCCAnalysisLib.panel import choices as panel_model\n"
        "print(len(panel_model.missing_inputs(panel_model.task_choices()[0].name, {}, [], '')))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "HCCAnalysisLib.panel.jobs" in imported and int(run.stdout) > 0
