"""Reading segmentation files into one form: a grid plus either a label map (label values with
the names its label table gives) or a list of named segments (a Slicer .seg.nrrd, a DICOM SEG).

Which of these are liver and lesions is decided in `HCCAnalysisLib.data.segments`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import SimpleITK as sitk

from HCCAnalysisLib.errors import HCCInputError
from HCCAnalysisLib.io.images import read_label_image
from HCCAnalysisLib.io.label_table import read_label_table


@dataclass
class Segment:
    number: int  # DICOM SegmentNumber, or the 1-based position of a .seg.nrrd segment
    name: str
    segment_id: str  # the file's own id (.seg.nrrd Segment_1, DICOM SEG number): the lesion id
    aliases: tuple[str, ...]  # other names it answers to (segment ID, description, property type)
    mask: np.ndarray  # bool, (z, y, x) on the file's grid

    def answers_to(self, name: str) -> bool:
        name = name.strip().lower()
        return any(name == n.strip().lower() for n in (self.name, self.segment_id) + self.aliases if n)


@dataclass
class SegmentationFile:
    path: Path
    grid: sitk.Image  # the file's geometry (uint8, zero)
    labels: np.ndarray | None = None  # label-map files: int64 (z, y, x)
    names: dict[int, str] = field(default_factory=dict)  # label value -> name (label table)
    segments: list[Segment] | None = None  # segment files

    @property
    def is_label_map(self) -> bool:
        return self.segments is None


def empty_grid(size_xyz: Sequence[int], spacing: Sequence[float], origin: Sequence[float],
               direction: Sequence[float] | np.ndarray) -> sitk.Image:
    """A zero uint8 image with the given geometry (the reference grid of a segmentation)."""
    grid = sitk.Image([int(v) for v in size_xyz], sitk.sitkUInt8)
    grid.SetSpacing([float(v) for v in spacing])
    grid.SetOrigin([float(v) for v in origin])
    grid.SetDirection([float(v) for v in np.asarray(direction, dtype=float).flatten()])
    return grid


def read_label_map_file(path: str | Path) -> SegmentationFile:
    """A label-map image (NRRD, NIfTI, MHA) with its true integer values and its label table."""
    path = Path(path)
    image = read_label_image(path)
    labels = sitk.GetArrayFromImage(image).astype(np.int64, copy=False)
    grid = empty_grid(image.GetSize(), image.GetSpacing(), image.GetOrigin(), image.GetDirection())
    return SegmentationFile(path, grid, labels=labels, names=read_label_table(path))


def read_seg_nrrd_file(path: str | Path) -> SegmentationFile:
    """A Slicer .seg.nrrd, each segment its own mask. Overlapping segments are stored as several
    layers; slicerio gives them first in the array: (layer, i, j, k)."""
    import slicerio

    path = Path(path)
    try:
        seg = slicerio.read_segmentation(str(path))
    except Exception as err:  # slicerio raises plain exceptions for malformed headers
        raise HCCInputError(f"could not be read as a Slicer segmentation: {err}", path) from None
    voxels = np.asarray(seg["voxels"])
    if voxels.ndim == 3:
        voxels = voxels[np.newaxis]
    if voxels.ndim != 4:
        raise HCCInputError(f"holds a {voxels.ndim}D voxel array; a .seg.nrrd has 3 (or layers x 3)", path)
    ijk_to_lps = np.asarray(seg["ijkToLPS"], dtype=float)
    spacing = np.linalg.norm(ijk_to_lps[:3, :3], axis=0)
    if np.any(spacing == 0):
        raise HCCInputError("has a zero voxel spacing in its space directions", path)
    direction = ijk_to_lps[:3, :3] / spacing
    if abs(np.linalg.det(direction)) < 1e-6:
        raise HCCInputError("has a singular direction matrix (its axes are not independent)", path)
    grid = empty_grid(voxels.shape[1:], spacing, ijk_to_lps[:3, 3], direction)
    n_layers = voxels.shape[0]
    segments = []
    for position, segment in enumerate(seg.get("segments", []), start=1):
        name = str(segment.get("name") or segment.get("id") or f"segment {position}")
        if segment.get("labelValue") in (None, ""):
            raise HCCInputError(f"segment '{name}' has no label value (Segment{position - 1}_LabelValue)", path,
                                "re-save the segmentation from Slicer")
        layer, value = int(segment.get("layer") or 0), int(segment["labelValue"])
        if not 0 <= layer < n_layers:
            raise HCCInputError(f"segment '{name}' points at layer {layer}, but the file has {n_layers} "
                                f"layer(s) (0 to {n_layers - 1})", path, "re-save the segmentation from Slicer")
        mask = np.ascontiguousarray((voxels[layer] == value).transpose(2, 1, 0))
        segments.append(Segment(position, name, str(segment.get("id") or name), (), mask))
    if not segments:
        raise HCCInputError("has no segment", path)
    return SegmentationFile(path, grid, segments=segments)
