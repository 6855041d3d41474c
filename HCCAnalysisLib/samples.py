"""Samples: what a task's sampler makes of a Case, and the samplers by name.

A sampler turns one Case into 2D network inputs: one or more per lesion (and per
background ROI where the task has them). It never sees a file or an MRML node.
"""

from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

from .errors import HCCInputError
from .preprocess import (augment_x6, bounding_box, crop_2d, largest_slices, normalise_top1, resize_channels,
                         square_box, time_signal_curve)


@dataclass(frozen=True)
class Placement:
    """Where a sample's 2D image input came from on the case's segmentation grid.

    `z` is the axial slice index (numpy (z, y, x) order) and (y0, y1, x0, x1) the crop box,
    end-exclusive; the box may reach outside the grid (`crop_2d` pads there). The sample's
    image is this box resized to the input size, so a per-pixel map of the input (a saliency
    map) can be resized back to the box and pasted onto the grid (`saliency.saliency_volume`).
    """

    z: int
    y0: int
    y1: int
    x0: int
    x1: int

    @classmethod
    def of(cls, z, box):
        """From a slice index and a (y0, y1, x0, x1) box as the samplers compute them."""
        return cls(int(z), *(int(v) for v in box))


@dataclass
class Sample:
    inputs: dict  # input name -> float32 array, e.g. {"image": C x H x W}
    target: int  # class index, or -1 when unknown (prediction)
    case_id: str
    patient_id: str
    lesion_id: str
    lesion_name: str
    kind: str  # "lesion" | "background"
    extras: dict = field(default_factory=dict)
    # Where the image input lies on the segmentation grid; None when it does not map onto
    # one axial box of it (resampled grids, tiles of a microscopy image, augmented views).
    placement: Placement | None = None


def fused_volumes(case, phases, channels):
    """Normalised phase volumes on the segmentation grid, fused as channels (Jia 2019 data-level fusion).

    One phase alone is replicated into every channel, as a grey image fills all three RGB
    channels of a natural-image network; otherwise there must be exactly `channels` phases.
    """
    if len(phases) not in (1, channels):
        raise HCCInputError(f"{len(phases)} phases given ({', '.join(phases)}); this task fuses exactly "
                            f"{channels} phases as channels, or takes one phase alone", case.source)
    volumes = [normalise_top1(case.phase_on_grid(p), f"{case.source}: phase '{p}'") for p in phases]
    return volumes * channels if len(volumes) == 1 else volumes


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


def jia2019_sampler(case, task, phases, target_of, rng, training):
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


def augment_samples(samples):
    """Jia 2019 x6 augmentation of every 2D input of every sample (training only).

    The views are flipped / rotated, so they no longer map pixel for pixel onto the crop box:
    they carry no placement.
    """
    out = []
    for sample in samples:
        views = {k: augment_x6(v) for k, v in sample.inputs.items()}
        for i in range(6):
            inputs = {k: np.ascontiguousarray(v[i]) for k, v in views.items()}
            out.append(Sample(inputs, sample.target, sample.case_id, sample.patient_id, sample.lesion_id,
                              sample.lesion_name, sample.kind, sample.extras))
    return out


# sampler name -> (module in this package, function); imported when first used
SAMPLERS = {
    "jia2019": ("samples", "jia2019_sampler"),
    "zhen2020": ("samplers_fusion", "zhen2020_sampler"),
    "wang2020": ("samplers_fusion", "wang2020_sampler"),
    "liang2018": ("samplers_liang", "liang2018_sampler"),
    "meng2019": ("samplers_meng", "meng2019_sampler"),
}


def get_sampler(name):
    import importlib

    try:
        module_name, function_name = SAMPLERS[name]
    except KeyError:
        raise HCCInputError(f"unknown sampler '{name}'", hint=f"known: {', '.join(sorted(SAMPLERS))}") from None
    return getattr(importlib.import_module(f"{__package__}.{module_name}"), function_name)
