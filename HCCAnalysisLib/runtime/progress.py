"""Progress bars (tqdm) for the long steps: loading samples, folds, batch cases.

A bar is drawn only where a person watches: stderr is a terminal and the `HCCAnalysisLib`
logger shows INFO messages (not under `-q`). Anywhere else (a pipe, a log file, CI, Slicer's
Python console) it is tqdm's disabled no-op, and the steps are still logged as lines. Bars go
to stderr, so stdout carries results alone; `leave=False` clears a bar when its step ends.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable
from typing import Any, TextIO

from HCCAnalysisLib.runtime.logs import ROOT_LOGGER

# HCC_PROGRESS=1 forces bars (for a terminal that does not say it is one), 0 turns them off.
FORCE_VARIABLE = "HCC_PROGRESS"


def bars_wanted(stream: TextIO | None = None) -> bool:
    """Whether a progress bar should be drawn on `stream` (default stderr)."""
    forced = os.environ.get(FORCE_VARIABLE, "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    stream = stream or sys.stderr
    try:
        on_terminal = stream.isatty()
    except (AttributeError, ValueError):  # a closed or unusual stream
        on_terminal = False
    return on_terminal and logging.getLogger(ROOT_LOGGER).isEnabledFor(logging.INFO)


def progress(iterable: Iterable[Any] | None = None, total: int | None = None, desc: str = "",
             unit: str = "it", leave: bool = False, initial: int = 0) -> Any:
    """A tqdm bar over `iterable` (or a manual one: `.update(n)`, `.close()`), with rate and ETA;
    a disabled tqdm when `bars_wanted()` is false, which costs nothing per step."""
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, leave=leave, initial=initial, file=sys.stderr,
                disable=not bars_wanted(), dynamic_ncols=True)
