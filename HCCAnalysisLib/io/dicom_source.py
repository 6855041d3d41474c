"""The source DICOM series that DICOM outputs (SEG, SR) refer to, and how they are written.

A DICOM SEG or SR must point at the instances it was derived from, so it can only be made for a
case whose phase is a DICOM series folder: `read_source_series` reads that series' headers (no
pixels), sorts them along the slice normal as ITK does and gives their grid; `on_source_grid`
puts an output volume of the case (on the segmentation grid) onto that grid. Nothing here makes
up UIDs for source instances that do not exist. `write_dataset` writes through `atomic.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from HCCAnalysisLib.errors import HCCInputError
from HCCAnalysisLib.io.segmentation import empty_grid

DICOM_HINT = ("DICOM outputs refer to the source DICOM instances: give the case's phases as DICOM series "
              "folders (one folder of .dcm slices per phase, e.g. CASE/CT/), not NIfTI/NRRD files")
MANUFACTURER = "HCCAnalysis"
# Voxel centres closer than this (mm) count as the same grid: no resampling.
GRID_TOLERANCE_MM = 1e-3


def import_highdicom() -> Any:
    """highdicom (with pydicom), or an HCCInputError naming the package."""
    try:
        import highdicom
    except ImportError:
        raise HCCInputError("DICOM outputs need the package highdicom (with pydicom)",
                            hint="pip install highdicom (see requirements.txt)") from None
    return highdicom


@dataclass
class SourceSeries:
    """One DICOM series: headers sorted along the slice normal, and their common grid."""

    folder: Path
    datasets: list  # pydicom Datasets without pixel data, in slice order (index k of `grid`)
    grid: sitk.Image  # uint8 zero image with the series' geometry (ITK's LPS convention)

    @property
    def series_uid(self) -> str:
        return str(self.datasets[0].SeriesInstanceUID)

    @property
    def modality(self) -> str:
        return str(getattr(self.datasets[0], "Modality", "") or "")

    def sop_instance_uids(self) -> list[str]:
        return [str(ds.SOPInstanceUID) for ds in self.datasets]


def _header(path: Path) -> Any:
    import pydicom

    try:
        return pydicom.dcmread(str(path), stop_before_pixels=True)
    except Exception as err:  # pydicom raises InvalidDicomError, ValueError, ... for odd files
        raise HCCInputError(f"could not be read as DICOM: {str(err).splitlines()[0][:200]}", path) from None


_NEEDED = ("SOPInstanceUID", "SOPClassUID", "StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID",
           "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "Rows", "Columns")


def read_source_series(folder: str | Path) -> SourceSeries:
    """The headers of the one DICOM series in `folder`, sorted along the slice normal, and its grid."""
    import_highdicom()
    folder = Path(folder)
    reader = sitk.ImageSeriesReader()
    series = reader.GetGDCMSeriesIDs(str(folder))
    if len(series) != 1:
        raise HCCInputError(f"holds {len(series)} DICOM series; DICOM outputs need exactly one", folder, DICOM_HINT)
    files = [Path(f) for f in reader.GetGDCMSeriesFileNames(str(folder), series[0])]
    datasets = [_header(f) for f in files]
    for ds, name in zip(datasets, files):
        missing = [tag for tag in _NEEDED if str(ds.get(tag, "") or "").strip() in ("", "[]")]
        if missing:  # never made up: a SEG or SR pointing at invented UIDs would point at nothing
            raise HCCInputError(f"has no (or an empty) {', '.join(missing)}, which a DICOM SEG or SR must refer "
                                f"to ({len(files)} slices, e.g. {name.name})", folder,
                                "use the series as the scanner or PACS exported it; an anonymisation that blanked "
                                "the UIDs must replace them with consistent new ones instead")
    orientation = np.asarray(datasets[0].ImageOrientationPatient, dtype=float)
    row, column = orientation[:3], orientation[3:]
    normal = np.cross(row, column)
    datasets.sort(key=lambda ds: float(np.dot(np.asarray(ds.ImagePositionPatient, dtype=float), normal)))
    positions = np.array([np.dot(np.asarray(ds.ImagePositionPatient, dtype=float), normal) for ds in datasets])
    gap = float(np.median(np.diff(positions))) if len(datasets) > 1 else float(
        getattr(datasets[0], "SliceThickness", 1.0) or 1.0)
    if gap <= 0:
        raise HCCInputError("has DICOM slices at the same position; a SEG needs one frame per position", folder)
    first = datasets[0]
    spacing = (float(first.PixelSpacing[1]), float(first.PixelSpacing[0]), gap)  # x = along a row (columns)
    direction = np.column_stack([row, column, normal])
    grid = empty_grid((int(first.Columns), int(first.Rows), len(datasets)), spacing,
                      np.asarray(first.ImagePositionPatient, dtype=float), direction)
    return SourceSeries(folder, datasets, grid)


def same_grid(a: sitk.Image, b: sitk.Image, tolerance: float = GRID_TOLERANCE_MM) -> bool:
    """Same size and the same physical voxel centres (corners compared in mm)."""
    if a.GetSize() != b.GetSize():
        return False
    size = a.GetSize()
    corners = [(i, j, k) for i in (0, size[0] - 1) for j in (0, size[1] - 1) for k in (0, size[2] - 1)]
    return all(np.allclose(a.TransformIndexToPhysicalPoint(c), b.TransformIndexToPhysicalPoint(c), atol=tolerance)
               for c in corners)


def on_source_grid(image: sitk.Image, source: SourceSeries, what: str, labels: bool) -> np.ndarray:
    """`image` (an output on the case's segmentation grid) as a (frames, rows, columns) array on the
    source series' grid: as it is when the grids agree, else resampled (nearest neighbour for
    labels, linear otherwise). Refused when none of its content lies inside the series."""
    if same_grid(image, source.grid):
        return sitk.GetArrayFromImage(image)  # same voxels, index order of the grid (checked above)
    interpolator = sitk.sitkNearestNeighbor if labels else sitk.sitkLinear
    pixel = image.GetPixelID() if labels else sitk.sitkFloat32
    resampled = sitk.Resample(image, source.grid, sitk.Transform(), interpolator, 0.0, pixel)
    array = sitk.GetArrayFromImage(resampled)
    if np.any(sitk.GetArrayViewFromImage(image)) and not np.any(array):
        raise HCCInputError(f"the {what} does not lie inside the DICOM series it must refer to", source.folder,
                            "the case's segmentation and its DICOM phase must share one frame of reference")
    return array


def write_dataset(path: str | Path, dataset: Any) -> None:
    """A pydicom Dataset (a highdicom SEG or SR) as a DICOM file, written atomically."""
    from pydicom import dcmwrite

    from HCCAnalysisLib.atomic import write_bytes_atomic

    buffer = BytesIO()
    dcmwrite(buffer, dataset, enforce_file_format=True)  # preamble + file meta: a Part 10 file
    write_bytes_atomic(path, buffer.getvalue())


def algorithm_parameters(card: dict[str, Any]) -> dict[str, str]:
    """What identifies the model that made an output: task, model version and weights hash."""
    return {"task": str(card.get("task", "")), "model_version": str(card.get("version", "")),
            "weights_sha256": str(card.get("weights_sha256", ""))}


def software_version() -> str:
    from HCCAnalysisLib import __version__

    return str(__version__)
