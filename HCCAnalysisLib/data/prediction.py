"""Prediction: one row per lesion (and per background ROI where the task has them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Sequence

import csv
from dataclasses import dataclass, field

from HCCAnalysisLib.atomic import atomic_path

ID_COLUMNS = ("case_id", "patient_id", "lesion_id", "lesion_name", "kind", "predicted_class")


@dataclass
class PredictionRow:
    case_id: str
    patient_id: str
    lesion_id: str
    lesion_name: str
    kind: str  # "lesion" | "background"
    predicted_class: str
    probabilities: dict[str, float]  # class name -> probability
    n_samples: int = 1
    extras: dict[str, Any] = field(default_factory=dict)  # e.g. time-signal curve values


@dataclass
class Prediction:
    task: str
    model: str
    classes: list[str]
    rows: list[PredictionRow]

    def extra_columns(self) -> list[str]:
        names = []
        for row in self.rows:
            names += [k for k in row.extras if k not in names]
        return names

    def columns(self) -> list[str]:
        return list(ID_COLUMNS) + [f"prob_{c}" for c in self.classes] + ["n_samples"] + self.extra_columns()

    def records(self) -> list[dict[str, Any]]:
        """Flat dicts in column order: what the TSV and the Slicer table hold."""
        extras = self.extra_columns()
        out = []
        for row in self.rows:
            record = {name: getattr(row, name) for name in ID_COLUMNS}
            record.update({f"prob_{c}": float(row.probabilities[c]) for c in self.classes})
            record["n_samples"] = int(row.n_samples)
            record.update({k: row.extras.get(k, float("nan")) for k in extras})
            out.append(record)
        return out

    def write_tsv(self, path: str | Path) -> None:
        write_records_tsv(path, self.records(), self.columns())


def write_records_tsv(path: str | Path, records: Iterable[dict[str, Any]], columns: Sequence[str]) -> None:
    """Write rows to a TSV atomically: a reader never sees a half-written file."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, delimiter="\t", lineterminator="\n")
        writer.writeheader()
        for record in records:
            writer.writerow({k: _format(record.get(k, "")) for k in columns})


def _format(value):
    if isinstance(value, float):
        return repr(value)  # full precision: a resumed run must reproduce values exactly
    return value


def read_tsv(path: str | Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))
