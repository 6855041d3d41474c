"""Clinical factor selection by Pearson's chi-squared test, as in seed 002 (Wang et al. 2020).

Seed 002 (Table 1) tests each categorical clinical factor against early recurrence
with Pearson's chi-squared test of independence, without continuity correction,
after binarising continuous values at stated thresholds, and keeps the factors with
p < 0.05. `select_factors` does the same on any rows of clinical values.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import math
from dataclasses import dataclass

import numpy as np

from HCCAnalysisLib.clinical.schema_fields import MISSING_TOKENS
from HCCAnalysisLib.errors import HCCInputError

if TYPE_CHECKING:
    import pandas as pd

# Seed 002, section II.A / Table 1: value >= threshold is the "high" group.
# The NLR cut is 2.81 in the text (2.8 in Table 1 and the binary vector).
SEED002_THRESHOLDS = {
    "age": 60.0,            # years
    "tumor_size_mm": 50.0,  # mm (5 cm)
    "nlr": 2.81,            # neutrophil / lymphocyte ratio
    "alt": 40.0,            # U/L
    "ast": 50.0,            # U/L
    "akp": 125.0,           # U/L (alkaline phosphatase)
    "ggt": 45.0,            # U/L
    "alb": 40.0,            # g/L
    "tb": 20.5,             # umol/L (total bilirubin)
    "afp": 9.0,             # ug/L
}

# Cell texts read as "not recorded" (the schemas' list); such a row is left out of that factor's test only.
MISSING = MISSING_TOKENS


@dataclass(frozen=True)
class FactorTest:
    """Pearson chi-squared test of one factor against the outcome (rows: factor levels)."""

    name: str
    statistic: float
    dof: int
    p_value: float
    n: int
    levels: tuple[str, ...]
    outcome_levels: tuple[str, ...]
    table: tuple[tuple[int, ...], ...]
    threshold: float | None = None
    selected: bool = False
    note: str = ""


@dataclass(frozen=True)
class FactorSelection:
    """Result of `select_factors`: one FactorTest per factor and the selected names."""

    outcome: str
    alpha: float
    tests: tuple[FactorTest, ...]
    selected: tuple[str, ...]

    def rows(self) -> list[dict[str, Any]]:
        """One flat dict per factor (name, statistic, dof, p_value, n, selected, note)."""
        return [{"factor": t.name, "statistic": t.statistic, "dof": t.dof, "p_value": t.p_value,
                 "n": t.n, "selected": t.selected, "note": t.note} for t in self.tests]

    def test(self, name: str) -> FactorTest:
        """Return the FactorTest of factor `name`."""
        for item in self.tests:
            if item.name == name:
                return item
        raise KeyError(name)


def _text(value):
    """Normalise a cell so that 1, 1.0 and "1" are one level; None for missing."""
    if value is None:
        return None
    if isinstance(value, (float, np.floating)) and math.isnan(value):
        return None
    if isinstance(value, (int, float, np.integer, np.floating)) and float(value) == int(value):
        return str(int(value))
    text = str(value).strip()
    if text.lower() in MISSING:
        return None
    try:
        number = float(text)
    except ValueError:
        return text
    return str(int(number)) if number.is_integer() else text


def _binarise(value, threshold, factor, row_index):
    try:
        number = float(value)
    except ValueError:
        raise HCCInputError(f"factor {factor!r} has a threshold ({threshold:g}) but the value "
                            f"{value!r} is not a number", source=f"row {row_index}")
    return f">={threshold:g}" if number >= threshold else f"<{threshold:g}"


def _as_records(rows):
    if hasattr(rows, "to_dict"):  # a pandas DataFrame
        rows = rows.to_dict("records")
    records = list(rows)
    if not records:
        raise HCCInputError("no rows given (n = 0)", source="rows")
    for index, row in enumerate(records):
        if not hasattr(row, "get"):
            raise HCCInputError(f"each row must be a mapping of column -> value, got "
                                f"{type(row).__name__}", source=f"row {index}")
    return records


def _order(levels):
    """Numeric levels in numeric order, "<t" before ">=t", then the rest alphabetically."""
    def key(level: str) -> tuple[int, float, str]:
        try:
            return (0, float(level), "")
        except ValueError:
            return (1, 0.0 if level.startswith("<") else 1.0, level)
    return tuple(sorted(levels, key=key))


def _lookup(mapping, name):
    """Case-insensitive lookup of a threshold by factor name."""
    if not mapping:
        return None
    for key, value in mapping.items():
        if key.lower() == name.lower():
            return float(value)
    return None


def _test_one(name, pairs, outcome_levels, threshold, alpha):
    levels = _order({level for level, _ in pairs})
    table = np.zeros((len(levels), len(outcome_levels)), dtype=int)
    for level, outcome in pairs:
        table[levels.index(level), outcome_levels.index(outcome)] += 1
    base = dict(name=name, n=len(pairs), levels=levels, outcome_levels=outcome_levels,
                table=tuple(tuple(int(v) for v in row) for row in table), threshold=threshold)
    used = table[:, table.sum(axis=0) > 0]
    if len(levels) < 2 or used.shape[1] < 2:
        return FactorTest(statistic=float("nan"), dof=0, p_value=float("nan"),
                          note="fewer than two levels among the rows with this factor", **base)
    from scipy.stats import chi2_contingency  # here: the clinical schemas (hcc tasks, predict) need no scipy.stats

    result = chi2_contingency(used, correction=False)  # Pearson, as seed 002 Table 1
    small = int(np.sum(result.expected_freq < 5))
    note = f"expected count < 5 in {small} cell(s)" if small else ""
    p_value = float(result.pvalue)
    return FactorTest(statistic=float(result.statistic), dof=int(result.dof), p_value=p_value,
                      selected=p_value < alpha, note=note, **base)


def select_factors(rows: Iterable[Mapping[str, Any]] | pd.DataFrame, outcome: str, alpha: float = 0.05,
                   factors: Sequence[str] | None = None, thresholds: Mapping[str, float] | None = None,
                   max_levels: int = 10) -> FactorSelection:
    """Test each clinical factor against `outcome` (Pearson chi-squared) and select p < alpha.

    rows: an iterable of mappings column -> value (dicts, `CaseRecord.clinical`, or a
        pandas DataFrame); values may be numbers or text; "", "NA", "?" are missing.
    outcome: the column with the outcome classes (two or more).
    factors: columns to test; default every column of the first row except `outcome`.
    thresholds: {factor: cut}; a factor listed here is binarised first (value >= cut is
        ">=cut", else "<cut"), e.g. `SEED002_THRESHOLDS` (names matched ignoring case).
    max_levels: a factor with more distinct values than this and no threshold is taken
        for continuous and refused, so a forgotten threshold does not go unnoticed.

    Rows with a missing outcome are left out; rows with a missing factor value are left
    out of that factor's test only (FactorTest.n says how many were used).
    Returns a FactorSelection.
    """
    records = _as_records(rows)
    try:
        alpha = float(alpha)
    except (TypeError, ValueError):
        alpha = float("nan")
    if not 0.0 < alpha < 1.0:
        raise HCCInputError(f"alpha must lie strictly between 0 and 1, got {alpha}", source="alpha")
    if not any(outcome in row for row in records):
        raise HCCInputError(f"no column {outcome!r} in the rows", source="outcome")
    names = list(factors) if factors is not None else [k for k in records[0] if k != outcome]
    if not names:
        raise HCCInputError("no factors to test", source="factors")
    for name in names:
        if name == outcome:
            raise HCCInputError(f"{name!r} is the outcome; it cannot also be a factor",
                                source="factors")
        if not any(name in row for row in records):
            raise HCCInputError(f"no column {name!r} in the rows", source="factors")
    outcomes = [_text(row.get(outcome)) for row in records]
    outcome_levels = _order({o for o in outcomes if o is not None})
    if len(outcome_levels) < 2:
        raise HCCInputError(f"the outcome has fewer than two classes ({list(outcome_levels)})",
                            source=outcome, hint="selection needs cases of each outcome")
    tests = []
    for name in names:
        threshold = _lookup(thresholds, name)
        pairs = []
        for index, (row, out) in enumerate(zip(records, outcomes)):
            value = _text(row.get(name))
            if value is None or out is None:
                continue
            if threshold is not None:
                value = _binarise(value, threshold, name, index)
            pairs.append((value, out))
        distinct = {level for level, _ in pairs}
        if threshold is None and len(distinct) > max_levels:
            raise HCCInputError(f"factor {name!r} has {len(distinct)} distinct values and looks "
                                f"continuous", source=name,
                                hint="give it a threshold (thresholds={...}, e.g. "
                                     "SEED002_THRESHOLDS) or leave it out of factors")
        tests.append(_test_one(name, pairs, outcome_levels, threshold, alpha))
    selected = tuple(t.name for t in tests if t.selected)
    return FactorSelection(outcome=outcome, alpha=alpha, tests=tuple(tests), selected=selected)
