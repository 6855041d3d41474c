"""A microscopy case (Meng 2019): one 2D grey or RGB image, its ids and its cases.csv fields.

A microscopy case folder holds exactly one image file: PNG / JPEG / BMP, TIFF, pyramidal
TIFF / OME-TIFF or Aperio SVS (read by `tiles.read_microscopy_image`; for a pyramid the
full-resolution level unless `downsample` says otherwise). In Slicer the same case comes
from a one-slice (vector / RGB) volume node: `microscopy_case_from_node`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from HCCAnalysisLib.errors import HCCInputError
from HCCAnalysisLib.methods.meng2019.tiles import PIL_SUFFIXES, TIFF_SUFFIXES, image_from_vector_volume_node, read_microscopy_image

if TYPE_CHECKING:
    import slicer

IMAGE_SUFFIXES = PIL_SUFFIXES + TIFF_SUFFIXES


@dataclass
class MicroscopyCase:
    case_id: str
    patient_id: str
    image: np.ndarray  # H x W x C (C = 1 or 3), pixel type as read
    fields: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    @property
    def labels(self) -> dict[str, Any]:
        return self.fields

    @property
    def clinical(self) -> dict[str, Any]:
        return self.fields

    @property
    def lesions(self) -> list:  # a microscopy case has no segmented lesion: the whole image is the unit
        return []


def _check_phases(phases, source):
    if phases is not None and len(tuple(phases)) > 1:
        raise HCCInputError(f"a microscopy case is one image; {len(tuple(phases))} phases were asked for "
                            f"({', '.join(phases)})", source, "microscopy tasks take one image per case")


def find_microscopy_image(folder: str | Path) -> Path:
    """The one image file of a microscopy case folder (a file path is taken as it is)."""
    folder = Path(folder)
    if folder.is_file():
        return folder
    if not folder.is_dir():
        raise HCCInputError("case folder does not exist", folder)
    images = sorted(p for p in folder.iterdir()
                    if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        others = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
        raise HCCInputError("has no microscopy image", folder,
                            f"put one {' / '.join(IMAGE_SUFFIXES)} file in it (found: {others[:5] or 'nothing'})")
    if len(images) > 1:
        raise HCCInputError(f"has several microscopy images: {[p.name for p in images][:5]}", folder,
                            "a microscopy case folder holds exactly one image; make one case per image")
    return images[0]


def load_microscopy_case(folder: str | Path, case_id: str | None = None, patient_id: str | None = None,
                         phases: Sequence[str] | None = None, fields: dict[str, Any] | None = None,
                         downsample: float = 1.0) -> MicroscopyCase:
    """Load the one image of a microscopy case folder (or an image file) into a MicroscopyCase."""
    path = find_microscopy_image(folder)
    _check_phases(phases, path)
    image = read_microscopy_image(path, downsample=downsample)
    case_id = case_id or (Path(folder).name if Path(folder).is_dir() else path.stem)
    return MicroscopyCase(case_id, patient_id or case_id, image, dict(fields or {}), str(path))


def microscopy_case_from_node(node: slicer.vtkMRMLVolumeNode, case_id: str | None = None,
                              patient_id: str | None = None, fields: dict[str, Any] | None = None) -> MicroscopyCase:
    """A MicroscopyCase from a Slicer volume node with one slice (RGB vector or grey scalar)."""
    image = image_from_vector_volume_node(node)
    name = node.GetName() if hasattr(node, "GetName") else "image"
    case_id = case_id or name
    return MicroscopyCase(case_id, patient_id or case_id, image, dict(fields or {}), f"volume node '{name}'")
