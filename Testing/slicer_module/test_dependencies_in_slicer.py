"""Installing dependencies inside Slicer must not replace the GPU build of torch: torch comes from
the PyTorch extension at a floor monai accepts, pip is told to skip torch and torchvision, and
what is still missing afterwards is an error naming it (Slicer's real packaging module)."""

import sys
import types

import pytest

from HCCAnalysisLib.errors import HCCInputError
from HCCAnalysisLib.panel import dependencies


def test_torch_floor_is_read_from_metadata_without_importing_torch(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # an `import torch` would fail now
    assert dependencies.torch_missing() == []
    monkeypatch.setattr(dependencies, "TORCH_FLOOR", "99.0")
    assert dependencies.torch_missing() == ["torch>=99.0"]


def test_torch_through_the_pytorch_extension_with_the_floor(module_env, monkeypatch, tmp_path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("numpy>=1.0  # present\n")
    monkeypatch.setattr(dependencies, "TORCH_FLOOR", "99.0")  # as if Slicer had no (or an old) torch
    monkeypatch.setitem(sys.modules, "PyTorchUtils", None)  # the extension is not installed
    with pytest.raises(HCCInputError, match="install the 'PyTorch' extension"):
        dependencies.ensure_slicer_dependencies(requirements)

    calls = []

    class PyTorchUtilsLogic:  # the PyTorch extension's logic, declining as a user would
        def installTorch(self, askConfirmation=False, forceComputationBackend=None, torchVersionRequirement=None,
                         torchvisionVersionRequirement=None):
            calls.append((askConfirmation, torchVersionRequirement, torchvisionVersionRequirement))

    monkeypatch.setitem(sys.modules, "PyTorchUtils", types.SimpleNamespace(PyTorchUtilsLogic=PyTorchUtilsLogic))
    with pytest.raises(HCCInputError, match="PyTorch is required and was not installed"):
        dependencies.ensure_slicer_dependencies(requirements)
    assert calls == [(True, ">=99.0", f">={dependencies.TORCHVISION_FLOOR}")]


def test_pip_ensure_skips_torch_and_what_stays_missing_is_named(module_env, monkeypatch, tmp_path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("numpy>=1.0  # present\nsurely-not-installed-hcc>=1.0  # absent\n")
    if module_env.version == "v5.8.0":
        pytest.skip("Slicer 5.8 has no slicer.packaging: its pip_install path would really run pip")
    import slicer.packaging

    seen = []
    real = slicer.packaging.pip_ensure

    def spy(requirements, **options):  # Slicer's own pip_ensure, watched
        seen.append((list(requirements), options))
        return real(requirements, **options)

    monkeypatch.setattr(slicer.packaging, "pip_ensure", spy)
    with pytest.raises(HCCInputError, match="still missing: surely-not-installed-hcc>=1.0"):
        dependencies.ensure_slicer_dependencies(requirements)  # Slicer's testing mode installs nothing
    [(asked, options)] = seen
    assert asked == ["numpy>=1.0", "surely-not-installed-hcc>=1.0"]
    assert options["skip_packages"] == ["torch", "torchvision"] and options["requester"] == "HCCAnalysis"
