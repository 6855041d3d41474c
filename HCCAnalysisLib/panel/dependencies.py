"""Which entries of a requirements file are not satisfied in this Python (no pip, no network).

Slicer >= 5.12 checks this itself (`slicer.packaging.pip_ensure`); older Slicer versions get
the list from here and install it with `slicer.util.pip_install`.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

from packaging.requirements import Requirement


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
