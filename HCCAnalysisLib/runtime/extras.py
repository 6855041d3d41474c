"""Optional dependencies, grouped as pip extras of HCCAnalysisLib (pyproject.toml):

    pip install 'HCCAnalysisLib[fusion]'      Zhen 2020 and Wang 2020 (timm, torchvision)
    pip install 'HCCAnalysisLib[microscopy]'  Meng 2019 (tifffile: TIFF / SVS whole-slide images)
    pip install 'HCCAnalysisLib[radiomics]'   Wang 2020's radiomics baseline (pyradiomics)
    pip install 'HCCAnalysisLib[all]'         all of them

A task names the extras it needs (`Task.extras`); `require_task_extras` checks them when a task
is trained, evaluated or its model loaded, and `require` imports one module at its point of use.
Either way a missing package is an HCCInputError naming the extra to install, not a raw
ModuleNotFoundError from deep inside a network constructor.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING

from HCCAnalysisLib.errors import HCCInputError

if TYPE_CHECKING:
    from HCCAnalysisLib.methods.task import Task

# extra -> the modules it provides (import names, not distribution names); keep in step with
# [project.optional-dependencies] in pyproject.toml (a test compares them).
EXTRAS: dict[str, tuple[str, ...]] = {
    "fusion": ("timm", "torchvision"),
    "microscopy": ("tifffile",),
    "radiomics": ("radiomics",),
}


def install_hint(extra: str) -> str:
    return f"pip install 'HCCAnalysisLib[{extra}]'"


def _missing_error(user: str, extra: str, module: str, err: ImportError) -> HCCInputError:
    return HCCInputError(f"{user} needs the '{extra}' extra: {install_hint(extra)} "
                         f"(cannot import {module}: {err})")


def require(module: str, extra: str, user: str) -> ModuleType:
    """Import `module` (part of `extra`) for `user` (e.g. "task zhen2020-model-a", "the Meng
    2019 TIFF reader"); a missing one raises HCCInputError naming the extra."""
    try:
        return importlib.import_module(module)
    except ImportError as err:  # ModuleNotFoundError, or a broken install of the package
        raise _missing_error(user, extra, module, err) from None


def require_task_extras(task: Task) -> None:
    """Check that every module of every extra `task` needs imports; raise naming the first missing
    extra. The modules are imported (not just looked up) because a half-installed package, or
    one blocked for a test, fails only on import."""
    for extra in getattr(task, "extras", ()):
        if extra not in EXTRAS:
            raise ValueError(f"task {task.name} names unknown extra '{extra}' (known: {', '.join(EXTRAS)})")
        for module in EXTRAS[extra]:
            require(module, extra, f"task {task.name}")
