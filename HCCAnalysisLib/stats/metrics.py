"""Classification metrics (scikit-learn) of a fold or a repeat, and their mean +- SD.

The headline of an evaluation is the papers' figure (Jia 2019, Zhen 2020, Wang 2020): each
repeat's metric on its pooled out-of-fold predictions, then mean +- SD over repeats; the
mean +- SD over all folds x repeats is kept beside it, labelled.
"""

import math
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_score, recall_score, roc_auc_score

from HCCAnalysisLib.errors import HCCInputError

METRIC_NAMES = ("accuracy", "sensitivity", "specificity", "precision", "f1", "auc")


def _specificity(y_true, y_pred, labels):
    """Mean over classes of the one-vs-rest specificity TN / (TN + FP)."""
    cm = confusion_matrix(y_true, y_pred, labels=labels)
    values = []
    for k in range(len(labels)):
        tn = cm.sum() - cm[k, :].sum() - cm[:, k].sum() + cm[k, k]
        fp = cm[:, k].sum() - cm[k, k]
        if tn + fp:
            values.append(tn / (tn + fp))
    return float(np.mean(values)) if values else math.nan


def fold_metrics(y_true: Sequence[int], y_prob: np.ndarray, classes: Sequence[str]) -> Dict[str, float]:
    """Binary tasks: the last class is positive. Multi-class: macro averages, one-vs-rest AUC."""
    y_true = np.asarray(y_true)
    y_prob = np.asarray(y_prob, dtype=float)
    y_pred = y_prob.argmax(axis=1)
    labels = list(range(len(classes)))
    present = np.unique(y_true)
    out = {"accuracy": float(accuracy_score(y_true, y_pred))}
    if len(classes) == 2:
        out["sensitivity"] = float(recall_score(y_true, y_pred, pos_label=1, zero_division=0))
        out["specificity"] = float(recall_score(y_true, y_pred, pos_label=0, zero_division=0))
        out["precision"] = float(precision_score(y_true, y_pred, pos_label=1, zero_division=0))
        out["f1"] = float(f1_score(y_true, y_pred, pos_label=1, zero_division=0))
        out["auc"] = float(roc_auc_score(y_true, y_prob[:, 1])) if len(present) == 2 else math.nan
    else:
        out["sensitivity"] = float(recall_score(y_true, y_pred, labels=labels, average="macro", zero_division=0))
        out["specificity"] = _specificity(y_true, y_pred, labels)
        out["precision"] = float(precision_score(y_true, y_pred, labels=labels, average="macro", zero_division=0))
        out["f1"] = float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0))
        out["auc"] = (float(roc_auc_score(y_true, y_prob, multi_class="ovr", labels=labels))
                      if len(present) == len(classes) else math.nan)
    return out


def mean_sd(values: Iterable[float]) -> Tuple[float, float, int]:
    """Mean and SD (ddof=1) of the finite values; NaN where there are too few."""
    values = np.array([v for v in values if not math.isnan(v)], dtype=float)
    return (float(values.mean()) if len(values) else math.nan,
            float(values.std(ddof=1)) if len(values) > 1 else math.nan, int(len(values)))


def repeat_order(value: object) -> tuple:
    """Sort key of repeat names: numbers in numeric order first, then other names."""
    try:
        return (0, float(value), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(value))


def repeat_metrics(predictions: Sequence[Mapping], classes: Sequence[str]) -> List[Tuple[str, dict]]:
    """Each repeat's metrics on its pooled out-of-fold predictions: [(repeat, metrics dict)].

    `predictions` are evaluation rows (dicts with 'repeat', 'label' and 'prob_<class>', as in
    predictions.tsv); within one repeat every case is tested once, so pooling its folds scores
    the whole cohort once, which is how Jia, Zhen and Wang compute each run's figure.
    """
    classes = [str(c) for c in classes]
    by_repeat = {}
    for row in predictions:
        if "repeat" not in row or "label" not in row:
            raise HCCInputError("a prediction row lacks 'repeat' or 'label'", source="predictions")
        by_repeat.setdefault(str(row["repeat"]), []).append(row)
    out = []
    for repeat in sorted(by_repeat, key=repeat_order):
        rows = by_repeat[repeat]
        unknown = sorted({str(r["label"]) for r in rows} - set(classes))
        if unknown:
            raise HCCInputError(f"labels {unknown[:5]} of repeat {repeat} are not among the classes {classes}",
                                source="predictions")
        try:
            probs = np.array([[float(r[f"prob_{c}"]) for c in classes] for r in rows])
        except (KeyError, TypeError, ValueError) as err:
            raise HCCInputError(f"repeat {repeat}: a 'prob_<class>' value is missing or not a number ({err})",
                                source="predictions")
        truth = [classes.index(str(r["label"])) for r in rows]
        out.append((repeat, {**fold_metrics(truth, probs, classes), "n": len(rows)}))
    return out


def summarise(folds: Sequence[Mapping], predictions: Optional[Sequence[Mapping]] = None,
              classes: Optional[Sequence[str]] = None) -> Dict[str, dict]:
    """Mean +- SD of each metric, both ways, labelled (docs/DESIGN.md, metrics.json "summary").

    With `predictions` (the evaluation rows) and `classes`, the headline "mean"/"sd" are over
    repeats: each repeat's metric on its pooled out-of-fold predictions, then mean and SD
    (ddof=1) over repeats, as the papers report repeated runs. "per_fold" always holds the
    mean and SD over all folds x repeats (NaN folds left out). Without predictions the
    headline is the per-fold figure and "over" says so.
    """
    if predictions is not None and classes is None:
        raise HCCInputError("summarise got predictions without their classes", source="summarise")
    per_repeat = repeat_metrics(predictions, classes) if predictions is not None else None
    out = {}
    for name in METRIC_NAMES:
        mean, sd, n_folds = mean_sd([f.get(name, math.nan) for f in folds])
        entry = {"mean": mean, "sd": sd, "over": "folds", "n_folds": n_folds,
                 "per_fold": {"mean": mean, "sd": sd, "n_folds": n_folds}}
        if per_repeat is not None:
            values = [m[name] for _, m in per_repeat]
            r_mean, r_sd, n_repeats = mean_sd(values)
            entry.update({"mean": r_mean, "sd": r_sd, "over": "repeats", "n_repeats": n_repeats,
                          "per_repeat": {r: m[name] for r, m in per_repeat}})
        out[name] = entry
    return out
