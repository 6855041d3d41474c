"""The papers' protocols from the command line, on the bundled real cases (issue 12):

- Jia 2019's grid cell "embedding 2" (`--net-option`), its augmented test set (`--tta`), its
  accuracy per epoch on the test fold (`--epoch-curve`, Fig. 7) and its time-signal intensity
  curve over dynamic phases (`--dynamic-phases`, Fig. 4), all laid out by `hcc report`;
- Zhen 2020's external test cohort: a trained package scored on another cohort
  (`hcc evaluate --model`), the same evaluation folder, reported like cross-validation.
"""

import csv
import json
import shutil
from pathlib import Path

import pytest

from HCCAnalysisLib.cli import main

ROOT = Path(__file__).resolve().parents[2] / "HCCAnalysisLib" / "sample_data"
TASK = "jia2019-hcc-vs-background"
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def dynamic_cohort(tmp_path_factory):
    """The demo cohort with each case's image also standing in as two dynamic phases S0 and S1 (the
    real image and a brighter copy: the curve must rise by the known factor)."""
    import SimpleITK as sitk

    folder = tmp_path_factory.mktemp("dynamic") / "cohort"
    shutil.copytree(ROOT / "demo-cohort", folder)
    for case in (p for p in folder.iterdir() if p.is_dir()):
        image = sitk.ReadImage(str(case / "image.nrrd"), sitk.sitkFloat32)
        sitk.WriteImage(image, str(case / "S0.nrrd"))
        sitk.WriteImage(image * 2.0, str(case / "S1.nrrd"))
    return folder


def test_jia_grid_cell_with_tta_epoch_curve_and_tsic_is_reported(dynamic_cohort, tmp_path):
    out = tmp_path / "eval"
    assert main(["evaluate", "--task", TASK, "--cohort", str(dynamic_cohort), "--phases", "image", "--folds", "2",
                 "--epochs", "2", "--net-option", "embedding_dim=2", "--tta", "--epoch-curve",
                 "--dynamic-phases", "S0,S1", "--no-cache", "--out", str(out)]) == 0
    record = json.loads((out / "evaluation.json").read_text())
    assert record["net_kwargs"]["embedding_dim"] == 2 and record["test_time_augmentation"] is True
    assert "/" not in record["cohort"]  # the folder's name, no local path
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["test_time_augmentation"] is True
    logs = sorted((out / "training_logs").glob("*.tsv"))
    assert len(logs) == 2
    with open(logs[0], newline="") as handle:
        epochs = list(csv.DictReader(handle, delimiter="\t"))
    assert len(epochs) == 2 and all(0.0 <= float(e["val_accuracy"]) <= 1.0 for e in epochs)
    with open(out / "tsic.tsv", newline="") as handle:
        curves = list(csv.DictReader(handle, delimiter="\t"))
    assert {c["kind"] for c in curves} == {"lesion", "background"}
    assert all(float(c["tsic_S1"]) == pytest.approx(2 * float(c["tsic_S0"]), rel=1e-5) for c in curves)
    report = tmp_path / "report"
    assert main(["report", "--eval", str(out), "--out", str(report)]) == 0
    figures = {p.name for p in (report / "figures").iterdir()}
    assert {"accuracy_per_epoch_eval.png", "tsic_curve_eval.png", "embedding2d_eval.png"} <= figures
    html = (report / "report.html").read_text()
    assert "test-time augmentation, Jia 2019" in html and "Time-signal intensity curves" in html


def test_a_trained_model_on_an_external_cohort_gives_an_evaluation_folder(tmp_path):
    model = tmp_path / "model"
    assert main(["train", "--task", TASK, "--cohort", str(ROOT / "demo-cohort"), "--phases", "image", "--epochs",
                 "1", "--no-cache", "--out", str(model)]) == 0
    card = json.loads((model / "model.json").read_text())
    assert card["training"]["cohort"] == "demo-cohort" and card["training"]["pretrained"] == "jia2019-mnist"
    out = tmp_path / "external"
    assert main(["evaluate", "--model", str(model), "--cohort", str(ROOT / "demo-heldout"), "--out", str(out)]) == 0
    with open(out / "predictions.tsv", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    assert {r["fold"] for r in rows} == {"external"} and {r["label"] for r in rows} == {"HCC", "background"}
    record = json.loads((out / "evaluation.json").read_text())
    assert record["external"] and record["weights_sha256"] == card["weights_sha256"]
    report = tmp_path / "report"
    assert main(["report", "--eval", str(out), "--out", str(report)]) == 0
    assert "external test cohort demo-heldout" in (report / "report.html").read_text()
    assert main(["evaluate", "--model", str(model), "--cohort", str(ROOT / "demo-heldout"), "--out", str(out)]) == 2
    assert main(["evaluate", "--model", str(model), "--task", TASK, "--cohort", str(ROOT / "demo-heldout"),
                 "--out", str(tmp_path / "other")]) == 2
    assert not (tmp_path / "other").exists()
