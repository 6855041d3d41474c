"""The Liang 2018 stand-in cohort the benchmarks use (the same construction as
Testing/methods/test_tasks_liang_meng.py): each bundled case's real image is its NC phase,
ART and PV are copies resampled onto other grids; lesion types are stand-ins."""

import pathlib
import shutil
import sys

import SimpleITK as sitk

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "Testing"))

from helpers.liang_phases import write_phases  # noqa: E402  (the tests' own stand-in phases)

CASES = {"lung1": ("demo-cohort", "HCC"), "lung2": ("demo-cohort", "HCC"), "brain1": ("demo-cohort", "cyst"),
         "breast1": ("demo-cohort", "cyst"), "brain2": ("demo-heldout", "cyst")}


def make_cohort(folder, cases=("lung1", "lung2", "brain1", "breast1")):
    """Write the stand-in NC / ART / PV cohort of `cases` into `folder`; returns it."""
    folder = pathlib.Path(folder)
    lines = ["case_id,patient_id,lesion_type"]
    for case in cases:
        source, lesion_type = CASES[case]
        out = folder / case
        out.mkdir(parents=True)
        shutil.copy(ROOT / "HCCAnalysisLib" / "sample_data" / source / case / "labels.nrrd", out / "labels.nrrd")
        image = sitk.ReadImage(str(ROOT / "HCCAnalysisLib" / "sample_data" / source / case / "image.nrrd"))
        write_phases(image, out)
        lines.append(f"{case},patient-{case},{lesion_type}")
    (folder / "cases.csv").write_text("\n".join(lines) + "\n")
    return folder
