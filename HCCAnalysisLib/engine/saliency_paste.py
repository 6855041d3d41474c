"""Saliency maps pasted back onto a case's grid (`engine.saliency`): each map resized to its sample's
crop box (`samples.Placement`), max where boxes overlap, boxes on a grid of their own resampled."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np
import SimpleITK as sitk
import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from HCCAnalysisLib.data.samples import Placement


def _paste_on(grid: np.ndarray, maps: Sequence[np.ndarray], placements: Sequence[Placement]) -> None:
    depth, rows, cols = grid.shape
    for saliency, p in zip(maps, placements):
        if not 0 <= p.z < depth:
            continue
        box = torch.from_numpy(np.ascontiguousarray(saliency, dtype=np.float32))[None, None]
        box = F.interpolate(box, size=(p.y1 - p.y0, p.x1 - p.x0), mode="bilinear", align_corners=False)[0, 0].numpy()
        y0, y1, x0, x1 = max(p.y0, 0), min(p.y1, rows), max(p.x0, 0), min(p.x1, cols)
        if y1 > y0 and x1 > x0:
            region = grid[p.z, y0:y1, x0:x1]
            np.maximum(region, box[y0 - p.y0:y1 - p.y0, x0 - p.x0:x1 - p.x0], out=region)


def paste_maps(maps: Sequence[np.ndarray], placements: Sequence[Placement], reference: sitk.Image) -> sitk.Image:
    """Maps resized (bilinear) to their crop boxes and pasted onto `reference`'s grid.

    Max where boxes overlap; the parts of a box outside the grid (padding) are dropped. A placement
    on a grid of its own (Zhen's 0.7 x 0.7 x 7 mm lesion grid) is pasted there first, and that grid
    is resampled (linear, physical coordinates) onto `reference`'s. Returns a float32 SimpleITK
    image with `reference`'s geometry.
    """
    grid = np.zeros(reference.GetSize()[::-1], dtype=np.float32)  # (z, y, x)
    own = [(m, p) for m, p in zip(maps, placements) if p.grid is None]
    _paste_on(grid, [m for m, _ in own], [p for _, p in own])
    others: dict = {}
    for m, p in zip(maps, placements):
        if p.grid is not None:
            others.setdefault(p.grid, []).append((m, p))
    target = sitk.Image(list(reference.GetSize()), sitk.sitkFloat32)
    target.CopyInformation(reference)
    for geometry, pairs in others.items():
        lesion_grid = np.zeros(geometry.size[::-1], dtype=np.float32)
        _paste_on(lesion_grid, [m for m, _ in pairs], [p for _, p in pairs])
        source = sitk.GetImageFromArray(lesion_grid)
        source.CopyInformation(geometry.empty_image())
        resampled = sitk.Resample(source, target, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
        np.maximum(grid, sitk.GetArrayViewFromImage(resampled), out=grid)
    image = sitk.GetImageFromArray(grid)
    image.CopyInformation(reference)
    return image
