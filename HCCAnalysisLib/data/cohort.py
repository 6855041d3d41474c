"""Cohort: a folder with `cases.csv` (case_id, patient_id, label and clinical columns)
and one sub-folder per case."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import csv
from dataclasses import dataclass, field
from pathlib import Path

from HCCAnalysisLib.data.case_loading import load_for_task
from HCCAnalysisLib.data.reading_options import CaseReading
from HCCAnalysisLib.errors import HCCInputError

if TYPE_CHECKING:
    from HCCAnalysisLib.data.case import Case
    from HCCAnalysisLib.data.microscopy_case import MicroscopyCase
    from HCCAnalysisLib.methods.task import Task

REQUIRED_COLUMNS = ("case_id", "patient_id")


@dataclass(frozen=True)
class CaseRecord:
    case_id: str
    patient_id: str
    folder: Path
    fields: dict[str, Any] = field(default_factory=dict)
    reading: CaseReading = CaseReading()  # labels, segmentation pattern, phase map (+ the row's own columns)

    def load(self, phases: Sequence[str] | None = None, task: Task | None = None) -> Case | MicroscopyCase:
        """The case as `task` reads it (radiology volumes by default)."""
        return load_for_task(self.folder, task, phases, self.case_id, self.patient_id, self.fields,
                             reading=self.reading)


@dataclass
class Cohort:
    folder: Path
    records: list[CaseRecord]

    def patients(self) -> list[str]:
        return sorted({r.patient_id for r in self.records})

    def column(self, name: str) -> list[str]:
        """The values of a cases.csv column, one per record; refuses a missing or empty column."""
        missing = [r.case_id for r in self.records if not str(r.fields.get(name, "")).strip()]
        if missing:
            raise HCCInputError(f"column '{name}' is missing or empty for cases {missing[:5]}",
                                self.folder / "cases.csv")
        return [r.fields[name].strip() for r in self.records]


def read_cases_table(table: "str | Path") -> "tuple[list[str], list[dict[str, str]]]":
    """A cases.csv as (columns, rows of stripped cells), read strictly: a stray quote or a row whose
    width is not the header's is an error naming its line, never a half-read table. Blank lines
    are skipped. The one parser of cases.csv (cohorts, `hcc predict --cases-csv`, batches)."""
    table = Path(table)
    try:
        with open(table, newline="", encoding="utf-8-sig") as handle:
            lines = list(csv.reader(handle, strict=True))
    except UnicodeDecodeError:
        raise HCCInputError("is not UTF-8 text", table, "save it as UTF-8 CSV") from None
    except csv.Error as err:
        raise HCCInputError(f"is not well-formed CSV: {err}", table, "check the quotes on that line") from None
    except OSError as err:
        raise HCCInputError(f"could not be read: {err.strerror or err}", table) from None
    numbered = [(n, row) for n, row in enumerate(lines, start=1) if any(cell.strip() for cell in row)]
    if not numbered:
        return [], []
    columns = [c.strip() for c in numbered[0][1]]
    rows = []
    for n, row in numbered[1:]:
        if len(row) != len(columns):
            raise HCCInputError(f"line {n} has {len(row)} cells, the header has {len(columns)}", table,
                                "every row needs one cell per column (empty cells are fine)")
        rows.append({c: v.strip() for c, v in zip(columns, row)})
    return columns, rows


def load_cohort(folder: str | Path, require_folders: bool = True, reading: CaseReading | None = None) -> Cohort:
    """Read and check `cases.csv`; case folders are checked to exist, not yet loaded.

    `reading` (command-line label / segmentation / phase options) goes with every record; a row's
    own columns liver_label, lesion_label, segmentation, phase_map override it for that case.

    `require_folders=False` (the batch engine) keeps a case without its folder in the list, so
    that it fails on its own (errors.tsv) instead of stopping the whole cohort."""
    folder = Path(folder)
    table = folder / "cases.csv"
    if not table.is_file():
        raise HCCInputError("has no cases.csv", folder, "a cohort is a folder with cases.csv and one folder per case")
    columns, rows = read_cases_table(table)
    absent = [c for c in REQUIRED_COLUMNS if c not in columns]
    if absent:
        raise HCCInputError(f"lacks the column(s) {absent}", table, f"columns found: {columns}")
    twice = sorted({c for c in columns if columns.count(c) > 1})
    if twice:
        raise HCCInputError(f"column '{twice[0]}' appears twice", table, "each column name must be unique")
    if not rows:
        raise HCCInputError("lists no case", table)
    records, seen = [], set()
    for line, row in enumerate(rows, start=2):
        case_id, patient_id = (row.get("case_id") or "").strip(), (row.get("patient_id") or "").strip()
        if not case_id or not patient_id:
            raise HCCInputError(f"line {line} has an empty case_id or patient_id", table)
        if case_id in (".", "..") or any(ch in case_id for ch in "/\\") or case_id != Path(case_id).name:
            raise HCCInputError(f"case_id '{case_id}' (line {line}) is not a plain folder name", table,
                                "case folders must sit directly in the cohort folder")
        if case_id in seen:
            raise HCCInputError(f"case_id '{case_id}' appears more than once (line {line})", table)
        seen.add(case_id)
        case_folder = folder / case_id
        if require_folders and not case_folder.is_dir():
            raise HCCInputError(f"case '{case_id}' (line {line}) has no folder {case_folder.name}/", table)
        fields = {k: (v or "").strip() for k, v in row.items() if k not in REQUIRED_COLUMNS and k is not None}
        try:
            (reading or CaseReading()).for_case(fields)  # a malformed per-case column: refused here, by line
        except HCCInputError as err:
            raise HCCInputError(f"line {line}: {err}", table) from None
        records.append(CaseRecord(case_id, patient_id, case_folder, fields, reading or CaseReading()))
    return Cohort(folder, records)
