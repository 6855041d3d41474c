"""Builders of lying, truncated and hostile files for test_bad_inputs_files.py (issue 14).

Each starts from the bundled real sample image (HCCAnalysisLib/sample_data/demo-cohort/breast1, a 45 x 102 x 7
int16 MR volume) or a freshly built model package and changes one thing.
"""

import gzip
import json
import re
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from helpers import bad_inputs as bad

SRC = bad.SMALL_CASE / "image.nrrd"


def real_image():
    return sitk.ReadImage(str(SRC))


def saved(path, compress=True):
    """The real image saved as `path` (format from the name)."""
    sitk.WriteImage(real_image(), str(path), useCompression=compress)
    return Path(path)


def truncated_gz(path, keep):
    """A real .nii.gz (or gzip .nrrd) cut to `keep` of its bytes: ITK reads the rest as zeros."""
    data = saved(path).read_bytes()
    Path(path).write_bytes(data[: int(len(data) * keep)])
    return Path(path)


def nrrd_header_edit(path, pattern, replacement):
    """An uncompressed real NRRD whose header line matching `pattern` is replaced."""
    data = saved(path, compress=False).read_bytes()
    header, _, pixels = data.partition(b"\n\n")
    header = re.sub(pattern, replacement, header)
    Path(path).write_bytes(header + b"\n\n" + pixels)
    return Path(path)


def nifti_header_edit(path, edit):
    """A real .nii / .nii.gz whose NIfTI-1 header is changed by edit(bytearray)."""
    saved(path)
    compressed = str(path).endswith(".gz")
    raw = bytearray(gzip.decompress(Path(path).read_bytes()) if compressed else Path(path).read_bytes())
    edit(raw)
    Path(path).write_bytes(gzip.compress(bytes(raw)) if compressed else bytes(raw))
    return Path(path)


def nifti_type(raw, datatype, bitpix):
    raw[70:72] = struct.pack("<h", datatype)
    raw[72:74] = struct.pack("<h", bitpix)


def nifti_fewer_slices(raw, fewer=2):
    dims = list(struct.unpack("<8h", raw[40:56]))
    dims[3] -= fewer
    raw[40:56] = struct.pack("<8h", *dims)


def short_detached_nrrd(folder):
    """A .nhdr + .raw pair whose raw file lost its last slice."""
    header = saved(Path(folder) / "image.nhdr", compress=False)
    raw = Path(folder) / "image.raw"
    raw.write_bytes(raw.read_bytes()[: -45 * 102 * 2])
    return header


def symlink_loop(folder, name="image.nrrd"):
    folder = Path(folder)
    (folder / name).symlink_to(folder / "other.nrrd")
    (folder / "other.nrrd").symlink_to(folder / name)
    return folder / name


def odd_size_dicom_folder(folder):
    """A real 6-slice DICOM series whose third slice is 20 x 24 instead of 24 x 24."""
    from helpers.dicom_series import crop_small, write_series

    uids = dict(series_uid="1.2.826.0.1.3680043.2.1125.14.1", study_uid="1.2.826.0.1.3680043.2.1125.14.2",
                frame_uid="1.2.826.0.1.3680043.2.1125.14.3")
    files = write_series(crop_small(real_image()), Path(folder), **uids)
    odd = write_series(crop_small(real_image(), size=(20, 24, 6)), Path(folder).with_name("odd-tmp"), **uids)
    shutil.copy(odd[2], files[2])
    shutil.rmtree(Path(folder).with_name("odd-tmp"))
    return Path(folder)


# ---------------------------------------------------------------- model packages -------------------

def rewrite_weights(package, change):
    """Replace the package's weights by change(state) and re-hash the card: the hash is right."""
    from safetensors.torch import load_file, save_file

    from HCCAnalysisLib.models.package import sha256_of

    weights = Path(package) / "model.safetensors"
    state = load_file(str(weights))
    save_file(change(state), str(weights))
    bad.edit_card(package, lambda card: card.update(weights_sha256=sha256_of(weights)))
    return weights


def as_dtype(dtype):
    return lambda state: {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}


def with_value(value, key_part="weight"):
    def change(state):
        key = next(k for k in state if key_part in k and state[k].is_floating_point())
        state[key] = state[key].clone()
        state[key].view(-1)[:3] = value
        return state
    return change


def oversized_card(package, size=2 << 20):
    """A card file padded with JSON whitespace to `size` bytes (still valid JSON)."""
    path = Path(package) / "model.json"
    text = json.dumps(json.loads(path.read_text()))
    path.write_text(text[:-1] + " " * (size - len(text)) + "}")
    return path


# ---------------------------------------------------------------- microscopy -----------------------

def _chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(path, width=100_000, height=100_000):
    """A tiny PNG whose header claims width x height grey pixels (a decompression bomb)."""
    idat = zlib.compress(b"\0" * 1000)
    Path(path).write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                           + _chunk(b"IDAT", idat) + _chunk(b"IEND", b""))
    return Path(path)


def real_rgb(size=64):
    """An RGB picture made from the real MR slice (grey copied to three channels)."""
    array = sitk.GetArrayFromImage(real_image())[3].astype(np.float32)
    array = (255 * (array - array.min()) / max(float(np.ptp(array)), 1.0)).astype(np.uint8)
    return np.repeat(array[:size, :size, None], 3, axis=2)


def truncated_tiff(path, keep_bytes):
    import tifffile

    tifffile.imwrite(str(path), real_rgb())
    Path(path).write_bytes(Path(path).read_bytes()[:keep_bytes])
    return Path(path)
