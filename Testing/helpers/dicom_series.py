"""Small real DICOM series written with SimpleITK from the bundled NRRD sample data.

`write_series(image, folder, ...)` writes one axial slice per file with the tags that
GDCM uses to group and order a series (Study/Series Instance UID, Frame of Reference,
Image Position/Orientation (Patient), Pixel Spacing, Slice Thickness, Instance Number).
The bad-input tests use it to build the two folder layouts a DICOM export goes wrong
with: two series mixed in one folder, and a series with a stray slice far away.
"""

import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

_UID_ROOT = "1.2.826.0.1.3680043.2.1125"  # the GDCM example root; only needs to be unique per call


def _uid(suffix):
    return f"{_UID_ROOT}.{int(time.time() * 1000) % 10**10}.{suffix}"


def crop_small(image, size=(24, 24, 6)):
    """A small crop from the middle of a real volume (keeps the series tiny), as int16."""
    image = sitk.Cast(image, sitk.sitkInt16)
    start = [max(0, (s - c) // 2) for s, c in zip(image.GetSize(), size)]
    return sitk.RegionOfInterest(image, [min(c, s) for c, s in zip(size, image.GetSize())], start)


def write_series(image, folder, series_number=1, prefix="slice", z_offsets=None, series_uid=None,
                 study_uid=None, frame_uid=None):
    """Write `image` (3D, int16) as one DICOM file per axial slice into `folder`.

    `z_offsets` (mm, one per slice) moves single slices along the slice normal: a large offset
    on one slice is the "stray slice far away" of a bad export. Returns the file paths.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    image = sitk.Cast(image, sitk.sitkInt16)
    direction = np.array(image.GetDirection()).reshape(3, 3)
    series_uid = series_uid or _uid(f"{series_number}.1")
    study_uid = study_uid or _uid("0.1")
    frame_uid = frame_uid or _uid("0.2")
    orientation = "\\".join(f"{v:.6f}" for v in (*direction[:, 0], *direction[:, 1]))
    spacing = image.GetSpacing()
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    paths = []
    for k in range(image.GetDepth()):
        plane = image[:, :, k]
        position = np.array(image.TransformIndexToPhysicalPoint((0, 0, k)), dtype=float)
        if z_offsets is not None:
            position = position + direction[:, 2] * float(z_offsets[k])
        tags = {
            "0008|0060": "MR",
            "0008|0016": "1.2.840.10008.5.1.4.1.1.4",
            "0008|0018": _uid(f"{series_number}.{k + 2}"),
            "0020|000d": study_uid,
            "0020|000e": series_uid,
            "0020|0052": frame_uid,
            "0020|0011": str(series_number),
            "0020|0013": str(k + 1),
            "0020|0032": "\\".join(f"{v:.6f}" for v in position),
            "0020|0037": orientation,
            "0028|0030": f"{spacing[1]:.6f}\\{spacing[0]:.6f}",
            "0018|0050": f"{spacing[2]:.6f}",
            "0008|103e": f"series {series_number}",
        }
        for tag, value in tags.items():
            plane.SetMetaData(tag, value)
        path = folder / f"{prefix}{k:03d}.dcm"
        writer.SetFileName(str(path))
        writer.Execute(plane)
        paths.append(path)
    return paths


def write_mixed_series(image, folder):
    """Two series (same study, different Series Instance UIDs) in one folder."""
    first = write_series(image, folder, series_number=1, prefix="a")
    second = write_series(image, folder, series_number=2, prefix="b")
    return first + second


def write_stray_slice_series(image, folder, stray_mm=250.0):
    """One series whose last slice sits `stray_mm` beyond where it belongs."""
    offsets = [0.0] * image.GetDepth()
    offsets[-1] = stray_mm
    return write_series(image, folder, z_offsets=offsets)
