"""The task registry, public face of `methods/`: a task is data (what it reads, how it samples,
which net and loss, which classes); every paper in `methods.PAPERS` contributes its `TASKS`."""

from __future__ import annotations

from HCCAnalysisLib.errors import HCCInputError
from HCCAnalysisLib.methods import registry
from HCCAnalysisLib.methods.task import Task

# name -> Task, over every paper in methods.PAPERS
TASKS: dict[str, Task] = registry().tasks


def get_task(name: str) -> Task:
    """The task called `name`; an unknown name is an HCCInputError naming the closest known ones."""
    try:
        return TASKS[name]
    except KeyError:
        from HCCAnalysisLib.methods.task_card import close_names

        close = close_names(name, TASKS)
        near = f"did you mean {', '.join(close)}? " if close else ""
        raise HCCInputError(f"unknown task '{name}'",
                            hint=f"{near}known tasks: {', '.join(sorted(TASKS))}; `hcc tasks` describes them") from None
