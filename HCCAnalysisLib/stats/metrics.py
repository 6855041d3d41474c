"""Per-fold classification metrics (scikit-learn) and their mean +- SD over folds."""

import math

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_score, recall_score, roc_auc_score

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


def fold_metrics(y_true, y_prob, classes):
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


def summarise(folds):
    """Mean and SD (ddof=1, as papers report over repeats) of each metric over folds; NaN folds left out."""
    out = {}
    for name in METRIC_NAMES:
        values = np.array([f[name] for f in folds if not math.isnan(f.get(name, math.nan))])
        out[name] = {"mean": float(values.mean()) if len(values) else math.nan,
                     "sd": float(values.std(ddof=1)) if len(values) > 1 else math.nan,
                     "n_folds": int(len(values))}
    return out
