"""Inputs shared by the samplers that stack sequences as channels and add clinical data (Zhen 2020,
Wang 2020): the clinical vector of a case and the channel check."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from HCCAnalysisLib.errors import HCCInputError

if TYPE_CHECKING:
    from HCCAnalysisLib.data.case import Case
    from HCCAnalysisLib.methods.task import Task


def case_label(case: Case) -> str:
    """How messages name a case: its id and, when known, its folder."""
    return f"case '{case.case_id}' ({case.source})" if case.source else f"case '{case.case_id}'"


def clinical_inputs(case: Case, task: Task) -> dict[str, np.ndarray]:
    """{"clinical": float32 vector} from the case's fields, or {} when the task has no schema."""
    if not task.clinical_schema:
        return {}
    from HCCAnalysisLib.clinical.schemas import get_schema

    vector = get_schema(task.clinical_schema).encode(case.clinical or {}, source=case_label(case))
    return {"clinical": np.asarray(vector, dtype=np.float32)}


def check_channels(task: Task, phases: Sequence[str], source: object) -> None:
    """Refuse a phase list whose length is not the number of channels the task's net stacks."""
    channels = task.net_kwargs.get("in_channels", 3)
    if len(phases) != channels:
        raise HCCInputError(f"task {task.name} stacks {channels} sequences as channels, got {len(phases)} "
                            f"({', '.join(phases)})", source, f"e.g. --phases {','.join(task.phases)}")
