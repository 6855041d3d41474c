"""Logging for the library and the `hcc` command.

Every library module logs through `logging.getLogger(__name__)`, so all messages sit under the
`HCCAnalysisLib` logger and a caller (a notebook, Slicer, another program) decides where they go
with the standard `logging` configuration. The library itself installs no handler; only
`setup_logging` (called by the CLI) does: messages on stderr, results alone on stdout.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Callable

from HCCAnalysisLib.errors import HCCInputError

ROOT_LOGGER = "HCCAnalysisLib"
_HANDLER_MARK = "_hcc_cli_handler"

# -q: warnings and errors only; default: progress messages; -v: debugging detail as well.
LEVELS = {-1: logging.WARNING, 0: logging.INFO, 1: logging.DEBUG}


class ProgressAwareHandler(logging.StreamHandler):
    """A stderr handler that writes through tqdm, so that a message never tears a live
    progress bar (tqdm clears the bar, prints the line, redraws the bar)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = self.format(record)
            from tqdm import tqdm

            tqdm.write(message, file=self.stream)
            self.flush()
        except Exception:  # logging must never raise into the caller: the standard handler's rule
            self.handleError(record)


def verbosity_level(verbosity: int) -> int:
    """-q (-1), default (0), -v (1 or more) -> a logging level."""
    return LEVELS[max(-1, min(1, verbosity))]


def _formatter(verbosity: int, for_file: bool) -> logging.Formatter:
    if for_file:
        return logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S")
    if verbosity > 0:
        return logging.Formatter("%(levelname)s %(name)s: %(message)s")
    return logging.Formatter("%(message)s")


def setup_logging(verbosity: int = 0, log_file: str | Path | None = None) -> logging.Logger:
    """Send the library's messages to stderr at the level `verbosity` asks for and, when
    `log_file` is given, every message down to DEBUG to that file (appended, so that a resumed
    run's log follows the first). Calling it again replaces the handlers it installed before."""
    logger = logging.getLogger(ROOT_LOGGER)
    for handler in [h for h in logger.handlers if getattr(h, _HANDLER_MARK, False)]:
        logger.removeHandler(handler)
        handler.close()
    console = ProgressAwareHandler(sys.stderr)
    console.setLevel(verbosity_level(verbosity))
    console.setFormatter(_formatter(verbosity, for_file=False))
    handlers: list[logging.Handler] = [console]
    if log_file is not None:
        path = Path(log_file)
        if path.is_dir():
            raise HCCInputError("is a folder; --log-file names a file", path)
        if not path.parent.is_dir():
            raise HCCInputError("folder does not exist", path.parent, "create it, or choose another --log-file")
        try:
            to_file = logging.FileHandler(path, mode="a", encoding="utf-8")
        except OSError as err:
            raise HCCInputError(f"cannot be opened for writing ({err.strerror})", path) from None
        to_file.setLevel(logging.DEBUG)
        to_file.setFormatter(_formatter(verbosity, for_file=True))
        handlers.append(to_file)
    for handler in handlers:
        setattr(handler, _HANDLER_MARK, True)
        logger.addHandler(handler)
    logger.setLevel(min(h.level for h in handlers))
    logger.propagate = False  # the CLI owns the output: no second copy through a root handler
    return logger


def info_logger(name: str) -> Callable[[str], None]:
    """The `log` callable of functions that accept one: INFO messages of the logger `name`."""
    return logging.getLogger(name).info
