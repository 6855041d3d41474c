"""DICOM Segmentation objects (SEG, as PACS, OHIF and dcmqi write them) read with highdicom.

Each segment becomes a mask on the SEG's own grid (reoriented to the nearest LPS axes, as ITK
reads DICOM images), named by its SegmentLabel and answering also to its SegmentDescription,
its segmented property type (e.g. 'Liver') and its SegmentNumber.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from HCCAnalysisLib.errors import HCCInputError
from HCCAnalysisLib.io.segmentation import Segment, SegmentationFile, empty_grid

SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
DICOM_SUFFIXES = (".dcm", ".dicom")


def is_dicom_seg(path: str | Path) -> bool:
    """True for a DICOM file whose SOP class is Segmentation Storage (reads the header only)."""
    path = Path(path)
    if not path.is_file():
        return False
    try:
        with open(path, "rb") as handle:
            handle.seek(128)
            if handle.read(4) != b"DICM":
                return False
    except OSError:
        return False
    try:
        import pydicom
    except ImportError:
        raise HCCInputError("is a DICOM file, and telling a DICOM SEG needs the package highdicom (with pydicom)",
                            path, "pip install highdicom") from None
    try:
        header = pydicom.dcmread(str(path), stop_before_pixels=True, specific_tags=["SOPClassUID"])
    except Exception:  # unreadable DICOM: the caller treats it as some other file
        return False
    return str(getattr(header, "SOPClassUID", "")) == SEGMENTATION_STORAGE


def _import_highdicom():
    try:
        import highdicom
    except ImportError:
        raise HCCInputError("is a DICOM SEG, and reading one needs the package highdicom",
                            hint="pip install highdicom (a dependency of HCCAnalysisLib: see requirements.txt)") from None
    return highdicom


def _segment_names(item) -> tuple[str, tuple[str, ...]]:
    label = str(getattr(item, "SegmentLabel", "") or "")
    aliases = [str(getattr(item, "SegmentDescription", "") or "")]
    for code in getattr(item, "SegmentedPropertyTypeCodeSequence", []) or []:
        aliases.append(str(getattr(code, "CodeMeaning", "") or ""))
    name = label or next((a for a in aliases if a), f"segment {item.SegmentNumber}")
    return name, tuple(a for a in aliases if a)


def read_dicom_seg(path: str | Path) -> SegmentationFile:
    """A DICOM SEG file as segments on its grid (binary, or fractional thresholded at one half)."""
    path = Path(path)
    highdicom = _import_highdicom()
    try:
        seg = highdicom.seg.segread(str(path))
        volume = seg.get_volume(combine_segments=False, allow_missing_positions=True)
    except HCCInputError:
        raise
    except Exception as err:  # highdicom raises ValueError/AttributeError/RuntimeError for odd files
        raise HCCInputError(f"could not be read as a DICOM SEG: {str(err).splitlines()[0][:200]}", path,
                            "its frames must form one regularly spaced volume") from None
    array = np.asarray(volume.array)
    if array.ndim == 3:
        array = array[..., np.newaxis]
    affine = np.asarray(volume.affine, dtype=float)
    columns = affine[:3, [2, 1, 0]]  # array (slice, row, column) -> ITK index (column, row, slice)
    spacing = np.linalg.norm(columns, axis=0)
    grid = empty_grid(array.shape[2::-1], spacing, affine[:3, 3], columns / spacing)
    oriented_grid = sitk.DICOMOrient(grid, "LPS")
    threshold = 0.5 * float(array.max()) if str(seg.SegmentationType).upper() == "FRACTIONAL" else 0
    numbers = [int(n) for n in seg.segment_numbers]
    segments = []
    for channel, number in enumerate(numbers):
        item = seg.get_segment_description(number)
        name, aliases = _segment_names(item)
        mask = sitk.GetImageFromArray((array[..., channel] > threshold).astype(np.uint8))
        mask.CopyInformation(grid)
        oriented = sitk.GetArrayFromImage(sitk.DICOMOrient(mask, "LPS")).astype(bool)
        segments.append(Segment(number, name, str(number), aliases, oriented))
    if not segments:
        raise HCCInputError("is a DICOM SEG with no segment", path)
    return SegmentationFile(path, oriented_grid, segments=segments)
