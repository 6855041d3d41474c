"""End to end on the bundled real data: hcc train -> model package -> hcc predict / MRML -> table,
hcc evaluate -> evaluation folder -> hcc report."""

import csv
import json
import shutil

import numpy as np
import pytest

from HCCAnalysisLib.cli import main
from HCCAnalysisLib.errors import HCCInputError
from HCCAnalysisLib.models.package import load_model, sha256_of

TASK = "jia2019-hcc-vs-background"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, sample_data):
    out = tmp_path_factory.mktemp("model") / "pkg"
    code = main(["train", "--task", TASK, "--cohort", str(sample_data / "demo-cohort"), "--phases", "image",
                 "--pretrained", "jia2019-cifar", "--epochs", "3", "--out", str(out)])
    assert code == 0
    return out


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def test_model_package_card(model_dir):
    card = json.loads((model_dir / "model.json").read_text())
    assert card["weights_sha256"] == sha256_of(model_dir / "model.safetensors")
    assert card["task"] == TASK and card["classes"] == ["background", "HCC"] and card["phases"] == ["image"]
    assert card["training"]["n_patients"] == 4 and card["training"]["pretrained"] == "jia2019-cifar"
    assert {"torch", "monai", "HCCAnalysisLib"} <= set(card["versions"])
    assert 0.5 <= card["metrics"]["training_accuracy"] <= 1.0


def test_predict_held_out_case(model_dir, sample_data, tmp_path):
    out = tmp_path / "results.tsv"
    assert main(["predict", "--model", str(model_dir), "--case", str(sample_data / "demo-heldout" / "brain2"),
                 "--out-file", str(out)]) == 0
    rows = _rows(out)
    assert {r["kind"] for r in rows} == {"lesion", "background"}
    for row in rows:
        assert abs(float(row["prob_background"]) + float(row["prob_HCC"]) - 1) < 1e-5
        assert row["predicted_class"] in ("background", "HCC")
    lesion = next(r for r in rows if r["kind"] == "lesion")
    assert np.isfinite(float(lesion["tsic_image"])) and int(lesion["n_samples"]) == 3


def test_held_out_case_through_mrml_nodes(model_dir, sample_data, tmp_path):
    slicer = pytest.importorskip("slicer")
    from HCCAnalysisLib.demo import run_held_out_through_mrml

    prediction, table, scene_file = run_held_out_through_mrml(model_dir, sample_data / "demo-heldout" / "brain2",
                                                              tmp_path)
    assert table.GetNumberOfRows() == len(prediction.rows)
    # Same numbers as the file path: the MRML route builds the same Case.
    files = _rows(tmp_path / "heldout_results.tsv")
    reference = tmp_path / "file_route.tsv"
    main(["predict", "--model", str(model_dir), "--case", str(sample_data / "demo-heldout" / "brain2"),
          "--out-file", str(reference)])
    by_file = {r["lesion_id"] if r["kind"] == "lesion" else r["kind"]: float(r["prob_HCC"]) for r in _rows(reference)}
    by_mrml = [float(r["prob_HCC"]) for r in files if r["kind"] == "lesion"]
    assert by_mrml == pytest.approx([v for k, v in by_file.items() if k != "background"], abs=1e-4)
    # The saved scene opens again with the table in it.
    scene = slicer.vtkMRMLScene()
    scene.SetURL(str(scene_file))
    assert scene.Connect()
    tables = [scene.GetNthNodeByClass(i, "vtkMRMLTableNode") for i in range(scene.GetNumberOfNodesByClass("vtkMRMLTableNode"))]
    assert len(tables) == 1 and tables[0].GetNumberOfRows() == len(prediction.rows)


def test_altered_weights_are_refused_and_nothing_is_written(model_dir, sample_data, tmp_path, capsys):
    altered = tmp_path / "altered"
    shutil.copytree(model_dir, altered)
    data = bytearray((altered / "model.safetensors").read_bytes())
    data[-5] ^= 0x01
    (altered / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(HCCInputError, match="SHA-256 .* does not match"):
        load_model(altered)
    out = tmp_path / "results.tsv"
    assert main(["predict", "--model", str(altered), "--case", str(sample_data / "demo-heldout" / "brain2"),
                 "--out-file", str(out)]) == 2
    assert "model.safetensors" in capsys.readouterr().err and not out.exists()


def test_evaluate_then_report(sample_data, tmp_path):
    evaluation = tmp_path / "eval"
    assert main(["evaluate", "--task", TASK, "--cohort", str(sample_data / "demo-cohort"), "--phases", "image",
                 "--folds", "2", "--epochs", "1", "--pretrained", "jia2019-cifar", "--out", str(evaluation)]) == 0
    metrics = json.loads((evaluation / "metrics.json").read_text())
    assert len(metrics["folds"]) == 2 and set(metrics["summary"]) >= {"accuracy", "auc", "sensitivity"}
    rows = _rows(evaluation / "predictions.tsv")
    for fold in (0, 1):
        tested = {r["patient_id"] for r in rows if r["fold"] == str(fold)}
        other = {r["patient_id"] for r in rows if r["fold"] != str(fold)}
        assert tested and not tested & other
    assert (evaluation / "roc.png").stat().st_size > 1000
    assert np.load(evaluation / "embeddings.npz")["embeddings"].shape == (len(rows), 32)
    report = tmp_path / "report"
    assert main(["report", "--eval", str(evaluation), "--out", str(report)]) == 0
    assert "AUC" in (report / "report.html").read_text()
