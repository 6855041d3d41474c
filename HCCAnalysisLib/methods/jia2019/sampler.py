"""The Jia 2019 sampler: lesion and background liver ROIs fused from the chosen sequences, x6 augmentation."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
import SimpleITK as sitk

from HCCAnalysisLib.data.preprocess import (bounding_box, crop_2d, fused_volumes, largest_slices,
                                            resize_channels, square_box, time_signal_curve)
from HCCAnalysisLib.data.samples import Placement, Sample
from HCCAnalysisLib.errors import HCCInputError

if TYPE_CHECKING:
    from HCCAnalysisLib.data.case import Case
    from HCCAnalysisLib.methods.task import Task


def _crop_sample(volumes, z, box, size):
    return resize_channels(np.stack([crop_2d(v[z], box) for v in volumes]), size)


def _background_candidates(case):
    """Liver voxels clear of every lesion (dilated by 2 in-plane), as flat indices; once per case."""
    store = case._grid_cache.setdefault("__background__", {})
    if "candidates" not in store:
        liver = case.liver_array()
        lesions = sitk.GetArrayFromImage(sitk.BinaryDilate(
            sitk.Cast(sum(l.mask for l in case.lesions) > 0, sitk.sitkUInt8), [2, 2, 0]))
        # Flat indices: 8 bytes per candidate instead of np.argwhere's 24 (same order, same draws).
        store.update(lesions=lesions, candidates=np.flatnonzero((liver > 0) & (lesions == 0)))
    return store["lesions"], store["candidates"]


def _background_boxes(case, lesion_box, count, rng, min_liver_fraction=0.7, tries=400):
    """Random same-size boxes inside the liver that touch no lesion (nor its immediate rim)."""
    liver = case.liver_array()
    if liver is None:
        raise HCCInputError("has no liver label: this task samples background liver ROIs from it", case.source,
                            "label the liver (value 1) or use a task without background ROIs")
    lesions, candidates = _background_candidates(case)
    y0, y1, x0, x1 = lesion_box
    height, width = y1 - y0, x1 - x0
    boxes = []
    for _ in range(tries):
        if len(boxes) == count or len(candidates) == 0:
            break
        z, cy, cx = np.unravel_index(candidates[rng.integers(len(candidates))], liver.shape)
        box = (int(cy - height // 2), int(cy - height // 2 + height), int(cx - width // 2), int(cx - width // 2 + width))
        if box[0] < 0 or box[2] < 0 or box[1] > liver.shape[1] or box[3] > liver.shape[2]:
            continue
        if lesions[z, box[0]:box[1], box[2]:box[3]].any():
            continue
        if liver[z, box[0]:box[1], box[2]:box[3]].mean() >= min_liver_fraction:
            boxes.append((int(z), box))
    return boxes


def jia2019_sampler(case: Case, task: Task, phases: Sequence[str], target_of: Callable[[str], int],
                    rng: np.random.Generator, training: bool) -> list[Sample]:
    """Lesion ROIs (and background liver ROIs) fused from the chosen phases, Jia 2019 section 4.

    Each lesion gives `slices_per_lesion` axial slices around its largest cross-section,
    cropped to one square box around the whole lesion and resized to the network input.
    """
    options = task.sampler_kwargs
    size, channels = task.input_size, task.net_kwargs.get("in_channels", 3)
    volumes = fused_volumes(case, phases, channels)
    raw = [case.phase_on_grid(p) for p in phases]
    spacing_yx = case.spacing_zyx()[1:]
    samples = []
    for lesion in case.lesions:
        mask = case.lesion_array(lesion)
        lo, hi = bounding_box(mask)
        box = square_box(lo[1:], hi[1:], spacing_yx)
        slices = largest_slices(mask, options.get("slices_per_lesion", 3))
        centre = ((box[0] + box[1]) / 2.0, (box[2] + box[3]) / 2.0)
        curve = time_signal_curve(raw, slices[0], centre, options.get("tsic_window", 16))
        extras = {f"tsic_{p}": v for p, v in zip(phases, curve)}
        target = target_of("lesion")
        for z in slices:
            samples.append(Sample({"image": _crop_sample(volumes, z, box, size)}, target, case.case_id,
                                  case.patient_id, lesion.lesion_id, lesion.name, "lesion", extras,
                                  placement=Placement.of(z, box)))
        if options.get("background"):
            for z, bg_box in _background_boxes(case, box, len(slices), rng):
                samples.append(Sample({"image": _crop_sample(volumes, z, bg_box, size)}, target_of("background"),
                                      case.case_id, case.patient_id, f"bg-{lesion.lesion_id}",
                                      f"background near {lesion.name}", "background",
                                      placement=Placement.of(z, bg_box)))
    return samples
