"""Numbers of an evaluation report: per-model summaries, pairwise tests (seed 001 Tables 1-4).

Statistics are computed on one repeat (the first) so that every case counts once;
the per-fold mean and SD of all repeats come from metrics.json. Patient-level
numbers sum each patient's probabilities over its rows (seed 001) and normalise the
sum to 1; the patient's predicted class is the largest summed probability.
"""

from dataclasses import dataclass

import numpy as np

from HCCAnalysisLib.stats import tests as stats
from HCCAnalysisLib.errors import HCCInputError


@dataclass
class LevelData:
    """Cases (or patients) of one model at one level, aligned arrays."""

    level: str         # "case" or "patient"
    keys: list         # identity per item
    labels: np.ndarray
    predicted: np.ndarray
    probs: np.ndarray
    patient_ids: list


def _repeat_order(value):
    try:
        return (0, float(value), "")
    except ValueError:
        return (1, 0.0, value)


def first_repeat(run):
    """The repeat analysed (the first, in numeric order where repeats are numbers)."""
    return sorted(set(run.repeats.tolist()), key=_repeat_order)[0]


def case_level(run):
    """Rows of the first repeat as LevelData, plus a note on what was used."""
    repeats = sorted(set(run.repeats.tolist()), key=_repeat_order)
    mask = run.repeats == repeats[0]
    keys = [k for k, m in zip(run.keys(), mask) if m]
    if len(set(keys)) != len(keys):
        raise HCCInputError(f"repeat {repeats[0]} has the same (case_id, lesion_id, kind) more "
                            f"than once", source=run.path / "predictions.tsv",
                            hint="each sample group is tested once per repeat")
    patients = [r["patient_id"] for r, m in zip(run.rows, mask) if m]
    note = (f"repeat {repeats[0]} of {len(repeats)} repeats ({int(mask.sum())} rows)"
            if len(repeats) > 1 else f"{int(mask.sum())} rows")
    return LevelData("case", keys, run.labels[mask], run.predicted[mask], run.probs[mask],
                     patients), note


def patient_level(data, classes):
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


def reported_classes(classes):
    """Binary tasks report the positive (second) class only, as seed 001 Table 2."""
    return classes[1:] if len(classes) == 2 else list(classes)


def summarise(data, classes, confidence):
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


def compare(a, b, classes):
    """Pairwise tests of two models on their common cases: DeLong (AUC) and McNemar."""
    ia, ib = _match(a, b)
    out = {"n_common": int(len(ia)), "classes": []}
    if len(ia) == 0:
        return out
    truth = a.labels[ia]
    for name in reported_classes(classes):
        k = classes.index(name)
        binary = (truth == name).astype(int)
        try:
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


def fold_summary(metrics):
    """metrics.json "summary" as [(metric, mean, sd)], numbers only."""
    rows = []
    for metric, values in (metrics.get("summary") or {}).items():
        if isinstance(values, dict) and "mean" in values:
            try:
                rows.append((str(metric), float(values["mean"]), float(values.get("sd", "nan"))))
            except (TypeError, ValueError):
                continue
    return rows
