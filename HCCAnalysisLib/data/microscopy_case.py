"""A microscopy case (Meng 2019): one 2D grey or RGB image, its ids and its cases.csv fields.

A microscopy case folder holds exactly one image file: PNG / JPEG / BMP, TIFF, pyramidal
TIFF / OME-TIFF or Aperio SVS (read by `tiles.read_microscopy_image`; for a pyramid the
full-resolution level unless `downsample` says otherwise). In Slicer the same case comes
from a one-slice (vector / RGB) volume node: `microscopy_case_from_node`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from HCCAnalysisLib.errors import HCCInputError
from HCCAnalysisLib.io.paths import check_exists
from HCCAnalysisLib.methods.meng2019.tiles import (PIL_SUFFIXES, TIFF_SUFFIXES, image_from_vector_volume_node,
                                                   pyramid_level, read_microscopy_image)

if TYPE_CHECKING:
    import slicer

IMAGE_SUFFIXES = PIL_SUFFIXES + TIFF_SUFFIXES
# Pixels of the image (or pyramid level) that is read, checked from its header before decoding:
# 2^28 (16384 x 16384) is 64 tiles of the paper's 2048 x 2048 images; a PNG whose header claims
# more is refused (a decompression bomb). Override with HCCANALYSIS_MAX_MICROSCOPY_MPIXELS.
DEFAULT_MAX_PIXELS = 1 << 28


def _max_pixels() -> float:
    value = os.environ.get("HCCANALYSIS_MAX_MICROSCOPY_MPIXELS")
    return float(value) * 1e6 if value else float(DEFAULT_MAX_PIXELS)


def _header_size(path: Path, downsample: float) -> tuple[int, int]:
    """(width, height) of what would be decoded, read from the file's header only."""
    if path.suffix.lower() in TIFF_SUFFIXES:
        from HCCAnalysisLib.runtime.extras import require

        tifffile = require("tifffile", "microscopy", f"reading {path} (TIFF / SVS)")
        with tifffile.TiffFile(path) as tif:
            levels = tif.series[0].levels
            widths = [lv.shape[lv.axes.index("X")] for lv in levels]
            chosen = levels[pyramid_level(widths, downsample)]
            return chosen.shape[chosen.axes.index("X")], chosen.shape[chosen.axes.index("Y")]
    from PIL import Image

    with Image.open(path) as image:  # reads the header; pixels are decoded later
        return image.size


def check_microscopy_file(path: str | Path, downsample: float = 1.0) -> None:
    """Refuse an empty, unreadable (truncated, not the format its name says) or oversized image
    file before its pixels are decoded."""
    path = Path(path)
    if path.stat().st_size == 0:
        raise HCCInputError("is empty (0 bytes)", path, "the file was not copied completely: copy it again")
    try:
        width, height = _header_size(path, downsample)
    except (HCCInputError, ImportError):
        raise
    except Exception as err:  # Pillow / tifffile raise many types (incl. DecompressionBombError)
        kind = "TIFF" if path.suffix.lower() in TIFF_SUFFIXES else path.suffix.lstrip(".").upper()
        raise HCCInputError(f"cannot be read as a {kind} image (truncated, corrupt or another format?): "
                            f"{str(err)[:200]}", path) from None
    if width * height > _max_pixels():
        raise HCCInputError(f"is {width} x {height} pixels ({width * height / 1e6:.0f} MP), more than the "
                            f"{_max_pixels() / 1e6:.0f} MP limit (a decompression bomb?)", path,
                            "crop or downsample it, or raise HCCANALYSIS_MAX_MICROSCOPY_MPIXELS")


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
    folder = check_exists(folder, "case folder")
    if folder.is_file():
        return folder
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
    check_microscopy_file(path, downsample)
    try:
        image = read_microscopy_image(path, downsample=downsample)
    except HCCInputError:
        raise
    except Exception as err:  # a decoder's own error on data the header check could not see
        raise HCCInputError(f"pixel data cannot be decoded (truncated or corrupt?): {str(err)[:200]}", path) from None
    case_id = case_id or (Path(folder).name if Path(folder).is_dir() else path.stem)
    return MicroscopyCase(case_id, patient_id or case_id, image, dict(fields or {}), str(path))


def microscopy_case_from_node(node: slicer.vtkMRMLVolumeNode, case_id: str | None = None,
                              patient_id: str | None = None, fields: dict[str, Any] | None = None) -> MicroscopyCase:
    """A MicroscopyCase from a Slicer volume node with one slice (RGB vector or grey scalar)."""
    image = image_from_vector_volume_node(node)
    name = node.GetName() if hasattr(node, "GetName") else "image"
    case_id = case_id or name
    return MicroscopyCase(case_id, patient_id or case_id, image, dict(fields or {}), f"volume node '{name}'")
