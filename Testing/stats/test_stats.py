"""HCCAnalysisLib.stats.tests against independent references.

DeLong: R's pROC on real clinical data with heavy ties (numbers in
Testing/reference/delong_pROC.csv, made by delong_pROC.R). Clopper-Pearson, McNemar
and kappa: closed forms, scipy, scikit-learn, and intervals printed in seed 001.
"""

import csv
import math
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import binomtest, norm
from sklearn.datasets import load_wine
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import cohen_kappa_score, confusion_matrix, recall_score, roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from HCCAnalysisLib import HCCInputError

from HCCAnalysisLib.stats import tests as stats

REFERENCE = Path(__file__).resolve().parents[1] / "reference"


def _cohort():
    with open(REFERENCE / "asaur_hepatoCellular.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def _columns(rows, names):
    """Float columns over the rows where every named column is present."""
    keep = [r for r in rows if all(r[n] not in ("", "NA") for n in names)]
    return [np.array([float(r[n]) for r in keep]) for n in names]


def _pROC_rows():
    with open(REFERENCE / "delong_pROC.csv", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("ref", _pROC_rows(), ids=lambda r: f"{r['score_a']}-{r['score_b']}")
def test_delong_matches_pROC_on_real_data_with_ties(ref):
    y, a, b = _columns(_cohort(), [ref["outcome"], ref["score_a"], ref["score_b"]])
    assert len(y) == int(ref["n"]) and y.sum() == int(ref["n_pos"])
    for scores, side in ((a, "a"), (b, "b")):
        auc, low, high = stats.delong_ci(y, scores)
        assert auc == pytest.approx(float(ref[f"auc_{side}"]), abs=1e-12)
        assert low == pytest.approx(float(ref[f"low_{side}"]), abs=1e-9)
        assert high == pytest.approx(float(ref[f"high_{side}"]), abs=1e-9)
        assert auc == pytest.approx(roc_auc_score(y, scores), abs=1e-12)
    result = stats.delong_test(y, a, b)
    assert result.var_a == pytest.approx(float(ref["var_a"]), rel=1e-9)
    assert result.var_b == pytest.approx(float(ref["var_b"]), rel=1e-9)
    assert result.z == pytest.approx(float(ref["z"]), rel=1e-9)
    assert result.p_value == pytest.approx(float(ref["p"]), rel=1e-9)


def test_reference_pairs_include_heavy_ties():
    tied = 0
    for ref in _pROC_rows():
        _, a, b = _columns(_cohort(), [ref["outcome"], ref["score_a"], ref["score_b"]])
        tied += len(np.unique(a)) < len(a) / 2 and len(np.unique(b)) < len(b) / 2
    assert tied >= 3  # Age, coded factors, immune counts with zeros; Ki67/CD34 are untied


def test_delong_test_is_antisymmetric_and_self_comparison_is_null():
    y, a, b = _columns(_cohort(), ["Recurrence", "Age", "AFP"])
    ab, ba = stats.delong_test(y, a, b), stats.delong_test(y, b, a)
    assert ab.z == pytest.approx(-ba.z) and ab.p_value == pytest.approx(ba.p_value)
    same = stats.delong_test(y, a, a)
    assert same.z == 0.0 and same.p_value == 1.0


def test_delong_perfect_separation_has_zero_width_interval():
    y = np.array([0, 0, 0, 1, 1, 1])
    assert stats.delong_ci(y, [0.1, 0.2, 0.3, 0.7, 0.8, 0.9]) == (1.0, 1.0, 1.0)
    # all scores tied: AUC exactly one half (each pair counts half)
    assert stats.delong_ci(y, [0.5] * 6)[0] == 0.5


def test_clopper_pearson_closed_forms():
    # 0 of n: upper limit solves (1 - p)^n = alpha / 2; n of n: lower limit p^n = alpha / 2.
    assert stats.clopper_pearson(0, 20) == (0.0, pytest.approx(1 - 0.025 ** (1 / 20)))
    assert stats.clopper_pearson(20, 20) == (pytest.approx(0.025 ** (1 / 20)), 1.0)
    assert stats.clopper_pearson(0, 20, 0.9)[1] == pytest.approx(1 - 0.05 ** (1 / 20))


@pytest.mark.parametrize("k,n", [(1, 10), (7, 9), (44, 47), (113, 227)])
def test_clopper_pearson_matches_scipy_exact(k, n):
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    assert stats.clopper_pearson(k, n) == (pytest.approx(ci.low), pytest.approx(ci.high))


def test_clopper_pearson_reproduces_seed001_table1():
    # Table 1: sensitivity 77.8% (40.0, 97.2) = 7 of 9; 100% (66.4, 100) = 9 of 9.
    low, high = stats.clopper_pearson(7, 9)
    assert (round(100 * low, 1), round(100 * high, 1)) == (40.0, 97.2)
    low, high = stats.clopper_pearson(9, 9)
    assert (round(100 * low, 1), high) == (66.4, 1.0)


def test_mcnemar_exact_matches_binomial_on_real_rules():
    y, afp, size = _columns(_cohort(), ["Recurrence", "AFP", "Tumorsize"])
    pred_a, pred_b = (afp == 2).astype(int), (size == 2).astype(int)
    right_a, right_b = pred_a == y, pred_b == y
    b, c = int(np.sum(right_a & ~right_b)), int(np.sum(~right_a & right_b))
    assert b + c > 0
    expected = binomtest(min(b, c), b + c, 0.5).pvalue
    assert stats.mcnemar_exact(y, pred_a, pred_b) == pytest.approx(expected)


def test_mcnemar_closed_forms():
    truth = [1] * 5
    # 5 discordant cases all favouring b: p = 2 * 0.5^5
    assert stats.mcnemar_exact(truth, [0] * 5, [1] * 5) == pytest.approx(2 / 32)
    assert stats.mcnemar_exact(truth, [1] * 5, [1] * 5) == 1.0


def test_mcnemar_sensitivity_specificity_uses_the_right_subsets():
    truth = ["hcc"] * 6 + ["cyst"] * 4
    a = ["hcc"] * 6 + ["cyst"] * 4
    b = ["cyst"] * 6 + ["cyst"] * 4
    p_sens, p_spec = stats.mcnemar_sensitivity_specificity(truth, a, b, "hcc")
    assert p_sens == pytest.approx(2 / 64) and p_spec == 1.0


def _kappa_z_closed_form(truth, pred):
    """Fleiss, Cohen & Everitt (1969) standard error of kappa under the null."""
    labels = sorted(set(truth) | set(pred))
    table = confusion_matrix(truth, pred, labels=labels) / len(truth)
    rows, cols = table.sum(axis=1), table.sum(axis=0)
    pe = float(rows @ cols)
    se0 = math.sqrt(pe + pe ** 2 - float(np.sum(rows * cols * (rows + cols)))) / (
        (1 - pe) * math.sqrt(len(truth)))
    return cohen_kappa_score(truth, pred) / se0


def test_cohen_kappa_matches_sklearn_and_closed_form_z():
    y, tnm, bclc = _columns(_cohort(), ["Recurrence", "TNM", "BCLC"])
    kappa, z, p = stats.cohen_kappa(tnm, bclc)
    assert kappa == pytest.approx(cohen_kappa_score(tnm, bclc))
    assert z == pytest.approx(_kappa_z_closed_form(list(tnm), list(bclc)))
    assert p == pytest.approx(2 * norm.sf(abs(z)))
    assert stats.cohen_kappa(y, y)[0] == pytest.approx(1.0)


def test_cohen_kappa_when_predictions_use_one_class():
    # kappa = 0 exactly (sklearn agrees) but SE0 = 0, so z and p are undefined
    truth, pred = [0, 0, 1, 1, 1], [0, 0, 0, 0, 0]
    kappa, z, p = stats.cohen_kappa(truth, pred)
    assert kappa == pytest.approx(cohen_kappa_score(truth, pred)) and kappa == 0.0
    assert math.isnan(z) and math.isnan(p)


def _wine_predictions():
    """3-class real data, out-of-fold probabilities from a logistic regression."""
    x, y = load_wine(return_X_y=True)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=500))
    probs = cross_val_predict(model, x, y, cv=StratifiedKFold(5, shuffle=True, random_state=0),
                              method="predict_proba")
    return y, probs.argmax(axis=1), probs


def test_per_class_metrics_and_confusion_match_sklearn():
    y, pred, probs = _wine_predictions()
    classes = [0, 1, 2]
    counts, normalised = stats.confusion_matrices(y, pred, classes)
    assert (counts == confusion_matrix(y, pred)).all()
    assert np.allclose(normalised, confusion_matrix(y, pred, normalize="true"))
    rows = stats.per_class_metrics(y, pred, probs, classes)
    recalls = recall_score(y, pred, average=None)
    for k, row in enumerate(rows):
        assert row["sensitivity"]["value"] == pytest.approx(recalls[k])
        neg = y != k
        assert row["specificity"]["value"] == pytest.approx(np.mean(pred[neg] != k))
        assert row["accuracy"]["value"] == pytest.approx(np.mean((pred == k) == (y == k)))
        assert row["auc"]["value"] == pytest.approx(roc_auc_score(y == k, probs[:, k]))
        assert row["auc"]["low"] <= row["auc"]["value"] <= row["auc"]["high"]
        s = row["sensitivity"]
        assert (s["low"], s["high"]) == stats.clopper_pearson(s["k"], s["n"])
    table4 = stats.agreement(y, pred, classes)
    assert table4["accuracy"]["value"] == pytest.approx(np.mean(y == pred))
    assert table4["kappa"] == pytest.approx(cohen_kappa_score(y, pred))


@pytest.mark.parametrize("call,needle", [
    (lambda: stats.delong_ci([1, 1, 1, 1], [0.1, 0.2, 0.3, 0.4]), "only one class"),
    (lambda: stats.delong_ci([0, 1, 0, 1], [0.1, 0.2, 0.3]), "lengths differ"),
    (lambda: stats.delong_ci([0, 1, 0, 1], [0.1, float("nan"), 0.3, 0.4]), "NaN"),
    (lambda: stats.delong_ci([], []), "n = 0"),
    (lambda: stats.delong_ci([0, 1, 2, 1], [0.1, 0.2, 0.3, 0.4]), "must be 0 or 1"),
    (lambda: stats.delong_ci([0, 1, 0, 0], [0.1, 0.2, 0.3, 0.4]), "at least 2 positive"),
    (lambda: stats.delong_ci([0, 1, 0, 1], [0.1, 0.2, 0.3, 0.4], 1.5), "between 0 and 1"),
    (lambda: stats.delong_test([0, 1, 0, 1], [0.1, 0.2, 0.3, 0.4], [0.1, 0.2]), "lengths differ"),
    (lambda: stats.clopper_pearson(0, 0), "n = 0"),
    (lambda: stats.clopper_pearson(5, 3), "exceed"),
    (lambda: stats.clopper_pearson(-1, 3), "non-negative"),
    (lambda: stats.mcnemar_exact([1, 0], [1, 0], [1]), "lengths differ"),
    (lambda: stats.mcnemar_exact([], [], []), "n = 0"),
    (lambda: stats.cohen_kappa([1, 1, 1], [1, 1, 1]), "one class"),
    (lambda: stats.cohen_kappa([1, 0], [1, float("nan")]), "NaN"),
    (lambda: stats.confusion_matrices([0, 1], [0, 3], [0, 1]), "not among classes"),
    (lambda: stats.per_class_metrics([0, 1], [0, 1], [[0.5, 0.5]], [0, 1]), "N x K"),
])
def test_invalid_inputs_raise_clear_errors(call, needle):
    with pytest.raises(HCCInputError, match=needle):
        call()
