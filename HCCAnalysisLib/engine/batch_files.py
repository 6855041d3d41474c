"""The files of a batch's output folder (see HCCAnalysisLib/batch.py for the layout): the lock, the
run's settings, one file per case, and the merged tables. Split from batch.py, which keeps the
run itself and the command line; batch.py re-exports what callers import from it.
"""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path
from typing import Iterator, Sequence

from HCCAnalysisLib.atomic import write_text_atomic
from HCCAnalysisLib.errors import HCCInputError
from HCCAnalysisLib.data.prediction import read_tsv, write_records_tsv

ERROR_COLUMNS = ("case_id", "error_type", "message", "time")
# settings key -> result column: what each result row carries so merged tables stay traceable
TRACE_COLUMNS = {"task": "task", "model_version": "model_version", "model_weights_sha256": "model_weights_sha256"}
_SAFE_STEM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def case_file_stem(case_id: str) -> str:
    """A file name for a case id; unusual characters are %-escaped so ids stay distinct."""
    if _SAFE_STEM.match(case_id):
        return case_id
    return "".join(c if c.isalnum() or c in "._-" else f"%{ord(c):02X}" for c in case_id)


def _atomic_write_text(path, text):
    write_text_atomic(path, text)


def _check_settings(out_dir, settings):
    """Record the run's settings; refuse to resume into a folder made with other ones."""
    manifest = out_dir / "batch.json"
    settings = json.loads(json.dumps(settings or {}, sort_keys=True, default=str))
    if manifest.is_file():
        try:
            previous = json.loads(manifest.read_text(encoding="utf-8"))
        except ValueError:
            raise HCCInputError("is not valid JSON", manifest, "delete the output folder and start again") from None
        if previous != settings:
            changed = sorted(k for k in set(previous) | set(settings) if previous.get(k) != settings.get(k))
            raise HCCInputError(
                f"holds results made with other settings ({', '.join(changed)} differ)", out_dir,
                "use a new output folder, or the same task, model and cohort to resume")
    else:
        _atomic_write_text(manifest, json.dumps(settings, indent=2, sort_keys=True) + "\n")


@contextlib.contextmanager
def _exclusive(out_dir: Path) -> Iterator[None]:
    """Hold a lock on out/.lock while a run writes there, so that a second run into the same
    folder is refused instead of doing cases twice. `filelock` uses flock on POSIX and
    LockFileEx on Windows: the OS drops the lock when the process dies, even by SIGKILL, so a
    killed run never blocks the resume, and Windows batches are protected too."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(out_dir / ".lock"), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise HCCInputError("is being written by another batch run", out_dir,
                            "wait for it to finish, or use another output folder; if no run is going on "
                            "(a file system without locks), delete its .lock file") from None
    except OSError as err:
        raise HCCInputError(f"cannot hold the batch lock .lock ({err.strerror or err})", out_dir,
                            "choose a writable output folder") from None
    try:
        yield
    finally:
        lock.release()


def _job_ids(jobs):
    ids = [str(job.case_id) for job in jobs]
    seen, stems = set(), {}
    for case_id in ids:
        if case_id in seen:
            raise HCCInputError(f"case '{case_id}' is listed twice", "batch")
        seen.add(case_id)
        stem = case_file_stem(case_id).lower()  # case-insensitive file systems (macOS, Windows)
        if stem in stems:
            raise HCCInputError(f"cases '{stems[stem]}' and '{case_id}' differ only by letter case", "batch",
                                "their result files would collide on macOS and Windows")
        stems[stem] = case_id
    return ids


def _records_and_columns(result):
    """Accept a Prediction (records + columns) or a plain list of dicts."""
    if hasattr(result, "records"):
        return result.records(), list(result.columns())
    records = list(result or [])
    columns = []
    for record in records:
        columns += [k for k in record if k not in columns]
    return records, columns


def trace_values(settings: dict | None) -> dict:
    """The traceability columns (task, model version, weights SHA-256) a run's settings give;
    every result row of the run carries them. Settings without them (a caller's own engine
    use) add nothing."""
    settings = settings or {}
    return {column: str(settings[key]) for key, column in TRACE_COLUMNS.items() if settings.get(key) is not None}


def _stamp(records, columns, trace):
    """Add the run's trace values to every row (after the row's own columns)."""
    if not trace:
        return records, columns
    records = [{**record, **trace} for record in records]
    return records, [c for c in columns if c not in trace] + list(trace)


def _missing_folder(job):
    """A case listed in cases.csv whose folder is absent: fail that case alone, naming the folder."""
    folder = getattr(job, "folder", None)
    if folder is not None and not Path(folder).is_dir():
        raise HCCInputError(f"case '{job.case_id}' has no folder {Path(folder).name}/ (it is listed in cases.csv)",
                            folder, "add the case folder, or remove the case from cases.csv")


def merge_results(out_dir: str | Path, case_ids: Sequence[str]) -> tuple[Path, Path]:
    """Merge per-case files, in `case_ids` order, into results.tsv and errors.tsv (atomically).

    Values are copied as text, so the merged table is byte-for-byte what the cases wrote.
    """
    out_dir = Path(out_dir)
    rows, columns, errors = [], [], []
    for case_id in case_ids:
        stem = case_file_stem(case_id)
        result_file = out_dir / "cases" / f"{stem}.tsv"
        if result_file.is_file():
            with open(result_file, encoding="utf-8") as handle:
                header = handle.readline().rstrip("\n").split("\t")
            columns += [c for c in header if c and c not in columns]
            rows += read_tsv(result_file)
            continue
        error_file = out_dir / "errors" / f"{stem}.tsv"
        if error_file.is_file():
            errors += read_tsv(error_file)
    results_path, errors_path = out_dir / "results.tsv", out_dir / "errors.tsv"
    write_records_tsv(results_path, rows, columns)
    write_records_tsv(errors_path, errors, ERROR_COLUMNS)
    return results_path, errors_path
