"""The sample table and patient-level folds shared by the classical baselines.

A `SampleTable` holds one row per sample (lesion or case): features, true class name and
ids. Folds are given explicitly as (train patient ids, test patient ids) pairs, or pairs of
record lists with a `patient_id` as `evaluate.patient_folds` returns them (the same
patient-level folds as the deep models, so the rows can be compared with DeLong); every
fold is checked so that no patient sits on both sides. `cross_validate` runs a
fit/predict function per fold and returns rows in the evaluation-folder format of
docs/DESIGN.md.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from dataclasses import dataclass, field

import numpy as np

from HCCAnalysisLib.errors import HCCInputError


@dataclass
class SampleTable:
    """Features (N x F) with labels (class names) and ids, one row per sample."""

    features: np.ndarray
    labels: list[str]
    case_ids: list[str]
    patient_ids: list[str]
    lesion_ids: list[str] | None = None
    feature_names: list[str] | None = None
    kind: str = "lesion"
    source: str = "sample table"

    def __post_init__(self) -> None:
        self.features = np.asarray(self.features, dtype=np.float64)
        n = len(self.labels)
        if self.features.ndim != 2 or self.features.shape[0] != n:
            raise HCCInputError(f"features must be N x F with N = {n} labels, got shape "
                                f"{self.features.shape}", source=self.source)
        if self.features.shape[1] == 0:
            raise HCCInputError("the feature table has no columns", source=self.source)
        if not np.isfinite(self.features).all():
            bad = sorted({int(c) for c in np.argwhere(~np.isfinite(self.features))[:, 1]})
            names = [self.feature_names[c] if self.feature_names else str(c) for c in bad[:5]]
            raise HCCInputError(f"features hold NaN or infinite values in column(s) "
                                f"{', '.join(names)}", source=self.source,
                                hint="drop or impute these columns before the baseline")
        self.lesion_ids = list(self.lesion_ids) if self.lesion_ids is not None else [""] * n
        for name in ("case_ids", "patient_ids", "lesion_ids"):
            if len(getattr(self, name)) != n:
                raise HCCInputError(f"{name} has {len(getattr(self, name))} entries, expected {n}",
                                    source=self.source)
        self.labels = [str(x) for x in self.labels]
        self.case_ids = [str(x) for x in self.case_ids]
        self.patient_ids = [str(x) for x in self.patient_ids]


@dataclass
class BaselineResult:
    """Rows in predictions.tsv format plus what each fold did (e.g. selected features)."""

    rows: list[dict[str, Any]]
    folds: list[dict[str, Any]] = field(default_factory=list)

def check_folds(table: SampleTable, folds: Sequence[Sequence[Sequence[Any]]]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Validate patient-level folds; return [(train_index, test_index)] into the table."""
    patients = np.asarray(table.patient_ids)
    known = set(table.patient_ids)
    seen_test = set()
    out = []
    if not folds:
        raise HCCInputError("no folds given", source=table.source)
    for i, fold in enumerate(folds):
        try:
            # Patient ids, or case records with a `patient_id` (evaluate.patient_folds).
            train, test = ({str(getattr(x, "patient_id", x)) for x in part} for part in fold)
        except (TypeError, ValueError):
            raise HCCInputError(f"fold {i} must be a pair (train patient ids, test patient ids)",
                                source=table.source) from None
        if train & test:
            raise HCCInputError(f"fold {i}: patient(s) {', '.join(sorted(train & test)[:5])} are "
                                f"in both training and test set", source=table.source,
                                hint="splits must be patient-level")
        unknown = (train | test) - known
        if unknown:
            raise HCCInputError(f"fold {i}: unknown patient id(s) {', '.join(sorted(unknown)[:5])}",
                                source=table.source)
        if seen_test & test:
            raise HCCInputError(f"fold {i}: patient(s) {', '.join(sorted(seen_test & test)[:5])} "
                                f"already tested in an earlier fold", source=table.source)
        seen_test |= test
        train_idx = np.flatnonzero(np.isin(patients, list(train)))
        test_idx = np.flatnonzero(np.isin(patients, list(test)))
        if len(train_idx) == 0 or len(test_idx) == 0:
            raise HCCInputError(f"fold {i} has an empty training or test set", source=table.source)
        out.append((train_idx, test_idx))
    return out


def cross_validate(table: SampleTable, folds: Sequence[Sequence[Sequence[Any]]], classes: Sequence[str],
                   fit_predict: Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
                                         tuple[np.ndarray, dict[str, Any]]],
                   repeat: int = 0) -> BaselineResult:
    """Run `fit_predict(X_train, y_train, X_test, groups_train) -> (N_test x K probabilities,
    info dict)` per fold; y are class indices into `classes`, groups_train the training
    rows' patient ids (for inner, patient-level CV). Returns a BaselineResult."""
    classes = [str(c) for c in classes]
    unknown = sorted(set(table.labels) - set(classes))
    if unknown:
        raise HCCInputError(f"label(s) {', '.join(unknown)} are not among the classes "
                            f"{', '.join(classes)}", source=table.source)
    y = np.asarray([classes.index(label) for label in table.labels])
    patients = np.asarray(table.patient_ids)
    result = BaselineResult(rows=[])
    for fold, (train_idx, test_idx) in enumerate(check_folds(table, folds)):
        if len(np.unique(y[train_idx])) < 2:
            raise HCCInputError(f"fold {fold}: the training set holds a single class",
                                source=table.source, hint="use stratified patient-level folds")
        probs, info = fit_predict(table.features[train_idx], y[train_idx],
                                  table.features[test_idx], patients[train_idx])
        result.folds.append({"repeat": repeat, "fold": fold, "n_train": len(train_idx),
                             "n_test": len(test_idx), **info})
        for row_index, p in zip(test_idx, probs):
            row = {"repeat": repeat, "fold": fold, "case_id": table.case_ids[row_index],
                   "patient_id": table.patient_ids[row_index],
                   "lesion_id": table.lesion_ids[row_index], "kind": table.kind,
                   "label": table.labels[row_index],
                   "predicted_class": classes[int(np.argmax(p))]}
            row.update({f"prob_{c}": float(p[k]) for k, c in enumerate(classes)})
            result.rows.append(row)
    return result


def full_probabilities(model: Any, probs: np.ndarray, n_classes: int) -> np.ndarray:
    """Spread a fitted sklearn model's predict_proba columns over all class indices
    (a class absent from a training fold gets probability 0)."""
    out = np.zeros((probs.shape[0], n_classes))
    out[:, model.classes_.astype(int)] = probs
    return out
