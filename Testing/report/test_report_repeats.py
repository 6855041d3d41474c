"""`hcc report` over every repeat, and metrics.summarise's two labelled mean +- SD (issues 12, 15).

The evaluation folder is synthesised per docs/DESIGN.md ("Evaluation folder") from a fixed
random draw, so each repeat's pooled metrics and their mean +- SD can be recomputed here by
hand with scikit-learn and numpy and compared with what the report and summarise give.
"""

import csv
import json
import math

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, recall_score, roc_auc_score, roc_curve

from HCCAnalysisLib.errors import HCCInputError
from HCCAnalysisLib.report import figures
from HCCAnalysisLib.report.command import make_report
from HCCAnalysisLib.report.roc_figure import save_roc_figure
from HCCAnalysisLib.stats.metrics import fold_metrics, summarise

CLASSES = ["benign", "malignant"]
N_CASES, N_REPEATS, N_FOLDS = 12, 3, 2


def _rows(seed=7):
    """Rows of a 3-repeat x 2-fold evaluation of 12 one-lesion patients (6 per class)."""
    rng = np.random.default_rng(seed)
    labels = np.array([0, 1] * (N_CASES // 2))
    rows = []
    for repeat in range(N_REPEATS):
        order = rng.permutation(N_CASES)
        # stratified folds: alternate benign and malignant cases between the two folds
        fold_of = {}
        for k in (0, 1):
            members = [i for i in order if labels[i] == k]
            for j, i in enumerate(members):
                fold_of[i] = j % N_FOLDS
        for fold in range(N_FOLDS):
            for i in sorted(i for i in range(N_CASES) if fold_of[i] == fold):
                p = float(np.clip(0.3 * labels[i] + rng.uniform(0.1, 0.7), 0.01, 0.99))
                rows.append({"repeat": repeat, "fold": fold, "case_id": f"C{i:02d}",
                             "patient_id": f"P{i:02d}", "lesion_id": "1", "kind": "lesion",
                             "label": CLASSES[labels[i]],
                             "predicted_class": CLASSES[int(p > 0.5)],
                             "prob_benign": repr(1 - p), "prob_malignant": repr(p)})
    return rows


def _fold_results(rows):
    out = []
    for repeat in range(N_REPEATS):
        for fold in range(N_FOLDS):
            chosen = [r for r in rows if r["repeat"] == repeat and r["fold"] == fold]
            truth = [CLASSES.index(r["label"]) for r in chosen]
            probs = np.array([[float(r["prob_benign"]), float(r["prob_malignant"])] for r in chosen])
            out.append({"repeat": repeat, "fold": fold, "n_test": len(chosen),
                        **fold_metrics(truth, probs, CLASSES)})
    return out


def _hand_per_repeat(rows):
    """Per repeat, by hand: (AUC, accuracy, sensitivity) of the pooled out-of-fold rows."""
    out = []
    for repeat in range(N_REPEATS):
        chosen = [r for r in rows if r["repeat"] == repeat]
        truth = np.array([CLASSES.index(r["label"]) for r in chosen])
        score = np.array([float(r["prob_malignant"]) for r in chosen])
        predicted = (score > 0.5).astype(int)
        out.append((roc_auc_score(truth, score), accuracy_score(truth, predicted),
                    recall_score(truth, predicted)))
    return np.array(out)


@pytest.fixture(scope="module")
def evaluation(tmp_path_factory):
    """The folder, with 2-D embeddings (a fixed linear map of each row's score) for every row."""
    folder = tmp_path_factory.mktemp("eval") / "jia_like"
    folder.mkdir()
    rows = _rows()
    with open(folder / "predictions.tsv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, list(rows[0]), delimiter="\t", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    folds = _fold_results(rows)
    metrics = {"task": "jia-like", "classes": CLASSES, "folds": folds,
               "summary": summarise(folds, predictions=rows, classes=CLASSES),
               "versions": {}, "seed": 0, "config": {"folds": N_FOLDS, "repeats": N_REPEATS}}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    score = np.array([float(r["prob_malignant"]) for r in rows])
    embeddings = np.stack([3 * score - 1, 0.5 - score ** 2], axis=1).astype(np.float32)
    np.savez(folder / "embeddings.npz", embeddings=embeddings, row=np.arange(len(rows)))
    return folder, rows, folds, embeddings


def test_summarise_headline_is_over_repeats_and_per_fold_beside_it(evaluation):
    _, rows, folds, _ = evaluation
    summary = summarise(folds, predictions=rows, classes=CLASSES)
    hand = _hand_per_repeat(rows)
    for column, name in enumerate(("auc", "accuracy", "sensitivity")):
        entry = summary[name]
        assert entry["over"] == "repeats" and entry["n_repeats"] == N_REPEATS
        assert [entry["per_repeat"][str(r)] for r in range(N_REPEATS)] == pytest.approx(hand[:, column])
        assert entry["mean"] == pytest.approx(hand[:, column].mean())
        assert entry["sd"] == pytest.approx(hand[:, column].std(ddof=1))
        per_fold = np.array([f[name] for f in folds])
        assert entry["per_fold"]["mean"] == pytest.approx(per_fold.mean())
        assert entry["per_fold"]["sd"] == pytest.approx(per_fold.std(ddof=1))
        assert entry["per_fold"]["n_folds"] == entry["n_folds"] == N_REPEATS * N_FOLDS
    # the two figures really differ on these data: the labels are needed
    assert summary["auc"]["sd"] != pytest.approx(summary["auc"]["per_fold"]["sd"])


def test_summarise_without_predictions_says_it_is_over_folds(evaluation):
    _, _, folds, _ = evaluation
    summary = summarise(folds)
    assert summary["auc"]["over"] == "folds" and "per_repeat" not in summary["auc"]
    assert summary["auc"]["mean"] == pytest.approx(np.mean([f["auc"] for f in folds]))
    with pytest.raises(HCCInputError, match="without their classes"):
        summarise(folds, predictions=evaluation[1])
    bad = [dict(r, label="cyst") for r in evaluation[1][:3]]
    with pytest.raises(HCCInputError, match="not among the classes"):
        summarise(folds, predictions=bad, classes=CLASSES)


def test_report_shows_every_repeat_and_the_headline(evaluation, tmp_path, monkeypatch):
    folder, rows, folds, embeddings = evaluation
    drawn = []
    real = figures.embedding_figure

    def spy(title, points, labels, classes, **kwargs):
        drawn.append((np.array(points), list(labels)))
        return real(title, points, labels, classes, **kwargs)

    monkeypatch.setattr(figures, "embedding_figure", spy)
    html = make_report([folder], tmp_path / "report").read_text()
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    repeats = summary["models"][0]["repeats"]
    hand = _hand_per_repeat(rows)
    assert [r["repeat"] for r in repeats["repeats"]] == ["0", "1", "2"]
    assert [r["auc"] for r in repeats["repeats"]] == pytest.approx(hand[:, 0])
    assert [r["n"] for r in repeats["repeats"]] == [N_CASES] * N_REPEATS
    headline = repeats["over_repeats"]["auc"]
    assert headline["mean"] == pytest.approx(hand[:, 0].mean())
    assert headline["sd"] == pytest.approx(hand[:, 0].std(ddof=1))
    per_fold = np.array([f["auc"] for f in folds])
    assert repeats["over_folds"]["auc"]["mean"] == pytest.approx(per_fold.mean())
    assert repeats["over_folds"]["auc"]["sd"] == pytest.approx(per_fold.std(ddof=1))
    for r in range(N_REPEATS):
        assert f"repeat {r} (pooled)" in html and f"{hand[r, 0]:.3f}" in html
    assert f"<b>{hand[:, 0].mean():.3f} &plusmn; {hand[:, 0].std(ddof=1):.3f}</b>" in html
    assert f"{per_fold.mean():.3f} &plusmn; {per_fold.std(ddof=1):.3f}" in html
    assert html.index("mean &plusmn; SD over repeats") < html.index("over folds &times; repeats")
    assert "pooled AUC" in html and "per-fold AUC" in html
    # figures: the mean ROC over repeats, and the 2-D embedding drawn raw (no t-SNE)
    files = set(summary["figures"])
    assert {"roc_mean_jia_like.png", "embedding2d_jia_like.png"} <= files
    assert not any(f.startswith("tsne_") for f in files)
    first = [i for i, r in enumerate(rows) if r["repeat"] == 0]
    assert len(drawn) == 1
    np.testing.assert_array_equal(drawn[0][0], embeddings[first])
    assert drawn[0][1] == [rows[i]["label"] for i in first]
    assert "2-D embedding as the network outputs it" in html


def test_mean_roc_is_the_vertical_average_of_the_repeats(evaluation):
    _, rows, _, _ = evaluation
    curves = []
    for repeat in range(N_REPEATS):
        chosen = [r for r in rows if r["repeat"] == repeat]
        curves.append((np.array([r["label"] == "malignant" for r in chosen], dtype=int),
                       np.array([float(r["prob_malignant"]) for r in chosen])))
    grid, mean, sd = figures.mean_roc(curves)
    by_hand = []
    for truth, score in curves:
        fpr, tpr, _ = roc_curve(truth, score)
        by_hand.append(np.interp(grid, fpr, tpr))
    by_hand = np.array(by_hand)
    by_hand[:, 0] = 0.0
    np.testing.assert_allclose(mean, by_hand.mean(axis=0))
    np.testing.assert_allclose(sd, by_hand.std(axis=0, ddof=1))
    assert mean[0] == 0.0 and mean[-1] == 1.0 and sd.max() > 0
    # one repeat: no spread
    assert figures.mean_roc(curves[:1])[2].max() == 0.0


def test_save_roc_figure_keeps_its_path_and_draws_all_repeats(evaluation, tmp_path):
    _, rows, _, _ = evaluation
    path = save_roc_figure(rows, CLASSES, tmp_path / "out" / "roc.png", title="jia-like")
    assert path.read_bytes()[:4] == b"\x89PNG"
    aucs = _hand_per_repeat(rows)[:, 0]
    from HCCAnalysisLib.report.roc_figure import roc_series

    (label, curves), = roc_series(rows, CLASSES)
    assert len(curves) == N_REPEATS
    assert label == f"malignant: AUC {aucs.mean():.3f} +- {aucs.std(ddof=1):.3f} over 3 repeats"
    assert not math.isnan(aucs.std(ddof=1))


def test_real_two_repeat_evaluation_is_reported_repeat_by_repeat(sample_data, tmp_path):
    """`hcc evaluate` (Jia's net, 1 epoch, 2 folds x 2 repeats) on the bundled cohort, then the report."""
    from HCCAnalysisLib.cli import main

    evaluation = tmp_path / "eval"
    assert main(["evaluate", "--task", "jia2019-hcc-vs-background", "--cohort",
                 str(sample_data / "demo-cohort"), "--phases", "image", "--folds", "2",
                 "--repeats", "2", "--epochs", "1", "--pretrained", "none",
                 "--out", str(evaluation)]) == 0
    assert (evaluation / "roc.png").read_bytes()[:4] == b"\x89PNG"  # evaluate's roc.png, same drawing
    with open(evaluation / "predictions.tsv", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    metrics = json.loads((evaluation / "metrics.json").read_text())
    classes = metrics["classes"]
    make_report([evaluation], tmp_path / "report")
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    repeats = summary["models"][0]["repeats"]
    assert [r["repeat"] for r in repeats["repeats"]] == ["0", "1"]
    hand = []
    for repeat in ("0", "1"):
        chosen = [r for r in rows if r["repeat"] == repeat]
        truth = np.array([r["label"] == classes[1] for r in chosen], dtype=int)
        hand.append(roc_auc_score(truth, [float(r[f"prob_{classes[1]}"]) for r in chosen]))
    assert [r["auc"] for r in repeats["repeats"]] == pytest.approx(hand)
    assert repeats["over_repeats"]["auc"]["mean"] == pytest.approx(np.mean(hand))
    assert repeats["over_repeats"]["auc"]["sd"] == pytest.approx(np.std(hand, ddof=1))
    # per fold: the same folds evaluate scored, so the same mean as metrics.json's per-fold figure
    per_fold = [f["auc"] for f in metrics["folds"] if not math.isnan(f["auc"])]
    assert repeats["over_folds"]["auc"]["mean"] == pytest.approx(np.mean(per_fold))
    assert metrics["summary"]["auc"]["per_fold"]["mean"] == pytest.approx(np.mean(per_fold))
    assert "roc_mean_eval.png" in summary["figures"]


def test_roc_figure_of_a_single_class_evaluation_is_drawn_without_curves(evaluation, tmp_path):
    _, rows, _, _ = evaluation
    benign_only = [r for r in rows if r["label"] == "benign"]
    from HCCAnalysisLib.report.roc_figure import roc_series

    assert roc_series(benign_only, CLASSES) == []
    path = save_roc_figure(benign_only, CLASSES, tmp_path / "roc.png")
    assert path.read_bytes()[:4] == b"\x89PNG"
