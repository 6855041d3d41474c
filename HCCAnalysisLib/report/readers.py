"""Radiologists as comparators (Zhen 2020, Tables 1-4 and Fig. 2): readers' calls from cases.csv.

A reader's call is a class name in a column of cases.csv, one per case (an empty cell: no call).
Columns named `reader*` are taken unless named explicitly. Each reader becomes a comparator
entry of the report: sensitivity, specificity and accuracy with Clopper-Pearson intervals, kappa
with the truth, McNemar's test against the main model on the cases both have, a two-sample z-test
of the two kappas, and a point (1 - specificity, sensitivity) on the main model's ROC figure.
A reader gives no scores, so no AUC and no DeLong test (the paper reports none for readers).

A call is per case: every row of that case (each lesion of it) takes the call. At patient level
a patient takes the call of its cases when they agree; a patient whose cases disagree is left out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Sequence

from pathlib import Path

import numpy as np

from HCCAnalysisLib.errors import HCCInputError

if TYPE_CHECKING:
    from HCCAnalysisLib.report.tables import LevelData

READER_PREFIX = "reader"


def read_reader_calls(cases_csv: str | Path, classes: Sequence[str], columns: Sequence[str] | None = None
                      ) -> dict[str, dict[str, str]]:
    """{reader column: {case_id: class}} from `cases_csv`; every call must be one of `classes`."""
    from HCCAnalysisLib.data.cohort import read_cases_table

    header, rows = read_cases_table(cases_csv)
    if "case_id" not in header:
        raise HCCInputError("has no case_id column", cases_csv, "readers' calls are matched to cases by case_id")
    wanted = list(columns) if columns else [c for c in header if c.lower().startswith(READER_PREFIX)]
    if not wanted:
        raise HCCInputError(f"has no reader column (none starts with '{READER_PREFIX}')", cases_csv,
                            "name them with --reader-columns, or call them reader_1, reader_consensus, ...")
    absent = [c for c in wanted if c not in header]
    if absent:
        raise HCCInputError(f"has no column {absent[0]!r}", cases_csv, f"columns found: {header}")
    calls: dict[str, dict[str, str]] = {}
    for column in wanted:
        by_case = {}
        for line, row in enumerate(rows, start=2):
            value = row[column]
            if not value:
                continue
            if value not in classes:
                raise HCCInputError(f"column {column!r}, line {line}: {value!r} is not a class of the task",
                                    cases_csv, f"classes: {', '.join(classes)}")
            by_case[row["case_id"]] = value
        if not by_case:
            raise HCCInputError(f"column {column!r} holds no call", cases_csv)
        calls[column] = by_case
    return calls


def _patient_calls(calls: Mapping[str, str], case_patients: Mapping[str, str]) -> dict[str, str]:
    by_patient: dict[str, set] = {}
    for case_id, patient in case_patients.items():
        if case_id in calls:
            by_patient.setdefault(patient, set()).add(calls[case_id])
    return {p: next(iter(c)) for p, c in by_patient.items() if len(c) == 1}


def reader_level_data(data: LevelData, calls: Mapping[str, str], classes: Sequence[str],
                      case_patients: Mapping[str, str]) -> LevelData | None:
    """The reader's calls aligned with `data` (the main model's rows at one level), or None when
    the reader called none of them. Probabilities are one-hot: a call is a single operating point."""
    from HCCAnalysisLib.report.tables import LevelData

    if data.level == "case":
        call_of = [calls.get(key[0]) for key in data.keys]
    else:
        per_patient = _patient_calls(calls, case_patients)
        call_of = [per_patient.get(key[0]) for key in data.keys]
    rows = [i for i, call in enumerate(call_of) if call is not None]
    if not rows:
        return None
    predicted = np.array([call_of[i] for i in rows], dtype=object)
    probs = np.zeros((len(rows), len(classes)))
    probs[np.arange(len(rows)), [classes.index(c) for c in predicted]] = 1.0
    return LevelData(data.level, [data.keys[i] for i in rows], data.labels[rows], predicted, probs,
                     [data.patient_ids[i] for i in rows])


def operating_point(data: LevelData, positive: str) -> tuple[float, float] | None:
    """(1 - specificity, sensitivity) of hard calls for one class, or None when undefined."""
    truth, called = data.labels == positive, data.predicted == positive
    if truth.all() or not truth.any():
        return None
    return float(called[~truth].mean()), float(called[truth].mean())


def reader_entries(main: Mapping[str, Any], calls: Mapping[str, Mapping[str, str]], classes: Sequence[str],
                   case_patients: Mapping[str, str], confidence: float) -> list[dict[str, Any]]:
    """One report entry per reader, at every level the main model has."""
    from HCCAnalysisLib.report.tables import summarise

    entries = []
    for column, by_case in calls.items():
        entry = {"name": f"reader {column}", "reader": True, "data": {}, "levels": {}}
        for level, data in main["data"].items():
            aligned = reader_level_data(data, by_case, classes, case_patients)
            if aligned is None:
                continue
            summary = summarise(aligned, classes, confidence)
            for row in summary["per_class"]:
                row["auc"] = None  # one-hot "scores": an AUC of a single point would mislead
            entry["data"][level], entry["levels"][level] = aligned, summary
        if entry["data"]:
            entries.append(entry)
    return entries


def average_point(readers: Sequence[Mapping[str, Any]], level: str, positive: str) -> tuple[float, float] | None:
    """Mean (1 - specificity, sensitivity) over the readers (Zhen: "average reader" on the ROC)."""
    points = [operating_point(r["data"][level], positive) for r in readers if level in r["data"]]
    points = [p for p in points if p is not None]
    if not points:
        return None
    return float(np.mean([p[0] for p in points])), float(np.mean([p[1] for p in points]))
