"""Classical baselines of Wang et al. 2020: radiomics (LASSO + random forest) and clinical RF.

- `extract_radiomics(images, mask)`: pyradiomics features of one lesion in every phase
  (names "<phase>:<feature>"; shape features once, since the mask is shared).
- `radiomics_baseline(table, folds, classes)`: per training fold, standardise, select
  features with LassoCV (inner CV grouped by patient), fit a random forest on them.
- `clinical_baseline(table, folds, classes)`: random forest on the clinical vector.

Both take explicit patient-level folds and return `BaselineResult.rows` in the
predictions.tsv row format (repeat, fold, case_id, patient_id, lesion_id, kind, label,
predicted_class, prob_<class>...), so they can be compared with the deep models.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import logging

import numpy as np
import SimpleITK as sitk

from HCCAnalysisLib.methods.wang2020.baselines_folds import BaselineResult, SampleTable, cross_validate, full_probabilities  # noqa: F401
from HCCAnalysisLib.errors import HCCInputError


def _check_mask(mask, label, source):
    array = sitk.GetArrayViewFromImage(mask)
    if not (array == label).any():
        raise HCCInputError(f"lesion mask has no voxel with label {label}", source=source)


def _same_grid(a, b):
    return (a.GetSize() == b.GetSize()
            and np.allclose(a.GetSpacing(), b.GetSpacing(), rtol=1e-5)
            and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=1e-3)
            and np.allclose(a.GetDirection(), b.GetDirection(), atol=1e-5))


def extract_radiomics(images: Mapping[str, sitk.Image], mask: sitk.Image, label: int = 1,
                      settings: Mapping[str, Any] | None = None, source: str = "lesion") -> dict[str, float]:
    """pyradiomics features of the lesion `mask == label` in each phase image.

    `images`: phase name -> SimpleITK image; a phase in another geometry is resampled
    (linear) onto the mask grid through physical coordinates. `settings` are passed to
    pyradiomics' RadiomicsFeatureExtractor (default: its defaults, original image, all
    feature classes). Returns an ordered dict-like {"phase:feature": float}.
    """
    from HCCAnalysisLib.runtime.extras import require

    featureextractor = require("radiomics.featureextractor", "radiomics", "the Wang 2020 radiomics baseline")

    if not images:
        raise HCCInputError("no phase images given for radiomics", source=source)
    if mask.GetDimension() != 3:
        raise HCCInputError("lesion mask must be 3D", source=source)
    _check_mask(mask, label, source)
    # pyradiomics logs every extraction at INFO; keep the console for real problems.
    logging.getLogger("radiomics").setLevel(logging.ERROR)
    extractor = featureextractor.RadiomicsFeatureExtractor(**(settings or {}))
    mask_u8 = sitk.Cast(mask, sitk.sitkUInt8)
    features = {}
    for i, (phase, image) in enumerate(images.items()):
        if image.GetDimension() != 3:
            raise HCCInputError(f"phase '{phase}' is not a 3D image", source=source)
        image = sitk.Cast(image, sitk.sitkFloat32)
        if not _same_grid(image, mask_u8):
            image = sitk.Resample(image, mask_u8, sitk.Transform(), sitk.sitkLinear, 0.0,
                                  sitk.sitkFloat32)
        if not np.isfinite(sitk.GetArrayViewFromImage(image)).all():
            raise HCCInputError(f"phase '{phase}' holds NaN or infinite voxels", source=source)
        try:
            result = extractor.execute(image, mask_u8, label=label)
        except (ValueError, RuntimeError) as exc:
            raise HCCInputError(f"pyradiomics failed on phase '{phase}': {exc}",
                                source=source) from None
        for name, value in result.items():
            if name.startswith("diagnostics") or ("_shape_" in name and i > 0):
                continue  # shape depends on the mask only: keep it once
            features[f"{phase}:{name}"] = float(np.asarray(value))
    return features


def radiomics_table(feature_dicts: Sequence[Mapping[str, float]], labels: Sequence[str], case_ids: Sequence[str],
                    patient_ids: Sequence[str], lesion_ids: Sequence[str] | None = None,
                    source: str = "radiomics features") -> SampleTable:
    """A SampleTable from per-lesion feature dicts (all must have the same names)."""
    if not feature_dicts:
        raise HCCInputError("no radiomics features given", source=source)
    names = list(feature_dicts[0])
    for i, feats in enumerate(feature_dicts):
        if list(feats) != names:
            raise HCCInputError(f"sample {i} has other radiomics features than sample 0",
                                source=source, hint="extract all lesions with the same settings "
                                                    "and phases")
    features = np.asarray([[feats[n] for n in names] for feats in feature_dicts])
    return SampleTable(features, labels, case_ids, patient_ids, lesion_ids, names, source=source)


def _lasso_select(x, y, n_classes, groups, seed):
    """Indices of features with a non-zero LASSO coefficient (alpha by grouped inner CV)."""
    from sklearn.linear_model import LassoCV, MultiTaskLassoCV
    from sklearn.model_selection import GroupKFold

    n_groups = len(np.unique(groups))
    if n_groups < 2:
        raise HCCInputError("LASSO needs training samples from at least 2 patients for its "
                            "inner cross-validation")
    cv = list(GroupKFold(n_splits=min(5, n_groups)).split(x, y, groups))
    if n_classes == 2:
        model = LassoCV(cv=cv, random_state=seed, max_iter=20000).fit(x, y.astype(float))
        coef = np.abs(model.coef_)
    else:
        # One LASSO over the one-hot classes, sharing one support (multi-task).
        targets = np.eye(n_classes)[y]
        model = MultiTaskLassoCV(cv=cv, random_state=seed, max_iter=20000).fit(x, targets)
        coef = np.abs(model.coef_).sum(axis=0)
    return np.flatnonzero(coef > 1e-12), float(model.alpha_)


def radiomics_baseline(table: SampleTable, folds: Sequence[Sequence[Sequence[Any]]], classes: Sequence[str],
                       repeat: int = 0, seed: int = 0, n_estimators: int = 500) -> BaselineResult:
    """LassoCV feature selection + random forest, refitted inside every training fold.

    When LASSO keeps no feature (all coefficients 0 at the chosen alpha) the forest uses all
    features; the fold's entry in `result.folds` says so ("selected": "all").
    """
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.preprocessing import StandardScaler

    n_classes = len(classes)
    names = table.feature_names or [str(i) for i in range(table.features.shape[1])]

    def fit_predict(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, groups: np.ndarray
                    ) -> tuple[np.ndarray, dict[str, Any]]:
        scaler = StandardScaler().fit(x_train)
        xs_train, xs_test = scaler.transform(x_train), scaler.transform(x_test)
        keep, alpha = _lasso_select(xs_train, y_train, n_classes, groups, seed)
        info = {"lasso_alpha": alpha, "n_selected": int(len(keep)),
                "selected": [names[i] for i in keep] if len(keep) else "all"}
        if len(keep) == 0:
            keep = np.arange(x_train.shape[1])
        forest = RandomForestClassifier(n_estimators=n_estimators, random_state=seed, n_jobs=1)
        forest.fit(xs_train[:, keep], y_train)
        probs = full_probabilities(forest, forest.predict_proba(xs_test[:, keep]), n_classes)
        return probs, info

    return cross_validate(table, folds, classes, fit_predict, repeat)


def clinical_baseline(table: SampleTable, folds: Sequence[Sequence[Sequence[Any]]], classes: Sequence[str],
                      repeat: int = 0, seed: int = 0, n_estimators: int = 500) -> BaselineResult:
    """Random forest on the clinical vector (Wang 2020's "clinical model")."""
    from sklearn.ensemble import RandomForestClassifier

    n_classes = len(classes)

    def fit_predict(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, groups: np.ndarray
                    ) -> tuple[np.ndarray, dict[str, Any]]:
        forest = RandomForestClassifier(n_estimators=n_estimators, random_state=seed, n_jobs=1)
        forest.fit(x_train, y_train)
        return full_probabilities(forest, forest.predict_proba(x_test), n_classes), {}

    return cross_validate(table, folds, classes, fit_predict, repeat)
