"""A small cohort for the Zhen 2020 / Wang 2020 task tests, built in a temporary folder from
the bundled real tumours (HCCAnalysisLib/sample_data/demo-cohort: CT lung, MR brain and breast, pyradiomics
test data).

What is real and what stands in:
- Images and tumour masks are real. The *phases / sequences are stand-ins*: no public data set
  has multi-phase liver CT or multi-sequence liver MRI with clinical data that we may ship. The
  first phase of a case is its real image as it is; every other phase is the same real image
  resampled (linear, SimpleITK) onto another grid: other voxel spacings and an origin shifted
  by a fraction of a voxel, so that a sampler that reads phases by voxel index instead of
  through physical coordinates gets misaligned channels.
- Labels (`early_recurrence`, `malignant_type`, ...) are assigned to the cases arbitrarily:
  stand-ins, balanced so that stratified 2-fold CV works.
- Clinical columns come from real rows of the asaur `hepatoCellular` table (Li et al. 2014,
  Testing/reference/asaur_hepatoCellular.csv), paired with the cases arbitrarily (row i ->
  case i), as far as the table has them: Age (exact), Vascularinvasion (-> portal vein
  invasion, proxy), Gender, Cirrhosis, HBsAg. Values the table does not have are stand-ins,
  listed in `STANDIN_WANG` / `STANDIN_ZHEN`, chosen to exercise the schemas' units (mm,
  mg/dL, ug/L). Wang's tumour size is the real tumour's largest in-plane extent from its mask.
- `largest_slice_only=True` keeps the lesion label on the tumour's largest axial slice only
  (the rest of the tumour becomes "liver"): one annotated slice per case, which keeps the
  CPU cost of ResNet-50 at 224 x 224 within the test budget.
"""

import csv
from pathlib import Path

import numpy as np
import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "HCCAnalysisLib" / "sample_data" / "demo-cohort"
HELDOUT = REPO / "HCCAnalysisLib" / "sample_data" / "demo-heldout"
ASAUR = REPO / "Testing" / "reference" / "asaur_hepatoCellular.csv"

# The stand-in grids of the 2nd, 3rd, ... phase: (spacing factors x, y, z; origin shift in voxels)
GEOMETRIES = (
    ((1.0, 1.0, 1.0), (0.0, 0.0, 0.0)),
    ((1.25, 1.25, 1.0), (0.4, -0.3, 0.0)),
    ((0.8, 0.9, 0.5), (-0.25, 0.35, 0.25)),
    ((1.1, 1.1, 1.0), (0.3, 0.2, 0.0)),
    ((0.9, 1.2, 0.5), (-0.4, 0.1, 0.25)),
    ((1.3, 1.0, 1.0), (0.15, -0.45, 0.0)),
)

# Values the asaur table does not give (stand-ins), per case index (cycled).
STANDIN_WANG = (
    {"nl_ratio": "2.1", "total_bilirubin": "12 umol/L", "bclc_stage": "A"},
    {"nl_ratio": "3.4", "total_bilirubin": "1.6 mg/dL", "bclc_stage": "B"},
    {"nl_ratio": "1.7", "total_bilirubin": "25", "bclc_stage": "0"},
    {"nl_ratio": "4.2", "total_bilirubin": "0.8 mg/dL", "bclc_stage": "C"},
)
STANDIN_ZHEN = (
    {"other_cancer": "no", "cea": "2.1", "ca125": "12", "ca199": "20", "ferritin": "180", "albumin": "41",
     "total_bilirubin": "14", "prolonged_pt": "no", "hepatic_encephalopathy": "none", "ascites": "none"},
    {"other_cancer": "yes", "cea": "8.4 ug/L", "ca125": "60", "ca199": "95", "ferritin": "420", "albumin": "3.2 g/dL",
     "total_bilirubin": "1.6 mg/dL", "prolonged_pt": "yes", "hepatic_encephalopathy": "grade1-2", "ascites": "mild"},
)
# asaur AFP is a two-level code with an undocumented cut-off: stand-in numbers on either side
# of both schemas' thresholds (Wang 9 ug/L; Zhen 20 and 400 ng/mL).
AFP_STANDIN = {1: "5", 2: "450 ng/mL"}


def asaur_rows(count):
    """The first `count` asaur rows with Age, Gender, Cirrhosis, HBsAg, AFP, Vascularinvasion."""
    needed = ("Age", "Gender", "Cirrhosis", "HBsAg", "AFP", "Vascularinvasion")
    with open(ASAUR, newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if all(r.get(c, "").strip() for c in needed)]
    return rows[:count]


def wang_clinical(row, index, tumour_mm):
    """Wang 2020 schema columns (raw strings) for one case."""
    fields = {"age": row["Age"], "tumour_size": f"{tumour_mm:.0f} mm",
              "portal_vein_invasion": "yes" if int(float(row["Vascularinvasion"])) == 1 else "no",
              "afp": AFP_STANDIN[int(float(row["AFP"]))]}
    fields.update(STANDIN_WANG[index % len(STANDIN_WANG)])
    return fields


def zhen_clinical(row, index):
    """Zhen 2020 schema columns (raw strings) for one case (asaur Gender 1 read as male)."""
    male = int(float(row["Gender"])) == 1
    fields = {"age": row["Age"], "gender": "male" if male else "female",
              "cirrhosis_history": "yes" if int(float(row["Cirrhosis"])) or int(float(row["HBsAg"])) else "no",
              "afp": AFP_STANDIN[int(float(row["AFP"]))], "psa": "1.2" if male else ""}
    fields.update(STANDIN_ZHEN[index % len(STANDIN_ZHEN)])
    return fields


def resampled_copy(image, factors, shift_voxels):
    """The real image resampled (linear) onto a grid with other spacing and origin, same extent."""
    spacing = np.array(image.GetSpacing()) * np.array(factors)
    size = np.ceil(np.array(image.GetSize()) * np.array(image.GetSpacing()) / spacing).astype(int)
    direction = np.array(image.GetDirection()).reshape(3, 3)
    origin = np.array(image.GetOrigin()) + direction @ (np.array(shift_voxels) * np.array(image.GetSpacing()))
    reference = sitk.Image([int(s) for s in size], sitk.sitkFloat32)
    reference.SetSpacing(tuple(spacing))
    reference.SetOrigin(tuple(origin))
    reference.SetDirection(image.GetDirection())
    minimum = float(sitk.GetArrayViewFromImage(image).min())
    return sitk.Resample(sitk.Cast(image, sitk.sitkFloat32), reference, sitk.Transform(), sitk.sitkLinear, minimum,
                         sitk.sitkFloat32)


def largest_slice_labels(labels):
    """Lesion label (2) kept on the largest lesion slice only; the rest of the tumour -> 1."""
    array = sitk.GetArrayFromImage(labels)
    lesion = array == 2
    z = int(np.argmax(lesion.reshape(lesion.shape[0], -1).sum(axis=1)))
    out = array.copy()
    out[lesion] = 1
    out[z][lesion[z]] = 2
    image = sitk.GetImageFromArray(out)
    image.CopyInformation(labels)
    return image


def tumour_extent_mm(labels):
    """Largest in-plane extent of the real tumour (label 2), in mm."""
    zyx = np.argwhere(sitk.GetArrayViewFromImage(labels) == 2)
    extent = (zyx.max(axis=0) - zyx.min(axis=0) + 1)[1:] * np.array(labels.GetSpacing()[1::-1])
    return float(extent.max())


def write_case(source_dir, out_dir, phases, largest_slice_only=False):
    """One case folder: the real image as phases[0], resampled copies as the others, labels."""
    out_dir.mkdir(parents=True, exist_ok=True)
    image = sitk.ReadImage(str(source_dir / "image.nrrd"))
    labels = sitk.ReadImage(str(source_dir / "labels.nrrd"))
    for phase, (factors, shift) in zip(phases, GEOMETRIES):
        copy = image if factors == (1.0, 1.0, 1.0) and shift == (0.0, 0.0, 0.0) else \
            resampled_copy(image, factors, shift)
        sitk.WriteImage(copy, str(out_dir / f"{phase}.nrrd"), True)
    sitk.WriteImage(largest_slice_labels(labels) if largest_slice_only else labels, str(out_dir / "labels.nrrd"),
                    True)
    return tumour_extent_mm(labels)


def write_cohort(root, phases, cases, labels, clinical, largest_slice_only=False):
    """cases.csv + case folders; `labels`: one dict of label columns per case;
    `clinical(row, index, tumour_mm) -> dict` gives the clinical columns."""
    root = Path(root)
    rows = asaur_rows(len(cases))
    table = []
    for index, (name, label) in enumerate(zip(cases, labels)):
        source = DEMO / name if (DEMO / name).is_dir() else HELDOUT / name
        tumour_mm = write_case(source, root / name, phases, largest_slice_only)
        table.append({"case_id": name, "patient_id": f"patient-{name}", **label,
                      **clinical(rows[index], index, tumour_mm)})
    columns = list(dict.fromkeys(k for row in table for k in row))
    with open(root / "cases.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(table)
    return root


WANG_PHASES = ("nc", "art", "pv")
WANG_CASES = ("lung1", "breast1", "brain1", "lung2")
WANG_LABELS = ("ER", "non_ER", "ER", "non_ER")


def wang_cohort(root, largest_slice_only=True):
    """Wang 2020 cohort: nc = real image, art / pv = resampled copies; 4 patients, 2 ER + 2 non-ER."""
    return write_cohort(root, WANG_PHASES, WANG_CASES, [{"early_recurrence": v} for v in WANG_LABELS],
                        wang_clinical, largest_slice_only)


def wang_heldout(root, largest_slice_only=True):
    """The held-out real case (demo-heldout/brain2) as a Wang cohort of one: its folder and fields."""
    write_cohort(root, WANG_PHASES, ("brain2",), [{"early_recurrence": "ER"}], wang_clinical, largest_slice_only)
    return Path(root) / "brain2"


ZHEN_PHASES = ("t2", "dwi", "t1_pre", "arterial", "portal", "equilibrium")
ZHEN_CASES = ("lung1", "breast1", "lung2")
ZHEN_LABELS = (
    {"diagnosis": "hcc", "malignancy": "malignant", "malignant_type": "hcc"},
    {"diagnosis": "hemangioma", "malignancy": "benign", "malignant_type": "metastasis"},
    {"diagnosis": "metastasis", "malignancy": "malignant", "malignant_type": "other_primary_malignancy"},
)


def zhen_cohort(root, cases=ZHEN_CASES):
    """Zhen 2020 cohort: t2 = real image, the other five sequences resampled copies; every
    Zhen label column (diagnosis, malignancy, malignant_type) and the zhen2020 clinical columns."""
    labels = [ZHEN_LABELS[ZHEN_CASES.index(c)] for c in cases]
    return write_cohort(root, ZHEN_PHASES, cases, labels, lambda row, index, _mm: zhen_clinical(row, index))
