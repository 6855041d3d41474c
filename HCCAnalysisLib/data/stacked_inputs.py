"""Inputs shared by the samplers that stack sequences as channels and add clinical data (Zhen 2020,
Wang 2020): the clinical vector of a case, a linear resize of a C x H x W stack, the channel check."""

import numpy as np
from monai.transforms import Resize

from HCCAnalysisLib.errors import HCCInputError


def case_label(case):
    return f"case '{case.case_id}' ({case.source})" if case.source else f"case '{case.case_id}'"


def clinical_inputs(case, task):
    """{"clinical": float32 vector} from the case's fields, or {} when the task has no schema."""
    if not task.clinical_schema:
        return {}
    from HCCAnalysisLib.clinical.schemas import get_schema

    vector = get_schema(task.clinical_schema).encode(case.clinical or {}, source=case_label(case))
    return {"clinical": np.asarray(vector, dtype=np.float32)}


def resize_bilinear(image_chw, size):
    """C x H x W -> C x size x size, linear interpolation (anti-aliased when shrinking)."""
    shrink = image_chw.shape[1] > size or image_chw.shape[2] > size
    resize = Resize((size, size), mode="bilinear", align_corners=False, anti_aliasing=shrink)
    return np.asarray(resize(np.ascontiguousarray(image_chw, dtype=np.float32)), dtype=np.float32)


def check_channels(task, phases, source):
    channels = task.net_kwargs.get("in_channels", 3)
    if len(phases) != channels:
        raise HCCInputError(f"task {task.name} stacks {channels} sequences as channels, got {len(phases)} "
                            f"({', '.join(phases)})", source, f"e.g. --phases {','.join(task.phases)}")
