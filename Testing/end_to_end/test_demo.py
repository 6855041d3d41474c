"""`hcc demo` (the README's first command) end to end, with few epochs to stay quick."""

import csv
import json
import math

import pytest

from HCCAnalysisLib.cli import main
from HCCAnalysisLib.report.build import epoch_curves


def test_demo_writes_every_promised_output(tmp_path):
    pytest.importorskip("slicer")
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--epochs", "2"]) == 0
    summary = json.loads((out / "demo_summary.json").read_text())
    metrics = json.loads((out / "evaluation" / "metrics.json").read_text())
    record = json.loads((out / "evaluation" / "evaluation.json").read_text())
    card = json.loads((out / "model" / "model.json").read_text())
    # leave-one-patient-out, twice; one grey phase: the task's recipe starts from the MNIST weights (Jia sec. 4.1)
    assert len(metrics["folds"]) == 8 and metrics["config"]["repeats"] == 2
    assert record["pretrained"] == "jia2019-mnist" and record["epoch_curve"] is True
    assert card["training"]["pretrained"] == "jia2019-mnist" == summary["pretrained"]
    assert card["training"]["lr"] == pytest.approx(0.5 * 1e-3)  # fine-tuned at half the learning rate
    for path in ("evaluation/roc.png", "evaluation/predictions.tsv", "report/report.html", "model/model.json",
                 "model/model.safetensors", "heldout_results.tsv", "scene/scene.mrml"):
        assert (out / path).is_file() and (out / path).stat().st_size > 0, path
    logs = sorted((out / "evaluation" / "training_logs").glob("r*_f*.tsv"))
    assert [p.stem for p in logs] == [f"r{r}_f{f}" for r in range(2) for f in range(4)]
    with open(logs[0], newline="") as handle:
        epochs = list(csv.DictReader(handle, delimiter="\t"))
    assert len(epochs) == 2 and all(0.0 <= float(e["val_accuracy"]) <= 1.0 for e in epochs)  # the test fold
    # Jia's Figs. 7 and 8: test-fold accuracy per epoch and the mean ROC, each with +-1 SD over the 2 repeats
    report = json.loads((out / "report" / "summary.json").read_text())
    assert {"accuracy_per_epoch_evaluation.png", "roc_mean_evaluation.png"} <= set(report["figures"])
    assert all((out / "report" / "figures" / name).stat().st_size > 0 for name in report["figures"])
    epoch_axis, curves = epoch_curves(out / "evaluation")  # what the accuracy-per-epoch figure draws
    assert list(epoch_axis) == [1, 2] and set(curves) == {"training samples (2 repeat(s))", "test fold (2 repeat(s))"}
    assert "Mean ROC of evaluation over 2 repeat(s)" in (out / "report" / "report.html").read_text()
    assert not math.isnan(summary["cv_summary"]["auc"]["sd"])  # an SD over repeats, not over one
    assert "time-signal intensity" in summary["report_notes"][0]  # one phase: no TSIC, and why
    assert summary["scene"].endswith("scene.mrml")
    rows = (out / "heldout_results.tsv").read_text().splitlines()
    assert rows[0].startswith("case_id\tpatient_id\tlesion_id") and len(rows) == 3  # lesion + background ROI
