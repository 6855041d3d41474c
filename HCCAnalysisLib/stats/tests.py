"""Statistics as the papers report them (seed 001, Zhen et al. 2020, "Statistical Analysis").

Public API (usable from the Slicer Python console):

- clopper_pearson(successes, n, confidence)   exact binomial interval
- delong_ci(y_true, scores, confidence)       AUC with DeLong interval (stats_delong.py)
- delong_test(y_true, scores_a, scores_b)     two correlated AUCs, two-sided p
- mcnemar_exact(y_true, pred_a, pred_b)       exact (binomial) McNemar p of two classifiers
- cohen_kappa(y_true, y_pred)                 kappa, z under chance agreement, two-sided p
- confusion_matrices(y_true, y_pred, classes) counts and row-normalised
- per_class_metrics(...)                      one-vs-rest sensitivity, specificity, accuracy, AUC
- agreement(y_true, y_pred, classes)          accuracy with CI + kappa (seed 001 Table 4)
- kappa_difference(y_true, pred_a, pred_b, classes)  two-sample z-test of two kappas (model vs reader)

statsmodels provides the interval, McNemar and kappa; only DeLong is written here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import math

import numpy as np
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.inter_rater import cohens_kappa
from statsmodels.stats.proportion import proportion_confint

from HCCAnalysisLib.errors import HCCInputError
from HCCAnalysisLib.stats.checks import as_class_labels, as_count, as_scores, check_confidence, same_length
from HCCAnalysisLib.stats.delong import DeLongResult, delong_ci, delong_covariance, delong_test  # noqa: F401

if TYPE_CHECKING:
    from numpy.typing import ArrayLike


def clopper_pearson(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Return the exact (Clopper-Pearson) interval (low, high) of a binomial proportion."""
    confidence = check_confidence(confidence)
    successes, n = as_count(successes, "successes"), as_count(n, "n")
    if n == 0:
        raise HCCInputError("n = 0: a proportion of no cases has no interval", source="n")
    if successes > n:
        raise HCCInputError(f"successes ({successes}) exceed n ({n})", source="successes")
    low, high = proportion_confint(successes, n, alpha=1.0 - confidence, method="beta")
    # statsmodels returns NaN at the open ends (0 of n, n of n); the exact limits are 0 and 1.
    low = 0.0 if successes == 0 else float(low)
    high = 1.0 if successes == n else float(high)
    return low, high


def _paired_labels(y_true, pred_a, pred_b):
    truth = as_class_labels(y_true, "y_true")
    a = as_class_labels(pred_a, "pred_a")
    b = as_class_labels(pred_b, "pred_b")
    same_length(y_true=truth, pred_a=a, pred_b=b)
    return truth, a, b


def mcnemar_exact(y_true: ArrayLike, pred_a: ArrayLike, pred_b: ArrayLike) -> float:
    """Return the two-sided exact McNemar p-value comparing two classifiers on the same cases.

    Each case is scored correct or wrong for each classifier; the test uses the
    discordant cases only (a right and b wrong, a wrong and b right) and the exact
    binomial distribution, as seed 001 does. With no discordant case p = 1.
    For a sensitivity comparison pass only the positive cases, for specificity only
    the negatives (see `mcnemar_sensitivity_specificity`).
    """
    truth, a, b = _paired_labels(y_true, pred_a, pred_b)
    right_a, right_b = a == truth, b == truth
    table = [[int(np.sum(right_a & right_b)), int(np.sum(right_a & ~right_b))],
             [int(np.sum(~right_a & right_b)), int(np.sum(~right_a & ~right_b))]]
    if table[0][1] + table[1][0] == 0:
        return 1.0
    return float(mcnemar(table, exact=True).pvalue)


def mcnemar_sensitivity_specificity(y_true: ArrayLike, pred_a: ArrayLike, pred_b: ArrayLike, positive: Any
                                    ) -> tuple[float, float]:
    """Return (p for sensitivity, p for specificity) of class `positive` against the rest.

    Sensitivity: positive cases, correct = predicted `positive`.
    Specificity: negative cases, correct = predicted anything else. None when a side is empty.
    """
    truth, a, b = _paired_labels(y_true, pred_a, pred_b)
    positive = str(positive)
    is_pos = truth == positive
    out = []
    for subset in (is_pos, ~is_pos):
        if not subset.any():
            out.append(None)
            continue
        # One-vs-rest: relabel predictions as positive / rest before scoring correctness.
        t = np.where(truth[subset] == positive, "pos", "rest")
        pa = np.where(a[subset] == positive, "pos", "rest")
        pb = np.where(b[subset] == positive, "pos", "rest")
        out.append(mcnemar_exact(t, pa, pb))
    return tuple(out)


def confusion_matrices(y_true: ArrayLike, y_pred: ArrayLike, classes: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Return (counts, row_normalised): rows = true class, columns = predicted, in `classes` order.

    Rows of classes with no true case are NaN in the normalised matrix.
    """
    truth = as_class_labels(y_true, "y_true")
    pred = as_class_labels(y_pred, "y_pred")
    same_length(y_true=truth, y_pred=pred)
    names = [str(c) for c in classes]
    if len(set(names)) != len(names) or len(names) < 2:
        raise HCCInputError(f"classes must be at least two distinct names, got {names}",
                            source="classes")
    for label, values in (("y_true", truth), ("y_pred", pred)):
        unknown = sorted(set(values.tolist()) - set(names))
        if unknown:
            raise HCCInputError(f"labels {unknown[:5]} are not among classes {names}", source=label)
    index = {name: i for i, name in enumerate(names)}
    counts = np.zeros((len(names), len(names)), dtype=int)
    np.add.at(counts, ([index[v] for v in truth], [index[v] for v in pred]), 1)
    totals = counts.sum(axis=1, keepdims=True).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        normalised = np.where(totals > 0, counts / np.where(totals > 0, totals, 1.0), np.nan)
    return counts, normalised


def cohen_kappa(y_true: ArrayLike, y_pred: ArrayLike, classes: Sequence[Any] | None = None
                ) -> tuple[float, float, float]:
    """Return (kappa, z, p_value) of the agreement between predictions and the truth.

    z = kappa / SE0, with SE0 the standard error under the null of chance agreement
    (Fleiss, Cohen & Everitt 1969, as in statsmodels); p is two-sided (seed 001 Table 4).
    When one side uses a single class, kappa is 0 but SE0 is 0 too: z and p are NaN.
    """
    truth = as_class_labels(y_true, "y_true")
    pred = as_class_labels(y_pred, "y_pred")
    same_length(y_true=truth, y_pred=pred)
    names = classes if classes is not None else sorted(set(truth.tolist()) | set(pred.tolist()))
    if len(names) < 2:
        raise HCCInputError("only one class present in truth and predictions: kappa is undefined",
                            source="y_true")
    counts, _ = confusion_matrices(truth, pred, names)
    chance = float(counts.sum(axis=1) @ counts.sum(axis=0)) / float(counts.sum()) ** 2
    if chance > 1.0 - 1e-12:
        raise HCCInputError("kappa is undefined: truth and predictions are all one and the same "
                            "class (chance agreement 1)", source="y_pred")
    with np.errstate(invalid="ignore", divide="ignore"):  # SE0 = 0 is handled below
        result = cohens_kappa(counts)
    # SE0 is exactly 0 when either side uses one class (rounding may leave ~1e-9 instead)
    if min(np.count_nonzero(counts.sum(axis=0)), np.count_nonzero(counts.sum(axis=1))) < 2:
        return float(result.kappa), float("nan"), float("nan")
    return float(result.kappa), float(result.z_value), float(result.pvalue_two_sided)


def kappa_difference(y_true: ArrayLike, pred_a: ArrayLike, pred_b: ArrayLike, classes: Sequence[Any]
                     ) -> dict[str, float]:
    """Two-sample two-tailed z-test of two kappas with the truth (seed 001: model vs readers).

    z = (kappa_a - kappa_b) / sqrt(SE_a^2 + SE_b^2), SE the asymptotic standard error of each
    kappa (not the one under the null); p from the normal distribution. As in the paper, the two
    kappas are treated as independent samples although they are read on the same cases.
    """
    from scipy.stats import norm

    values = []
    for pred in (pred_a, pred_b):
        counts, _ = confusion_matrices(as_class_labels(y_true, "y_true"), as_class_labels(pred, "y_pred"), classes)
        with np.errstate(invalid="ignore", divide="ignore"):
            result = cohens_kappa(counts)
        values.append((float(result.kappa), float(result.std_kappa)))
    (ka, sa), (kb, sb) = values
    se = math.sqrt(sa ** 2 + sb ** 2)
    if not se > 0:
        return {"kappa_a": ka, "kappa_b": kb, "z": float("nan"), "p_value": float("nan")}
    z = (ka - kb) / se
    return {"kappa_a": ka, "kappa_b": kb, "z": z, "p_value": float(2 * norm.sf(abs(z)))}


def _proportion(successes, n, confidence):
    if n == 0:
        return {"value": float("nan"), "low": float("nan"), "high": float("nan"), "k": 0, "n": 0}
    low, high = clopper_pearson(successes, n, confidence)
    return {"value": successes / n, "low": low, "high": high, "k": int(successes), "n": int(n)}


def agreement(y_true: ArrayLike, y_pred: ArrayLike, classes: Sequence[Any], confidence: float = 0.95
              ) -> dict[str, Any]:
    """Return the seed 001 Table 4 row: accuracy (Clopper-Pearson CI), kappa, z and p."""
    truth = as_class_labels(y_true, "y_true")
    pred = as_class_labels(y_pred, "y_pred")
    same_length(y_true=truth, y_pred=pred)
    accuracy = _proportion(int(np.sum(truth == pred)), truth.size, check_confidence(confidence))
    kappa, z, p = cohen_kappa(truth, pred, classes)
    return {"accuracy": accuracy, "kappa": kappa, "z": z, "p_value": p, "n": int(truth.size)}


def per_class_metrics(y_true: ArrayLike, y_pred: ArrayLike, probabilities: ArrayLike, classes: Sequence[Any],
                      confidence: float = 0.95) -> list[dict[str, Any]]:
    """Return one dict per class: one-vs-rest counts, sensitivity, specificity, accuracy, AUC.

    `probabilities` is N x K in `classes` order (the class's probability is its ROC score).
    Proportions are dicts {"value", "low", "high", "k", "n"} with Clopper-Pearson
    intervals; "auc" is {"value", "low", "high"} with a DeLong interval, or None when the
    class has fewer than 2 positive or 2 negative cases.
    """
    confidence = check_confidence(confidence)
    truth = as_class_labels(y_true, "y_true")
    pred = as_class_labels(y_pred, "y_pred")
    probs = np.asarray(probabilities, dtype=float)
    names = [str(c) for c in classes]
    if probs.ndim != 2 or probs.shape != (truth.size, len(names)):
        raise HCCInputError(f"probabilities must be N x K = {truth.size} x {len(names)}, "
                            f"got shape {probs.shape}", source="probabilities")
    as_scores(probs.ravel(), "probabilities")
    same_length(y_true=truth, y_pred=pred)
    counts, _ = confusion_matrices(truth, pred, names)
    rows = []
    for k, name in enumerate(names):
        tp = int(counts[k, k])
        fn = int(counts[k].sum() - tp)
        fp = int(counts[:, k].sum() - tp)
        tn = int(counts.sum() - tp - fn - fp)
        binary = (truth == name).astype(int)
        auc = None
        if 2 <= binary.sum() <= binary.size - 2:
            value, low, high = delong_ci(binary, probs[:, k], confidence)
            auc = {"value": value, "low": low, "high": high}
        rows.append({"class": name, "tp": tp, "fn": fn, "fp": fp, "tn": tn,
                     "sensitivity": _proportion(tp, tp + fn, confidence),
                     "specificity": _proportion(tn, tn + fp, confidence),
                     "accuracy": _proportion(tp + tn, tp + tn + fp + fn, confidence),
                     "auc": auc})
    return rows


def auc_covariance(y_true: ArrayLike, *score_sets: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Return (aucs, covariance) of several correlated AUCs (DeLong); see stats_delong."""
    return delong_covariance(y_true, *score_sets)


__all__ = ["clopper_pearson", "delong_ci", "delong_test", "DeLongResult", "mcnemar_exact",
           "mcnemar_sensitivity_specificity", "cohen_kappa", "kappa_difference", "confusion_matrices", "agreement",
           "per_class_metrics", "auc_covariance"]
