"""Degenerate experiments refused before training: a run needs every class it is to learn.

A cohort with one class only gives a model that cannot fail and an AUC that is undefined;
a class of the task missing from the training data gives a model that never predicts it.
The first is always refused; the second is refused unless the caller allows it, and then
warned about loudly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from HCCAnalysisLib.errors import HCCInputError

if TYPE_CHECKING:
    from HCCAnalysisLib.data.samples import Sample
    from HCCAnalysisLib.methods.task import Task

_LOG = logging.getLogger(__name__)


def class_counts(task: Task, samples: Iterable[Sample]) -> dict[str, int]:
    """Samples per class of the task, every class listed (0 for an absent one)."""
    counts = {c: 0 for c in task.classes}
    for sample in samples:
        if sample.target >= 0:  # -1: unknown (a prediction sample)
            counts[task.classes[sample.target]] += 1
    return counts


def check_classes(task: Task, counts: dict[str, int], source: object, what: str = "training",
                  allow_missing: bool = False, log: Callable[[str], Any] = print) -> None:
    """Refuse fewer than two classes present; a missing class unless `allow_missing` (then warn)."""
    present = [c for c, n in counts.items() if n > 0]
    missing = [c for c, n in counts.items() if n == 0]
    shown = ", ".join(f"{c}: {n}" for c, n in counts.items())
    if len(present) < 2:
        raise HCCInputError(f"the {what} data hold {len(present)} class(es) of task {task.name} ({shown}); "
                            f"at least two are needed", source,
                            "add cases of the other class(es): with one class nothing can be learned or measured")
    if missing and not allow_missing:
        raise HCCInputError(f"class(es) {missing} of task {task.name} are absent from the {what} data ({shown})",
                            source, "add such cases, or pass --allow-missing-classes to go on with a model "
                                    "that can never predict them")
    if missing:
        warning = (f"WARNING: class(es) {missing} of task {task.name} are absent from the {what} data ({shown}); "
                   f"the model will never predict them (--allow-missing-classes)")
        # Loud whatever the caller's log does with it: a WARNING reaches stderr under `hcc` (even -q) and
        # through Python's last-resort handler where no logging is set up; a caller's own log (the
        # panel's) gets it as well, a logger's method would only repeat it.
        _LOG.warning(warning)
        if log is not print and not isinstance(getattr(log, "__self__", None), logging.Logger):
            log(warning)
