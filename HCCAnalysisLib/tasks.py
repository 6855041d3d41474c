"""The task registry, public face of `methods/`: a task is data (what it reads, how it samples,
which net and loss, which classes); every paper in `methods.PAPERS` contributes its `TASKS`."""

from __future__ import annotations

from HCCAnalysisLib.errors import HCCInputError
from HCCAnalysisLib.methods import registry
from HCCAnalysisLib.methods.task import Task

# name -> Task, over every paper in methods.PAPERS
TASKS: dict[str, Task] = registry().tasks


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise HCCInputError(f"unknown task '{name}'", hint=f"known tasks: {', '.join(sorted(TASKS))}") from None
