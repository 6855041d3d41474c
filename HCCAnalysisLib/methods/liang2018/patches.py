"""Patch sampling for ResGL-BDLSTM (Liang et al., MICCAI 2018, section 2.1).

Each lesion slice gives one *global* input (the lesion's bounding box, resized to
128 x 128) and many *local* inputs: 7 x 7 patches centred on lesion pixels, taken on
a grid whose step is the "pace" of eq. 1 and resized to 64 x 64. All phases are
sampled at the same pixel, so one patch is a short sequence over phases (NC, ART,
PV) for the BD-LSTM. Every patch carries the class of its lesion.

The patch centres are kept (z, y, x on the mask's grid) so that the per-patch
predictions can be drawn back into a per-lesion label map (`label_map_svm`).

Intensities: the paper does not say how CT values were scaled. By default each phase
is clipped to an abdominal CT window (W400 / L40, i.e. -160..240 HU) and mapped to
0..1; pass `window=None` when the caller has already normalised the phases.
"""

from __future__ import annotations

from typing import Hashable, Sequence

import math
import uuid
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from HCCAnalysisLib.engine.shared_inputs import SharedInput
from HCCAnalysisLib.data.samples import Placement
from HCCAnalysisLib.errors import HCCInputError

EPSILON = 128  # eq. 1 threshold on the ROI area (pixels), section 3.1
PATCH_SIZE = 7  # section 3.1
LOCAL_SIZE = 64  # patches resized to 64 x 64, section 2.1
GLOBAL_SIZE = 128  # lesion ROI resized to 128 x 128, section 2.1
CT_WINDOW = (-160.0, 240.0)


def pace(width: int, height: int, epsilon: float = EPSILON) -> int:
    """Eq. 1: floor(sqrt(w * h / epsilon)) when w * h > epsilon, else 1."""
    if width < 1 or height < 1 or epsilon <= 0:
        raise HCCInputError(f"pace needs a positive ROI size and epsilon, got w={width}, h={height}, "
                            f"epsilon={epsilon}")
    area = int(width) * int(height)
    if area <= epsilon:
        return 1
    # floor(sqrt(x)) == isqrt(floor(x)): exact, no float rounding at perfect squares
    return max(1, math.isqrt(int(area // epsilon)))


def roi_box(mask2d: np.ndarray) -> tuple[int, int, int, int]:
    """Bounding box (y0, y1, x0, x1), end-exclusive, of the nonzero pixels of a 2D mask."""
    ys, xs = np.nonzero(mask2d)
    if len(ys) == 0:
        raise HCCInputError("the lesion mask is empty on this slice")
    return int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1


def patch_centres(mask2d: np.ndarray, step: int) -> np.ndarray:
    """Centres (y, x) of the patches on one slice: a grid of `step` inside the box, on the lesion.

    The grid starts at the box's top-left corner; only grid points on lesion pixels are
    kept, so every patch is labelled by the lesion it sits in.
    """
    y0, y1, x0, x1 = roi_box(mask2d)
    ys, xs = np.meshgrid(np.arange(y0, y1, step), np.arange(x0, x1, step), indexing="ij")
    keep = mask2d[ys, xs] > 0
    return np.stack([ys[keep], xs[keep]], axis=1).astype(np.int64)


def extract_patches(plane: np.ndarray, centres: np.ndarray, size: int = PATCH_SIZE) -> np.ndarray:
    """size x size patches of a 2D plane around each (y, x) centre; edges padded by replication."""
    half = size // 2
    padded = np.pad(plane, half, mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, (size, size))
    # window (y, x) of the padded plane is centred on pixel (y, x) of the original one
    return windows[centres[:, 0], centres[:, 1]].astype(np.float32)


def resize_stack(images: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of N x H x W to N x size x size (antialiased when shrinking)."""
    tensor = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))[:, None]
    shrink = tensor.shape[-1] > size or tensor.shape[-2] > size
    out = F.interpolate(tensor, size=(size, size), mode="bilinear", align_corners=False, antialias=shrink)
    return out[:, 0].numpy()


def window_intensity(volume: np.ndarray, window: tuple[float, float] | None) -> np.ndarray:
    """Clip to the (low, high) window and map to 0..1; None leaves the values unchanged."""
    if window is None:
        return volume.astype(np.float32, copy=False)
    low, high = window
    if not high > low:
        raise HCCInputError(f"intensity window must have high > low, got {window}")
    return ((np.clip(volume, low, high) - low) / (high - low)).astype(np.float32)


@dataclass
class LesionPatches:
    """The patches of one lesion, all phases, ready for the ResGL-BDLSTM net.

    raw_local: n x P x size x size native-resolution patches; global_roi: S x P x 1 x 128
    x 128, one per sampled slice; slice_of_patch: n indices into global_roi;
    centres: n x 3 (z, y, x) on the mask grid (z = 0 for a 2D mask, whose mask_shape is
    then 1 x H x W); paces: one per sampled slice.
    """

    raw_local: np.ndarray
    global_roi: np.ndarray
    slice_of_patch: np.ndarray
    centres: np.ndarray
    paces: np.ndarray
    mask_shape: tuple[int, int, int]
    local_size: int = LOCAL_SIZE

    def __len__(self) -> int:
        return len(self.centres)

    def inputs(self, indices: Sequence[int] | np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Batched net inputs {"local": k x P x 1 x 64 x 64, "global_roi": k x P x 1 x 128 x 128}."""
        idx = np.arange(len(self)) if indices is None else np.asarray(indices)
        raw = self.raw_local[idx]
        k, phases, size, _ = raw.shape
        local = resize_stack(raw.reshape(k * phases, size, size), self.local_size)
        local = local.reshape(k, phases, 1, self.local_size, self.local_size)
        return {"local": local, "global_roi": self.global_roi[self.slice_of_patch[idx]]}

    def samples(self, key: Hashable | None = None) -> list[dict[str, np.ndarray | SharedInput]]:
        """One inputs dict per patch; the patches of a slice hold one `SharedInput` for its global ROI
        (one array object, no copy), keyed (key, slice); `key` names the lesion (unique when None)."""
        local = self.inputs()["local"]
        key = uuid.uuid4().hex if key is None else key
        rois = [SharedInput(self.global_roi[s], (key, int(s))) for s in range(len(self.global_roi))]
        return [{"local": local[i], "global_roi": rois[self.slice_of_patch[i]]} for i in range(len(self))]

    def placements(self) -> list[Placement]:
        """Each patch's box on the mask grid (the case's segmentation grid): centre +- size // 2, end-exclusive.

        The local input is this box resized to local_size, so a saliency map of it resized back to the
        box lands on the patch's pixels (`engine.saliency.paste_maps`); a box reaching past the grid's
        border (edge-replicated padding) is clipped there when pasted."""
        half = self.raw_local.shape[-1] // 2
        return [Placement.of(z, (y - half, y + half + 1, x - half, x + half + 1)) for z, y, x in self.centres.tolist()]


def _check_inputs(volumes, mask):
    if len(volumes) == 0:
        raise HCCInputError("no phase volumes given", hint="pass one array per phase, in phase order")
    mask = np.asarray(mask)
    if mask.ndim not in (2, 3):
        raise HCCInputError(f"the lesion mask must be 2D or 3D, got shape {mask.shape}")
    arrays = []
    for i, volume in enumerate(volumes):
        volume = np.asarray(volume)
        if volume.shape != mask.shape:
            raise HCCInputError(f"phase {i} has shape {volume.shape}, the lesion mask {mask.shape}",
                                hint="resample every phase onto the mask grid (Case.phase_on_grid)")
        if not np.all(np.isfinite(volume)):
            raise HCCInputError(f"phase {i} has NaN or infinite values")
        arrays.append(volume)
    if not mask.any():
        raise HCCInputError("the lesion mask is empty")
    if mask.ndim == 2:
        return [a[None] for a in arrays], mask[None] > 0
    return arrays, mask > 0


def _chosen_slices(mask, slices):
    areas = mask.reshape(mask.shape[0], -1).sum(axis=1)
    if slices == "largest":
        return [int(np.argmax(areas))]
    if slices == "all":
        return [int(z) for z in np.nonzero(areas)[0]]
    raise HCCInputError(f"unknown slice choice '{slices}'", hint="use 'largest' or 'all'")


def sample_lesion_patches(volumes: Sequence[np.ndarray], mask: np.ndarray, training: bool, epsilon: float = EPSILON,
                          patch_size: int = PATCH_SIZE, local_size: int = LOCAL_SIZE, global_size: int = GLOBAL_SIZE,
                          window: tuple[float, float] | None = CT_WINDOW, slices: str = "largest") -> LesionPatches:
    """Sample one lesion: local patches (pace of eq. 1 when training, 1 at test) and global ROIs.

    volumes: one 2D or 3D (z, y, x) array per phase, in phase order (NC, ART, PV), all on
    the mask's grid; mask: the lesion's 0/1 mask. slices: "largest" (the slice with the
    largest lesion area, as the paper works on one 2D slice per lesion) or "all".
    """
    if patch_size < 1 or patch_size % 2 == 0:
        raise HCCInputError(f"patch size must be odd and positive, got {patch_size}")
    arrays, mask = _check_inputs(volumes, mask)
    raw, rois, owner, centres, paces = [], [], [], [], []
    for s, z in enumerate(_chosen_slices(mask, slices)):
        planes = [window_intensity(a[z], window) for a in arrays]  # only the sampled slices
        y0, y1, x0, x1 = roi_box(mask[z])
        step = pace(x1 - x0, y1 - y0, epsilon) if training else 1
        yx = patch_centres(mask[z], step)
        if len(yx) == 0:  # a thin lesion the coarse grid misses entirely: sample it at pace 1
            step, yx = 1, patch_centres(mask[z], 1)
        raw.append(np.stack([extract_patches(p, yx, patch_size) for p in planes], axis=1))
        rois.append(resize_stack(np.stack([p[y0:y1, x0:x1] for p in planes]), global_size)[:, None])
        owner.append(np.full(len(yx), s, dtype=np.int64))
        centres.append(np.column_stack([np.full(len(yx), z), yx]))
        paces.append(step)
    return LesionPatches(raw_local=np.concatenate(raw), global_roi=np.stack(rois).astype(np.float32),
                         slice_of_patch=np.concatenate(owner), centres=np.concatenate(centres).astype(np.int64),
                         paces=np.asarray(paces), mask_shape=mask.shape,
                         local_size=local_size)
