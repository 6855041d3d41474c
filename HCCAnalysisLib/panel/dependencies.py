"""What HCCAnalysisLib needs in Slicer's Python, checked without pip or network, installed on request.

torch and torchvision come from the PyTorch extension (the build for the user's GPU), with a
version floor the pinned monai and timm accept; everything else from the module's
Resources/requirements.txt, through `slicer.packaging.pip_ensure` (Slicer >= 5.12) told to
leave torch and torchvision alone, or `slicer.util.pip_install` before that (torch is then
already installed at the floor, so pip keeps it).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import InvalidVersion, Version

from HCCAnalysisLib.errors import HCCInputError

TORCH_FLOOR = "2.8"  # monai 1.6 requires torch >= 2.8
TORCHVISION_FLOOR = "0.23"  # the torchvision released with torch 2.8 (timm's backbones need it)
TORCH_PACKAGES = ("torch", "torchvision")  # never installed by pip here: the PyTorch extension does


def read_requirements(path: str | Path) -> list[str]:
    """The requirement lines of a requirements.txt (comments, blank lines and pip options skipped)."""
    lines = []
    for raw in Path(path).read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            lines.append(line)
    return lines


def missing_requirements(path: str | Path) -> list[str]:
    """The requirement strings that are absent, or present in a version outside their specifier."""
    missing = []
    for line in read_requirements(path):
        requirement = Requirement(line)
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        try:
            version = importlib.metadata.version(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(line)
            continue
        if requirement.specifier and not requirement.specifier.contains(version, prereleases=True):
            missing.append(line)
    return missing


def _below(package: str, floor: str) -> bool:
    """True when `package` is absent or older than `floor` (read from its metadata: torch is not imported)."""
    try:
        installed = importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return True
    try:
        return Version(installed).release < Version(floor).release  # 2.8.0+cu128 counts as 2.8.0
    except InvalidVersion:
        return False


def torch_missing() -> list[str]:
    """The torch packages absent or below their floor: what the PyTorch extension must install."""
    floors = dict(zip(TORCH_PACKAGES, (TORCH_FLOOR, TORCHVISION_FLOOR)))
    return [f"{name}>={floor}" for name, floor in floors.items() if _below(name, floor)]


def ensure_slicer_dependencies(requirements: str | Path) -> None:
    """Inside Slicer: install what is missing (asking first), then check; raises HCCInputError
    naming what is still missing (the user declined, no network, Slicer's testing mode)."""
    import slicer

    if torch_missing():
        try:
            import PyTorchUtils
        except ImportError as err:
            raise HCCInputError("HCCAnalysis needs PyTorch", "torch",
                                "install the 'PyTorch' extension from the Extensions Manager, then restart") from err
        if PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=True,
                                                         torchVersionRequirement=f">={TORCH_FLOOR}",
                                                         torchvisionVersionRequirement=f">={TORCHVISION_FLOOR}") is None:
            raise HCCInputError("PyTorch is required and was not installed", "torch")
    missing = missing_requirements(requirements)
    if missing and importlib.util.find_spec("slicer.packaging") is not None:  # Slicer >= 5.12
        packaging = importlib.import_module("slicer.packaging")  # keeps `slicer` a plain global name
        # Not packaging.load_requirements: it cannot read the file's end-of-line comments.
        packaging.pip_ensure(read_requirements(requirements), skip_packages=list(TORCH_PACKAGES),
                             requester="HCCAnalysis")
    elif missing and slicer.util.confirmOkCancelDisplay(f"HCCAnalysis will install: {', '.join(missing)}"):
        slicer.util.pip_install(missing)
    still = torch_missing() + missing_requirements(requirements)
    if still:
        raise HCCInputError(f"Python packages still missing: {', '.join(still)}", requirements,
                            "allow the installation when asked (it needs the network), or install them with pip")
