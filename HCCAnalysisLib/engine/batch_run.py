"""How the cases of a batch (HCCAnalysisLib/batch.py) are worked through: one after another in
this process, by a pool of worker processes (`hcc batch --jobs N`), and under torchrun by every
process for its share of the cases.

Whatever the way, each finished case is written at once to its own file (out/cases/, or
out/errors/ for a failure) by the process that holds the result, and the merged tables are
built from those files in cohort order, so the tables are the same as one process makes and a
killed run resumes as before.

Under torchrun (WORLD_SIZE > 1) rank 0 holds the folder's lock and checks the run's settings
for all; every process then sees which cases are unfinished before any is written (a barrier),
takes every WORLD_SIZE-th of them (round robin), and rank 0 merges once all are done.
"""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from pathlib import Path
from typing import Any

from HCCAnalysisLib.data.prediction import write_records_tsv
from HCCAnalysisLib.engine.batch_files import (ERROR_COLUMNS, _check_settings, _exclusive, _missing_folder,
                                               _records_and_columns, _stamp, case_file_stem, merge_results,
                                               trace_values)
from HCCAnalysisLib.errors import HCCInputError

# --- the pool: a model per worker process (spawned: safe with torch and on every OS) --------

_WORKER: dict[str, Any] = {}


def _start_worker(model_dir: str, task: str, device: str, threads: int, allow_unusual_input: bool = False) -> None:
    import torch

    from HCCAnalysisLib.batch import file_case_processor
    from HCCAnalysisLib.models.package import load_model

    torch.set_num_threads(threads)  # the workers share the machine's cores
    model = load_model(model_dir, torch.device(device), expected_task=task)
    _WORKER["process"] = file_case_processor(model, device, allow_unusual_input)


def _work(job: Any) -> tuple:
    """One case in a worker: ("done", records, columns) or ("failed", error type, message, summary)."""

    try:
        records, columns = _records_and_columns(_WORKER["process"](job))
        return ("done", records, columns)
    except Exception as err:  # noqa: BLE001 (one bad case must not stop the cohort)
        message = str(err) if isinstance(err, HCCInputError) else f"{err}\n{traceback.format_exc()}"
        return ("failed", type(err).__name__, message, str(err))


class CasePool:
    """`jobs` spawned worker processes, each with the model loaded once; `submit(job)` -> Future."""

    def __init__(self, model_dir: str | Path, task: str, device: str, jobs: int,
                 allow_unusual_input: bool = False) -> None:
        import multiprocessing

        from concurrent.futures import ProcessPoolExecutor

        if jobs < 1:
            raise HCCInputError(f"--jobs {jobs}: must be at least 1")
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # macOS, Windows
            cores = os.cpu_count() or 1
        self.jobs = jobs
        self.executor = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"),
                                            initializer=_start_worker,
                                            initargs=(str(model_dir), task, str(device), max(1, cores // jobs),
                                                      allow_unusual_input))

    def submit(self, job: Any) -> Future:
        return self.executor.submit(_work, job)

    def close(self, cancel: bool = False) -> None:
        self.executor.shutdown(wait=True, cancel_futures=cancel)


# --- the loop over the cases ------------------------------------------------------------------

def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")


class _Share:
    """Works through this process's cases, writing each result file as it comes."""

    def __init__(self, out_dir: Path, total: int, progress: Callable | None, trace: dict) -> None:
        self.out_dir, self.total, self.progress, self.trace = out_dir, total, progress, trace
        self.counts = {"done": 0, "resumed": 0, "failed": 0}

    def report(self, index: int, case_id: str, status: str, message: str = "") -> None:
        from HCCAnalysisLib.batch import _report

        _report(self.progress, index, self.total, case_id, status, message)

    def files(self, case_id: str) -> tuple[Path, Path]:

        stem = case_file_stem(case_id)
        return self.out_dir / "cases" / f"{stem}.tsv", self.out_dir / "errors" / f"{stem}.tsv"

    def failed(self, index: int, case_id: str, error_type: str, message: str, summary: str) -> None:

        write_records_tsv(self.files(case_id)[1], [{"case_id": case_id, "error_type": error_type,
                                                    "message": " ".join(message.split()), "time": _now()}],
                          ERROR_COLUMNS)
        self.counts["failed"] += 1
        self.report(index, case_id, "failed", summary)

    def done(self, index: int, case_id: str, records: list, columns: list) -> None:

        records, columns = _stamp(records, columns, self.trace)
        result_file, error_file = self.files(case_id)
        write_records_tsv(result_file, records, columns)
        error_file.unlink(missing_ok=True)
        self.counts["done"] += 1
        self.report(index, case_id, "done", f"{len(records)} row(s)")

    def one(self, index: int, job: Any, case_id: str, process_case: Callable) -> None:
        """A case in this process (the serial path)."""

        try:
            _missing_folder(job)
            records, columns = _records_and_columns(process_case(job))
        except Exception as err:  # noqa: BLE001 (one bad case must not stop the cohort)
            message = str(err) if isinstance(err, HCCInputError) else f"{err}\n{traceback.format_exc()}"
            self.failed(index, case_id, type(err).__name__, message, str(err))
            return
        self.done(index, case_id, records, columns)

    def pooled(self, work: list, pool: CasePool, should_stop: Callable[[], bool] | None) -> bool:
        """The cases through the pool, at most two per worker in flight; True when stopped."""

        in_flight: dict[Future, tuple[int, str]] = {}

        def collect(block_until_one: bool) -> None:
            finished, _ = wait(list(in_flight), return_when=FIRST_COMPLETED) if block_until_one else (
                [f for f in in_flight if f.done()], None)
            for future in finished:
                index, case_id = in_flight.pop(future)
                outcome = future.result()
                if outcome[0] == "done":
                    self.done(index, case_id, outcome[1], outcome[2])
                else:
                    self.failed(index, case_id, *outcome[1:])

        stopped = False
        try:
            for index, job, case_id in work:
                while len(in_flight) >= 2 * pool.jobs:
                    collect(True)
                if should_stop is not None and should_stop():
                    stopped = True
                    break
                try:
                    _missing_folder(job)
                except HCCInputError as err:
                    self.failed(index, case_id, type(err).__name__, str(err), str(err))
                    continue
                in_flight[pool.submit(job)] = (index, case_id)
            while in_flight:
                collect(True)
        except BaseException:
            pool.close(cancel=True)
            raise
        return stopped


def work_through(jobs: Sequence[Any], ids: Sequence[str], process_case: Callable | CasePool, out_dir: Path,
                 progress: Callable | None, retry_failed: bool, should_stop: Callable[[], bool] | None,
                 trace: dict, rank: int = 0, size: int = 1,
                 before_work: Callable[[], Any] | None = None) -> tuple[dict[str, int], bool]:
    """This process's share of the unfinished cases, processed; returns (counts, cancelled).

    Cases finished in an earlier run (and, without `retry_failed`, cases that failed) are
    counted and reported by rank 0 only. `before_work()` runs once every process has seen
    which cases are unfinished (the torchrun barrier)."""
    share = _Share(out_dir, len(jobs), progress, trace)
    pending = []
    for index, (job, case_id) in enumerate(zip(jobs, ids), start=1):
        result_file, error_file = share.files(case_id)
        if result_file.is_file():
            if rank == 0:
                error_file.unlink(missing_ok=True)
                share.counts["resumed"] += 1
                share.report(index, case_id, "resumed")
        elif error_file.is_file() and not retry_failed:
            if rank == 0:
                share.counts["failed"] += 1
                share.report(index, case_id, "skipped-failed")
        else:
            pending.append((index, job, case_id))
    if before_work is not None:
        before_work()
    mine = pending[rank::size]  # round robin, the same split in every process
    cancelled = False
    if isinstance(process_case, CasePool):
        cancelled = share.pooled(mine, process_case, should_stop)
    else:
        for index, job, case_id in mine:
            if should_stop is not None and should_stop():
                cancelled = True
                break
            share.one(index, job, case_id, process_case)
    return share.counts, cancelled


def remove_stale(out_dir: Path) -> None:
    """Temporary files a run killed mid-write left behind; never a result."""
    for stale in [*(out_dir / "cases").glob(".*.tmp"), *(out_dir / "errors").glob(".*.tmp")]:
        stale.unlink(missing_ok=True)


def process_count() -> int:
    """WORLD_SIZE of a torchrun launch (1 for a plain run), read without importing torch."""
    return int(os.environ.get("WORLD_SIZE", 1))


def run_sharded(jobs: Sequence[Any], ids: Sequence[str], process_case: Callable | CasePool, out_dir: Path,
                settings: dict | None, progress: Callable | None, retry_failed: bool,
                should_stop: Callable[[], bool] | None) -> Any:
    """`run_batch` under torchrun: this process's share of the cases; rank 0 merges (see the module
    docstring). Every process returns the same BatchResult, with the counts of all processes."""
    import contextlib

    from HCCAnalysisLib.batch import BatchResult
    from HCCAnalysisLib.engine import distributed

    rank, size = distributed.start_work_group()
    with contextlib.ExitStack() as stack:
        problem = None
        if rank == 0:  # one lock and one settings check for the whole launch
            try:
                stack.enter_context(_exclusive(out_dir))
                _check_settings(out_dir, settings)
                remove_stale(out_dir)
            except HCCInputError as err:
                problem = (str(err.args[0]) if err.args else str(err), str(err))
        problem = distributed.broadcast_object(problem)
        if problem is not None:
            raise HCCInputError(problem[1] if rank == 0 else f"{problem[1]} (reported by process 1)")
        counts, cancelled = work_through(jobs, ids, process_case, out_dir, progress, retry_failed, should_stop,
                                         trace_values(settings), rank, size, before_work=distributed.barrier)
        every = distributed.gather_objects((counts, cancelled))  # also the barrier: every case is written
        if rank == 0:
            merge_results(out_dir, ids)
        distributed.barrier()
    total = {k: sum(c[k] for c, _ in every) for k in counts}
    return BatchResult(out_dir, out_dir / "results.tsv", out_dir / "errors.tsv", total["done"], total["resumed"],
                       total["failed"], len(jobs), any(stopped for _, stopped in every))
