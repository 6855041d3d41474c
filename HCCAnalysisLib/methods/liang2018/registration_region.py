"""The region of the reference phase that Liang's phase registration works on (`registration.py`):
the liver's box (else the lesions') plus a margin, and the dilated liver mask on it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import SimpleITK as sitk

if TYPE_CHECKING:
    from HCCAnalysisLib.data.case import Case

MIN_REGION_VOXELS = 8  # along each axis of the region where the image allows it


def liver_region(case: Case, dilate_mm: float = 10.0) -> sitk.Image | None:
    """The liver mask dilated by `dilate_mm` (the registration's region), or None without a liver."""
    if case.liver_mask is None:
        return None
    spacing = case.liver_mask.GetSpacing()
    radius = [max(1, int(round(dilate_mm / s))) for s in spacing]
    return sitk.BinaryDilate(sitk.Cast(case.liver_mask > 0, sitk.sitkUInt8), radius)


def registration_region(case: Case, fixed: sitk.Image, margin_mm: float = 20.0) -> tuple[sitk.Image, sitk.Image | None]:
    """The part of the reference phase that is registered: the box of the liver (else of the lesions)
    plus `margin_mm`, and the dilated liver mask on it (None without a liver). Only this region
    matters for the patches."""
    mask = liver_region(case)
    if mask is not None:
        mask = sitk.Resample(mask, fixed, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
        if not np.any(sitk.GetArrayViewFromImage(mask)):
            mask = None
    focus = mask
    if focus is None and case.lesions:
        union = sum(sitk.Cast(lesion.mask > 0, sitk.sitkUInt8) for lesion in case.lesions) > 0
        focus = sitk.Resample(sitk.Cast(union, sitk.sitkUInt8), fixed, sitk.Transform(), sitk.sitkNearestNeighbor, 0,
                              sitk.sitkUInt8)
    if focus is None or not np.any(sitk.GetArrayViewFromImage(focus)):
        return fixed, mask
    shape = sitk.LabelShapeStatisticsImageFilter()
    shape.Execute(focus)
    box = shape.GetBoundingBox(1)  # x, y, z start, then sizes
    pad = [int(np.ceil(margin_mm / s)) for s in fixed.GetSpacing()]
    lo = [max(0, box[i] - pad[i]) for i in range(3)]
    hi = [min(fixed.GetSize()[i], box[i] + box[i + 3] + pad[i]) for i in range(3)]
    for i in range(3):  # at least MIN_REGION_VOXELS thick where the image allows it
        short = MIN_REGION_VOXELS - (hi[i] - lo[i])
        if short > 0:
            lo[i] = max(0, lo[i] - (short + 1) // 2)
            hi[i] = min(fixed.GetSize()[i], lo[i] + MIN_REGION_VOXELS)
    size = [h - l for l, h in zip(lo, hi)]
    crop = sitk.RegionOfInterest(fixed, size, lo)
    return crop, None if mask is None else sitk.RegionOfInterest(mask, size, lo)
