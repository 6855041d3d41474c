"""The Zhen 2020 sampler (see docs/methods-fusion.md).

Every lesion is resampled (SimpleITK, through physical coordinates) onto a 0.7 x 0.7 x 7 mm grid;
each axial plane of that grid that holds lesion voxels is one sample: the sequences of that
plane, each top-1 % normalised over its own whole image, cropped to one square ROI around the
lesion and resized to the input size (Zhen 2020, "Image Processing"). The ROI is drawn once (on
T2 in the paper: our segmentation grid) and carried to every sequence by geometry. Adds
`inputs["clinical"]` when the task names a clinical schema.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Sequence

import math

import numpy as np
import SimpleITK as sitk

from HCCAnalysisLib.data.preprocess import bounding_box, crop_2d, fused_volumes, resize_channels, top1_range
from HCCAnalysisLib.data.samples import GridGeometry, Placement, Sample
from HCCAnalysisLib.data.stacked_inputs import case_label, check_channels, clinical_inputs
from HCCAnalysisLib.errors import HCCInputError

if TYPE_CHECKING:
    from HCCAnalysisLib.data.case import Case
    from HCCAnalysisLib.methods.task import Task

ZHEN_SPACING_MM = (0.7, 0.7, 7.0)  # x, y, z


def zhen_lesion_grid(segmentation: sitk.Image, lesion_mask: sitk.Image, spacing: Sequence[float] = ZHEN_SPACING_MM,
                     margin: float = 0.15, min_mm: float = 8.0) -> sitk.Image:
    """The 0.7 x 0.7 x 7 mm grid of one lesion, as an empty sitk image (the resampling reference).

    Orientation: the segmentation's. Through-plane, the planes lie at the segmentation origin +
    k x 7 mm (one grid for the whole volume, as when the whole series is resampled), for every k
    whose nearest source slice can hold the lesion (a lesion thinner than 7 mm that falls between
    two planes gets one plane through its largest slice, so that no lesion is lost). In-plane: a square around the lesion's
    bounding box (+ `margin` on each side, at least `min_mm`), 0.7 mm pixels.
    """
    lo, hi = bounding_box(sitk.GetArrayViewFromImage(lesion_mask))  # (z, y, x)
    src_spacing = np.array(segmentation.GetSpacing(), dtype=float)  # x, y, z
    direction = np.array(segmentation.GetDirection(), dtype=float).reshape(3, 3)
    origin = np.array(segmentation.GetOrigin(), dtype=float)
    sx, sy, sz = spacing
    # Through-plane: planes k * sz (mm from the segmentation origin along its third axis) whose
    # continuous source index lies within half a slice of the lesion's first / last slice.
    k0 = math.ceil((lo[0] - 0.5) * src_spacing[2] / sz)
    k1 = math.floor((hi[0] + 0.5) * src_spacing[2] / sz - 1e-9)
    # In-plane: square centred on the lesion box, in mm along the segmentation's x / y axes.
    centre_xy = (np.array([lo[2] + hi[2], lo[1] + hi[1]], dtype=float) / 2.0) * src_spacing[:2]
    extent = (np.array([hi[2] - lo[2], hi[1] - lo[1]], dtype=float) + 1) * src_spacing[:2]
    side = max(float(extent.max()) * (1 + 2 * margin), min_mm)
    n_xy = int(math.ceil(side / sx))
    start_xy = centre_xy - (n_xy - 1) / 2.0 * np.array([sx, sy])
    z_mm, planes = k0 * sz, k1 - k0 + 1
    if planes < 1:  # a lesion thinner than the 7 mm spacing, between two planes: its largest slice
        areas = sitk.GetArrayViewFromImage(lesion_mask).reshape(lesion_mask.GetSize()[2], -1).sum(axis=1)
        z_mm, planes = float(np.argmax(areas)) * src_spacing[2], 1
    offset_mm = np.array([start_xy[0], start_xy[1], z_mm])
    grid = sitk.Image(n_xy, n_xy, planes, sitk.sitkUInt8)
    grid.SetSpacing((sx, sy, sz))
    grid.SetDirection(tuple(direction.flatten()))
    grid.SetOrigin(tuple(origin + direction @ offset_mm))
    return grid


def _resample(image, grid, interpolator, default, pixel_type):
    return sitk.GetArrayFromImage(sitk.Resample(image, grid, sitk.Transform(), interpolator, default, pixel_type))


def zhen2020_sampler(case: Case, task: Task, phases: Sequence[str], target_of: Callable[[str], int],
                    rng: np.random.Generator, training: bool) -> list[Sample]:
    """One sample per lesion plane on the 0.7 x 0.7 x 7 mm grid: inputs["image"] = C x S x S.

    Each sample's `placement` is its whole plane on the lesion's own grid (`Placement.grid`): a
    saliency map is pasted there and that grid resampled onto the segmentation grid.
    """
    check_channels(task, phases, case.source)
    options = task.sampler_kwargs
    spacing = tuple(options.get("spacing_mm", ZHEN_SPACING_MM))
    size = task.input_size
    absent = [p for p in phases if p not in case.images]
    if absent:
        raise HCCInputError(f"has no phase {absent}", case.source,
                            f"phases present: {', '.join(case.phases) or 'none'}")
    ranges = {p: top1_range(sitk.GetArrayViewFromImage(case.images[p]), f"{case.source}: phase '{p}'")
              for p in phases}
    clinical = clinical_inputs(case, task)
    samples = []
    for lesion in case.lesions:
        grid = zhen_lesion_grid(case.segmentation, lesion.mask, spacing, options.get("margin", 0.15))
        mask = _resample(lesion.mask, grid, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
        planes = [int(k) for k in np.flatnonzero(mask.reshape(mask.shape[0], -1).any(axis=1))]
        if not planes:
            continue
        channels = []
        for phase in phases:
            low, high = ranges[phase]
            array = _resample(case.images[phase], grid, sitk.sitkLinear, low, sitk.sitkFloat32)
            channels.append(np.clip((array - low) / (high - low), 0.0, 1.0).astype(np.float32))
        volume = np.stack(channels)  # C x planes x S x S
        target = target_of("lesion")
        geometry, side = GridGeometry.of(grid), volume.shape[-1]
        for k in planes:
            inputs = {"image": resize_channels(volume[:, k], size, "bilinear"), **clinical}
            samples.append(Sample(inputs, target, case.case_id, case.patient_id, lesion.lesion_id, lesion.name,
                                  "lesion", placement=Placement.of(k, (0, side, 0, side), geometry)))
    return samples
