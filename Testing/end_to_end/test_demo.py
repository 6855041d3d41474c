"""`hcc demo` (the README's first command) end to end, with few epochs to stay quick."""

import json

import pytest

from HCCAnalysisLib.cli import main


def test_demo_writes_every_promised_output(tmp_path):
    pytest.importorskip("slicer")
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--epochs", "2"]) == 0
    summary = json.loads((out / "demo_summary.json").read_text())
    metrics = json.loads((out / "evaluation" / "metrics.json").read_text())
    assert len(metrics["folds"]) == 4 and metrics["config"]["pretrained"]  # leave-one-patient-out, fine-tuned
    for path in ("evaluation/roc.png", "evaluation/predictions.tsv", "report/report.html", "model/model.json",
                 "model/model.safetensors", "heldout_results.tsv", "scene/scene.mrml"):
        assert (out / path).is_file() and (out / path).stat().st_size > 0, path
    assert summary["scene"].endswith("scene.mrml")
    rows = (out / "heldout_results.tsv").read_text().splitlines()
    assert rows[0].startswith("case_id\tpatient_id\tlesion_id") and len(rows) == 3  # lesion + background ROI
