"""Input checks shared by the statistics functions (stats.py, stats_delong.py).

Each check turns user data into a clean numpy array or raises HCCInputError naming
the argument, so a bad call from the Slicer console says what to fix.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sized

import math

import numpy as np

from HCCAnalysisLib.errors import HCCInputError

if TYPE_CHECKING:
    from numpy.typing import ArrayLike


def check_confidence(confidence: Any) -> float:
    """Return `confidence` as a float strictly between 0 and 1."""
    try:
        value = float(confidence)
    except (TypeError, ValueError):
        raise HCCInputError(f"confidence must be a number, got {confidence!r}", source="confidence")
    if not 0.0 < value < 1.0:
        raise HCCInputError(f"confidence must lie strictly between 0 and 1, got {value}",
                            source="confidence", hint="for a 95% interval pass 0.95")
    return value


def as_vector(values: ArrayLike, name: str) -> np.ndarray:
    """Return a non-empty 1-D numpy array (any dtype) from a list, tuple or array."""
    if values is None:
        raise HCCInputError("no values given", source=name)
    array = np.asarray(values)
    if array.ndim != 1:
        raise HCCInputError(f"expected a 1-D sequence, got shape {array.shape}", source=name)
    if array.size == 0:
        raise HCCInputError("is empty (n = 0)", source=name)
    return array


def same_length(**arrays: Sized) -> None:
    """Raise unless every named array has the same length."""
    lengths = {name: len(a) for name, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        described = ", ".join(f"{name}={n}" for name, n in lengths.items())
        raise HCCInputError(f"lengths differ ({described})", source="arguments",
                            hint="pass one value per case, in the same order")


def as_scores(values: ArrayLike, name: str) -> np.ndarray:
    """Return finite float scores (no NaN, no infinity)."""
    array = as_vector(values, name)
    try:
        array = array.astype(float)
    except (TypeError, ValueError):
        raise HCCInputError("scores must be numbers", source=name)
    bad = ~np.isfinite(array)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise HCCInputError(f"{int(bad.sum())} score(s) are NaN or infinite "
                            f"(first at index {first})", source=name,
                            hint="drop those cases or fix the predictions")
    return array


def as_binary_labels(values: ArrayLike, name: str = "y_true") -> np.ndarray:
    """Return labels as an int array of 0/1 (1 = positive); both classes must be present."""
    array = as_vector(values, name)
    try:
        numeric = array.astype(float)
    except (TypeError, ValueError):
        raise HCCInputError("labels must be 0 or 1 (1 = positive)", source=name)
    if np.isnan(numeric).any():
        raise HCCInputError("labels contain NaN", source=name)
    if not np.isin(numeric, (0.0, 1.0)).all():
        found = sorted(set(numeric.tolist()) - {0.0, 1.0})[:5]
        raise HCCInputError(f"labels must be 0 or 1 (1 = positive), found {found}", source=name,
                            hint="for several classes compare one class against the rest")
    labels = numeric.astype(int)
    n_pos = int(labels.sum())
    if n_pos == 0 or n_pos == labels.size:
        only = "positive (1)" if n_pos else "negative (0)"
        raise HCCInputError(f"only one class present: every case is {only}", source=name,
                            hint="an ROC curve needs positive and negative cases")
    return labels


def as_count(value: Any, name: str) -> int:
    """Return a non-negative integer count."""
    try:
        as_float = float(value)
    except (TypeError, ValueError):
        raise HCCInputError(f"must be a whole number, got {value!r}", source=name)
    if not math.isfinite(as_float) or as_float != int(as_float) or as_float < 0:
        raise HCCInputError(f"must be a non-negative whole number, got {value!r}", source=name)
    return int(as_float)


def as_class_labels(values: ArrayLike, name: str) -> np.ndarray:
    """Return class labels as an array of strings (so 1 and "1" compare equal)."""
    array = as_vector(values, name)
    if array.dtype.kind == "f":
        if np.isnan(array).any():
            raise HCCInputError("labels contain NaN", source=name)
        if np.all(array == np.round(array)):
            array = array.astype(int)
    return np.array([str(v) for v in array.tolist()], dtype=object)
