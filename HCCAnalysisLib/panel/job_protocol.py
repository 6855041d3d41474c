"""The line protocol between `hcc run-job` (the child process) and the Slicer panel.

One JSON object per line, each with an "event" key:

    {"event": "started",  "index": 0, "label": "jia2019-...", "total": 1}
    {"event": "progress", "index": 0, "fraction": 0.4, "message": "predicting"}
    {"event": "result",   "index": 0, "label": "...", "files": {"table": ".../prediction.tsv", ...}}
    {"event": "error",    "index": 0, "label": "...", "message": "..."}
    {"event": "finished", "done": 1, "failed": 0}

The child writes every line to stdout and appends it to `events.jsonl` in the job folder
(flushed per line). That file is a log that grows while the child runs, so it is appended to,
not replaced atomically: the reader takes complete lines only and keeps a partial last line
until its newline arrives. A line that is not such an object (a library printing to the
file's stream, a line cut by a killed child) is set aside, never fatal.
"""

from __future__ import annotations

from typing import Any, TextIO

import json
import sys
from dataclasses import dataclass
from pathlib import Path

EVENTS_FILE = "events.jsonl"
EVENT_KINDS = ("started", "progress", "result", "error", "finished")


@dataclass(frozen=True)
class RunEvent:
    kind: str  # one of EVENT_KINDS
    index: int  # the job (-1 for the whole run)
    label: str = ""
    value: Any = None  # result: files; error: message; progress: (fraction, message); finished: the object


def encode_event(kind: str, **fields: Any) -> str:
    """One protocol line (with its newline). NaN is refused: the line must be strict JSON."""
    if kind not in EVENT_KINDS:
        raise ValueError(f"unknown event kind {kind!r}")
    return json.dumps({"event": kind, **fields}, allow_nan=False, ensure_ascii=True) + "\n"


def parse_line(line: str) -> RunEvent | None:
    """The event of one line, or None when the line is not a protocol object."""
    try:
        data = json.loads(line)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("event") not in EVENT_KINDS:
        return None
    kind, index = data["event"], data.get("index", -1)
    if not isinstance(index, int):
        return None
    value = {"result": data.get("files"), "error": data.get("message"),
             "progress": (data.get("fraction"), data.get("message", "")), "finished": data}.get(kind)
    return RunEvent(kind, index, str(data.get("label", "")), value)


class EventWriter:
    """Writes protocol lines to a stream (stdout) and appends them to the job folder's events file."""

    def __init__(self, path: str | Path, stream: TextIO | None = None) -> None:
        self.path = Path(path)
        self.stream = sys.stdout if stream is None else stream

    def write(self, kind: str, **fields: Any) -> None:
        line = encode_event(kind, **fields)
        with open(self.path, "a", encoding="utf-8") as handle:  # reopened per line: a killed child loses nothing
            handle.write(line)
        self.stream.write(line)
        self.stream.flush()


class LineReader:
    """Reads the events a growing file gained since the last call: complete lines only."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._offset = 0
        self._partial = b""
        self.garbage: list[str] = []  # lines that were not protocol objects (for diagnostics)

    def feed(self, data: bytes) -> list[RunEvent]:
        """Events in `data` appended to what came before (a partial line waits for its end)."""
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        events = []
        for raw in lines:
            text = raw.decode("utf-8", errors="replace").strip()
            if not text:
                continue
            event = parse_line(text)
            if event is None:
                self.garbage.append(text[:200])
            else:
                events.append(event)
        return events

    def read_new(self) -> list[RunEvent]:
        """The events appended to the file since the last call ([] while it does not exist)."""
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self._offset)
                data = handle.read()
        except FileNotFoundError:
            return []
        self._offset += len(data)
        return self.feed(data)
