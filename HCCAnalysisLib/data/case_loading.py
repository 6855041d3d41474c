"""Which loader reads a case folder for a task: radiology volumes + segmentation (most tasks)
or a microscopy image (Meng 2019). A task names its loader; loaders are imported lazily."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import importlib

from HCCAnalysisLib.errors import HCCInputError

if TYPE_CHECKING:
    from HCCAnalysisLib.data.reading_options import CaseReading
    from HCCAnalysisLib.data.case import Case
    from HCCAnalysisLib.data.microscopy_case import MicroscopyCase
    from HCCAnalysisLib.methods.task import Task

# task.loader -> (module in this package, function(folder, case_id, patient_id, phases, fields)),
# the volumes loader also takes `reading` (labels, segmentation, phase map).
READING_LOADERS = ("volumes",)
LOADERS = {
    "volumes": ("case", "load_case"),
    "microscopy": ("microscopy_case", "load_microscopy_case"),
}


def load_for_task(folder: str | Path, task: Task | None = None, phases: Sequence[str] | None = None,
                  case_id: str | None = None, patient_id: str | None = None, fields: dict[str, Any] | None = None,
                  reading: CaseReading | None = None) -> Case | MicroscopyCase:
    """Load one case folder the way `task` reads it (volumes when no task is given); `reading`
    (CaseReading) applies to radiology volumes, and is refused for other loaders."""
    kind = getattr(task, "loader", "volumes")
    try:
        module_name, function_name = LOADERS[kind]
    except KeyError:
        raise HCCInputError(f"task {task.name} names an unknown loader '{kind}'") from None
    loader = getattr(importlib.import_module(f"{__package__}.{module_name}"), function_name)
    if kind in READING_LOADERS:
        return loader(folder, case_id=case_id, patient_id=patient_id, phases=phases, fields=fields, reading=reading)
    if reading is not None and not reading.is_default():
        raise HCCInputError(f"the options --liver-label, --lesion-label, --segmentation and --phase read radiology "
                            f"cases; task {task.name} reads {kind} images", folder)
    return loader(folder, case_id=case_id, patient_id=patient_id, phases=phases, fields=fields)
