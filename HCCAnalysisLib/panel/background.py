"""Run a list of steps on a worker thread, with progress, results and Cancel, for GUIs.

The Slicer panel builds everything that touches MRML on the GUI thread (MRML is not
thread-safe), hands the pure computations (model loading, predict_case) to a
`BackgroundRun`, and polls it from a Qt timer so the GUI stays responsive. torch
releases the GIL while it computes, so the GUI thread keeps running. Cancel takes
effect between steps; a step already running finishes first, its result is dropped.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import queue
import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class RunEvent:
    kind: str  # "started" | "result" | "error" | "finished"
    index: int  # the step (-1 for "finished")
    label: str = ""
    value: Any = None  # the step's result, or the exception for "error"


class BackgroundRun:
    """Steps are (label, callable) pairs run in order on one daemon thread.

    A failing step is reported as an "error" event and the next step still runs
    (one task's bad input must not lose the other tasks' results of "Run all").
    """

    def __init__(self, steps: Iterable[tuple[str, Callable[[], Any]]]) -> None:
        self.steps = list(steps)
        self._events = queue.Queue()
        self._cancel = threading.Event()
        self._thread = threading.Thread(target=self._work, name="HCCAnalysis worker", daemon=True)
        self.results = {}  # step index -> value
        self.errors = {}  # step index -> exception
        self.finished = False
        self.cancelled = False

    def start(self) -> BackgroundRun:
        self._thread.start()
        return self

    def cancel(self) -> None:
        """Ask the worker to stop before its next step."""
        self._cancel.set()

    def _work(self):
        for index, (label, step) in enumerate(self.steps):
            if self._cancel.is_set():
                break
            self._events.put(RunEvent("started", index, label))
            try:
                value = step()
            except Exception as err:  # noqa: BLE001 (reported to the GUI thread, not lost)
                self._events.put(RunEvent("error", index, label, err))
                continue
            if not self._cancel.is_set():
                self._events.put(RunEvent("result", index, label, value))
        self._events.put(RunEvent("finished", -1, value=self._cancel.is_set()))

    def poll(self) -> list[RunEvent]:
        """Events since the last poll (call from the GUI thread); also updates results/errors."""
        events = []
        while True:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                return events
            if event.kind == "result":
                self.results[event.index] = event.value
            elif event.kind == "error":
                self.errors[event.index] = event.value
            elif event.kind == "finished":
                self.finished, self.cancelled = True, bool(event.value)
            events.append(event)

    def summary(self) -> str:
        """One line for a status label, from the events polled so far."""
        state = "Cancelled" if self.cancelled else "Finished" if self.finished else "Running"
        return f"{state}: {len(self.results)} of {len(self.steps)} step(s) done, {len(self.errors)} failed."

    def wait(self, timeout: float | None = None) -> list[RunEvent]:
        """Block until the worker ends (console use and tests); returns the remaining events."""
        self._thread.join(timeout)
        return self.poll()
