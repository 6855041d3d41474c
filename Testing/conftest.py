"""Shared pytest fixtures: repository paths, real data, and a small Slicer application context.

`slicer` is imported inside `slicer_app` only: most test files never need it, and importing
it costs seconds.
"""

import atexit
import os
import shutil
import tempfile
import types
from pathlib import Path

import pytest

# The CLI caches samples by default (data/sample_cache.py): tests, and the commands they start,
# use a cache of their own, removed at the end, never the user's ~/.cache/hccanalysis.
if not os.environ.get("HCC_CACHE_DIR"):
    os.environ["HCC_CACHE_DIR"] = tempfile.mkdtemp(prefix="hcc-test-cache-")
    atexit.register(shutil.rmtree, os.environ["HCC_CACHE_DIR"], True)

# Module logics that exist in the slicer-core wheel, registered under Slicer's module names so
# that vtkSlicerApplicationLogic.GetModuleLogic(name) finds them as it does in the application.
_MODULE_LOGICS = {
    "Volumes": "vtkSlicerVolumesLogic",
    "Segmentations": "vtkSlicerSegmentationsModuleLogic",
    "SubjectHierarchy": "vtkSlicerSubjectHierarchyModuleLogic",
    "Tables": "vtkSlicerTablesLogic",
    "Markups": "vtkSlicerMarkupsLogic",
    "Transforms": "vtkSlicerTransformLogic",
    "CropVolume": "vtkSlicerCropVolumeLogic",
    "Sequences": "vtkSlicerSequencesLogic",
    "Models": "vtkSlicerModelsLogic",
}


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module: small CPU convolutions run several times faster than with two
    threads competing for a busy 2-core machine (thread-pool synchronisation); restored after."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def repo_root():
    return Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared_data(repo_root):
    """The shared real data folder beside the repository; tests that need it skip without it."""
    path = repo_root.parent / "shared" / "data"
    if not path.is_dir():
        pytest.skip(f"shared data folder {path} is absent")
    return path


@pytest.fixture(scope="session")
def sample_data(repo_root):
    """The bundled real sample data (HCCAnalysisLib/sample_data/), shipped with the repository."""
    return repo_root / "HCCAnalysisLib" / "sample_data"


@pytest.fixture
def slicer_app(tmp_path_factory):
    """A fresh scene with the application logic and the real module logics, as in Slicer.

    Sets `slicer.mrmlScene` and `slicer.modules.<name>.logic()` (lower-case module names) so
    that `slicer.util` functions work, and restores both afterwards. Yields a namespace with
    `scene`, `app_logic` and `logics` (dict by lower-case module name).
    """
    slicer = pytest.importorskip("slicer")
    home = tmp_path_factory.mktemp("slicer_home")
    (home / "share" / "ColorFiles").mkdir(parents=True)  # no user colour files: silences a warning

    scene = slicer.vtkMRMLScene()
    app_logic = slicer.vtkSlicerApplicationLogic()
    app_logic.SetHomeDirectory(str(home))
    app_logic.SetShareDirectory("share")
    app_logic.SetTemporaryPath(str(tmp_path_factory.mktemp("slicer_tmp")))
    # The Colors module logic must be the application's colour logic before the scene is set:
    # it adds the default colour tables that label maps and segmentations use.
    colors = slicer.vtkSlicerColorLogic()
    colors.SetMRMLApplicationLogic(app_logic)
    app_logic.SetColorLogic(colors)
    app_logic.SetMRMLScene(scene)
    colors.SetMRMLScene(scene)
    app_logic.SetModuleLogic("Colors", colors)
    logics = {"colors": colors}
    for module, class_name in _MODULE_LOGICS.items():
        logic = getattr(slicer, class_name)()
        logic.SetMRMLApplicationLogic(app_logic)
        logic.SetMRMLScene(scene)
        app_logic.SetModuleLogic(module, logic)
        logics[module.lower()] = logic

    missing = object()
    saved = {name: getattr(slicer, name, missing) for name in ("mrmlScene", "modules")}
    slicer.mrmlScene = scene
    slicer.modules = types.SimpleNamespace(
        **{name: types.SimpleNamespace(logic=(lambda logic=logic: logic)) for name, logic in logics.items()})
    try:
        yield types.SimpleNamespace(scene=scene, app_logic=app_logic, logics=logics)
    finally:
        for name, value in saved.items():
            if value is missing:
                delattr(slicer, name)
            else:
                setattr(slicer, name, value)
        scene.Clear(1)
