"""Numbers of an evaluation report: per-model summaries, pairwise tests (seed 001 Tables 1-4).

Every repeat is summarised by `repeat_summary` (each repeat's pooled out-of-fold metrics,
mean +- SD over repeats as the headline, per-fold mean +- SD beside it). The tables with
confidence intervals and the pairwise tests need each case once, so they use one repeat
(the first) and say so. Patient-level
numbers sum each patient's probabilities over its rows (seed 001) and normalise the
sum to 1; the patient's predicted class is the largest summed probability.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from dataclasses import dataclass

import numpy as np

from HCCAnalysisLib.stats import metrics
from HCCAnalysisLib.stats import tests as stats
from HCCAnalysisLib.errors import HCCInputError

if TYPE_CHECKING:
    from HCCAnalysisLib.report.reading import EvalRun


@dataclass
class LevelData:
    """Cases (or patients) of one model at one level, aligned arrays."""

    level: str         # "case" or "patient"
    keys: list[tuple[str, ...]]         # identity per item
    labels: np.ndarray
    predicted: np.ndarray
    probs: np.ndarray
    patient_ids: list[str]


def _repeat_order(value):
    try:
        return (0, float(value), "")
    except ValueError:
        return (1, 0.0, value)


def first_repeat(run: EvalRun) -> str:
    """The repeat analysed (the first, in numeric order where repeats are numbers)."""
    return sorted(set(run.repeats.tolist()), key=_repeat_order)[0]


def case_level(run: EvalRun) -> LevelData:
    """Rows of the first repeat as LevelData (the CI tables and tests need each case once),
    plus a note on what was used."""
    repeats = sorted(set(run.repeats.tolist()), key=_repeat_order)
    mask = run.repeats == repeats[0]
    keys = [k for k, m in zip(run.keys(), mask) if m]
    if len(set(keys)) != len(keys):
        raise HCCInputError(f"repeat {repeats[0]} has the same (case_id, lesion_id, kind) more "
                            f"than once", source=run.path / "predictions.tsv",
                            hint="each sample group is tested once per repeat")
    patients = [r["patient_id"] for r, m in zip(run.rows, mask) if m]
    note = (f"intervals and pairwise tests on repeat {repeats[0]} of {len(repeats)} repeats "
            f"({int(mask.sum())} rows; each case once); every repeat in the repeated "
            f"cross-validation table" if len(repeats) > 1 else f"{int(mask.sum())} rows")
    return LevelData("case", keys, run.labels[mask], run.predicted[mask], run.probs[mask],
                     patients), note


def patient_level(data: LevelData, classes: Sequence[str]) -> tuple[LevelData | None, str]:
    """Aggregate LevelData per patient, or (None, reason) when that is not meaningful."""
    groups = {}
    for i, patient in enumerate(data.patient_ids):
        groups.setdefault(patient, []).append(i)
    if all(len(rows) == 1 for rows in groups.values()):
        return None, "one row per patient: patient level equals case level"
    mixed = [p for p, rows in groups.items() if len(set(data.labels[rows])) > 1]
    if mixed:
        return None, (f"{len(mixed)} patient(s) have rows of different true classes "
                      f"(e.g. {mixed[0]}): no patient-level label")
    order = list(groups)
    sums = np.array([data.probs[groups[p]].sum(axis=0) for p in order])
    probs = sums / sums.sum(axis=1, keepdims=True)
    labels = np.array([data.labels[groups[p][0]] for p in order], dtype=object)
    predicted = np.array([classes[k] for k in probs.argmax(axis=1)], dtype=object)
    return LevelData("patient", [(p,) for p in order], labels, predicted, probs, order), (
        f"{len(order)} patients from {len(data.labels)} rows (probabilities summed per patient)")


def reported_classes(classes: Sequence[str]) -> list[str]:
    """Binary tasks report the positive (second) class only, as seed 001 Table 2."""
    return classes[1:] if len(classes) == 2 else list(classes)


def summarise(data: LevelData, classes: Sequence[str], confidence: float) -> dict[str, Any]:
    """Per-class metrics, confusion matrices and the Table 4 agreement row of one model."""
    per_class = stats.per_class_metrics(data.labels, data.predicted, data.probs, classes,
                                        confidence)
    wanted = set(reported_classes(classes))
    counts, normalised = stats.confusion_matrices(data.labels, data.predicted, classes)
    try:
        agreement = stats.agreement(data.labels, data.predicted, classes, confidence)
    except HCCInputError as err:  # e.g. one class on both sides: kappa undefined
        agreement = {"error": err.problem}
    return {"n": int(len(data.labels)),
            "per_class": [row for row in per_class if row["class"] in wanted],
            "confusion_counts": counts.tolist(), "confusion_normalised": normalised.tolist(),
            "agreement": agreement}


def _match(a, b):
    index_b = {key: i for i, key in enumerate(b.keys)}
    pairs = [(i, index_b[key]) for i, key in enumerate(a.keys) if key in index_b]
    ia = np.array([p[0] for p in pairs], dtype=int)
    ib = np.array([p[1] for p in pairs], dtype=int)
    if len(pairs) and not (a.labels[ia] == b.labels[ib]).all():
        raise HCCInputError("the same case has different true labels in two evaluations",
                            source="--compare", hint="compare evaluations of the same cohort")
    return ia, ib


def compare(a: LevelData, b: LevelData, classes: Sequence[str], b_has_scores: bool = True) -> dict[str, Any]:
    """Pairwise tests of two models on their common cases: DeLong (AUC), McNemar, and the
    two-sample z-test of their kappas. `b_has_scores=False` (a reader's hard calls): no DeLong."""
    ia, ib = _match(a, b)
    out = {"n_common": int(len(ia)), "classes": []}
    if len(ia) == 0:
        return out
    truth = a.labels[ia]
    try:
        out["kappa_difference"] = stats.kappa_difference(truth, a.predicted[ia], b.predicted[ib], classes)
    except HCCInputError as err:
        out["kappa_difference"] = {"error": err.problem}
    for name in reported_classes(classes):
        k = classes.index(name)
        binary = (truth == name).astype(int)
        try:
            if not b_has_scores:
                raise HCCInputError("a reader gives calls, not scores: no AUC to compare")
            delong = stats.delong_test(binary, a.probs[ia, k], b.probs[ib, k])
            delong = {"auc_a": delong.auc_a, "auc_b": delong.auc_b, "z": delong.z,
                      "p_value": delong.p_value}
        except HCCInputError as err:
            delong = {"error": err.problem}
        p_sens, p_spec = stats.mcnemar_sensitivity_specificity(
            truth, a.predicted[ia], b.predicted[ib], name)
        out["classes"].append({"class": name, "delong": delong, "mcnemar_sensitivity": p_sens,
                               "mcnemar_specificity": p_spec})
    return out


def repeat_summary(run: EvalRun) -> dict:
    """Every repeat of one evaluation: per-repeat metrics and both mean +- SD (issue 12).

    Per repeat: the metrics of its pooled out-of-fold predictions (each case once). Headline:
    mean +- SD (ddof=1) of those over repeats, as Jia, Zhen and Wang report repeated runs.
    Beside it: mean +- SD over all folds x repeats, each fold scored on its own test rows
    (recomputed from predictions.tsv with the same code as `hcc evaluate`).
    """
    per_repeat = metrics.repeat_metrics(run.rows, run.classes)
    folds = {}
    for row in run.rows:
        folds.setdefault((str(row["repeat"]), str(row["fold"])), []).append(row)
    per_fold = []
    for rows in folds.values():
        truth = [run.classes.index(r["label"]) for r in rows]
        probs = np.array([[float(r[f"prob_{c}"]) for c in run.classes] for r in rows])
        per_fold.append(metrics.fold_metrics(truth, probs, run.classes))
    out = {"metrics": list(metrics.METRIC_NAMES), "n_folds": len(per_fold),
           "repeats": [{"repeat": r, **m} for r, m in per_repeat], "over_repeats": {},
           "over_folds": {}}
    for name in metrics.METRIC_NAMES:
        mean, sd, n = metrics.mean_sd([m[name] for _, m in per_repeat])
        out["over_repeats"][name] = {"mean": mean, "sd": sd, "n": n}
        mean, sd, n = metrics.mean_sd([m[name] for m in per_fold])
        out["over_folds"][name] = {"mean": mean, "sd": sd, "n": n}
    return out
