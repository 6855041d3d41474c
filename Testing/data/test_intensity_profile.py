"""Input sanity against the model card (issue 13): training records per phase the intensity
percentiles and modality of its cases (model.json `input_profile`); prediction warns, or refuses
unless --allow-unusual-input, when a case lies far outside them, with the reason in the table.

Real files only: a model trained for one epoch on the two real CT cases of the bundled demo
cohort (lung1, lung2); the real MR cases of the same cohort (brain1, breast1) put under its CT
phase's name, as a NRRD and as an MR DICOM series (Testing/helpers/dicom_series.py).
"""

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from helpers import bad_inputs as bad
from helpers.dicom_series import write_series
from HCCAnalysisLib.batch import run_cohort
from HCCAnalysisLib.data.case import load_case
from HCCAnalysisLib.data.intensity_profile import (PROFILE_KEY, case_percentiles, check_profile, compare_phase)
from HCCAnalysisLib.data.prediction import read_tsv
from HCCAnalysisLib.errors import HCCInputError
from HCCAnalysisLib.workflows import predict_folder, train_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")
ROOT = Path(__file__).resolve().parents[2]
CT_CASES = ("lung1", "lung2")


@pytest.fixture(scope="module")
def ct_model(tmp_path_factory):
    """A model package trained (1 epoch, random start) on the real CT cases, modality CT in cases.csv."""
    base = tmp_path_factory.mktemp("ct")
    cohort = bad.cohort_copy(base / "cohort", [f"{c},p-{c},CT" for c in CT_CASES], cases=CT_CASES)
    train_model(bad.TASK, cohort, base / "model", phases=["image"], pretrained="none", epochs=1, device="cpu",
                cache=None, log=lambda *a, **k: None)
    return base / "model"


def _card(model_dir):
    return json.loads((Path(model_dir) / "model.json").read_text())


def _mr_dicom_case(folder):
    """brain1 (real MR) as a DICOM series under the CT phase's name `image/` (Modality MR), with its labels."""
    folder = Path(folder)
    folder.mkdir(parents=True)
    write_series(sitk.ReadImage(str(bad.COHORT / "brain1" / "image.nrrd")), folder / "image")
    shutil.copy(bad.COHORT / "brain1" / "labels.nrrd", folder / "labels.nrrd")
    return folder


def test_training_records_each_phases_percentiles_and_modality(ct_model):
    profile = _card(ct_model)[PROFILE_KEY]
    entry = profile["phases"]["image"]
    assert entry["n_cases"] == 2 and entry["modalities"] == ["CT"]
    # computed here independently: the image's voxels under labels > 0 (both files share one grid)
    medians = []
    for case in CT_CASES:
        image = sitk.GetArrayFromImage(sitk.ReadImage(str(bad.COHORT / case / "image.nrrd")))
        labels = sitk.GetArrayFromImage(sitk.ReadImage(str(bad.COHORT / case / "labels.nrrd")))
        medians.append(float(np.percentile(image[labels > 0], 50)))
    assert entry["p50"]["min"] == pytest.approx(min(medians), abs=1e-3)
    assert entry["p50"]["max"] == pytest.approx(max(medians), abs=1e-3)
    assert entry["p5"]["min"] < entry["p50"]["min"] and entry["p95"]["max"] > entry["p50"]["max"]


def test_a_real_ct_case_passes_unflagged(ct_model, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        prediction = predict_folder(ct_model, bad.COHORT / "lung2", tmp_path / "r.tsv", device="cpu")
    assert all(not row.extras.get("warnings") for row in prediction.rows)
    assert "unusual input" not in caplog.text


def test_mr_volume_under_the_ct_phase_is_warned_in_the_table(ct_model, tmp_path, caplog):
    """No modality is known for a NRRD without cases.csv: the intensities alone flag it."""
    case = bad.copy_case(tmp_path / "brain1", "brain1")
    out = tmp_path / "r.tsv"
    with caplog.at_level(logging.WARNING):
        predict_folder(ct_model, case, out, device="cpu")
    rows = read_tsv(out)
    assert rows and all("phase image: p5" in row["warnings"] and "lies far above the training cases'" in row["warnings"]
                        for row in rows), rows
    assert "unusual input: phase image" in caplog.text


def test_mr_dicom_series_is_refused_and_the_flag_turns_it_into_a_warning(ct_model, tmp_path, capsys):
    case = _mr_dicom_case(tmp_path / "brain1")
    refused_out = tmp_path / "refused"
    err = bad.cli_refused(["predict", "--model", ct_model, "--case", case, "--out", refused_out, "--device", "cpu"],
                          capsys, "modality MR, the model was trained on CT", "--allow-unusual-input",
                          inputs=[case, ct_model], absent=[refused_out / "results.tsv"])
    assert str(case) in err
    # the real command line, in its own process, with the override
    out = tmp_path / "allowed"
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "HCCAnalysisLib.cli", "predict", "--model", str(ct_model),
                           "--case", str(case), "--out", str(out), "--device", "cpu", "--allow-unusual-input"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = read_tsv(out / "results.tsv")
    assert rows and all("modality MR, the model was trained on CT" in r["warnings"]
                        and "(allowed by --allow-unusual-input)" in r["warnings"] for r in rows), rows
    assert "unusual input" in proc.stderr


def test_batch_sends_a_refused_case_to_errors_and_goes_on(ct_model, tmp_path):
    cohort = bad.cohort_copy(tmp_path / "cohort", ["lung1,p1,CT", "brain1,p2,MR"], cases=("lung1", "brain1"))
    result = run_cohort(cohort, None, ct_model, tmp_path / "batch", device="cpu", progress=None)
    assert (result.done, result.failed) == (1, 1)
    errors = read_tsv(result.errors_path)
    assert [e["case_id"] for e in errors] == ["brain1"] and "modality MR" in errors[0]["message"]
    assert {r["case_id"] for r in read_tsv(result.results_path)} == {"lung1"}
    allowed = run_cohort(cohort, None, ct_model, tmp_path / "allowed", device="cpu", progress=None,
                         allow_unusual_input=True)
    rows = read_tsv(allowed.results_path)
    assert allowed.failed == 0 and {r["case_id"] for r in rows} == {"lung1", "brain1"}
    assert all(bool(r["warnings"]) == (r["case_id"] == "brain1") for r in rows), rows


def test_an_old_card_without_the_profile_still_predicts(ct_model, tmp_path, caplog):
    old = tmp_path / "old-model"
    shutil.copytree(ct_model, old)
    bad.edit_card(old, lambda card: card.pop(PROFILE_KEY))  # the weights' hash is unchanged: still a valid package
    case = _mr_dicom_case(tmp_path / "brain1")
    with caplog.at_level(logging.INFO, logger="HCCAnalysisLib.data.intensity_profile"):
        prediction = predict_folder(old, case, tmp_path / "r.tsv", device="cpu")
    assert prediction.rows and all("warnings" not in row.extras for row in prediction.rows)
    assert "has no 'input_profile'" in caplog.text


def test_rules_on_a_real_profile(ct_model):
    """The overlap rule (no typical voxel where the training cases' lie: refused) and a malformed profile."""
    profile = _card(ct_model)[PROFILE_KEY]
    entry = profile["phases"]["image"]
    stats = case_percentiles(load_case(bad.COHORT / "lung1"), ["image"])["image"]
    assert compare_phase("image", stats, entry) == []
    shifted = {k: (v + 5000 if k.startswith("p") else v) for k, v in stats.items()}  # e.g. a wrong rescale slope
    (finding,) = compare_phase("image", shifted, entry)
    assert finding.level == "refuse" and "do not overlap the 2 training cases'" in finding.reason
    with pytest.raises(HCCInputError, match="phase 'image' lacks numbers min / max for p50"):
        check_profile({"phases": {"image": {"p5": entry["p5"], "p50": {"min": None}}}}, "model.json")
