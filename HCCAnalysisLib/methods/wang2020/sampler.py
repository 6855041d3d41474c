"""The Wang 2020 sampler (see docs/methods-fusion.md).

NC, ART and PV read on the segmentation grid through physical coordinates (so the three ROIs
share their centre point), the lesion's bounding box on an axial slice cropped from each phase,
resized (linear) and stacked as three channels (Wang 2020 section II.B). Each annotated lesion
slice is one sample (the paper's 765 slices of 167 patients); `sampler_kwargs={"slices":
"largest"}` keeps the largest one only. Adds `inputs["clinical"]` when the task names a schema.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from HCCAnalysisLib.data.preprocess import bounding_box, crop_2d, fused_volumes, resize_channels
from HCCAnalysisLib.data.samples import Placement, Sample
from HCCAnalysisLib.data.stacked_inputs import case_label, check_channels, clinical_inputs
from HCCAnalysisLib.errors import HCCInputError

if TYPE_CHECKING:
    from HCCAnalysisLib.data.case import Case
    from HCCAnalysisLib.methods.task import Task


def slice_box(mask_yx: np.ndarray, spacing_yx: Sequence[float], margin: float = 0.0, min_mm: float = 8.0
              ) -> tuple[int, int, int, int]:
    """The lesion's bounding box on one slice, as (y0, y1, x0, x1), centred on the box centre:
    `margin` (fraction of the size) added on each side, each side at least `min_mm`."""
    lo, hi = bounding_box(mask_yx)
    spacing_yx = np.asarray(spacing_yx, dtype=float)
    centre = (lo + hi) / 2.0
    extent_mm = np.maximum((hi - lo + 1) * spacing_yx * (1 + 2 * margin), min_mm)
    half = extent_mm / spacing_yx / 2.0
    y0, x0 = np.floor(centre - half + 0.5).astype(int)
    y1, x1 = np.floor(centre + half + 0.5).astype(int)
    return int(y0), int(y1), int(x0), int(x1)


def wang2020_sampler(case: Case, task: Task, phases: Sequence[str], target_of: Callable[[str], int],
                    rng: np.random.Generator, training: bool) -> list[Sample]:
    """NC/ART/PV ROIs of each lesion slice, centre-aligned, resized, stacked: inputs["image"] = 3 x S x S."""
    check_channels(task, phases, case.source)
    options = task.sampler_kwargs
    size = task.input_size
    volumes = fused_volumes(case, phases, len(phases))
    spacing_yx = case.spacing_zyx()[1:]
    clinical = clinical_inputs(case, task)
    samples = []
    for lesion in case.lesions:
        mask = case.lesion_array(lesion)
        areas = mask.reshape(mask.shape[0], -1).sum(axis=1)
        slices = [int(z) for z in np.flatnonzero(areas)]
        if options.get("slices", "all") == "largest":
            slices = [int(np.argmax(areas))]
        target = target_of("lesion")
        for z in slices:
            box = slice_box(mask[z], spacing_yx, options.get("margin", 0.0), options.get("min_mm", 8.0))
            roi = np.stack([crop_2d(v[z], box) for v in volumes])
            inputs = {"image": resize_channels(roi, size, "bilinear"), **clinical}
            samples.append(Sample(inputs, target, case.case_id, case.patient_id, lesion.lesion_id, lesion.name,
                                  "lesion", placement=Placement.of(z, box)))
    return samples
