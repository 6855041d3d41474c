"""The HCCAnalysis module loaded as Slicer loads it, against Slicer's own Python framework.

Each test runs once per Slicer version in ../shared/slicer-python/ (5.8.0 and main): that
version's real `slicer.parameterNodeWrapper`, `slicer.ScriptedLoadableModule` and
`slicer.i18n` are imported fresh into the slicer-core wheel's `slicer` package, over a real
MRML scene with the application logic (Testing/conftest.py's `slicer_app`). Only `qt`,
`ctk`, the qMRML widget classes and `slicer.app` are stand-ins (slicer_standins.py).
"""

import importlib.util
import sys
import types
from pathlib import Path

import pytest

import slicer_standins

ROOT = Path(__file__).resolve().parents[2]
MODULE_FILE = ROOT / "HCCAnalysis" / "HCCAnalysis.py"
FRAMEWORK = ROOT.parent / "shared" / "slicer-python"
VERSIONS = ("v5.8.0", "main-2026-08-21")
# What a fresh import of the framework (and of the module built on it) must not find cached.
_FRESH = ("slicer.parameterNodeWrapper", "slicer.ScriptedLoadableModule", "slicer.i18n", "slicer.packaging",
          "HCCAnalysis")


def _forget_framework():
    for name in list(sys.modules):
        if any(name == prefix or name.startswith(prefix + ".") for prefix in _FRESH):
            del sys.modules[name]


@pytest.fixture(params=VERSIONS)
def slicer_version(request):
    """The folder of one Slicer version's pure-Python framework (skips when it is absent)."""
    folder = FRAMEWORK / request.param
    if not (folder / "slicer" / "parameterNodeWrapper" / "wrapper.py").is_file():
        pytest.skip(f"Slicer's Python framework {folder} is absent (see ../shared/slicer-python/README.md): "
                    "the module cannot be loaded against the real parameter node wrapper without it")
    return folder


@pytest.fixture
def models_dir(tmp_path, monkeypatch):
    """An empty per-test models folder (HCCANALYSIS_MODELS_DIR), never the user's."""
    folder = tmp_path / "models"
    folder.mkdir()
    monkeypatch.setenv("HCCANALYSIS_MODELS_DIR", str(folder))
    return folder


@pytest.fixture
def module_env(slicer_app, slicer_version, models_dir, monkeypatch):
    """HCCAnalysis.py imported as Slicer does, on `slicer_version`'s framework.

    Yields a namespace: `mod` (the imported module), `slicer`, `qt`, `scene`, `app`,
    `models_dir`, `version` (folder name) and `make_widget()` (the module's widget, set up
    and entered as Slicer does when the user opens the module).
    """
    import slicer

    qt, ctk = slicer_standins.make_modules()
    monkeypatch.setitem(sys.modules, "qt", qt)
    monkeypatch.setitem(sys.modules, "ctk", ctk)
    monkeypatch.syspath_prepend(str(slicer_version))
    monkeypatch.setattr(slicer, "__path__", list(slicer.__path__) + [str(slicer_version / "slicer")])
    for name in slicer_standins.SLICER_WIDGETS:
        monkeypatch.setattr(slicer, name, getattr(slicer_standins, name), raising=False)
    app = slicer_standins.App(slicer_app.app_logic)
    monkeypatch.setattr(slicer, "app", app, raising=False)
    slicer.modules.hccanalysis = types.SimpleNamespace(path=str(MODULE_FILE))
    monkeypatch.setattr(slicer, "selfTests", {}, raising=False)
    _forget_framework()
    spec = importlib.util.spec_from_file_location("HCCAnalysis", MODULE_FILE)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["HCCAnalysis"] = mod
    widgets = []
    try:
        spec.loader.exec_module(mod)
        # The parameter node wrapper of this version, not a cached one of the other.
        assert Path(sys.modules["slicer.parameterNodeWrapper"].__file__).is_relative_to(slicer_version)

        def make_widget():
            mod.HCCAnalysis(types.SimpleNamespace(path=str(MODULE_FILE)))  # as the module factory does
            parent = slicer.qMRMLWidget()
            parent.setLayout(qt.QVBoxLayout())
            widget = mod.HCCAnalysisWidget(parent)
            widget.setup()
            parent.isEntered = True
            widget.enter()
            widgets.append(widget)
            return widget

        yield types.SimpleNamespace(mod=mod, slicer=slicer, qt=qt, scene=slicer_app.scene, app=app,
                                    models_dir=models_dir, version=slicer_version.name, make_widget=make_widget,
                                    module_file=MODULE_FILE)
    finally:
        for widget in widgets:
            if widget._timer.timeout._slots:  # not already cleaned up by the test: kills a child still running
                widget.cleanup()
        _forget_framework()
        del slicer.modules.hccanalysis

