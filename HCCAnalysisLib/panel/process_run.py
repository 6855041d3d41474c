"""Apply and Run all out of process: a child Python runs `hcc run-job` on a job folder.

Inside Slicer the main thread holds Python's GIL while idle, so a worker thread there is
starved; a child process runs at full speed and can be killed at any moment. The panel
polls `ProcessRun.poll()` from a QTimer (no threads): it reads the complete lines the
child appended to the job folder's events file. `cancel()` kills the child and everything
it started (its own process group / session), at once.

The child is Slicer's `PythonSlicer` inside Slicer (the same Python and packages, without
the GUI), `sys.executable` elsewhere; the library folder goes first on its PYTHONPATH.
"""

from __future__ import annotations

from typing import Any, Sequence

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import HCCAnalysisLib
from HCCAnalysisLib.panel.job_protocol import EVENTS_FILE, LineReader, RunEvent

_CHILD_LOGS = ("stdout.log", "stderr.log")


def child_python() -> str:
    """Slicer's PythonSlicer when running in Slicer (found as SlicerNNUnet and TotalSegmentator
    do), else the current interpreter."""
    slicer = sys.modules.get("slicer")
    home = getattr(getattr(slicer, "app", None), "slicerHome", None)
    names = ("PythonSlicer.exe", "PythonSlicer") if os.name == "nt" else ("PythonSlicer",)
    if home:
        for name in names:
            candidate = Path(home) / "bin" / name
            if candidate.is_file():
                return str(candidate)
        found = shutil.which("PythonSlicer")
        if found:
            return found
    return sys.executable


def child_command(job_dir: str | Path, python: str | None = None) -> list[str]:
    return [python or child_python(), "-m", "HCCAnalysisLib.cli", "run-job", "--job", str(job_dir)]


def child_environment() -> dict[str, str]:
    """This process's environment with the folder holding HCCAnalysisLib first on PYTHONPATH."""
    env = dict(os.environ)
    library_root = str(Path(HCCAnalysisLib.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([library_root] + [p for p in [env.get("PYTHONPATH", "")] if p])
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


class ProcessRun:
    """One child process running a job folder's jobs; poll it from the GUI thread."""

    def __init__(self, job_dir: str | Path, labels: Sequence[str], python: str | None = None) -> None:
        self.job_dir = Path(job_dir)
        self.labels = list(labels)
        self.jobs: list = []  # the panel Jobs, when started by start_job_run (their cases take the results)
        self.command = child_command(self.job_dir, python)
        self.results: dict[int, dict[str, str]] = {}  # job index -> result files
        self.errors: dict[int, str] = {}  # job index -> message
        self.progress: dict[int, float] = {}
        self.finished = self.cancelled = False
        self._reader = LineReader(self.job_dir / EVENTS_FILE)
        self._process: subprocess.Popen | None = None

    def start(self) -> ProcessRun:
        logs = [open(self.job_dir / name, "wb") for name in _CHILD_LOGS]
        try:
            # Its own process group / session: cancel kills its children too (and no console window on Windows).
            options: dict[str, Any] = {"start_new_session": True} if os.name != "nt" else {
                "creationflags": subprocess.CREATE_NEW_PROCESS_GROUP | getattr(subprocess, "CREATE_NO_WINDOW", 0)}
            self._process = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=logs[0], stderr=logs[1],
                                             env=child_environment(), cwd=str(self.job_dir), **options)
        finally:
            for handle in logs:
                handle.close()
        return self

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _kill(self) -> None:
        if not self.running():
            return
        if os.name == "nt":
            subprocess.run(["taskkill", "/F", "/T", "/PID", str(self._process.pid)], capture_output=True)
        else:
            try:
                os.killpg(self._process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._process.wait()

    def cancel(self) -> None:
        """Kill the child (and its children) now; results not yet reported are dropped."""
        if self.finished:
            return
        self._kill()
        self.cancelled = self.finished = True

    def stderr_tail(self, lines: int = 8) -> str:
        try:
            text = (self.job_dir / _CHILD_LOGS[1]).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])

    def poll(self) -> list[RunEvent]:
        """Events since the last poll; updates results, errors, progress and finished."""
        if self.finished:
            return []
        exited = self._process is not None and self._process.poll() is not None
        events = []
        for event in self._reader.read_new():  # read after the exit check: nothing written before it is missed
            if not (0 if event.kind in ("started", "progress", "result") else -1) <= event.index < len(self.labels):
                self._reader.garbage.append(f"{event.kind} for job {event.index} of {len(self.labels)}")
                continue
            events.append(event)
            if event.kind == "result":
                self.results[event.index] = dict(event.value or {})
            elif event.kind == "error":
                self.errors[event.index] = str(event.value)
            elif event.kind == "progress":
                self.progress[event.index] = float(event.value[0] or 0.0)
            elif event.kind == "finished":
                self.finished = True
        if exited and not self.finished:  # died without saying so: a crash, killed from outside
            message = f"the analysis process ended with status {self._process.returncode}"
            tail = self.stderr_tail()
            message += f":\n{tail}" if tail else ""
            for index in range(len(self.labels)):
                if index not in self.results and index not in self.errors:
                    self.errors[index] = message
                    events.append(RunEvent("error", index, self.labels[index], message))
            self.finished = True
            events.append(RunEvent("finished", -1, value={"crashed": True}))
        return events  # a child still exiting after "finished" is reaped (or killed) by remove_folder

    def progress_value(self) -> int:
        """For a bar of 100 per job: an ended job counts 100, the running one its reported fraction."""
        return sum(100 if i in self.results or i in self.errors else int(100 * self.progress.get(i, 0.0))
                   for i in range(len(self.labels)))

    def summary(self) -> str:
        """One line for a status label, from the events polled so far."""
        state = "Cancelled" if self.cancelled else "Finished" if self.finished else "Running"
        return f"{state}: {len(self.results)} of {len(self.labels)} step(s) done, {len(self.errors)} failed."

    def remove_folder(self) -> None:
        """Delete the job folder (its results are in the scene, or were dropped); kills a live child first."""
        self._kill()
        shutil.rmtree(self.job_dir, ignore_errors=True)

    def wait(self, timeout: float | None = None) -> list[RunEvent]:
        """Block until the child ends (tests, scripts); returns the events not yet polled."""
        deadline = None if timeout is None else time.monotonic() + timeout
        events = []
        while not self.finished:
            events += self.poll()
            if not self.finished:
                if deadline is not None and time.monotonic() > deadline:
                    break
                time.sleep(0.05)
        return events


def start_job_run(jobs: Sequence[Any], python: str | None = None) -> ProcessRun:
    """Write `jobs` (panel Jobs) to a new temporary job folder and start the child on it."""
    import tempfile

    from HCCAnalysisLib.panel.job_files import write_job_folder

    folder = Path(tempfile.mkdtemp(prefix="hcc-job-"))
    try:  # a folder that cannot be written, or a Python that cannot start, leaves nothing behind
        write_job_folder(list(jobs), folder)
        run = ProcessRun(folder, [job.task for job in jobs], python)
        run.jobs = list(jobs)
        return run.start()
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
