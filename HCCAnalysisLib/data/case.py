"""Case: the named phase images of one examination, its lesions and its table fields.

A case folder holds one image per phase or sequence, named by it (`arterial.nrrd`,
`T2.nii.gz`, a DICOM series folder), and one segmentation: a label map
`labels.nrrd` / `labels.nii.gz` (1 = liver, 2 = lesion by default) or a Slicer
`.seg.nrrd` with named segments. Phases need not share geometry: every sampler works
on the segmentation grid and reads each phase through physical coordinates.
"""

from __future__ import annotations

from typing import Any, Sequence

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from HCCAnalysisLib.errors import HCCInputError
from HCCAnalysisLib.io.images import image_suffix, read_image, read_label_image

SEGMENTATION_STEMS = ("labels", "segmentation")
LIVER_SEGMENT_NAMES = ("liver",)
MIN_LESION_VOXELS = 2


@dataclass(frozen=True)
class LabelValues:
    """Which label-map values mean liver and lesion (LiTS / MSD convention by default)."""

    liver: int = 1
    lesion: int = 2


@dataclass
class Lesion:
    lesion_id: str
    name: str
    mask: sitk.Image  # uint8 0/1 on the segmentation grid


@dataclass
class Case:
    case_id: str
    patient_id: str
    images: dict[str, sitk.Image]
    segmentation: sitk.Image
    lesions: list[Lesion]
    liver_mask: sitk.Image | None = None
    labels: dict[str, Any] = field(default_factory=dict)
    clinical: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    _grid_cache: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def phases(self) -> list[str]:
        return list(self.images)

    def phase_on_grid(self, phase: str) -> np.ndarray:
        """The phase resampled (linear) onto the segmentation grid, as a (z, y, x) float32 array."""
        if phase not in self.images:
            raise HCCInputError(f"has no phase '{phase}'", self.source,
                                f"phases present: {', '.join(self.phases) or 'none'}")
        if phase not in self._grid_cache:
            image = self.images[phase]
            if _same_grid(image, self.segmentation):
                array = sitk.GetArrayFromImage(image)
            else:
                resampled = sitk.Resample(image, self.segmentation, sitk.Transform(), sitk.sitkLinear, 0.0,
                                          sitk.sitkFloat32)
                array = sitk.GetArrayFromImage(resampled)
            self._grid_cache[phase] = array.astype(np.float32, copy=False)
        return self._grid_cache[phase]

    def lesion_array(self, lesion: Lesion) -> np.ndarray:
        return sitk.GetArrayViewFromImage(lesion.mask)

    def liver_array(self) -> np.ndarray | None:
        return None if self.liver_mask is None else sitk.GetArrayViewFromImage(self.liver_mask)

    def spacing_zyx(self) -> tuple[float, float, float]:
        return tuple(reversed(self.segmentation.GetSpacing()))


def _same_grid(a, b, tol=1e-4):
    return (a.GetSize() == b.GetSize()
            and np.allclose(a.GetSpacing(), b.GetSpacing(), atol=tol)
            and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=tol)
            and np.allclose(a.GetDirection(), b.GetDirection(), atol=tol))


def _physical_bounds(image, index_points):
    return np.array([image.TransformContinuousIndexToPhysicalPoint([float(v) for v in p]) for p in index_points])


def check_overlap(image: sitk.Image, mask: sitk.Image, phase: str, source: str | Path) -> None:
    """Refuse a phase that does not cover the lesion voxels of `mask` in physical space."""
    array = sitk.GetArrayViewFromImage(mask)
    zyx = np.argwhere(array > 0)
    lo, hi = zyx.min(axis=0), zyx.max(axis=0)
    corners = [(x, y, z) for x in (lo[2], hi[2]) for y in (lo[1], hi[1]) for z in (lo[0], hi[0])]
    physical = _physical_bounds(mask, corners)
    size = np.array(image.GetSize())
    inside = 0
    for point in physical:
        index = np.array(image.TransformPhysicalPointToContinuousIndex(point.tolist()))
        inside += bool(np.all(index >= -0.5) and np.all(index <= size - 0.5))
    if inside == 0:
        raise HCCInputError(
            f"phase '{phase}' does not overlap the lesion in physical space", source,
            "the phases and the segmentation must come from the same examination and frame of reference")
    if inside < len(corners):
        raise HCCInputError(f"phase '{phase}' covers only part of the lesion's bounding box", source,
                            "the lesion must lie inside every phase image")


def lesions_from_labelmap(labelmap: sitk.Image, values: LabelValues, source: str | Path
                          ) -> tuple[list[Lesion], sitk.Image | None]:
    """Split the lesion label into connected components, largest first: each one is a lesion."""
    array = sitk.GetArrayViewFromImage(labelmap)
    present = sorted(int(v) for v in np.unique(array))
    if not np.any(array == values.lesion):
        raise HCCInputError(
            f"has no voxel with the lesion label {values.lesion} (values present: {present})", source,
            "set the lesion label value (e.g. --lesion-label) or check the segmentation")
    unexpected = [v for v in present if v not in (0, values.liver, values.lesion)]
    if unexpected:
        raise HCCInputError(
            f"has unexpected label values {unexpected} (expected 0, liver {values.liver}, lesion {values.lesion})",
            source, "relabel the map or pass the right liver/lesion values")
    lesion = sitk.Cast(labelmap == values.lesion, sitk.sitkUInt8)
    components = sitk.RelabelComponent(sitk.ConnectedComponent(lesion), sortByObjectSize=True)
    n = int(sitk.GetArrayViewFromImage(components).max())
    lesions = [Lesion(str(i), f"lesion {i}", sitk.Cast(components == i, sitk.sitkUInt8)) for i in range(1, n + 1)]
    liver = None
    if np.any(array == values.liver):
        liver = sitk.Cast((labelmap == values.liver) | (labelmap == values.lesion), sitk.sitkUInt8)
    return lesions, liver


def read_seg_nrrd(path: str | Path, lesion_names: Sequence[str] | None = None
                  ) -> tuple[sitk.Image, list[Lesion], sitk.Image | None]:
    """A Slicer .seg.nrrd: segments named 'liver' give the liver, the others (or `lesion_names`) lesions."""
    import slicerio

    try:
        seg = slicerio.read_segmentation(str(path))
    except Exception as err:  # slicerio raises plain exceptions for malformed headers
        raise HCCInputError(f"could not be read as a Slicer segmentation: {err}", path) from None
    voxels = np.asarray(seg["voxels"])
    if voxels.ndim == 4:  # several layers: segments may overlap
        layers = [voxels[..., k] for k in range(voxels.shape[-1])]
    else:
        layers = [voxels]
    ijk_to_lps = np.asarray(seg["ijkToLPS"], dtype=float)
    spacing = np.linalg.norm(ijk_to_lps[:3, :3], axis=0)
    direction = ijk_to_lps[:3, :3] / spacing
    segments = seg["segments"]
    names = [s.get("name", s.get("id", "")) for s in segments]
    if lesion_names:
        missing = [n for n in lesion_names if n not in names]
        if missing:
            raise HCCInputError(f"has no segment named {missing}", path, f"segments: {names}")

    def to_image(mask_ijk: np.ndarray) -> sitk.Image:
        image = sitk.GetImageFromArray(np.ascontiguousarray(mask_ijk.transpose(2, 1, 0)))
        image.SetSpacing(spacing.tolist())
        image.SetOrigin(ijk_to_lps[:3, 3].tolist())
        image.SetDirection(direction.flatten().tolist())
        return image

    lesions, liver = [], None
    for segment, name in zip(segments, names):
        layer = layers[int(segment.get("layer", 0))]
        mask = layer == int(segment["labelValue"])
        if name.lower() in LIVER_SEGMENT_NAMES:
            liver = mask if liver is None else liver | mask
        elif not lesion_names or name in lesion_names:
            lesions.append((str(segment.get("id", name)), name, mask))
    if not lesions:
        raise HCCInputError("has no lesion segment", path, f"segments: {names}")
    # Same layout as the label-map route: a 1 (liver) / 2 (lesion) map, liver mask = liver + lesions.
    labels = np.zeros(layers[0].shape, dtype=np.uint16)
    if liver is not None:
        labels[liver] = 1
    for _, _, mask in lesions:
        labels[mask] = 2
    segmentation = to_image(labels)
    if liver is not None:
        liver = to_image((labels > 0).astype(np.uint8))
    lesions = [Lesion(lesion_id, name, to_image(mask.astype(np.uint8))) for lesion_id, name, mask in lesions]
    return segmentation, lesions, liver


def validate_lesions(lesions: Sequence[Lesion], segmentation: sitk.Image, source: str | Path) -> None:
    for lesion in lesions:
        count = int(np.count_nonzero(sitk.GetArrayViewFromImage(lesion.mask)))
        if count == 0:
            raise HCCInputError(f"lesion '{lesion.name}' is empty", source, "remove the empty segment")
        if count < MIN_LESION_VOXELS:
            raise HCCInputError(f"lesion '{lesion.name}' has only {count} voxel(s): too small to analyse",
                                source, "remove the stray label")


def find_case_files(folder: str | Path) -> tuple[dict[str, Path], Path]:
    """Map phase name -> file or DICOM folder, and the segmentation file, of one case folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise HCCInputError("case folder does not exist", folder)
    phases, segmentations = {}, []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        suffix = image_suffix(entry)
        if entry.is_dir():
            phases[entry.name] = entry
        elif suffix == ".seg.nrrd":
            segmentations.append(entry)
        elif suffix:
            stem = entry.name[: -len(suffix)]
            if stem.lower() in SEGMENTATION_STEMS:
                segmentations.append(entry)
            else:
                phases[stem] = entry
    if not segmentations:
        raise HCCInputError("has no segmentation (labels.nrrd, labels.nii.gz or *.seg.nrrd)", folder)
    if len(segmentations) > 1:
        raise HCCInputError(f"has several segmentations: {[s.name for s in segmentations]}", folder,
                            "keep exactly one")
    return phases, segmentations[0]


def load_case(folder: str | Path, case_id: str | None = None, patient_id: str | None = None,
              phases: Sequence[str] | None = None, fields: dict[str, Any] | None = None,
              label_values: LabelValues = LabelValues(), lesion_names: Sequence[str] | None = None) -> Case:
    """Load one case folder; `phases` restricts (and requires) the phases that are read."""
    folder = Path(folder)
    available, seg_path = find_case_files(folder)
    wanted = list(phases) if phases else list(available)
    missing = [p for p in wanted if p not in available]
    if missing:
        raise HCCInputError(f"has no phase {missing}", folder,
                            f"phases present: {', '.join(available) or 'none'}")
    if seg_path.name.lower().endswith(".seg.nrrd"):
        segmentation, lesions, liver = read_seg_nrrd(seg_path, lesion_names)
    else:
        segmentation = read_label_image(seg_path)
        lesions, liver = lesions_from_labelmap(segmentation, label_values, seg_path)
    validate_lesions(lesions, segmentation, seg_path)
    images = {phase: read_image(available[phase]) for phase in wanted}
    for phase, image in images.items():
        for lesion in lesions:
            check_overlap(image, lesion.mask, phase, available[phase])
    fields = dict(fields or {})
    return Case(case_id or folder.name, patient_id or case_id or folder.name, images, segmentation,
                lesions, liver, labels=fields, clinical=fields, source=str(folder))
