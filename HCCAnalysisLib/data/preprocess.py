"""Image preprocessing shared by the tasks: normalisation, ROI boxes and crops, resizing,
augmentation and the time-signal intensity curve.

NumPy and torch do the array work directly: MONAI's ScaleIntensityRangePercentiles and Resize
gave the same values but computed the percentiles twice and cost 2.5 s and 320 MiB of import
per process (benchmarks/results_case_analysis.md, variants A and D).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from HCCAnalysisLib.errors import HCCInputError

if TYPE_CHECKING:
    from HCCAnalysisLib.data.case import Case


def top1_range(array: np.ndarray, source: str = "image") -> tuple[float, float]:
    """(I_min, I_max) of Jia 2019 eq. 2: the minimum and the 99th percentile of a whole image
    (the scaling of Jia's, Wang's and Zhen's inputs); a constant image is refused."""
    low, high = float(np.min(array)), float(np.percentile(array, 99))
    if not high > low:
        raise HCCInputError("is constant (no contrast left after trimming the top 1 %)", source,
                            "check that the right image was loaded")
    return low, high


def normalise_top1(volume: np.ndarray, source: str = "image") -> np.ndarray:
    """Scale a volume to [0, 1] with the top 1 % trimmed (Jia 2019 eq. 2):
    I' = (I - I_min) / (I_max - I_min), I_max the 99th percentile, clipped to [0, 1]."""
    volume = np.asarray(volume, dtype=np.float32)
    low, high = top1_range(volume, source)
    out = (volume - np.float32(low)) * np.float32(1.0 / (high - low))
    return np.clip(out, 0.0, 1.0, out=out)


def bounding_box(mask_zyx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) inclusive index bounds of the non-zero voxels of a (z, y, x) mask."""
    coords = np.argwhere(mask_zyx)
    return coords.min(axis=0), coords.max(axis=0)


def largest_slices(mask_zyx: np.ndarray, count: int) -> list[int]:
    """The `count` axial slices around the one with the largest lesion area (centre first)."""
    areas = mask_zyx.reshape(mask_zyx.shape[0], -1).sum(axis=1)
    present = np.flatnonzero(areas)
    centre = int(present[np.argmax(areas[present])])
    chosen = [centre]
    for step in range(1, mask_zyx.shape[0]):
        for z in (centre - step, centre + step):
            if len(chosen) < count and z in present:
                chosen.append(int(z))
    return chosen


def square_box(lo_yx: Sequence[int], hi_yx: Sequence[int], spacing_yx: Sequence[float], margin: float = 0.15,
               min_mm: float = 8.0) -> tuple[int, int, int, int]:
    """A square (in mm) in-plane box around [lo, hi] with a relative margin, as (y0, y1, x0, x1)."""
    spacing_yx = np.asarray(spacing_yx, dtype=float)
    centre = (np.asarray(lo_yx) + np.asarray(hi_yx)) / 2.0
    extent_mm = (np.asarray(hi_yx) - np.asarray(lo_yx) + 1) * spacing_yx
    side_mm = max(float(extent_mm.max()) * (1 + 2 * margin), min_mm)
    half = side_mm / spacing_yx / 2.0
    y0, x0 = np.floor(centre - half + 0.5).astype(int)
    y1, x1 = np.floor(centre + half + 0.5).astype(int)
    return int(y0), int(y1), int(x0), int(x1)


def crop_2d(plane: np.ndarray, box: Sequence[int]) -> np.ndarray:
    """Crop (y0, y1, x0, x1) from a 2D array, padding with the plane's minimum outside it."""
    y0, y1, x0, x1 = box
    out = np.full((y1 - y0, x1 - x0), float(plane.min()), dtype=np.float32)
    sy0, sx0 = max(y0, 0), max(x0, 0)
    sy1, sx1 = min(y1, plane.shape[0]), min(x1, plane.shape[1])
    if sy1 > sy0 and sx1 > sx0:
        out[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = plane[sy0:sy1, sx0:sx1]
    return out


def resize_channels(image_chw: np.ndarray, size: int, mode: str = "area") -> np.ndarray:
    """Resize a C x H x W array to C x size x size.

    "area" (Jia 2019: averaging, as for downsampling ROIs) or "bilinear" (Zhen 2020, Wang 2020:
    linear interpolation, anti-aliased when shrinking, as MONAI's Resize does it)."""
    image = np.ascontiguousarray(image_chw, dtype=np.float32)
    if mode == "area":
        return F.interpolate(torch.from_numpy(image)[None], size=(size, size), mode="area")[0].numpy()
    if mode != "bilinear":
        raise ValueError(f"unknown resize mode {mode!r}")
    from monai.transforms import Resize  # only the Zhen / Wang samplers pay MONAI's import

    shrink = image.shape[1] > size or image.shape[2] > size
    resize = Resize((size, size), mode="bilinear", align_corners=False, anti_aliasing=shrink)
    return np.asarray(resize(image), dtype=np.float32)


def augment_x6(image_chw: np.ndarray) -> list[np.ndarray]:
    """Jia 2019 augmentation: the original, three 90-degree rotations, a horizontal and a vertical flip."""
    return [
        image_chw,
        np.rot90(image_chw, 1, axes=(1, 2)),
        np.rot90(image_chw, 2, axes=(1, 2)),
        np.rot90(image_chw, 3, axes=(1, 2)),
        image_chw[:, :, ::-1],
        image_chw[:, ::-1, :],
    ]


def time_signal_curve(volumes: Sequence[np.ndarray], z: int, centre_yx: Sequence[float], window: int = 16
                      ) -> list[float]:
    """Mean intensity of the window x window centre of the ROI on slice z, per phase (Jia 2019 3.2)."""
    values = []
    for volume in volumes:
        cy, cx = int(round(centre_yx[0])), int(round(centre_yx[1]))
        half = window // 2
        patch = volume[z, max(cy - half, 0):cy + half, max(cx - half, 0):cx + half]
        values.append(float(patch.mean()))
    return values


def fused_volumes(case: Case, phases: Sequence[str], channels: int) -> list[np.ndarray]:
    """Normalised phase volumes on the segmentation grid, fused as channels (data-level fusion: Jia 2019, Wang 2020).

    One phase alone is replicated into every channel, as a grey image fills all three RGB
    channels of a natural-image network; otherwise there must be exactly `channels` phases.
    """
    if len(phases) not in (1, channels):
        raise HCCInputError(f"{len(phases)} phases given ({', '.join(phases)}); this task fuses exactly "
                            f"{channels} phases as channels, or takes one phase alone", case.source)
    volumes = [normalise_top1(case.phase_on_grid(p), f"{case.source}: phase '{p}'") for p in phases]
    return volumes * channels if len(volumes) == 1 else volumes
