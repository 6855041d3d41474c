"""Samplers of the Zhen 2020 and Wang 2020 tasks (see docs/methods-fusion.md).

- `zhen2020_sampler`: every lesion is resampled (SimpleITK, through physical coordinates)
  onto a 0.7 x 0.7 x 7 mm grid; each axial plane of that grid that holds lesion voxels is one
  sample: the sequences of that plane, each top-1 % normalised over its own whole image,
  cropped to one square ROI around the lesion and resized to the input size (Zhen 2020,
  "Image Processing"). The ROI is drawn once (on T2 in the paper: our segmentation grid)
  and carried to every sequence by geometry.
- `wang2020_sampler`: NC, ART and PV read on the segmentation grid through physical
  coordinates (so the three ROIs share their centre point), the lesion's bounding box on an
  axial slice cropped from each phase, resized (linear) and stacked as three channels (Wang
  2020 section II.B). Each annotated lesion slice is one sample (the paper's 765 slices of
  167 patients); `sampler_kwargs={"slices": "largest"}` keeps the largest one only.

Both add `inputs["clinical"]` (float32) when the task names a clinical schema: the case's
fields (cases.csv row, or the `fields` handed to `slicer_io.case_from_nodes`) encoded with
`clinical.schemas.get_schema(task.clinical_schema)`; a missing or bad value raises the
schema's HCCInputError naming the case.
"""

import math

import numpy as np
import SimpleITK as sitk
from monai.transforms import Resize

from .errors import HCCInputError
from .preprocess import bounding_box, crop_2d
from .samples import Placement, Sample, fused_volumes

ZHEN_SPACING_MM = (0.7, 0.7, 7.0)  # x, y, z


def _case_label(case):
    return f"case '{case.case_id}' ({case.source})" if case.source else f"case '{case.case_id}'"


def clinical_inputs(case, task):
    """{"clinical": float32 vector} from the case's fields, or {} when the task has no schema."""
    if not task.clinical_schema:
        return {}
    from .clinical.schemas import get_schema

    vector = get_schema(task.clinical_schema).encode(case.clinical or {}, source=_case_label(case))
    return {"clinical": np.asarray(vector, dtype=np.float32)}


def resize_bilinear(image_chw, size):
    """C x H x W -> C x size x size, linear interpolation (anti-aliased when shrinking)."""
    shrink = image_chw.shape[1] > size or image_chw.shape[2] > size
    resize = Resize((size, size), mode="bilinear", align_corners=False, anti_aliasing=shrink)
    return np.asarray(resize(np.ascontiguousarray(image_chw, dtype=np.float32)), dtype=np.float32)


def _check_channels(task, phases, source):
    channels = task.net_kwargs.get("in_channels", 3)
    if len(phases) != channels:
        raise HCCInputError(f"task {task.name} stacks {channels} sequences as channels, got {len(phases)} "
                            f"({', '.join(phases)})", source, f"e.g. --phases {','.join(task.phases)}")


# --- Zhen 2020 --------------------------------------------------------------------------------

def top1_range(image, source):
    """(min, 99th percentile) of a whole phase image: the Jia 2019 eq. 2 scaling Zhen's inputs use."""
    array = sitk.GetArrayViewFromImage(image)
    low, high = float(array.min()), float(np.percentile(array, 99))
    if not high > low:
        raise HCCInputError("is constant (no contrast left after trimming the top 1 %)", source,
                            "check that the right image was loaded")
    return low, high


def zhen_lesion_grid(segmentation, lesion_mask, spacing=ZHEN_SPACING_MM, margin=0.15, min_mm=8.0):
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


def zhen2020_sampler(case, task, phases, target_of, rng, training):
    """One sample per lesion plane on the 0.7 x 0.7 x 7 mm grid: inputs["image"] = C x S x S.

    Its samples carry no `placement`: a plane of the lesion's own grid lies between the
    segmentation's slices and on other pixels, not on one axial box of the segmentation grid.
    """
    _check_channels(task, phases, case.source)
    options = task.sampler_kwargs
    spacing = tuple(options.get("spacing_mm", ZHEN_SPACING_MM))
    size = task.input_size
    absent = [p for p in phases if p not in case.images]
    if absent:
        raise HCCInputError(f"has no phase {absent}", case.source,
                            f"phases present: {', '.join(case.phases) or 'none'}")
    ranges = {p: top1_range(case.images[p], f"{case.source}: phase '{p}'") for p in phases}
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
        for k in planes:
            inputs = {"image": resize_bilinear(volume[:, k], size), **clinical}
            samples.append(Sample(inputs, target, case.case_id, case.patient_id, lesion.lesion_id, lesion.name,
                                  "lesion"))
    return samples


# --- Wang 2020 --------------------------------------------------------------------------------

def slice_box(mask_yx, spacing_yx, margin=0.0, min_mm=8.0):
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


def wang2020_sampler(case, task, phases, target_of, rng, training):
    """NC/ART/PV ROIs of each lesion slice, centre-aligned, resized, stacked: inputs["image"] = 3 x S x S."""
    _check_channels(task, phases, case.source)
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
            inputs = {"image": resize_bilinear(roi, size), **clinical}
            samples.append(Sample(inputs, target, case.case_id, case.patient_id, lesion.lesion_id, lesion.name,
                                  "lesion", placement=Placement.of(z, box)))
    return samples
