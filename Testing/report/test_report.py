"""`hcc report` end to end on real evaluation runs.

The evaluation folders (docs/DESIGN.md format) come from real models: a random forest
and a logistic regression predicting recurrence from the real asaur HCC cohort with
patient-level 5-fold cross-validation, two repeats; and a 3-class logistic regression
on scikit-learn's real wine data for the multi-class and patient-level paths.
Report numbers are checked against scikit-learn computed here from the raw predictions.
"""

import argparse
import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
import sklearn
from sklearn.datasets import load_wine
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import cohen_kappa_score, recall_score, roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from HCCAnalysisLib import HCCInputError

from HCCAnalysisLib.stats import tests as stats
from HCCAnalysisLib.report.command import add_report_parser, make_report

REFERENCE = Path(__file__).resolve().parents[1] / "reference"
FACTORS = ["Age", "Gender", "HBsAg", "Cirrhosis", "ALT", "AST", "AFP", "Tumorsize",
           "Tumordifferentiation", "Vascularinvasion", "Tumormultiplicity", "Capsulation",
           "TNM", "BCLC"]


def _asaur():
    with open(REFERENCE / "asaur_hepatoCellular.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    x = np.array([[float(r[f]) for f in FACTORS] for r in rows])
    y = np.array([int(r["Recurrence"]) for r in rows])
    patients = np.array([f"P{int(r['Number']):03d}" for r in rows])
    return x, y, patients


def write_evaluation(folder, model, x, y, groups, classes, task, repeats=2, embed=False, seed=0):
    """Cross-validate `model` by patient and write an evaluation folder (DESIGN.md format)."""
    folder.mkdir(parents=True)
    rows, folds, emb, emb_rows = [], [], [], []
    for repeat in range(repeats):
        splitter = StratifiedGroupKFold(n_splits=5, shuffle=True, random_state=seed + repeat)
        for fold, (train, test) in enumerate(splitter.split(x, y, groups)):
            fitted = sklearn.clone(model).fit(x[train], y[train])
            probs = fitted.predict_proba(x[test])
            if embed:  # the standardised inputs of the final linear layer
                emb.append(fitted[:-1].transform(x[test]))
                emb_rows += list(range(len(rows), len(rows) + len(test)))
            for i, p in zip(test, probs):
                rows.append({"repeat": repeat, "fold": fold, "case_id": f"C{i:03d}",
                             "patient_id": groups[i], "lesion_id": "1", "kind": "lesion",
                             "label": classes[y[i]], "predicted_class": classes[int(p.argmax())],
                             **{f"prob_{c}": repr(float(v)) for c, v in zip(classes, p)}})
            folds.append({"repeat": repeat, "fold": fold, "n_test": len(test),
                          "auc": roc_auc_score(y[test], probs[:, 1]) if len(classes) == 2
                          else roc_auc_score(y[test], probs, multi_class="ovr"),
                          "accuracy": float(np.mean(probs.argmax(axis=1) == y[test]))})
    columns = list(rows[0])
    with open(folder / "predictions.tsv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, columns, delimiter="\t", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    summary = {k: {"mean": float(np.mean([f[k] for f in folds])),
                   "sd": float(np.std([f[k] for f in folds], ddof=1))} for k in ("auc", "accuracy")}
    (folder / "metrics.json").write_text(json.dumps(
        {"task": task, "classes": classes, "folds": folds, "summary": summary,
         "versions": {"scikit-learn": sklearn.__version__}, "seed": 0, "config": {}}))
    if embed:
        np.savez(folder / "embeddings.npz", embeddings=np.vstack(emb).astype(np.float32),
                 row=np.array(emb_rows))
    return rows


@pytest.fixture(scope="module")
def recurrence_runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("eval")
    x, y, patients = _asaur()
    classes = ["none", "recurrence"]
    forest = make_pipeline(StandardScaler(), RandomForestClassifier(
        n_estimators=100, min_samples_leaf=3, random_state=0, n_jobs=1))
    logistic = make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=1000))
    rf_rows = write_evaluation(base / "forest", forest, x, y, patients, classes, "recurrence")
    # other fold seeds: rows come in another order, so the report must match cases by id
    lr_rows = write_evaluation(base / "logistic", logistic, x, y, patients, classes,
                               "recurrence", embed=True, seed=10)
    return base, rf_rows, lr_rows


def _first_repeat(rows, classes):
    chosen = [r for r in rows if r["repeat"] == 0]
    truth = np.array([classes.index(r["label"]) for r in chosen])
    probs = np.array([[float(r[f"prob_{c}"]) for c in classes] for r in chosen])
    return chosen, truth, probs


def test_report_end_to_end_with_comparison(recurrence_runs, tmp_path):
    base, rf_rows, lr_rows = recurrence_runs
    html_path = make_report([base / "forest", base / "logistic"], tmp_path / "report")
    html = html_path.read_text()
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    classes = ["none", "recurrence"]
    _, truth, probs = _first_repeat(rf_rows, classes)
    forest = summary["models"][0]["levels"]["case"]
    row = forest["per_class"][0]
    assert row["class"] == "recurrence" and forest["n"] == 227
    expected_auc = roc_auc_score(truth, probs[:, 1])
    assert row["auc"]["value"] == pytest.approx(expected_auc, abs=1e-12)
    assert f"{expected_auc:.3f} (" in html
    predicted = probs.argmax(axis=1)
    assert row["sensitivity"]["value"] == pytest.approx(recall_score(truth, predicted))
    assert row["specificity"]["value"] == pytest.approx(recall_score(1 - truth, 1 - predicted))
    assert forest["agreement"]["kappa"] == pytest.approx(cohen_kappa_score(truth, predicted))
    # pairwise tests are present for the one pair, on all 227 common cases
    pair = summary["comparisons"]["case"][0]
    assert (pair["a"], pair["b"], pair["result"]["n_common"]) == ("forest", "logistic", 227)
    by_case = [sorted(_first_repeat(r, classes)[0], key=lambda row: row["case_id"])
               for r in (rf_rows, lr_rows)]
    truth = np.array([r["label"] == "recurrence" for r in by_case[0]], dtype=int)
    scores = [np.array([float(r["prob_recurrence"]) for r in rows]) for rows in by_case]
    tests = pair["result"]["classes"][0]
    assert tests["delong"]["p_value"] == pytest.approx(
        stats.delong_test(truth, scores[0], scores[1]).p_value)
    positives = truth == 1
    preds = [np.array([r["predicted_class"] for r in rows]) for rows in by_case]
    assert tests["mcnemar_sensitivity"] == pytest.approx(stats.mcnemar_exact(
        np.array(["recurrence"] * int(positives.sum())), preds[0][positives], preds[1][positives]))
    for header in ("McNemar's P-value", "DeLong P-value", "forest vs. logistic"):
        assert header in html
    figures = {p.name for p in (tmp_path / "report" / "figures").iterdir()}
    assert {"roc_forest_case.png", "roc_logistic_case.png", "confusion_forest_case.png",
            "roc_compare_recurrence_case.png", "tsne_logistic.png"} <= figures
    folder = tmp_path / "report" / "figures"
    assert all((folder / f).read_bytes()[:4] == b"\x89PNG" for f in figures)
    assert html.count("data:image/png;base64,") == len(figures)  # self-contained
    with open(tmp_path / "report" / "performance.tsv", newline="") as handle:
        table = list(csv.DictReader(handle, delimiter="\t"))
    auc_line = next(r for r in table if r["model"] == "forest" and r["metric"] == "auc")
    assert float(auc_line["value"]) == pytest.approx(expected_auc, abs=1e-12)
    # one row per patient: no patient-level section, and the report says why
    assert summary["levels"] == ["case"] and "one row per patient" in html
    assert "repeat 0 of 2 repeats" in html
    # every repeat is reported: repeat 1's pooled AUC, and the headline over both repeats
    aucs = []
    for repeat in (0, 1):
        chosen = [r for r in rf_rows if r["repeat"] == repeat]
        aucs.append(roc_auc_score([r["label"] == "recurrence" for r in chosen],
                                  [float(r["prob_recurrence"]) for r in chosen]))
    repeats = summary["models"][0]["repeats"]
    assert [r["auc"] for r in repeats["repeats"]] == pytest.approx(aucs)
    assert repeats["over_repeats"]["auc"]["sd"] == pytest.approx(np.std(aucs, ddof=1))
    assert "repeat 1 (pooled)" in html and "roc_mean_forest.png" in figures


def test_cli_subcommand_writes_the_report(recurrence_runs, tmp_path):
    base, _, _ = recurrence_runs
    parser = argparse.ArgumentParser(prog="hcc")
    add_report_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["report", "--eval", str(base / "logistic"), "--out",
                              str(tmp_path / "r")])
    assert args.func(args) == 0
    assert (tmp_path / "r" / "report.html").is_file()


def test_patient_level_sums_probabilities_per_patient(tmp_path):
    x, y = load_wine(return_X_y=True)
    classes = ["class_0", "class_1", "class_2"]
    # Wine has no patients; group three same-class samples as one "patient" so that the
    # patient-level path runs on real model outputs.
    order = np.argsort(y, kind="stable")
    patients = np.empty(len(y), dtype=object)
    patients[order] = [f"P{y[i]}_{k // 3}" for k, i in enumerate(order)]
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.02, max_iter=500))
    rows = write_evaluation(tmp_path / "wine", model, x, y, patients, classes, "wine", repeats=1)
    make_report([tmp_path / "wine"], tmp_path / "out")
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["levels"] == ["case", "patient"]
    patient = summary["models"][0]["levels"]["patient"]
    ids = sorted({r["patient_id"] for r in rows})
    sums = {p: np.zeros(3) for p in ids}
    label = {}
    for r in rows:
        sums[r["patient_id"]] += [float(r[f"prob_{c}"]) for c in classes]
        label[r["patient_id"]] = classes.index(r["label"])
    truth = np.array([label[p] for p in ids])
    scores = np.array([sums[p] / sums[p].sum() for p in ids])
    assert patient["n"] == len(ids)
    for k, row in enumerate(patient["per_class"]):
        assert row["auc"]["value"] == pytest.approx(roc_auc_score(truth == k, scores[:, k]))
    assert patient["agreement"]["kappa"] == pytest.approx(
        cohen_kappa_score(truth, scores.argmax(axis=1)))
    assert (tmp_path / "out" / "figures" / "roc_wine_patient.png").is_file()


def _copy(src, dst, edit_tsv=None, edit_metrics=None):
    dst.mkdir()
    text = (src / "predictions.tsv").read_text()
    (dst / "predictions.tsv").write_text(edit_tsv(text) if edit_tsv else text)
    metrics = json.loads((src / "metrics.json").read_text())
    metrics = edit_metrics(metrics) if edit_metrics else metrics
    (dst / "metrics.json").write_text(json.dumps(metrics))
    return dst


def _nan_first_prob(text):
    lines = text.splitlines()
    cells = lines[1].split("\t")
    cells[-1] = "nan"
    return "\n".join([lines[0], "\t".join(cells)] + lines[2:]) + "\n"


@pytest.mark.parametrize("name,edit_tsv,edit_metrics,needle", [
    ("nan", _nan_first_prob, None, "NaN"),
    ("column", lambda t: t.replace("predicted_class", "prediction", 1), None, "missing column"),
    ("label", lambda t: t.replace("\trecurrence\t", "\tRECUR\t", 1), None, "not among the classes"),
    ("classes", None, lambda m: {**m, "classes": ["only"]}, "at least two"),
    ("empty", lambda t: t.splitlines()[0] + "\n", None, "n = 0"),
])
def test_bad_evaluation_folder_raises_and_writes_nothing(recurrence_runs, tmp_path, name,
                                                         edit_tsv, edit_metrics, needle):
    base, _, _ = recurrence_runs
    bad = _copy(base / "forest", tmp_path / name, edit_tsv, edit_metrics)
    with pytest.raises(HCCInputError, match=needle):
        make_report([bad], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_mixed_labels_within_a_patient_give_no_patient_level(recurrence_runs, tmp_path):
    base, _, _ = recurrence_runs
    # all rows of one repeat under two patients: each patient then has both outcomes
    mixed = _copy(base / "forest", tmp_path / "mixed",
                  lambda t: re.sub(r"\tP\d\d(\d)\t", lambda m: f"\tP{int(m[1]) % 2}\t", t))
    html = make_report([mixed], tmp_path / "out").read_text()
    assert "different true classes" in html and "Patient level</h2>" not in html


def test_embeddings_pointing_outside_the_predictions_raise(recurrence_runs, tmp_path):
    base, _, _ = recurrence_runs
    bad = _copy(base / "logistic", tmp_path / "emb")
    np.savez(bad / "embeddings.npz", embeddings=np.zeros((2, 3), np.float32),
             row=np.array([0, 10 ** 6]))
    with pytest.raises(HCCInputError, match="integer indices"):
        make_report([bad], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_mismatched_classes_and_missing_folder_raise(recurrence_runs, tmp_path):
    base, _, _ = recurrence_runs
    other = _copy(base / "logistic", tmp_path / "other",
                  edit_metrics=lambda m: {**m, "classes": ["recurrence", "none"]})
    with pytest.raises(HCCInputError, match="differ"):
        make_report([base / "forest", other], tmp_path / "out")
    with pytest.raises(HCCInputError, match="not a folder"):
        make_report([tmp_path / "nowhere"], tmp_path / "out")
    assert not (tmp_path / "out").exists()
