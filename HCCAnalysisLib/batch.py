"""Crash-safe cohort batch engine, shared by `hcc batch` and the Slicer batch script.

Layout of the output folder::

    out/batch.json          what produced these results (task, model, cohort); a resume
                            with other settings is refused, so results never get mixed
    out/cases/<case>.tsv    one file per finished case, written atomically (temp + rename)
    out/errors/<case>.tsv   one file per failed case (its error), removed once it succeeds
    out/results.tsv         all finished cases merged in cohort order
    out/errors.tsv          all failed cases merged
    out/.lock               held (filelock: flock on POSIX, LockFileEx on Windows) while a run writes

Every result row carries the task, the model version and the weights' SHA-256 (from the
run's settings, see TRACE_COLUMNS), so rows merged from several runs can be traced to the
model that made them. A case listed in cases.csv whose folder is missing fails on its own
(errors.tsv) like any other bad case; the rest of the cohort is processed.

The per-case files are the truth: a run killed at any moment loses at most the case
it was working on, and the next run skips every case that has a file, retries the
failed ones and merges again. How a case is processed is the caller's business:
`process_case(job)` returns a Prediction (or a list of flat record dicts); the file
path loads case folders, the Slicer path builds MRML nodes.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence, TextIO

from HCCAnalysisLib.atomic import write_text_atomic
from HCCAnalysisLib.errors import HCCInputError
from HCCAnalysisLib.data.prediction import read_tsv, write_records_tsv

if TYPE_CHECKING:
    import argparse

    import torch

    from HCCAnalysisLib.data.cohort import CaseRecord, Cohort
    from HCCAnalysisLib.data.prediction import Prediction
    from HCCAnalysisLib.engine.device import DeviceChoice
    from HCCAnalysisLib.models.package import LoadedModel

ERROR_COLUMNS = ("case_id", "error_type", "message", "time")
# settings key -> result column: what each result row carries so merged tables stay traceable
TRACE_COLUMNS = {"task": "task", "model_version": "model_version", "model_weights_sha256": "model_weights_sha256"}
_SAFE_STEM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class BatchProgress:
    """One step reported to the progress callback."""

    index: int  # 1-based position in the cohort
    total: int
    case_id: str
    # "started" (index 0, before the first case) | "done" | "resumed" (finished in an earlier
    # run) | "failed" | "skipped-failed" (failed before, --no-retry-failed)
    status: str
    message: str = ""


@dataclass(frozen=True)
class BatchResult:
    out_dir: Path
    results_path: Path
    errors_path: Path
    done: int  # processed in this run
    resumed: int  # finished by an earlier run
    failed: int
    total: int
    cancelled: bool = False


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


def run_batch(jobs: Iterable[Any], process_case: Callable[[Any], Prediction | list[dict[str, Any]]],
              out_dir: str | Path, settings: dict[str, Any] | None = None,
              progress: Callable[[BatchProgress], Any] | None = None, retry_failed: bool = True,
              should_stop: Callable[[], bool] | None = None) -> BatchResult:
    """Process every job (an object with `.case_id`) once, resumably; returns a BatchResult.

    - `process_case(job)` -> Prediction or list of dicts; an exception marks the case failed
      (recorded in errors/, the run goes on). KeyboardInterrupt and SystemExit stop the run.
    - `settings`: a JSON-able dict identifying the run (task, model, cohort); compared on resume.
      Its task / model_version / model_weights_sha256 (see `batch_settings`) are added to every
      result row (TRACE_COLUMNS).
    - A job with a `.folder` that does not exist fails alone (errors.tsv names the folder).
    - `progress(BatchProgress)` is called after every case; `should_stop()` is polled before
      every case (the panel's Cancel), leaving finished cases in place.
    - `retry_failed=False` leaves cases that failed in an earlier run alone.
    """
    jobs = list(jobs)
    ids = _job_ids(jobs)
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise HCCInputError(f"cannot be created ({err.strerror or err})", out_dir,
                            "choose a writable output folder") from None
    with _exclusive(out_dir):
        _check_settings(out_dir, settings)
        return _run_locked(jobs, ids, process_case, out_dir, progress, retry_failed, should_stop,
                           trace_values(settings))


def _run_locked(jobs, ids, process_case, out_dir, progress, retry_failed, should_stop, trace):
    cases_dir, errors_dir = out_dir / "cases", out_dir / "errors"
    for stale in [*cases_dir.glob(".*.tmp"), *errors_dir.glob(".*.tmp")]:
        stale.unlink(missing_ok=True)  # left by a run killed mid-write; never a result
    counts = {"done": 0, "resumed": 0, "failed": 0}
    cancelled = False
    for index, (job, case_id) in enumerate(zip(jobs, ids), start=1):
        stem = case_file_stem(case_id)
        result_file, error_file = cases_dir / f"{stem}.tsv", errors_dir / f"{stem}.tsv"
        if result_file.is_file():
            error_file.unlink(missing_ok=True)
            counts["resumed"] += 1
            _report(progress, index, len(jobs), case_id, "resumed")
            continue
        if error_file.is_file() and not retry_failed:
            counts["failed"] += 1
            _report(progress, index, len(jobs), case_id, "skipped-failed")
            continue
        if should_stop is not None and should_stop():
            cancelled = True
            break
        try:
            _missing_folder(job)
            records, columns = _stamp(*_records_and_columns(process_case(job)), trace)
        except Exception as err:  # noqa: BLE001 (one bad case must not stop the cohort)
            message = str(err) if isinstance(err, HCCInputError) else f"{err}\n{traceback.format_exc()}"
            write_records_tsv(error_file, [{
                "case_id": case_id, "error_type": type(err).__name__,
                "message": " ".join(message.split()), "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
            }], ERROR_COLUMNS)
            counts["failed"] += 1
            _report(progress, index, len(jobs), case_id, "failed", str(err))
            continue
        write_records_tsv(result_file, records, columns)
        error_file.unlink(missing_ok=True)
        counts["done"] += 1
        _report(progress, index, len(jobs), case_id, "done", f"{len(records)} row(s)")
    results_path, errors_path = merge_results(out_dir, ids)
    return BatchResult(out_dir, results_path, errors_path, counts["done"], counts["resumed"], counts["failed"],
                       len(jobs), cancelled)


def _report(progress, index, total, case_id, status, message=""):
    if progress is not None:
        progress(BatchProgress(index, total, case_id, status, message))


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


def print_progress(step: BatchProgress, stream: TextIO | None = None) -> None:
    """Progress callback for consoles and logs: one line per case, flushed at once."""
    stream = stream or sys.stdout
    extra = f": {step.message}" if step.message else ""
    print(f"[{step.index}/{step.total}] {step.case_id} {step.status}{extra}", file=stream, flush=True)


# --- the file path: cohort folders on disk (used by `hcc batch`) ---------------------------

def batch_settings(cohort_dir: str | Path, task: str | None, model: LoadedModel) -> dict[str, Any]:
    """What identifies a run for resuming: task, model identity and cohort."""
    card = model.card
    return {
        "task": task,
        "model_version": str(card.get("version", "0")),
        "model_weights_sha256": card.get("weights_sha256"),
        "cohort": str(Path(cohort_dir).resolve()),
    }


def file_case_processor(model: LoadedModel,
                        device: str | torch.device | None = "auto") -> Callable[[CaseRecord], Prediction]:
    """process_case for case folders: load the phases the model reads, then predict."""
    from HCCAnalysisLib.engine.infer import predict_case

    def process(record: CaseRecord) -> Prediction:
        return predict_case(model, record.load(model.card["phases"], model.task), device=device)

    return process


def load_batch_inputs(cohort_dir: str | Path, task: str | None, model_ref: str | Path,
                      device: str | None = "auto") -> tuple[Cohort, LoadedModel, DeviceChoice]:
    """Resolve the cohort, the model (for `task`; None: the model's own task) and the device.

    Every check happens here, before any output is written.
    """
    from HCCAnalysisLib.data.cohort import load_cohort
    from HCCAnalysisLib.engine.device import select_device
    from HCCAnalysisLib.models.registry import find_model
    from HCCAnalysisLib.models.package import load_model
    from HCCAnalysisLib.tasks import get_task

    if task is not None:
        get_task(task)
    cohort = load_cohort(cohort_dir, require_folders=False)  # a missing case folder fails that case only
    choice = select_device(device)
    model = load_model(find_model(model_ref, task=task), choice.device, expected_task=task)
    return cohort, model, choice


def run_cohort(cohort_dir: str | Path, task: str | None, model_ref: str | Path, out_dir: str | Path,
               device: str | None = "auto", progress: Callable[[BatchProgress], Any] | None = print_progress,
               retry_failed: bool = True) -> BatchResult:
    """`hcc batch` in one call: predict every case of a cohort folder, resumably.

    Console example (the same as `hcc batch --cohort ... --model ... --out ...`)::

        from HCCAnalysisLib.batch import run_cohort
        result = run_cohort("SampleData/demo-cohort", None, "path/to/model", "out/batch")
        print(result.results_path, result.failed)
    """
    cohort, model, choice = load_batch_inputs(cohort_dir, task, model_ref, device)
    if progress is not None:
        progress(BatchProgress(0, len(cohort.records), "-", "started", f"{model.name} on {choice.description}"))
    return run_batch(cohort.records, file_case_processor(model, choice.device), out_dir,
                     settings=batch_settings(cohort_dir, model.card["task"], model), progress=progress,
                     retry_failed=retry_failed)


def add_batch_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options shared by `hcc batch` and Scripts/batch.py (Slicer)."""
    parser.add_argument("--cohort", required=True, help="cohort folder (cases.csv + one folder per case)")
    parser.add_argument("--task", default=None,
                        help="task name (see `hcc tasks`); default: the model's task. Given, it must match the model")
    parser.add_argument("--model", required=True, help="model package folder, or an installed version / 'latest'")
    parser.add_argument("--out", required=True, help="output folder; re-running with it resumes")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    parser.add_argument("--no-retry-failed", dest="retry_failed", action="store_false",
                        help="on resume, leave cases that failed before alone")
    parser.add_argument("--quiet", action="store_true", help="no per-case progress lines")
    return parser


def summarize(result: BatchResult, stream: TextIO | None = None) -> int:
    """The closing lines of a batch run; returns the exit status (0 ok, 3 some cases failed)."""
    stream = stream or sys.stdout
    state = "cancelled" if result.cancelled else "finished"
    print(f"{state}: {result.done} processed, {result.resumed} from an earlier run, {result.failed} failed "
          f"of {result.total}; results: {result.results_path}; errors: {result.errors_path}", file=stream, flush=True)
    return 3 if result.failed else 0


def _cli_batch(args):
    result = run_cohort(args.cohort, args.task, args.model, args.out, device=args.device,
                        progress=None if args.quiet else print_progress, retry_failed=args.retry_failed)
    return summarize(result)


def add_batch_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `hcc batch` on the CLI's subparsers; the handler is in `func`."""
    parser = subparsers.add_parser(
        "batch", help="predict a whole cohort, resumably",
        description="Run one task's model on every case of a cohort folder. Finished cases are kept "
                    "(out/cases/); re-running the same command resumes. Exit status 3: some cases failed "
                    "(see out/errors.tsv).")
    add_batch_arguments(parser)
    parser.set_defaults(func=_cli_batch)
    return parser


def main(argv: Sequence[str] | None = None) -> int:

    """`python -m HCCAnalysisLib.batch ...`: the same as `hcc batch ...`."""
    import argparse

    parser = add_batch_arguments(argparse.ArgumentParser(prog="hcc batch", description=main.__doc__))
    args = parser.parse_args(argv)
    try:
        return _cli_batch(args)
    except HCCInputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
