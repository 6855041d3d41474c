"""Case: the named phase images of one examination, its lesions and its table fields.

A case folder holds one image per phase or sequence, named by it (`arterial.nrrd`,
`T2.nii.gz`, a DICOM series folder; `--phase CT=image` maps other names), and one segmentation:
a label map (`labels.nrrd`, `mask.nii.gz`, a TotalSegmentator map...; 1 = liver, 2 = lesion by
default, `--liver-label` / `--lesion-label` otherwise), a Slicer `.seg.nrrd` or a DICOM SEG with
named segments (case_files.py: how it is told apart from the phases; segments.py: which labels
are liver and lesions). Phases need not share geometry: every sampler works on the segmentation
grid and reads each phase through physical coordinates.
"""

from __future__ import annotations

from typing import Any, Sequence

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from HCCAnalysisLib.data.case_files import SEGMENTATION_STEMS, describe_missing_phases, find_case_files
from HCCAnalysisLib.data.reading_options import CaseReading
from HCCAnalysisLib.data.segments import LIVER_SEGMENT_NAMES, MIN_LESION_VOXELS, as_images, select_liver_and_lesions
from HCCAnalysisLib.errors import HCCInputError
from HCCAnalysisLib.io.dicom_seg import is_dicom_seg, read_dicom_seg
from HCCAnalysisLib.io.images import image_suffix, read_image
from HCCAnalysisLib.io.segmentation import SegmentationFile, empty_grid, read_label_map_file, read_seg_nrrd_file

__all__ = ["Case", "CaseReading", "LabelValues", "Lesion", "LIVER_SEGMENT_NAMES", "MIN_LESION_VOXELS",
           "SEGMENTATION_STEMS", "check_overlap", "find_case_files", "lesions_from_labelmap", "load_case",
           "read_seg_nrrd", "read_segmentation", "validate_lesions"]


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
    warnings: list[str] = field(default_factory=list)  # e.g. lying outside the liver: in the output row


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


def _lesions(selected, grid) -> tuple[list[Lesion], sitk.Image | None]:
    lesions, liver = as_images(selected, grid)
    return [Lesion(i, n, mask, list(w)) for i, n, mask, w in lesions], liver


def lesions_from_labelmap(labelmap: sitk.Image, values: LabelValues, source: str | Path
                          ) -> tuple[list[Lesion], sitk.Image | None]:
    """Split the lesion label into connected components, largest first: each one is a lesion."""
    labels = sitk.GetArrayFromImage(labelmap).astype(np.int64, copy=False)
    grid = empty_grid(labelmap.GetSize(), labelmap.GetSpacing(), labelmap.GetOrigin(), labelmap.GetDirection())
    reading = CaseReading() if values == LabelValues() else CaseReading((str(values.liver),), (str(values.lesion),))
    selected = select_liver_and_lesions(SegmentationFile(Path(source), grid, labels=labels), reading)
    return _lesions(selected, labelmap)


def read_segmentation(path: str | Path, reading: CaseReading = CaseReading()
                      ) -> tuple[sitk.Image, list[Lesion], sitk.Image | None]:
    """Any segmentation file (label map, .seg.nrrd, DICOM SEG file or folder) -> the 0/1/2 map on
    its grid, its lesions and its liver mask, by the labels `reading` names."""
    path = Path(path)
    if path.is_dir():
        files = [f for f in sorted(path.iterdir()) if f.is_file() and not f.name.startswith(".")]
        if len(files) != 1 or not is_dicom_seg(files[0]):
            raise HCCInputError("is a folder; a segmentation is one file (or a folder with one DICOM SEG)", path)
        path = files[0]
    if path.name.lower().endswith(".seg.nrrd"):
        seg = read_seg_nrrd_file(path)
    elif not image_suffix(path) and is_dicom_seg(path):
        seg = read_dicom_seg(path)
    elif not image_suffix(path):
        raise HCCInputError("is not a segmentation we read (label map image, .seg.nrrd, DICOM SEG)", path)
    else:
        seg = read_label_map_file(path)
    selected = select_liver_and_lesions(seg, reading)
    lesions, liver = _lesions(selected, seg.grid)
    return selected.segmentation, lesions, liver


def read_seg_nrrd(path: str | Path, lesion_names: Sequence[str] | None = None
                  ) -> tuple[sitk.Image, list[Lesion], sitk.Image | None]:
    """A Slicer .seg.nrrd: segments named 'liver' give the liver, the others (or `lesion_names`) lesions."""
    return read_segmentation(path, CaseReading(lesion_labels=tuple(lesion_names or ())))


def validate_lesions(lesions: Sequence[Lesion], segmentation: sitk.Image, source: str | Path) -> None:
    for lesion in lesions:
        count = int(np.count_nonzero(sitk.GetArrayViewFromImage(lesion.mask)))
        if count == 0:
            raise HCCInputError(f"lesion '{lesion.name}' is empty", source, "remove the empty segment")
        if count < MIN_LESION_VOXELS:
            raise HCCInputError(f"lesion '{lesion.name}' has only {count} voxel(s): too small to analyse",
                                source, "remove the stray label")


def load_case(folder: str | Path, case_id: str | None = None, patient_id: str | None = None,
              phases: Sequence[str] | None = None, fields: dict[str, Any] | None = None,
              label_values: LabelValues = LabelValues(), lesion_names: Sequence[str] | None = None,
              reading: CaseReading | None = None) -> Case:
    """Load one case folder; `phases` restricts (and requires) the phases that are read.

    `reading` (labels, segmentation pattern, phase mapping) applies with the case's own cases.csv
    columns (`fields`: liver_label, lesion_label, segmentation, phase_map) taking precedence."""
    folder = Path(folder)
    reading = reading or CaseReading()
    if label_values != LabelValues():
        reading = replace(reading, liver_labels=(str(label_values.liver),), lesion_labels=(str(label_values.lesion),))
    if lesion_names:
        reading = replace(reading, lesion_labels=tuple(lesion_names))
    reading = reading.for_case(fields)
    available, seg_path = find_case_files(folder, reading)
    wanted = list(phases) if phases else list(available)
    missing = [p for p in wanted if p not in available]
    if missing:
        raise HCCInputError(f"has no phase {missing}", folder, describe_missing_phases(missing, available, reading))
    segmentation, lesions, liver = read_segmentation(seg_path, reading)
    validate_lesions(lesions, segmentation, seg_path)
    images = {phase: read_image(available[phase]) for phase in wanted}
    for phase, image in images.items():
        for lesion in lesions:
            check_overlap(image, lesion.mask, phase, available[phase])
    fields = dict(fields or {})
    return Case(case_id or folder.name, patient_id or case_id or folder.name, images, segmentation,
                lesions, liver, labels=fields, clinical=fields, source=str(folder))


def add_lesion_warnings(rows: Sequence[Any], case: Any) -> None:
    """Give prediction rows a `warnings` column when a lesion of `case` has any (e.g. it lies
    outside the liver): the odd input is named in the output table, not analysed in silence.
    Rows of other lesions and background ROIs get an empty cell, so the column is whole."""
    by_id = {lesion.lesion_id: lesion.warnings for lesion in getattr(case, "lesions", []) or []
             if getattr(lesion, "warnings", None)}
    if not by_id:
        return
    for row in rows:
        warnings = by_id.get(row.lesion_id, []) if row.kind == "lesion" else []
        row.extras["warnings"] = "; ".join(warnings)
