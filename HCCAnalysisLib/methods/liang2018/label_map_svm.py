"""Lesion-level classification of Liang et al. (MICCAI 2018, section 2.5): label map -> SVM.

The patch predictions of one lesion are drawn back at their patch centres into a
per-lesion label map (-1 = no patch). Eq. 7-8: the lesion's feature vector is the
proportion beta_ij of label-map pixels predicted as each class j. An SVM
(scikit-learn SVC) classifies lesions from these proportions; its hyper-parameters
are chosen on the validation split, then it is refitted on training + validation
label maps, as in section 2.4 ("Training Process"). Class probabilities come from
Platt (sigmoid) calibration of that SVM on cross-validated decision values
(`CalibratedClassifierCV(ensemble=False)`, scikit-learn's replacement for
`SVC(probability=True)`); the predicted class is their argmax.

Patient-level splits: rows are grouped by patient; no patient may sit in both the
training and the validation split, and the fallback cross-validation is group-aware.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from sklearn.calibration import CalibratedClassifierCV
from sklearn.model_selection import GridSearchCV, PredefinedSplit, StratifiedGroupKFold, StratifiedKFold
from sklearn.svm import SVC

from HCCAnalysisLib.errors import HCCInputError

NO_PATCH = -1
DEFAULT_GRID = [
    {"kernel": ["rbf"], "C": [0.1, 1.0, 10.0, 100.0], "gamma": ["scale", 0.1, 1.0, 10.0]},
    {"kernel": ["linear"], "C": [0.1, 1.0, 10.0, 100.0]},
]


def label_map(centres: np.ndarray, predicted: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """An int array of `shape`: each patch centre holds its predicted class, elsewhere NO_PATCH (-1)."""
    centres = np.asarray(centres, dtype=np.int64)
    predicted = np.asarray(predicted, dtype=np.int64)
    if centres.ndim != 2 or centres.shape[1] != len(shape) or len(centres) != len(predicted):
        raise HCCInputError(f"need n x {len(shape)} patch centres and n predictions, got "
                            f"{centres.shape} and {predicted.shape}")
    if len(centres) and (centres.min() < 0 or np.any(centres.max(axis=0) >= np.asarray(shape))):
        raise HCCInputError(f"patch centres lie outside the label map of shape {tuple(shape)}")
    if len(predicted) and predicted.min() < 0:
        raise HCCInputError("predicted classes must be >= 0")
    out = np.full(shape, NO_PATCH, dtype=np.int64)
    out[tuple(centres.T)] = predicted
    return out


def class_proportions(lesion_label_map: np.ndarray, num_classes: int) -> np.ndarray:
    """Eq. 7-8: (beta_0, ..., beta_{K-1}), the share of the label map's pixels predicted as each class."""
    labels = np.asarray(lesion_label_map)
    labels = labels[labels != NO_PATCH]
    if labels.size == 0:
        raise HCCInputError("the lesion's label map has no predicted pixel")
    if labels.max() >= num_classes:
        raise HCCInputError(f"label map holds class {int(labels.max())}, but there are {num_classes} classes")
    return np.bincount(labels.astype(np.int64), minlength=num_classes) / labels.size


def lesion_features(centres: np.ndarray, predicted: np.ndarray, shape: Sequence[int], num_classes: int
                    ) -> np.ndarray:
    """Label map of one lesion's patch predictions, then its eq. 7-8 feature vector."""
    return class_proportions(label_map(centres, predicted, shape), num_classes)


def _check_groups(groups, validation):
    train_patients = set(np.asarray(groups)[~validation])
    both = train_patients & set(np.asarray(groups)[validation])
    if both:
        raise HCCInputError(f"patient(s) {', '.join(sorted(map(str, both))[:5])} sit in both the training and "
                            "the validation split", hint="split by patient")


class LabelMapSVM:
    """SVC on class-proportion features, tuned by grid search on a patient-level validation split."""

    def __init__(self, num_classes: int, param_grid: list[dict[str, list]] | None = None, n_splits: int = 3,
                 seed: int = 0) -> None:
        self.num_classes, self.n_splits, self.seed = num_classes, n_splits, seed
        self.param_grid = DEFAULT_GRID if param_grid is None else param_grid
        self.search = None
        self.model = None

    def fit(self, features: np.ndarray, labels: np.ndarray, groups: np.ndarray, validation: np.ndarray | None = None
            ) -> LabelMapSVM:
        """features: n x K proportions; labels: n classes; groups: n patient ids; validation: n bools or None.

        With `validation`, parameters are chosen on those rows (PredefinedSplit); without,
        by stratified group k-fold over patients. The best SVM is refitted on all rows.
        """
        features = np.asarray(features, dtype=np.float64)
        labels = np.asarray(labels, dtype=np.int64)
        groups = np.asarray(groups)
        if features.ndim != 2 or not len(features) == len(labels) == len(groups):
            raise HCCInputError(f"need n x K features, n labels and n patient ids, got {features.shape}, "
                                f"{labels.shape}, {groups.shape}")
        if labels.min() < 0 or labels.max() >= self.num_classes:
            raise HCCInputError(f"lesion classes must lie in 0..{self.num_classes - 1}")
        if len(np.unique(labels)) < 2:
            raise HCCInputError("the SVM needs lesions of at least two classes")
        if validation is not None:
            validation = np.asarray(validation, dtype=bool)
            if validation.all() or not validation.any():
                raise HCCInputError("the validation split must hold some but not all lesions")
            _check_groups(groups, validation)
            cv = PredefinedSplit(np.where(validation, 0, -1))
        else:
            if len(np.unique(groups)) < self.n_splits:
                raise HCCInputError(f"{len(np.unique(groups))} patients are too few for {self.n_splits} folds")
            cv = StratifiedGroupKFold(n_splits=self.n_splits, shuffle=True, random_state=self.seed)
        self.search = GridSearchCV(SVC(), self.param_grid, cv=cv, scoring="accuracy", refit=False)
        self.search.fit(features, labels, **({} if validation is not None else {"groups": groups}))
        folds = min(5, int(np.unique(labels, return_counts=True)[1].min()))
        if folds < 2:
            raise HCCInputError("every class needs at least two lesions to calibrate the SVM's probabilities")
        calibration_cv = StratifiedKFold(folds, shuffle=True, random_state=self.seed)
        self.model = CalibratedClassifierCV(SVC(**self.search.best_params_), method="sigmoid", cv=calibration_cv,
                                            ensemble=False).fit(features, labels)
        return self

    @property
    def best_params(self) -> dict[str, Any] | None:
        return None if self.search is None else self.search.best_params_

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """n x num_classes probabilities (classes absent from training get 0)."""
        if self.model is None:
            raise HCCInputError("the label-map SVM has not been fitted")
        proba = self.model.predict_proba(np.asarray(features, dtype=np.float64))
        out = np.zeros((len(proba), self.num_classes))
        out[:, self.model.classes_] = proba
        return out

    def predict(self, features: np.ndarray) -> np.ndarray:
        return self.predict_proba(features).argmax(axis=1)
