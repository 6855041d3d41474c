"""Bad-input catalogue (GitHub issue 7): every public entry point refuses bad input clearly.

Each case feeds one bad input (built from the bundled real data by Testing/helpers/bad_inputs.py
and Testing/helpers/dicom_series.py) through a public entry point and asserts an HCCInputError
(or `hcc` exit code 2, message on stderr) that names the file / node / phase AND the problem,
with every input byte-identical, no output written and (Slicer) the scene's nodes unchanged.

case                                     -> entry point                -> expected message
images (test_bad_inputs_images.py)
truncated NRRD pixel data                -> read_image                 -> "<file>: pixel data could not be read (corrupt or truncated?)"
NRRD header cut short                    -> read_image                 -> "<file>: could not be read as an image (corrupt or truncated?)"
noise over the NRRD header               -> read_image                 -> "<file>: could not be read as an image"
.txt file as image                       -> read_image                 -> "<file>: is not a NRRD, NIfTI, MHA or DICOM-folder image"
missing image file                       -> read_image                 -> "<file>: does not exist"
truncated phase in a case folder         -> hcc predict                -> exit 2, "<case>/image.nrrd ... corrupt or truncated", no TSV
4D image                                 -> read_image                 -> "<file>: is a 4D image (45x102x7x3); a 3D volume is needed"
2D image                                 -> read_image                 -> "<file>: is a 2D image (45x102)"
RGB vector image                         -> read_image                 -> "<file>: has 3 components per voxel"
NaN voxels                               -> read_image                 -> "<file>: has 3 NaN or infinite voxels"
inf voxels                               -> read_image                 -> "<file>: has 2 NaN or infinite voxels"
4D NIfTI phase in a case folder          -> load_case                  -> "dynamic.nii.gz: is a 4D image"
huge MetaImage header, no data file      -> read_image                 -> "big.mhd: is 512x512x400 voxels (0.4 GiB ...), more than the 0.1 GiB limit"
huge NRRD header over 10 data bytes      -> read_image                 -> "big.nrrd: ... more than the 0.1 GiB limit"
huge header-only NRRD, no data file      -> read_image                 -> "big.nrrd: ... more than the 0.1 GiB limit"
DICOM folder holding two series          -> read_image                 -> "<folder>: holds 2 DICOM series ... one phase folder must hold one series"
DICOM series with a stray slice 250 mm   -> read_image                 -> "<folder>: DICOM slices are unevenly spaced (typical gap 2.10 mm, one gap 252.10 mm)"
mixed DICOM phase in a case folder       -> hcc predict                -> exit 2, "<case>/T2 ... holds 2 DICOM series", no TSV
empty phase folder                       -> load_case                  -> "portal: holds no DICOM series"
empty mask                               -> load_case                  -> "labels.nrrd: has no voxel with the lesion label 2"
mask with label 3                        -> load_case                  -> "labels.nrrd: has unexpected label values [3]"
lesion of one voxel                      -> load_case                  -> "labels.nrrd: lesion 'lesion 1' has only 1 voxel(s)"
non-integer label map                    -> load_case                  -> "labels.nrrd: is not a label map"
mask outside the image                   -> load_case                  -> "image.nrrd: phase 'image' does not overlap the lesion"
phase 500 mm away from the others        -> load_case                  -> "portal.nrrd: phase 'portal' does not overlap the lesion"
phase covering part of the lesion        -> load_case                  -> "portal.nrrd: phase 'portal' covers only part of the lesion's bounding box"
no segmentation in the case folder       -> load_case                  -> "<case>: has no segmentation"
two segmentations                        -> load_case                  -> "<case>: has several segmentations"
requested phase missing                  -> load_case                  -> "<case>: has no phase ['portal']"
cohorts, workflows, clinical values (this file)
duplicate case ids                       -> load_cohort                -> "cases.csv: case_id 'breast1' appears more than once (line 3)"
case folder missing                      -> load_cohort                -> "cases.csv: case 'lung9' (line 4) has no folder lung9/"
no case_id column                        -> load_cohort                -> "cases.csv: lacks the column(s) ['case_id']"
no patient_id column                     -> hcc train                  -> exit 2, "cases.csv: lacks the column(s) ['patient_id']", no package
empty patient_id                         -> load_cohort                -> "cases.csv: line 2 has an empty case_id or patient_id"
no cases.csv                             -> load_cohort                -> "<folder>: has no cases.csv"
cases.csv without rows                   -> load_cohort                -> "cases.csv: lists no case"
cases.csv not UTF-8                      -> load_cohort                -> "cases.csv: is not UTF-8 text"
cases.csv with a column twice            -> load_cohort                -> "cases.csv: column 'modality' appears twice"
case_id that is a path (../x)            -> load_cohort                -> "cases.csv: case_id '../...' is not a plain folder name"
unknown task                             -> hcc train                  -> exit 2, "unknown task 'nope' (known tasks: ...)", no package
2 phases for a 3-channel task            -> hcc train                  -> exit 2, "task ... takes 1 or 3 phases, got 2 (image, portal)"
a repeated phase                         -> hcc train                  -> exit 2, "phase list ['image', 'image', 'image'] repeats a phase"
CUDA requested, none present             -> hcc train / hcc predict    -> exit 2, "CUDA was requested but no CUDA GPU is usable"
existing package, no --overwrite         -> hcc train                  -> exit 2, "<out>: already holds a model package", files unchanged
more folds than patients                 -> hcc evaluate               -> exit 2, "5 folds asked for 2 patients", no evaluation folder
more folds than patients, checked late   -> hcc evaluate               -> same message before any case is loaded
label column absent for the task         -> hcc train                  -> exit 2, "<case>: label '' in column 'differentiation' is not one of"
truncated image inside a cohort          -> hcc train                  -> exit 2, "<cohort>/lung1/image.nrrd: pixel data could not be read", no package
--epochs 0                               -> hcc train                  -> exit 2, "--epochs ... must be at least 1" before training
unknown device name                      -> hcc predict                -> exit 2, "unknown device 'tpu'"
--out-file that is a folder              -> hcc predict                -> exit 2, "<out>: is a folder" before the model runs
clinical column missing                  -> ClinicalSchema.encode      -> "<source>: ... missing column(s) afp"
clinical value out of range              -> ClinicalSchema.encode      -> "age: 250 years is outside the plausible range 0-120 years"
clinical value not a number              -> ClinicalSchema.encode      -> "age: 'sixty' is not a number"
clinical category unknown                -> ClinicalSchema.encode      -> "bclc_stage: 'E' is not an allowed value (allowed: 0, A, B, C)"
clinical value in a wrong unit           -> ClinicalSchema.encode      -> "afp: unit 'g' is not accepted"
clinical value with a decimal comma      -> ClinicalSchema.encode      -> "nl_ratio: '3,1' uses a decimal comma"
extra, conflicting clinical value        -> ClinicalSchema.encode      -> "total_bilirubin: given twice (total_bilirubin, tb) with different values"
model packages, pretrained weights, prediction (test_bad_inputs_models.py)
weight file changed by one bit           -> load_model / hcc predict   -> "model.safetensors: SHA-256 ... does not match the card's"
card field missing                       -> load_model                 -> "model.json: lacks the field(s) ['net_kwargs']"
card not JSON                            -> load_model                 -> "model.json: is not valid JSON"
weights of the wrong shapes, right hash  -> load_model                 -> "model.safetensors: weights do not fit network 'resnet20_spp' ... size mismatch"
weights not safetensors, right hash      -> load_model                 -> "model.safetensors: could not be read as safetensors"
no model.json                            -> load_model                 -> "<folder>: is not a model package (no model.json)"
weights file missing                     -> load_model                 -> "model.safetensors: weights file is missing"
model of another task                    -> load_model(expected_task)  -> "<package>: is a model for task 'jia2019-hcc-vs-background', not 'jia2019-differentiation'"
card classes differ from the task        -> load_model                 -> "model.json: classes ['a', 'b'] differ from task"
card names an unknown task / network     -> load_model                 -> "model.json: unknown task 'nope'" / "unknown network 'nonet'"
card with net arguments the net lacks    -> load_model                 -> "model.json: net_kwargs ... 'bogus'"
card with 2 phases for a 3-channel task  -> load_model                 -> "model.json: task ... takes 1 or 3 phases, got 2"
2 phases for a 3-channel task            -> predict_case               -> "<case>: task ... takes 1 or 3 phases, got 2"
phases differ from the model's           -> predict_case               -> "<package>: phases ['T2'] differ from the ['image'] the model was trained on"
constant image                           -> predict_case               -> "<case>: phase 'image': is constant"
no liver label, background-ROI task      -> predict_case               -> "<case>: has no liver label"
CUDA requested, none present             -> load_model                 -> "CUDA was requested but no CUDA GPU is usable"
pickle that would run code               -> load_jia2019_file          -> "<file>: not a plain PyTorch state dict (refused by the weights-only loader"; marker never made
pickle that would run code               -> hcc train --pretrained     -> exit 2, same message, marker never made, no package
pickle of plain Python objects           -> resolve_pretrained         -> "<file>: not a plain PyTorch state dict"
list of tensors                          -> load_jia2019_file          -> "<file>: expected a state dict ..., got list"
state dict with other keys               -> load_jia2019_file          -> "<file>: not a Jia 2019 ResNet20 state dict: missing"
truncated .pkl                           -> load_jia2019_file          -> "<file>: not a plain PyTorch state dict ... unexpected EOF"
text file named .pkl                     -> load_jia2019_file          -> "<file>: not a plain PyTorch state dict"
unknown pretrained name / missing file   -> resolve_pretrained         -> "imagenet: pretrained weights file does not exist (give a file or one of: jia2019-cifar, none)"
bundled weights altered                  -> resolve_pretrained         -> "<file>: SHA-256 ... differs from the recorded"
Jia state dict of wrong tensor shapes    -> from_jia2019               -> "<file>: ... does not fit ResNet20 ... size mismatch"
MRML nodes (test_bad_inputs_slicer.py)
label map node as phase                  -> case_from_nodes            -> "vtkMRMLLabelMapVolumeNode '...': phase 'image' is not a scalar (grey-value) volume node"
segmentation node as phase               -> case_from_nodes            -> "vtkMRMLSegmentationNode '...': phase 'image' is not a scalar ..."
NaN voxel in a volume node               -> case_from_nodes            -> "vtkMRMLScalarVolumeNode 'nan': has 1 NaN or infinite voxels"
no phase given                           -> case_from_nodes            -> "volume_nodes: no phase volume given"
phase node 500 mm away                   -> case_from_nodes            -> "vtkMRMLScalarVolumeNode 'far': phase 'image' does not overlap the lesion"
unknown segment ID                       -> case_from_nodes            -> "vtkMRMLSegmentationNode '...': has no segment with ID ['nope']"
liver segment chosen as lesion           -> case_from_nodes            -> "segment(s) ['liver'] are the liver, not lesions"
segmentation without reference geometry  -> case_from_nodes            -> "has no reference geometry, so its label grid is unknown"
empty lesion segment                     -> case_from_nodes            -> "lesion 'lesion empty' is empty"
volume node without image data           -> case_from_nodes            -> "vtkMRMLScalarVolumeNode 'nodata': has no image data"
segmentation not in a scene              -> case_from_nodes            -> "is not in an MRML scene"
only a liver segment                     -> case_from_nodes            -> "has no lesion segment"
lesion segment of one voxel              -> case_from_nodes            -> "lesion 'lesion 1' has only 1 voxel(s)"
phase under a non-linear transform       -> case_from_nodes            -> "vtkMRMLScalarVolumeNode 'image': is under a non-linear transform"
no liver segment, background-ROI task    -> case_from_nodes + predict_case -> "vtkMRMLSegmentationNode '...': has no liver label"
constant volume node                     -> case_from_nodes + predict_case -> "phase 'image': is constant"
input sanity against the model card (Testing/data/test_intensity_profile.py)
MR DICOM series under a CT model's phase -> hcc predict                -> exit 2, "<case>: ... modality MR, the model was trained on CT ... --allow-unusual-input", no TSV
"""

import pytest

from helpers import bad_inputs as bad
from HCCAnalysisLib.clinical.schemas import WANG2020_SCHEMA
from HCCAnalysisLib.data.cohort import load_cohort

OK_ROWS = ["breast1,p1,MR", "lung1,p2,CT"]


refused = bad.refused  # expect HCCInputError naming every part, nothing changed


cli_refused = bad.cli_refused  # `hcc ARGV` exits 2 naming every part, nothing written


@pytest.fixture
def cohort(tmp_path):
    return bad.cohort_copy(tmp_path / "cohort", OK_ROWS)


# ---------------------------------------------------------------- cases.csv -------------------------

@pytest.mark.parametrize("rows, header, parts", [
    (["breast1,p1,MR", "breast1,p2,MR"], None, ["case_id 'breast1' appears more than once (line 3)"]),
    (OK_ROWS + ["lung9,p3,CT"], None, ["case 'lung9' (line 4) has no folder lung9/"]),
    (["p1,MR", "p2,CT"], "patient_id,modality", ["lacks the column(s) ['case_id']", "columns found"]),
    (["breast1,,MR", "lung1,p2,CT"], None, ["line 2 has an empty case_id or patient_id"]),
    ([], None, ["lists no case"]),
    (["breast1;p1;MR"], "case_id;patient_id;modality", ["lacks the column(s) ['case_id', 'patient_id']"]),
], ids=["duplicate-ids", "case-folder-missing", "no-case_id-column", "empty-patient_id", "no-rows",
        "semicolon-separated"])
def test_bad_cases_csv(tmp_path, rows, header, parts):
    folder = bad.cohort_copy(tmp_path / "cohort", rows, **({"header": header} if header else {}))
    refused(lambda: load_cohort(folder), str(folder / "cases.csv") + ":", *parts, inputs=[folder])


def test_no_cases_csv(tmp_path, cohort):
    (cohort / "cases.csv").unlink()
    refused(lambda: load_cohort(cohort), f"{cohort}:", "has no cases.csv", inputs=[cohort])


def test_missing_patient_id_column_through_cli(tmp_path, capsys):
    folder = bad.cohort_copy(tmp_path / "cohort", ["breast1,MR", "lung1,CT"], header="case_id,modality")
    out = tmp_path / "model"
    cli_refused(["train", "--task", bad.TASK, "--cohort", folder, "--phases", "image", "--out", out], capsys,
                str(folder / "cases.csv"), "lacks the column(s) ['patient_id']", inputs=[folder], absent=[out])


def test_cases_csv_not_utf8(tmp_path, cohort):
    (cohort / "cases.csv").write_bytes("case_id,patient_id,note\nbreast1,p1,\xe9t\xe9\n".encode("latin-1"))
    refused(lambda: load_cohort(cohort), "cases.csv:", "UTF-8", inputs=[cohort])


def test_cases_csv_with_a_column_twice(tmp_path):
    folder = bad.cohort_copy(tmp_path / "cohort", ["breast1,p1,MR,CT", "lung1,p2,CT,CT"],
                             header="case_id,patient_id,modality,modality")
    refused(lambda: load_cohort(folder), "cases.csv:", "modality", "twice", inputs=[folder])


def test_case_id_that_is_a_path(tmp_path, cohort):
    (cohort / "cases.csv").write_text("case_id,patient_id\n../cohort/breast1,p1\n")
    refused(lambda: load_cohort(cohort), "cases.csv:", "../cohort/breast1", inputs=[cohort])


# ---------------------------------------------------------------- hcc train / evaluate / predict ----

@pytest.mark.parametrize("extra, parts", [
    (["--task", "nope", "--phases", "image"], ["unknown task 'nope'", "known tasks: jia2019-differentiation"]),
    (["--task", bad.TASK, "--phases", "image,portal"],
     [f"task {bad.TASK} takes 1 or 3 phases, got 2 (image, portal)"]),
    (["--task", bad.TASK, "--phases", "image,image,image"], ["phase list ['image', 'image', 'image'] repeats a phase"]),
], ids=["unknown-task", "two-phases-for-three-channels", "repeated-phase"])
def test_cli_train_refuses_task_and_phases(tmp_path, cohort, capsys, extra, parts):
    out = tmp_path / "model"
    cli_refused(["train", "--cohort", cohort, "--out", out, *extra], capsys, *parts, inputs=[cohort], absent=[out])


@pytest.mark.parametrize("command", ["train", "predict"])
def test_cuda_requested_where_none_exists(tmp_path, cohort, capsys, command):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    out = tmp_path / ("model" if command == "train" else "results.tsv")
    if command == "train":
        argv = ["train", "--task", bad.TASK, "--cohort", cohort, "--phases", "image", "--out", out]
    else:
        argv = ["predict", "--model", bad.build_package(tmp_path / "pkg"), "--case", cohort / "breast1",
                "--out-file", out]
    cli_refused(argv + ["--device", "cuda"], capsys, "CUDA was requested but no CUDA GPU is usable",
                "choose auto or cpu", inputs=[cohort], absent=[out])


def test_existing_model_folder_without_overwrite(tmp_path, cohort, capsys):
    out = bad.build_package(tmp_path / "model")
    cli_refused(["train", "--task", bad.TASK, "--cohort", cohort, "--phases", "image", "--out", out], capsys,
                f"{out}:", "already holds a model package", "--overwrite", inputs=[cohort, out])


def test_more_folds_than_patients(tmp_path, cohort, capsys):
    out = tmp_path / "evaluation"
    cli_refused(["evaluate", "--task", bad.TASK, "--cohort", cohort, "--phases", "image", "--folds", "5", "--epochs",
                 "1", "--out", out], capsys, "5 folds asked for 2 patients", "2 <= folds <= patients",
                inputs=[cohort], absent=[out])


def test_folds_checked_before_cases_are_loaded(tmp_path, cohort, capsys, monkeypatch):
    import HCCAnalysisLib.engine.evaluate as evaluate

    def no_loading(*args, **kwargs):
        raise AssertionError("cases were loaded although the fold count was impossible")

    monkeypatch.setattr(evaluate, "load_samples", no_loading)
    out = tmp_path / "evaluation"
    cli_refused(["evaluate", "--task", bad.TASK, "--cohort", cohort, "--phases", "image", "--folds", "5", "--out", out],
                capsys, "5 folds asked for 2 patients", inputs=[cohort], absent=[out])


def test_label_column_missing_for_the_task(tmp_path, cohort, capsys):
    out = tmp_path / "model"
    cli_refused(["train", "--task", bad.DIFF_TASK, "--cohort", cohort, "--phases", "image", "--out", out], capsys,
                f"{cohort / 'breast1'}:", "label '' in column 'differentiation' is not one of",
                "'poorly', 'moderately', 'well'", inputs=[cohort], absent=[out])


def test_truncated_image_inside_a_cohort(tmp_path, cohort, capsys):
    bad.truncated_copy(bad.COHORT / "lung1" / "image.nrrd", cohort / "lung1" / "image.nrrd")
    out = tmp_path / "model"
    cli_refused(["train", "--task", bad.TASK, "--cohort", cohort, "--phases", "image", "--epochs", "1", "--out", out],
                capsys, str(cohort / "lung1" / "image.nrrd") + ":", "pixel data could not be read",
                inputs=[cohort], absent=[out])


@pytest.mark.parametrize("epochs", ["0", "-1"])
def test_epochs_must_be_positive(tmp_path, cohort, capsys, monkeypatch, epochs):
    import HCCAnalysisLib.engine.evaluate as evaluate

    def no_training(*args, **kwargs):
        raise AssertionError("training started although --epochs was not a positive number")

    monkeypatch.setattr(evaluate, "load_samples", no_training)  # where train_model takes it from, on use
    out = tmp_path / "model"
    cli_refused(["train", "--task", bad.TASK, "--cohort", cohort, "--phases", "image", "--epochs", epochs,
                 "--out", out], capsys, "epochs", inputs=[cohort], absent=[out])


def test_unknown_device_name(tmp_path, cohort, capsys):
    out = tmp_path / "results.tsv"
    cli_refused(["predict", "--model", bad.build_package(tmp_path / "pkg"), "--case", cohort / "breast1",
                 "--device", "tpu", "--out-file", out], capsys, "unknown device 'tpu'", inputs=[cohort], absent=[out])


def test_predict_out_file_is_a_folder(tmp_path, cohort, capsys):
    out = tmp_path / "results"
    out.mkdir()
    cli_refused(["predict", "--model", bad.build_package(tmp_path / "pkg"), "--case", cohort / "breast1",
                 "--out-file", out], capsys, str(out), "folder", inputs=[cohort, out])


# ---------------------------------------------------------------- clinical values -------------------

WANG_OK = {"age": "65", "tumour_size": "6 cm", "portal_vein_invasion": "no", "nl_ratio": "3.1",
           "total_bilirubin": "15", "afp": "200", "bclc_stage": "B"}


def test_complete_clinical_record_is_accepted():
    """Control: the record the bad cases below start from is valid."""
    assert WANG2020_SCHEMA.encode(WANG_OK).tolist() == [1, 1, 0, 1, 0, 1, 0, 1, 0]


@pytest.mark.parametrize("change, parts", [
    ({"afp": None}, ["missing column(s) afp"]),
    ({"age": "250"}, ["age: 250 years is outside the plausible range 0-120 years"]),
    ({"age": "sixty"}, ["age: 'sixty' is not a number"]),
    ({"bclc_stage": "E"}, ["bclc_stage: 'E' is not an allowed value (allowed: 0, A, B, C)"]),
    ({"afp": "200 g"}, ["afp: unit 'g' is not accepted"]),
    ({"nl_ratio": "3,1"}, ["nl_ratio: '3,1' uses a decimal comma"]),
    ({"age": "sixty", "afp": "-3"}, ["age: 'sixty' is not a number", "afp: -3 ug/L is outside"]),
], ids=["missing", "out-of-range", "non-numeric", "unknown-category", "wrong-unit", "decimal-comma",
        "two-problems-at-once"])
def test_bad_clinical_values(change, parts):
    record = {k: v for k, v in dict(WANG_OK, **change).items() if v is not None}
    refused(lambda: WANG2020_SCHEMA.encode(record, source="cases.csv line 3"), "cases.csv line 3:",
            "clinical data for schema 'wang2020' is invalid", *parts)


def test_extra_conflicting_clinical_value():
    refused(lambda: WANG2020_SCHEMA.encode(dict(WANG_OK, tb="40"), source="cases.csv line 3"), "cases.csv line 3:",
            "total_bilirubin", "tb")
