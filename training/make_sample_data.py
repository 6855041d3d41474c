"""Build the bundled demo cohort (HCCAnalysisLib/sample_data/demo-cohort) from ../shared/data/lesions.

The five pyradiomics test cases (BSD-3-Clause) are real CT / MR images with a real
tumour mask, but they are not liver MRI and have no organ mask. So:
- the tumour becomes label 2 (lesion);
- label 1 (which the tasks read as "liver", the organ the background ROIs come from)
  marks the tissue around the tumour: an in-plane ring of RING_MM around it on the
  tumour's slices and one slice beyond. It stands in for an organ label, nothing more;
- each case is cropped to that neighbourhood so the repository stays small.
Run: .venv/bin/python training/make_sample_data.py  (rewrites HCCAnalysisLib/sample_data/demo-cohort).
"""

import csv
import shutil
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT.parent / "shared" / "data" / "lesions"
OUT = ROOT / "HCCAnalysisLib" / "sample_data" / "demo-cohort"
HELD_OUT = ROOT / "HCCAnalysisLib" / "sample_data" / "demo-heldout"
RING_MM = 25.0
COHORT = ["lung1", "lung2", "brain1", "breast1"]
HELD_OUT_CASES = ["brain2"]


def organ_ring(lesion, spacing_zyx):
    """Voxels within a ring in-plane around the tumour, on its slices and one beyond, minus the tumour.

    The ring is RING_MM wide, or 1.3 times the tumour's largest in-plane extent when that is
    larger, so that a background box of the tumour's size fits beside it.
    """
    coords = np.argwhere(lesion)
    extent_mm = float(((coords.max(0) - coords.min(0) + 1)[1:] * np.array(spacing_zyx[1:])).max())
    ring_mm = max(RING_MM, 1.3 * extent_mm)
    radius = [max(1, int(round(ring_mm / s))) for s in reversed(spacing_zyx)]  # x, y, z order
    radius[2] = 1
    dilated = sitk.BinaryDilate(sitk.GetImageFromArray(lesion.astype(np.uint8)), radius)
    ring = sitk.GetArrayFromImage(dilated).astype(bool) & ~lesion
    return ring


def build_case(name, folder):
    image = sitk.ReadImage(str(SOURCE / f"{name}_image.nrrd"))
    label = sitk.ReadImage(str(SOURCE / f"{name}_label.nrrd"))
    lesion = sitk.GetArrayFromImage(label) > 0
    spacing_zyx = tuple(reversed(image.GetSpacing()))
    ring = organ_ring(lesion, spacing_zyx)
    labels = np.zeros(lesion.shape, np.uint8)
    labels[ring] = 1
    labels[lesion] = 2
    coords = np.argwhere(labels > 0)
    lo = np.maximum(coords.min(0) - [1, 8, 8], 0)
    hi = np.minimum(coords.max(0) + [2, 9, 9], lesion.shape)
    crop = tuple(slice(a, b) for a, b in zip(lo, hi))
    index_xyz = [int(v) for v in reversed(lo)]
    size_xyz = [int(b - a) for a, b in zip(reversed(lo), reversed(hi))]
    image_crop = sitk.RegionOfInterest(image, size_xyz, index_xyz)
    label_image = sitk.GetImageFromArray(labels[crop])
    label_image.CopyInformation(image_crop)
    folder.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image_crop, str(folder / "image.nrrd"), useCompression=True)
    sitk.WriteImage(label_image, str(folder / "labels.nrrd"), useCompression=True)
    return size_xyz


def write_cohort(out, names):
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    with open(out / "cases.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["case_id", "patient_id", "modality"])
        for name in names:
            size = build_case(name, out / name)
            modality = "CT" if name.startswith("lung") else "MR"
            writer.writerow([name, f"patient-{name}", modality])
            print(f"{out.name}/{name}: {size}")


def main():
    if not SOURCE.is_dir():
        sys.exit(f"{SOURCE} not found: this script needs ../shared/data beside the repository")
    write_cohort(OUT, COHORT)
    write_cohort(HELD_OUT, HELD_OUT_CASES)


if __name__ == "__main__":
    main()
