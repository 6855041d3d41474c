"""How far a registration is from a known truth (benchmarks and tests of `registration.py`): the
residual displacement at points of a mask."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from HCCAnalysisLib.errors import HCCInputError


def displacement_error(estimated: sitk.Transform, truth: sitk.Transform, points_mm: np.ndarray) -> np.ndarray:
    """|truth(estimated(x)) - x| in mm at each point: the residual when `moving(x) = fixed(truth(x))`
    was registered back to `fixed` by `estimated` (zero for a perfect registration)."""
    return np.array([np.linalg.norm(np.array(truth.TransformPoint(estimated.TransformPoint(tuple(p)))) - p)
                     for p in points_mm])


def mask_points(mask: sitk.Image, count: int = 500, seed: int = 0) -> np.ndarray:
    """Up to `count` random physical points (mm) inside a mask (seeded)."""
    index = np.argwhere(sitk.GetArrayViewFromImage(mask) > 0)
    if len(index) == 0:
        raise HCCInputError("the mask is empty: no point to measure the registration on")
    chosen = index[np.random.default_rng(seed).choice(len(index), min(count, len(index)), replace=False)]
    return np.array([mask.TransformIndexToPhysicalPoint([int(v) for v in i[::-1]]) for i in chosen])
