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

import argparse
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence, TextIO

from HCCAnalysisLib.errors import HCCInputError
# The output folder's files (locks, settings, per-case files, merging) live in engine/batch_files.py;
# re-exported here, where callers have always found them.
from HCCAnalysisLib.engine.batch_files import (  # noqa: F401
    ERROR_COLUMNS, TRACE_COLUMNS, _check_settings, _exclusive, _job_ids, _missing_folder, _records_and_columns,
    _stamp, case_file_stem, merge_results, trace_values)

if TYPE_CHECKING:
    import torch

    from HCCAnalysisLib.data.cohort import CaseRecord, Cohort
    from HCCAnalysisLib.data.reading_options import CaseReading
    from HCCAnalysisLib.data.prediction import Prediction
    from HCCAnalysisLib.engine.device import DeviceChoice
    from HCCAnalysisLib.models.package import LoadedModel

_LOG = logging.getLogger(__name__)


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
    - `process_case` may be an `engine.batch_run.CasePool` (`hcc batch --jobs N`): the cases are
      then processed by its worker processes, and the results written here as they come.
    - Under torchrun each process takes its share of the cases and rank 0 merges
      (engine/batch_run.py).
    """
    jobs = list(jobs)
    ids = _job_ids(jobs)
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise HCCInputError(f"cannot be created ({err.strerror or err})", out_dir,
                            "choose a writable output folder") from None
    from HCCAnalysisLib.engine.batch_run import process_count, run_sharded

    if process_count() > 1:  # under torchrun: this process's share of the cases
        return run_sharded(jobs, ids, process_case, out_dir, settings, progress, retry_failed, should_stop)
    with _exclusive(out_dir):
        _check_settings(out_dir, settings)
        return _run_locked(jobs, ids, process_case, out_dir, progress, retry_failed, should_stop,
                           trace_values(settings))


def _run_locked(jobs, ids, process_case, out_dir, progress, retry_failed, should_stop, trace):
    from HCCAnalysisLib.engine.batch_run import remove_stale, work_through

    remove_stale(out_dir)
    counts, cancelled = work_through(jobs, ids, process_case, out_dir, progress, retry_failed, should_stop, trace)
    results_path, errors_path = merge_results(out_dir, ids)
    return BatchResult(out_dir, results_path, errors_path, counts["done"], counts["resumed"], counts["failed"],
                       len(jobs), cancelled)


def _report(progress, index, total, case_id, status, message=""):
    if progress is not None:
        progress(BatchProgress(index, total, case_id, status, message))


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


def file_case_processor(model: LoadedModel, device: str | torch.device | None = "auto",
                        allow_unusual_input: bool = False) -> Callable[[CaseRecord], Prediction]:
    """process_case for case folders: load the phases the model reads, then predict (a case far
    outside the card's input profile fails alone, into errors.tsv, unless `allow_unusual_input`)."""
    from HCCAnalysisLib.engine.infer import predict_case

    def process(record: CaseRecord) -> Prediction:
        return predict_case(model, record.load(model.card["phases"], model.task), device=device,
                            allow_unusual_input=allow_unusual_input)

    return process


def load_batch_inputs(cohort_dir: str | Path, task: str | None, model_ref: str | Path,
                      device: str | None = "auto", reading: CaseReading | None = None
                      ) -> tuple[Cohort, LoadedModel, DeviceChoice]:
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
    cohort = load_cohort(cohort_dir, require_folders=False, reading=reading)  # a missing folder fails that case only
    choice = select_device(device)
    model = load_model(find_model(model_ref, task=task), choice.device, expected_task=task)
    return cohort, model, choice


def run_cohort(cohort_dir: str | Path, task: str | None, model_ref: str | Path, out_dir: str | Path,
               device: str | None = "auto", progress: Callable[[BatchProgress], Any] | None = print_progress,
               retry_failed: bool = True, reading: CaseReading | None = None, jobs: int = 1,
               allow_unusual_input: bool = False) -> BatchResult:
    """`hcc batch` in one call: predict every case of a cohort folder, resumably; `jobs` > 1:
    that many worker processes, each with the model loaded once (the same tables as one).

    Console example (the same as `hcc batch --cohort ... --model ... --out ...`)::

        from HCCAnalysisLib.batch import run_cohort
        result = run_cohort("HCCAnalysisLib/sample_data/demo-cohort", None, "path/to/model", "out/batch")
        print(result.results_path, result.failed)
    """
    from HCCAnalysisLib.io.output_location import check_output_folder

    check_output_folder(out_dir, [cohort_dir, model_ref], results=("results.tsv", "errors.tsv"))
    cohort, model, choice = load_batch_inputs(cohort_dir, task, model_ref, device, reading)
    if progress is not None:
        progress(BatchProgress(0, len(cohort.records), "-", "started", f"{model.name} on {choice.description}"))
    if jobs < 1:
        raise HCCInputError(f"--jobs {jobs}: must be at least 1")
    if jobs == 1:
        process: Any = file_case_processor(model, choice.device, allow_unusual_input)
    else:
        from HCCAnalysisLib.engine.batch_run import CasePool

        process = CasePool(model.directory, model.card["task"], str(choice.device), jobs,
                           allow_unusual_input=allow_unusual_input)
    try:
        return run_batch(cohort.records, process, out_dir,
                         settings=_with_reading(batch_settings(cohort_dir, model.card["task"], model), reading),
                         progress=progress,
                         retry_failed=retry_failed)
    finally:
        if jobs > 1:
            process.close()


def _with_reading(settings, reading):
    """Non-default case-reading options are part of a run's identity: a resume must use the same."""
    if reading is None or reading.is_default():
        return settings
    from dataclasses import asdict

    return {**settings, "reading": asdict(reading)}


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
    try:
        parser.add_argument("--quiet", action="store_true", help="no per-case progress lines")
    except argparse.ArgumentError:  # `hcc batch`: the CLI's global -q/--quiet is already there
        pass
    return parser


def summarize(result: BatchResult, stream: TextIO | None = None) -> int:
    """The closing lines of a batch run; returns the exit status (0 ok, 3 some cases failed)."""
    stream = stream or sys.stdout
    state = "cancelled" if result.cancelled else "finished"
    print(f"{state}: {result.done} processed, {result.resumed} from an earlier run, {result.failed} failed "
          f"of {result.total}; results: {result.results_path}; errors: {result.errors_path}", file=stream, flush=True)
    return 3 if result.failed else 0


class LoggedProgress:
    """`hcc batch`'s progress callback: one log line per case (a failure as a warning) and, on a
    terminal, a bar with the rate and ETA over the cases (runtime/progress.py)."""

    def __init__(self) -> None:
        self.bar: Any = None

    def __call__(self, step: BatchProgress) -> None:
        from HCCAnalysisLib.runtime.progress import progress

        extra = f": {step.message}" if step.message else ""
        level = logging.WARNING if step.status == "failed" else logging.INFO
        _LOG.log(level, f"[{step.index}/{step.total}] {step.case_id} {step.status}{extra}")
        if step.status == "started":
            self.close()
            self.bar = progress(total=step.total, desc="cases", unit="case")
        elif self.bar is not None:
            self.bar.update(1)
            if step.index >= step.total:
                self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _cli_batch(args):
    from HCCAnalysisLib.data.reading_options import reading_from_args

    if getattr(args, "batch_output", "print") == "log":  # `hcc batch`: messages on stderr, result on stdout
        progress: Any = LoggedProgress()
    else:  # `python -m HCCAnalysisLib.batch`, Slicer's batch script: the stdout lines scripts read
        progress = None if args.quiet else print_progress
    try:
        result = run_cohort(args.cohort, args.task, args.model, args.out, device=args.device,
                            progress=progress, retry_failed=args.retry_failed, reading=reading_from_args(args),
                            jobs=getattr(args, "jobs", 1),
                            allow_unusual_input=getattr(args, "allow_unusual_input", False))
    finally:
        if isinstance(progress, LoggedProgress):
            progress.close()
    if not isinstance(progress, LoggedProgress):
        return summarize(result)
    state = "cancelled" if result.cancelled else "finished"
    _LOG.log(logging.WARNING if result.failed else logging.INFO,
             f"{state}: {result.done} processed, {result.resumed} from an earlier run, {result.failed} failed "
             f"of {result.total}; errors: {result.errors_path}")
    print(result.results_path)  # the result, alone on stdout
    return 3 if result.failed else 0


def _add_jobs_argument(parser):
    """--jobs: the files path only (Slicer's batch script builds MRML nodes in its one process);
    --allow-unusual-input as well (data/intensity_profile.py)."""
    from HCCAnalysisLib.data.intensity_profile import add_unusual_input_argument

    parser.add_argument("--jobs", type=int, default=1,
                        help="worker processes predicting cases side by side (default 1); under torchrun, per process")
    add_unusual_input_argument(parser)


def add_batch_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `hcc batch` on the CLI's subparsers; the handler is in `func`."""
    parser = subparsers.add_parser(
        "batch", help="predict a whole cohort, resumably",
        description="Run one task's model on every case of a cohort folder. Finished cases are kept "
                    "(out/cases/); re-running the same command resumes. Exit status 3: some cases failed "
                    "(see out/errors.tsv).")
    from HCCAnalysisLib.data.reading_options import add_case_reading_arguments

    add_case_reading_arguments(add_batch_arguments(parser))  # files path only (not Scripts/batch.py's MRML)
    _add_jobs_argument(parser)
    parser.set_defaults(func=_cli_batch, batch_output="log")
    return parser


def main(argv: Sequence[str] | None = None) -> int:

    """`python -m HCCAnalysisLib.batch ...`: the same as `hcc batch ...`."""
    import argparse

    from HCCAnalysisLib.data.reading_options import add_case_reading_arguments

    parser = add_batch_arguments(argparse.ArgumentParser(prog="hcc batch", description=main.__doc__))
    add_case_reading_arguments(parser)
    _add_jobs_argument(parser)
    args = parser.parse_args(argv)
    try:
        return _cli_batch(args)
    except HCCInputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
