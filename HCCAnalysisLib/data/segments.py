"""Liver and lesions out of a segmentation file, by the labels a CaseReading names.

Label maps: the lesion label(s) are split into connected components (largest first), each one a
lesion; the liver mask is the liver label(s) plus the lesions. Segment files (.seg.nrrd, DICOM
SEG): each lesion segment is one lesion. Component sizes, bounding boxes and contact with the
liver are computed for all lesions at once (scipy.ndimage), so thousands of specks cost one pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from HCCAnalysisLib.data.reading_options import CaseReading
from HCCAnalysisLib.errors import HCCInputError
from HCCAnalysisLib.io.segmentation import SegmentationFile

DEFAULT_LIVER, DEFAULT_LESION = ("1",), ("2",)
LIVER_SEGMENT_NAMES = ("liver",)
MIN_LESION_VOXELS = 2
# Each lesion is kept as a full-grid mask and sampled on its own; beyond this many a
# segmentation is almost surely not lesions (specks, noise, an instance map of something else).
MAX_LESIONS = 200
OUTSIDE_LIVER = "lesion lies entirely outside the liver mask"


@dataclass
class Selected:
    """What a segmentation gives a Case: 0/1/2 map, lesions (id, name, mask, warnings), liver."""

    segmentation: sitk.Image  # uint16: 1 liver, 2 lesion, on the file's grid
    lesions: list[tuple[str, str, np.ndarray, list[str]]] = field(default_factory=list)
    liver: np.ndarray | None = None  # bool (z, y, x): liver + lesions


def _values(specs: Sequence[str], names: dict[int, str], path: Path, what: str) -> list[int]:
    """Label-map values for numbers or names (names through the file's label table)."""
    by_name = {n.strip().lower(): v for v, n in names.items()}
    values = []
    for spec in specs:
        if spec.isdigit():
            values.append(int(spec))
        elif spec.strip().lower() in by_name:
            values.append(by_name[spec.strip().lower()])
        elif not names:
            raise HCCInputError(f"{what} label '{spec}' is a name, but this label map carries no label table", path,
                                "give the label value as a number (e.g. --liver-label 5)")
        else:
            known = ", ".join(f"{v}={n}" for v, n in sorted(names.items())[:12])
            raise HCCInputError(f"has no label named '{spec}' in its label table ({known}, ...)", path)
    return values


def _name_hint(names):
    liver = [v for v, n in names.items() if n.strip().lower() in LIVER_SEGMENT_NAMES]
    if liver:
        return f"its label table names liver = {liver[0]}: pass --liver-label liver and --lesion-label N"
    return "pass --liver-label N and --lesion-label N (or the cases.csv columns liver_label, lesion_label)"


def _check_counts(sizes: np.ndarray, names: Sequence[str], path: Path) -> None:
    small = [n for n, s in zip(names, sizes) if s < MIN_LESION_VOXELS]
    if len(names) > MAX_LESIONS:
        raise HCCInputError(f"has {len(names)} separate lesions ({len(small)} of fewer than {MIN_LESION_VOXELS} "
                            f"voxels), more than the limit of {MAX_LESIONS} per case", path,
                            "remove stray voxels, or check that the lesion label is the right one")
    empty = [n for n, s in zip(names, sizes) if s == 0]
    if empty:
        raise HCCInputError(f"lesion '{empty[0]}' is empty", path, "remove the empty segment")
    if small:
        count = int(sizes[list(names).index(small[0])])
        raise HCCInputError(f"lesion '{small[0]}' has only {count} voxel(s): too small to analyse", path,
                            "remove the stray label")


def _to_image(array: np.ndarray, grid: sitk.Image, pixel=np.uint8) -> sitk.Image:
    image = sitk.GetImageFromArray(np.ascontiguousarray(array.astype(pixel, copy=False)))
    image.CopyInformation(grid)
    return image


def _outside(lesion_ids: np.ndarray, n: int, liver_only: np.ndarray | None) -> np.ndarray:
    """Per lesion (1..n): True when no voxel of it or of its 1-voxel rim is liver (one pass)."""
    if liver_only is None or not liver_only.any():
        return np.zeros(n + 1, dtype=bool)
    near = ndimage.binary_dilation(liver_only)
    touching = np.bincount(lesion_ids[near], minlength=n + 1)
    return touching == 0


def _from_label_map(seg: SegmentationFile, reading: CaseReading) -> Selected:
    labels, path = seg.labels, seg.path
    present = np.unique(labels)
    liver_values = _values(reading.liver_labels or DEFAULT_LIVER, seg.names, path, "liver")
    lesion_values = _values(reading.lesion_labels or DEFAULT_LESION, seg.names, path, "lesion")
    lesion_any = np.isin(labels, lesion_values)
    if not lesion_any.any():
        raise HCCInputError(f"has no voxel with the lesion label {', '.join(map(str, lesion_values))} "
                            f"(values present: {[int(v) for v in present]})", path, _name_hint(seg.names))
    if not reading.liver_labels and not reading.lesion_labels:  # defaults: anything else is suspicious
        unexpected = [int(v) for v in present if v not in (0, *liver_values, *lesion_values)]
        if unexpected:
            shown = unexpected[:20] + (["..."] if len(unexpected) > 20 else [])
            raise HCCInputError(f"has unexpected label values {shown} (expected 0, liver {liver_values[0]}, "
                                f"lesion {lesion_values[0]})", path, _name_hint(seg.names))
    components, n = ndimage.label(lesion_any)
    sizes = np.bincount(components.ravel(), minlength=n + 1)
    order = np.argsort(-sizes[1:], kind="stable") + 1  # largest first, ties in scan order
    names = [f"lesion {rank}" for rank in range(1, n + 1)]
    _check_counts(sizes[order], names, path)
    liver_only = np.isin(labels, liver_values) & ~lesion_any
    has_liver = bool(liver_only.any())
    outside = _outside(components, n, liver_only)
    boxes = ndimage.find_objects(components)
    canonical = np.zeros(labels.shape, dtype=np.uint16)
    canonical[liver_only] = 1
    canonical[lesion_any] = 2
    selected = Selected(_to_image(canonical, seg.grid, np.uint16), liver=(canonical > 0) if has_liver else None)
    for rank, label in enumerate(order, start=1):
        mask = np.zeros(labels.shape, dtype=bool)
        box = boxes[label - 1]
        mask[box] = components[box] == label
        selected.lesions.append((str(rank), f"lesion {rank}", mask, [OUTSIDE_LIVER] if outside[label] else []))
    return selected


def _pick(segments, specs, what, path):
    picked = []
    for spec in specs:
        matches = [s for s in segments if s.answers_to(spec) or (spec.isdigit() and s.number == int(spec))]
        if not matches:
            listing = ", ".join(f"{s.number}={s.name}" for s in segments)
            raise HCCInputError(f"has no {what} segment '{spec}' (segments: {listing})", path,
                                "name a segment by its name, description or number")
        picked += [s for s in matches if s not in picked]
    return picked


def _from_segments(seg: SegmentationFile, reading: CaseReading) -> Selected:
    path, segments = seg.path, seg.segments
    if reading.liver_labels:
        livers = _pick(segments, reading.liver_labels, "liver", path)
    else:
        livers = [s for s in segments if any(s.answers_to(n) for n in LIVER_SEGMENT_NAMES)]
    if reading.lesion_labels:
        lesions = _pick(segments, reading.lesion_labels, "lesion", path)
    else:
        lesions = [s for s in segments if s not in livers]
    if not lesions:
        raise HCCInputError("has no lesion segment", path, f"segments: {[s.name for s in segments]}; "
                            "name one with --lesion-label")
    shape = segments[0].mask.shape
    liver_only = np.zeros(shape, dtype=bool)
    for s in livers:
        if s not in lesions:
            liver_only |= s.mask
    lesion_any = np.zeros(shape, dtype=bool)
    for s in lesions:
        lesion_any |= s.mask
    _check_counts(np.array([int(s.mask.sum()) for s in lesions]), [s.name for s in lesions], path)
    canonical = np.zeros(shape, dtype=np.uint16)
    canonical[liver_only] = 1
    canonical[lesion_any] = 2
    has_liver = bool(liver_only.any())
    selected = Selected(_to_image(canonical, seg.grid, np.uint16), liver=(canonical > 0) if has_liver else None)
    near = ndimage.binary_dilation(liver_only) if has_liver else None
    for s in lesions:
        outside = near is not None and not np.any(near & s.mask)
        selected.lesions.append((s.segment_id, s.name, s.mask, [OUTSIDE_LIVER] if outside else []))
    return selected


def select_liver_and_lesions(seg: SegmentationFile, reading: CaseReading = CaseReading()) -> Selected:
    """The liver and lesions that `reading`'s labels name in a segmentation file."""
    return _from_label_map(seg, reading) if seg.is_label_map else _from_segments(seg, reading)


def as_images(selected: Selected, grid: sitk.Image) -> tuple[list[tuple[str, str, sitk.Image, list[str]]],
                                                            sitk.Image | None]:
    """Lesion masks and the liver mask as uint8 images on `grid`."""
    lesions = [(i, n, _to_image(m, grid), w) for i, n, m, w in selected.lesions]
    liver = None if selected.liver is None else _to_image(selected.liver, grid)
    return lesions, liver
