"""Readers as comparators (Zhen 2020 Tables 1-4, Fig. 2) and t-SNE with Zhen's settings.

The "readers" are rules a clinician could apply to the real asaur HCC cohort's own findings
(vascular invasion; the more advanced of the two BCLC codes), so their calls are real hard calls on real patients; the
model is a random forest cross-validated by patient on the same cohort. Every number in the
report is checked against scikit-learn or statsmodels computed here from the raw calls.
"""

import csv
import json
import math

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import cohen_kappa_score, recall_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.inter_rater import cohens_kappa
from test_report import REFERENCE, _asaur, write_evaluation

from HCCAnalysisLib import HCCInputError
from HCCAnalysisLib.report import figures
from HCCAnalysisLib.report.command import make_report

CLASSES = ["none", "recurrence"]


@pytest.fixture(scope="module")
def forest_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("readers")
    x, y, patients = _asaur()
    forest = make_pipeline(StandardScaler(), RandomForestClassifier(
        n_estimators=60, min_samples_leaf=3, random_state=0, n_jobs=1))
    rows = write_evaluation(base / "forest", forest, x, y, patients, CLASSES, "recurrence", repeats=1)
    with open(REFERENCE / "asaur_hepatoCellular.csv", newline="") as handle:
        source = list(csv.DictReader(handle))
    calls = []
    for i, r in enumerate(source):
        vascular = "recurrence" if r["Vascularinvasion"] == "1" else "none"
        stage = "recurrence" if r["BCLC"] == "2" else "none"
        calls.append({"case_id": f"C{i:03d}", "patient_id": patients[i],
                      "reader_vascular": vascular, "reader_stage": stage if i % 10 else ""})
    with open(base / "cases.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, list(calls[0]))
        writer.writeheader()
        writer.writerows(calls)
    return base, rows, calls


def test_readers_are_compared_with_the_model_like_zhen_tables(forest_run, tmp_path):
    base, rows, calls = forest_run
    make_report(base / "forest", tmp_path / "r", readers_csv=base / "cases.csv")
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    html = (tmp_path / "r" / "report.html").read_text()
    by_case = {r["case_id"]: r for r in rows}
    for column in ("reader_vascular", "reader_stage"):
        called = [c for c in calls if c[column]]
        truth = np.array([by_case[c["case_id"]]["label"] == "recurrence" for c in called], dtype=int)
        reader = np.array([c[column] == "recurrence" for c in called], dtype=int)
        model = np.array([by_case[c["case_id"]]["predicted_class"] == "recurrence" for c in called], dtype=int)
        entry = next(r for r in summary["readers"] if r["name"] == f"reader {column}")
        row = entry["levels"]["case"]["per_class"][0]
        assert row["class"] == "recurrence" and row["auc"] is None  # calls, not scores
        assert row["sensitivity"]["value"] == pytest.approx(recall_score(truth, reader))
        assert row["specificity"]["value"] == pytest.approx(recall_score(1 - truth, 1 - reader))
        assert row["sensitivity"]["n"] == truth.sum()
        assert entry["levels"]["case"]["agreement"]["kappa"] == pytest.approx(cohen_kappa_score(truth, reader))
        pair = next(c for c in summary["comparisons"]["case"] if c["b"] == f"reader {column}")
        assert pair["result"]["n_common"] == len(called)
        tests = pair["result"]["classes"][0]
        positives = truth == 1
        table = [[np.sum((model[positives] == 1) & (reader[positives] == 1)),
                  np.sum((model[positives] == 1) & (reader[positives] == 0))],
                 [np.sum((model[positives] == 0) & (reader[positives] == 1)),
                  np.sum((model[positives] == 0) & (reader[positives] == 0))]]
        assert tests["mcnemar_sensitivity"] == pytest.approx(mcnemar(table, exact=True).pvalue)
        assert "error" in tests["delong"]  # no DeLong against calls
        kappas = [cohens_kappa(np.histogram2d(truth, p, bins=2)[0]) for p in (model, reader)]
        z = (kappas[0].kappa - kappas[1].kappa) / math.hypot(kappas[0].std_kappa, kappas[1].std_kappa)
        difference = pair["result"]["kappa_difference"]
        assert difference["z"] == pytest.approx(z) and difference["p_value"] == pytest.approx(2 * norm.sf(abs(z)))
    assert "reader reader_stage" in html and "Kappa of the model vs. each reader" in html
    figure = tmp_path / "r" / "figures" / "roc_readers_recurrence_case.png"
    assert figure.read_bytes()[:4] == b"\x89PNG"


def test_a_reader_call_that_is_no_class_is_refused_before_writing(forest_run, tmp_path):
    base, _, calls = forest_run
    bad = tmp_path / "cases.csv"
    bad.write_text("case_id,patient_id,reader_1\nC000,P001,HCC\n")
    with pytest.raises(HCCInputError, match="'HCC' is not a class of the task"):
        make_report(base / "forest", tmp_path / "r", readers_csv=bad)
    bad.write_text("case_id,patient_id,grade\nC000,P001,none\n")
    with pytest.raises(HCCInputError, match="no reader column"):
        make_report(base / "forest", tmp_path / "r", readers_csv=bad)
    bad.write_text("case_id,patient_id,reader_1\nX1,P001,none\n")
    with pytest.raises(HCCInputError, match="no case of the evaluation"):
        make_report(base / "forest", tmp_path / "r", readers_csv=bad)
    assert not (tmp_path / "r").exists()


def test_tsne_uses_zhens_settings_and_says_so():
    data = np.random.default_rng(0).normal(size=(200, 6))
    points, rows, used = figures.tsne_points(data)
    assert points.shape == (200, 2) and len(rows) == 200
    assert (used["method"], used["angle"], used["perplexity"], used["max_iter"]) == ("barnes_hut", 0.5, 50.0, 10000)
    assert 0 < used["iterations_run"] <= 10000
    _, _, small = figures.tsne_points(data[:31])
    assert small["perplexity"] == pytest.approx(10.0)  # below the number of points
