"""Rebuild the small real test files of this folder from the shared data (see SOURCE.md).

    .venv/bin/python Testing/data/files/make_test_files.py ../shared/data

totalseg/: a 40 x 40 x 15 crop of TotalSegmentator's example CT (`CT.nii.gz`) and of its
multi-label map (`totalseg.nii.gz`, label table kept: the NIfTI header extension is copied
byte for byte, only the header's size, offset and origin fields are rewritten by ITK).
dcmqi/: dcmqi's liver DICOM SEG unchanged (`liver.dcm`) and its 3 CT slices cropped to the
liver's box and resampled to 2x the voxel size (`ct.nrrd`, the phase: ITK reads it on the SEG's grid).
"""

from __future__ import annotations

import gzip
import shutil
import struct
import sys
import tempfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk

HERE = Path(__file__).resolve().parent
BOX_ZYX = (slice(2, 17), slice(40, 80), slice(60, 100))  # gallbladder (4) and part of the liver (5)


def nifti_extension(path: Path) -> bytes:
    raw = gzip.open(path).read()
    vox_offset = int(struct.unpack("<f", raw[108:112])[0])
    return raw[352:vox_offset]


def write_nifti_with_extension(image: sitk.Image, extension: bytes, path: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        plain = Path(tmp) / "x.nii"
        sitk.WriteImage(image, str(plain))
        raw = plain.read_bytes()
    header = bytearray(raw[:348])
    data = raw[int(struct.unpack("<f", raw[108:112])[0]):]
    header[108:112] = struct.pack("<f", float(352 + len(extension)))
    with gzip.open(path, "wb") as out:
        out.write(bytes(header) + b"\x01\x00\x00\x00" + extension + data)


def crop(image: sitk.Image, box) -> sitk.Image:
    z, y, x = box
    return image[x.start:x.stop, y.start:y.stop, z.start:z.stop]


def main(shared: Path) -> None:
    ts = shared / "abdomen" / "totalsegmentator"
    out = HERE / "totalseg"
    out.mkdir(exist_ok=True)
    sitk.WriteImage(crop(sitk.ReadImage(str(ts / "example_ct_sm.nii.gz")), BOX_ZYX), str(out / "CT.nii.gz"), True)
    seg = crop(sitk.ReadImage(str(ts / "example_seg.nii.gz")), BOX_ZYX)
    write_nifti_with_extension(seg, nifti_extension(ts / "example_seg.nii.gz"), out / "totalseg.nii.gz")

    dq = shared / "abdomen" / "dcmqi-liver"
    out = HERE / "dcmqi"
    out.mkdir(exist_ok=True)
    shutil.copyfile(dq / "liver.dcm", out / "liver.dcm")
    ct = sitk.ReadImage([str(dq / f"0{i}.dcm") for i in (1, 2, 3)])
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(dq / "liver_seg.nrrd")))
    _, ys, xs = np.nonzero(mask)
    lo = ct.TransformIndexToPhysicalPoint([int(xs.min()) - 4, int(ys.min()) - 4, 0])
    size = [int((xs.max() - xs.min() + 9) // 2), int((ys.max() - ys.min() + 9) // 2), 3]
    spacing = [2 * ct.GetSpacing()[0], 2 * ct.GetSpacing()[1], ct.GetSpacing()[2]]
    small = sitk.Resample(ct, size, sitk.Transform(), sitk.sitkLinear, lo, spacing, ct.GetDirection(), -1024.0,
                          sitk.sitkInt16)
    sitk.WriteImage(small, str(out / "ct.nrrd"), True)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else HERE.parents[3] / "shared" / "data"))
