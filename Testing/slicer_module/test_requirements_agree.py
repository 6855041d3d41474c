"""One set of requirements: the Slicer module's list, pyproject.toml and the tested pins agree.

The module installs HCCAnalysis/Resources/requirements.txt into Slicer's Python; pip users get
pyproject.toml's dependencies and extras; the tests run with requirements.txt's exact pins.
A package in one and not the other, or two different lower bounds, is a Slicer install that
differs from what was tested.
"""

from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from HCCAnalysisLib.panel import dependencies

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11 (the test environment)

ROOT = Path(__file__).resolve().parents[2]
MODULE_REQUIREMENTS = ROOT / "HCCAnalysis" / "Resources" / "requirements.txt"
# What Slicer itself ships (numpy, SimpleITK), what the PyTorch extension installs, and the
# extras that are no part of a Slicer install (radiomics builds from source; slicer-core is Slicer).
NOT_FROM_THE_MODULE = {"numpy", "simpleitk", "torch", "torchvision"}
MODULE_EXTRAS = ("fusion", "microscopy")


def _by_name(lines):
    out = {}
    for line in lines:
        requirement = Requirement(line)
        out[canonicalize_name(requirement.name)] = requirement
    return out


def _lower_bound(requirement):
    bounds = [s.version for s in requirement.specifier if s.operator in (">=", "==", "~=")]
    return bounds[0] if bounds else None


def _pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    lines = list(project["dependencies"])
    for extra in MODULE_EXTRAS:
        lines += project["optional-dependencies"][extra]
    return _by_name(lines)


def test_module_requirements_are_pyprojects_with_the_same_bounds():
    module = _by_name(dependencies.read_requirements(MODULE_REQUIREMENTS))
    pyproject = _pyproject()
    assert not set(module) & NOT_FROM_THE_MODULE
    assert sorted(set(pyproject) - NOT_FROM_THE_MODULE - set(module)) == [], "pyproject needs, the module omits"
    assert sorted(set(module) - set(pyproject)) == [], "the module installs what pyproject does not declare"
    differ = {n: (str(module[n].specifier), str(pyproject[n].specifier)) for n in module
              if _lower_bound(module[n]) != _lower_bound(pyproject[n])}
    assert differ == {}


def test_torch_floors_are_pyprojects_and_the_tested_pins_meet_every_bound():
    pyproject = _pyproject()
    assert _lower_bound(pyproject["torch"]) == dependencies.TORCH_FLOOR
    assert _lower_bound(pyproject["torchvision"]) == dependencies.TORCHVISION_FLOOR
    pins = {}
    for raw in (ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            requirement = Requirement(line)
            pins[canonicalize_name(requirement.name)] = Version(_lower_bound(requirement))
    module = _by_name(dependencies.read_requirements(MODULE_REQUIREMENTS))
    unmet = {n: str(r.specifier) for n, r in {**pyproject, **module}.items()
             if n in pins and not r.specifier.contains(pins[n], prereleases=True)}
    assert unmet == {}
    assert not dependencies.torch_missing()  # the tested torch / torchvision are above the floors
