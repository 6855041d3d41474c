"""Candidate speed-ups of the whole-case path, as drop-in replacements that
`bench_case_analysis.py` monkeypatches into the library one at a time (variants A-E) and
times side by side with the library as it is. Nothing here is used by the library.
"""

import numpy as np
import SimpleITK as sitk
import torch

from HCCAnalysisLib import samples as samples_mod
from HCCAnalysisLib.errors import HCCInputError

_NORMALISED = {}


def normalise_top1_once(volume, source="image"):
    """normalise_top1 with one percentile pass (NumPy) instead of two (NumPy + MONAI's)."""
    volume = np.asarray(volume, dtype=np.float32)
    low, high = float(volume.min()), float(np.percentile(volume, 99))
    if not high > low:
        raise HCCInputError("is constant (no contrast left after trimming the top 1 %)", source,
                            "check that the right image was loaded")
    out = (volume - np.float32(low)) * np.float32(1.0 / (high - low))
    return np.clip(out, 0.0, 1.0, out=out)


def fused_volumes_cached(case, phases, channels):
    """fused_volumes, normalised volumes kept on the case so a second task reuses them."""
    cache = case._grid_cache.setdefault("__normalised__", {})
    key = tuple(phases)
    if key not in cache:
        cache[key] = _ORIGINAL_FUSED(case, phases, channels)
    return cache[key]


_ORIGINAL_FUSED = getattr(samples_mod, "fused_volumes", None)


def _background_draws(case, lesion_box, count, rng, min_liver_fraction, tries, flat, cache):
    """samples._background_boxes, optionally with the candidate voxels as flat indices
    (`np.flatnonzero`: 8 bytes per liver voxel instead of `np.argwhere`'s 24 plus temporaries) and/or
    the dilated lesion mask and candidates kept per case. Same candidate order, so the same draws."""
    store = case._grid_cache.setdefault("__background__", {}) if cache else {}
    if "candidates" not in store:
        liver = case.liver_array()
        if liver is None:
            return _ORIGINAL_BACKGROUND(case, lesion_box, count, rng, min_liver_fraction, tries)
        lesions = sitk.GetArrayFromImage(sitk.BinaryDilate(
            sitk.Cast(sum(l.mask for l in case.lesions) > 0, sitk.sitkUInt8), [2, 2, 0]))
        free = (liver > 0) & (lesions == 0)
        store.update(liver=liver, lesions=lesions,
                     candidates=np.flatnonzero(free) if flat else np.argwhere(free))
        del free
    liver, lesions, candidates = store["liver"], store["lesions"], store["candidates"]
    y0, y1, x0, x1 = lesion_box
    height, width = y1 - y0, x1 - x0
    boxes = []
    for _ in range(tries):
        if len(boxes) == count or len(candidates) == 0:
            break
        pick = candidates[rng.integers(len(candidates))]
        z, cy, cx = np.unravel_index(pick, liver.shape) if flat else pick
        box = (int(cy - height // 2), int(cy - height // 2 + height), int(cx - width // 2), int(cx - width // 2 + width))
        if box[0] < 0 or box[2] < 0 or box[1] > liver.shape[1] or box[3] > liver.shape[2]:
            continue
        if lesions[z, box[0]:box[1], box[2]:box[3]].any():
            continue
        if liver[z, box[0]:box[1], box[2]:box[3]].mean() >= min_liver_fraction:
            boxes.append((int(z), box))
    return boxes


def background_boxes_cached(case, lesion_box, count, rng, min_liver_fraction=0.7, tries=400):
    """C: dilated all-lesion mask and candidates computed once per case (argwhere, as the library)."""
    return _background_draws(case, lesion_box, count, rng, min_liver_fraction, tries, flat=False, cache=True)


def background_boxes_flat(case, lesion_box, count, rng, min_liver_fraction=0.7, tries=400):
    """E: candidates as flat indices (np.flatnonzero + np.unravel_index on the drawn one), no cache."""
    return _background_draws(case, lesion_box, count, rng, min_liver_fraction, tries, flat=True, cache=False)


def background_boxes_flat_cached(case, lesion_box, count, rng, min_liver_fraction=0.7, tries=400):
    """C+E."""
    return _background_draws(case, lesion_box, count, rng, min_liver_fraction, tries, flat=True, cache=True)


_ORIGINAL_BACKGROUND = getattr(samples_mod, "_background_boxes", None)


def resize_channels_torch(image_chw, size):
    """preprocess.resize_channels without MONAI: the same area interpolation, called directly."""
    tensor = torch.from_numpy(np.ascontiguousarray(image_chw, dtype=np.float32))[None]
    return torch.nn.functional.interpolate(tensor, size=(size, size), mode="area")[0].numpy()

VARIANTS = {
    "baseline (library as is)": [],
    "A: normalise with one percentile pass": [(samples_mod, "normalise_top1", normalise_top1_once)],
    "B: normalised volumes cached per case": [(samples_mod, "fused_volumes", fused_volumes_cached)],
    "C: background-ROI masks cached per case": [(samples_mod, "_background_boxes", background_boxes_cached)],
    "D: resize with torch interpolate (area), no MONAI": [(samples_mod, "resize_channels", resize_channels_torch)],
    "E: background candidates as flat indices": [(samples_mod, "_background_boxes", background_boxes_flat)],
    "all: A+B+D+(C with E)": [(samples_mod, "normalise_top1", normalise_top1_once),
                              (samples_mod, "fused_volumes", fused_volumes_cached),
                              (samples_mod, "_background_boxes", background_boxes_flat_cached),
                              (samples_mod, "resize_channels", resize_channels_torch)],
}


def usable_variants():
    """The variants whose patch targets still exist in the library (it changes under us)."""
    return {name: patches for name, patches in VARIANTS.items()
            if all(hasattr(module, attr) for module, attr, _ in patches)}
