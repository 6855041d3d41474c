"""DeLong's AUC variance and test for correlated ROC curves, in the fast form of Sun & Xu.

DeLong, DeLong & Clarke-Pearson (Biometrics 1988) estimate the covariance of
empirical AUCs (Mann-Whitney statistics) computed on the same cases from their
structural components. Sun & Xu (IEEE Signal Process. Lett. 2014) showed that those
components follow from mid-ranks, which makes the computation O(n log n):

    for positives X (m of them) and negatives Y (n of them),
    T_z = mid-ranks of X and Y pooled, T_x = mid-ranks within X, T_y within Y,
    AUC      = (sum of T_z over X - m(m + 1)/2) / (m n)
    V10_i    = (T_z(X_i) - T_x(X_i)) / n          (one per positive)
    V01_j    = 1 - (T_z(Y_j) - T_y(Y_j)) / m      (one per negative)
    S        = cov(V10) / m + cov(V01) / n        (sample covariances, ddof = 1)

Mid-ranks give tied scores half a win, which is how ties are handled.
None of scipy, statsmodels or scikit-learn has DeLong; this is tested against
R's pROC (Testing/reference/delong_pROC.R).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dataclasses import dataclass

import numpy as np
from scipy.stats import norm, rankdata

from HCCAnalysisLib.errors import HCCInputError
from HCCAnalysisLib.stats.checks import as_binary_labels, as_scores, check_confidence, same_length

if TYPE_CHECKING:
    from numpy.typing import ArrayLike


@dataclass(frozen=True)
class DeLongResult:
    """DeLong's test of two correlated AUCs; `p_value` is two-sided."""

    auc_a: float
    auc_b: float
    z: float
    p_value: float
    var_a: float
    var_b: float
    covariance: float
    n_positive: int
    n_negative: int


def _structural_components(labels, score_rows):
    """Return (aucs (k,), V10 (k x m), V01 (k x n)) for k score rows over the same cases."""
    positive = labels == 1
    x = score_rows[:, positive]
    y = score_rows[:, ~positive]
    m, n = x.shape[1], y.shape[1]
    if m < 2 or n < 2:
        raise HCCInputError(f"DeLong needs at least 2 positive and 2 negative cases, "
                            f"got {m} positive and {n} negative", source="y_true")
    tx = rankdata(x, axis=1)
    ty = rankdata(y, axis=1)
    tz = rankdata(np.concatenate([x, y], axis=1), axis=1)
    aucs = (tz[:, :m].sum(axis=1) - m * (m + 1) / 2.0) / (m * n)
    v10 = (tz[:, :m] - tx) / n
    v01 = 1.0 - (tz[:, m:] - ty) / m
    return aucs, v10, v01


def delong_covariance(y_true: ArrayLike, *score_sets: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Return (aucs, covariance matrix) of the AUCs of several score sets on the same cases."""
    labels = as_binary_labels(y_true)
    rows = []
    for index, scores in enumerate(score_sets):
        array = as_scores(scores, f"scores[{index}]")
        same_length(y_true=labels, scores=array)
        rows.append(array)
    aucs, v10, v01 = _structural_components(labels, np.vstack(rows))
    m, n = v10.shape[1], v01.shape[1]
    # np.cov of a single row is a 0-d array; atleast_2d keeps one shape for both cases.
    cov = np.atleast_2d(np.cov(v10)) / m + np.atleast_2d(np.cov(v01)) / n
    return aucs, cov


def delong_ci(y_true: ArrayLike, scores: ArrayLike, confidence: float = 0.95) -> tuple[float, float, float]:
    """Return (auc, low, high): the empirical AUC and its DeLong Wald interval.

    `y_true` holds 0/1 labels (1 = positive) and `scores` higher-means-positive values.
    The interval is auc +- z * sqrt(var), clipped to [0, 1] (as reported in seed 001).
    """
    confidence = check_confidence(confidence)
    aucs, cov = delong_covariance(y_true, scores)
    auc, var = float(aucs[0]), float(cov[0, 0])
    half = norm.ppf(0.5 + confidence / 2.0) * np.sqrt(max(var, 0.0))
    return auc, float(max(0.0, auc - half)), float(min(1.0, auc + half))


def delong_test(y_true: ArrayLike, scores_a: ArrayLike, scores_b: ArrayLike) -> DeLongResult:
    """Compare two correlated AUCs (two models scored on the same cases): DeLongResult.

    z = (AUC_a - AUC_b) / sqrt(var_a + var_b - 2 cov); the p-value is two-sided.
    When the difference has zero variance (for example identical rankings) and the
    AUCs are equal, z = 0 and p = 1; if they differ, z is +-inf and p = 0.
    """
    aucs, cov = delong_covariance(y_true, scores_a, scores_b)
    diff = float(aucs[0] - aucs[1])
    var_diff = float(cov[0, 0] + cov[1, 1] - 2.0 * cov[0, 1])
    if var_diff <= 1e-15:
        z = 0.0 if abs(diff) < 1e-12 else float(np.sign(diff) * np.inf)
    else:
        z = diff / np.sqrt(var_diff)
    p_value = float(min(1.0, 2.0 * norm.sf(abs(z))))
    labels = np.asarray(y_true).astype(float)
    return DeLongResult(auc_a=float(aucs[0]), auc_b=float(aucs[1]), z=float(z), p_value=p_value,
                        var_a=float(cov[0, 0]), var_b=float(cov[1, 1]),
                        covariance=float(cov[0, 1]), n_positive=int(labels.sum()),
                        n_negative=int(labels.size - labels.sum()))
