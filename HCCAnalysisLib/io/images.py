"""Reading radiology images (NRRD, NIfTI, MHA, DICOM series) with the checks users need.

Everything is refused before pixels are allocated where possible (size, dimension,
series layout), and after reading only for what needs the pixels (NaN/inf).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from HCCAnalysisLib.errors import HCCInputError
from HCCAnalysisLib.io.image_stream import check_image_data
from HCCAnalysisLib.io.paths import check_exists

IMAGE_SUFFIXES = (".nii.gz", ".seg.nrrd", ".nrrd", ".nhdr", ".nii", ".mha", ".mhd")
# A volume larger than this (in float32 bytes) is refused before it is read; override with
# HCCANALYSIS_MAX_VOLUME_GB for big-memory machines.
DEFAULT_MAX_VOLUME_GB = 4.0
# Slice gaps may differ by this fraction before a DICOM series counts as unevenly spaced.
SLICE_SPACING_TOLERANCE = 0.05


def image_suffix(path: str | Path) -> str:
    """The image suffix of a file name ('' when it is not an image we read)."""
    name = Path(path).name.lower()
    for suffix in IMAGE_SUFFIXES:
        if name.endswith(suffix):
            return suffix
    return ""


def _max_bytes():
    return float(os.environ.get("HCCANALYSIS_MAX_VOLUME_GB", DEFAULT_MAX_VOLUME_GB)) * 1024**3


def _check_header(size, components, source):
    """Refuse images of the wrong dimension or too large, from the header alone."""
    if len(size) == 4 and size[3] == 1:
        size = size[:3]
    if len(size) != 3:
        raise HCCInputError(
            f"is a {len(size)}D image ({'x'.join(map(str, size))}); a 3D volume is needed",
            source, "export one 3D volume per phase")
    if components != 1:
        raise HCCInputError(f"has {components} components per voxel; a scalar (grey-value) volume is needed",
                            source, "colour or vector images are only accepted by the microscopy task")
    n_bytes = 4.0 * np.prod(size, dtype=np.float64)
    if n_bytes > _max_bytes():
        raise HCCInputError(
            f"is {'x'.join(map(str, size))} voxels ({n_bytes / 1024**3:.1f} GiB as float32), more than the "
            f"{_max_bytes() / 1024**3:.1f} GiB limit", source,
            "crop it to the liver first, or raise HCCANALYSIS_MAX_VOLUME_GB")


def _nrrd_header_sizes(path):
    """The `sizes:` field of a NRRD header, read as text (ITK opens a detached data file first)."""
    with open(path, "rb") as handle:
        for raw in handle.read(65536).split(b"\n"):
            line = raw.decode("latin-1").strip()
            if not line:
                break
            if line.lower().startswith("sizes:"):
                try:
                    return tuple(int(v) for v in line.split(":", 1)[1].split())
                except ValueError:
                    return None
    return None


def _check_finite(image, source):
    array = sitk.GetArrayViewFromImage(image)
    finite = np.isfinite(array)
    if not finite.all():
        bad = int(array.size - np.count_nonzero(finite))
        raise HCCInputError(f"has {bad} NaN or infinite voxels", source, "fix or mask them before analysis")


def _dicom_series_files(folder):
    reader = sitk.ImageSeriesReader()
    series = reader.GetGDCMSeriesIDs(str(folder))
    if not series:
        raise HCCInputError("holds no DICOM series", folder)
    if len(series) > 1:
        raise HCCInputError(
            f"holds {len(series)} DICOM series ({', '.join(series)}); one phase folder must hold one series",
            folder, "move each series into its own folder")
    return list(reader.GetGDCMSeriesFileNames(str(folder), series[0]))


def _check_direction(direction, source):
    """Refuse a header whose axes are zero-length, parallel or NaN: no orientation can be derived."""
    matrix = np.array(direction, dtype=float).reshape(3, 3) if len(direction) == 9 else None
    if matrix is not None and (not np.isfinite(matrix).all() or abs(np.linalg.det(matrix)) < 1e-6):
        raise HCCInputError("has a singular direction matrix (its header's axes are zero-length, parallel or not "
                            "numbers), so the image has no orientation", source,
                            "fix 'space directions' / the orientation in the header, or re-export the image")


def _check_slice_sizes(files, folder):
    """Refuse a series whose slices differ in rows x columns (e.g. a scout or a reformat mixed in)."""
    sizes = {}
    for name in files:
        info = sitk.ImageFileReader()
        info.SetFileName(name)
        info.ReadImageInformation()
        sizes.setdefault(tuple(info.GetSize()[:2]), []).append(Path(name).name)
    if len(sizes) > 1:
        common = max(sizes, key=lambda k: len(sizes[k]))
        odd = [f"{'x'.join(map(str, k))} in {', '.join(v[:3])}" for k, v in sizes.items() if k != common]
        raise HCCInputError(f"DICOM slices differ in size: {'x'.join(map(str, common))} in {len(sizes[common])} "
                            f"slice(s), {'; '.join(odd)}", folder,
                            "one series must have one slice size: remove the odd slices (a scout or reformat?)")


def _check_slice_spacing(files, folder):
    """Refuse a series whose slice positions are unevenly spaced (e.g. a stray slice far away)."""
    if len(files) < 3:
        return
    positions, normal = [], None
    for name in files:
        info = sitk.ImageFileReader()
        info.SetFileName(name)
        info.ReadImageInformation()
        direction = np.array(info.GetDirection()).reshape(3, 3)
        normal = direction[:, 2] if normal is None else normal
        positions.append(float(np.dot(info.GetOrigin(), normal)))
    gaps = np.diff(np.sort(positions))
    median = float(np.median(gaps))
    if median <= 0 or np.any(np.abs(gaps - median) > SLICE_SPACING_TOLERANCE * median):
        worst = float(gaps[np.argmax(np.abs(gaps - median))])
        raise HCCInputError(
            f"DICOM slices are unevenly spaced (typical gap {median:.2f} mm, one gap {worst:.2f} mm)",
            folder, "remove stray or duplicate slices, or resample the series")


def read_image(path: str | Path, keep_type: bool = False) -> sitk.Image:
    """Read one 3D scalar volume as float32 (its own voxel type with `keep_type`: label maps),
    refusing what the analysis cannot use."""
    path = check_exists(path)  # names a symlink loop or a dangling link, not just "does not exist"
    modality = ""
    if path.is_dir():
        files = _dicom_series_files(path)
        _check_slice_sizes(files, path)
        _check_slice_spacing(files, path)
        first = sitk.ImageFileReader()
        first.SetFileName(files[0])
        first.ReadImageInformation()
        size = tuple(first.GetSize()[:2]) + (len(files),)
        _check_header(size, first.GetNumberOfComponents(), path)
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(files)
        try:
            image = reader.Execute()
        except RuntimeError as err:
            raise HCCInputError(f"DICOM series could not be read: {str(err).splitlines()[0]}", path) from None
        # the Modality tag (0008,0060) travels on the image: prediction checks it against the model card
        modality = first.GetMetaData("0008|0060").strip() if first.HasMetaDataKey("0008|0060") else ""
    else:
        if not image_suffix(path):
            raise HCCInputError("is not a NRRD, NIfTI, MHA or DICOM-folder image", path)
        if image_suffix(path) in (".nrrd", ".nhdr"):
            sizes = _nrrd_header_sizes(path)
            if sizes:  # refuse a huge volume from its header, before ITK touches the data
                n_bytes = 4.0 * np.prod(sizes, dtype=np.float64)
                if n_bytes > _max_bytes():
                    _check_header(sizes[:3] if len(sizes) > 3 else sizes, 1, path)
        info = sitk.ImageFileReader()
        info.SetFileName(str(path))
        try:
            info.ReadImageInformation()
        except RuntimeError as err:
            raise HCCInputError(f"could not be read as an image (corrupt or truncated?): "
                                f"{str(err).strip().splitlines()[-1][:200]}", path) from None
        _check_header(info.GetSize(), info.GetNumberOfComponents(), path)
        try:  # a truncated stream or a lying header: ITK would read it silently
            check_image_data(path)
        except HCCInputError as err:
            raise HCCInputError(f"pixel data could not be read (corrupt or truncated?): {err.problem}", err.source,
                                err.hint) from None
        _check_direction(info.GetDirection(), path)
        try:
            image = info.Execute()
        except RuntimeError as err:
            raise HCCInputError(f"pixel data could not be read (corrupt or truncated?): "
                                f"{str(err).strip().splitlines()[-1][:200]}", path) from None
        if image.GetDimension() == 4:
            image = image[:, :, :, 0]
    if not keep_type:
        image = sitk.Cast(image, sitk.sitkFloat32)
    if modality:  # set after the cast, which drops an image's metadata
        image.SetMetaData("0008|0060", modality)
    _check_finite(image, path)
    return image


def read_label_image(path: str | Path) -> sitk.Image:
    """Read a label map as an integer image (uint32: values above 255 or 65535 keep their true
    value, never wrap), same checks as read_image."""
    image = read_image(path, keep_type=True)
    array = sitk.GetArrayViewFromImage(image)
    if np.any(array < 0) or np.any(array != np.round(array)):
        raise HCCInputError("is not a label map (negative or non-integer values)", path)
    if array.size and float(array.max()) > np.iinfo(np.uint32).max:
        raise HCCInputError(f"has the label value {array.max()}, above 2^32 - 1", path)
    return sitk.Cast(image, sitk.sitkUInt32)
