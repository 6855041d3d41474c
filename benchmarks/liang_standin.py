"""The Liang 2018 stand-in cohort the benchmarks use (the same construction as
Testing/methods/test_tasks_liang_meng.py): each bundled case's real image is its NC phase,
ART and PV are copies resampled onto other grids; lesion types are stand-ins."""

import pathlib
import shutil

import SimpleITK as sitk

ROOT = pathlib.Path(__file__).resolve().parents[1]
CASES = {"lung1": ("demo-cohort", "HCC"), "lung2": ("demo-cohort", "HCC"), "brain1": ("demo-cohort", "cyst"),
         "breast1": ("demo-cohort", "cyst"), "brain2": ("demo-heldout", "cyst")}


def _resampled(image, factor, shift):
    size = [max(2, int(round(n / f))) for n, f in zip(image.GetSize(), factor)]
    reference = sitk.Image(size, sitk.sitkFloat32)
    reference.SetSpacing([s * f for s, f in zip(image.GetSpacing(), factor)])
    reference.SetDirection(image.GetDirection())
    reference.SetOrigin([o + d * s for o, d, s in zip(image.GetOrigin(), shift, image.GetSpacing())])
    low = float(sitk.GetArrayViewFromImage(image).min())
    return sitk.Resample(image, reference, sitk.Transform(), sitk.sitkLinear, low, sitk.sitkFloat32)


def make_cohort(folder, cases=("lung1", "lung2", "brain1", "breast1")):
    """Write the stand-in NC / ART / PV cohort of `cases` into `folder`; returns it."""
    folder = pathlib.Path(folder)
    lines = ["case_id,patient_id,lesion_type"]
    for case in cases:
        source, lesion_type = CASES[case]
        out = folder / case
        out.mkdir(parents=True)
        shutil.copy(ROOT / "SampleData" / source / case / "labels.nrrd", out / "labels.nrrd")
        image = sitk.ReadImage(str(ROOT / "SampleData" / source / case / "image.nrrd"))
        sitk.WriteImage(image, str(out / "NC.nrrd"))
        sitk.WriteImage(_resampled(image, (1.25, 1.25, 1.0), (0.5, 0.5, 0.0)), str(out / "ART.nrrd"))
        sitk.WriteImage(_resampled(image, (0.8, 0.8, 1.0), (-0.25, 0.25, 0.0)), str(out / "PV.nrrd"))
        lines.append(f"{case},patient-{case},{lesion_type}")
    (folder / "cases.csv").write_text("\n".join(lines) + "\n")
    return folder
