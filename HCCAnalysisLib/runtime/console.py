"""What every `hcc` command shares: its help layout, the global options and their effect.

Global options (`-q/--quiet`, `-v/--verbose`, `--log-file FILE`, `--threads N`) are accepted
before or after the subcommand: `hcc -q batch ...` and `hcc batch -q ...` are the same. The
subcommands' copies have no default (argparse.SUPPRESS), so a value given before the subcommand
is not reset by the subcommand's parser.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from HCCAnalysisLib.errors import HCCInputError


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Defaults shown in --help, except where there is nothing to show (None, a flag's False)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or action.default is False or action.default == []:
            return action.help or ""
        if isinstance(action, (argparse._VersionAction, argparse._HelpAction, argparse._CountAction)):
            return action.help or ""
        return super()._get_help_string(action)


def add_global_options(parser: argparse.ArgumentParser, in_subcommand: bool) -> None:
    """-q / -v / --log-file / --threads on `parser` (the main parser, or a subcommand's)."""
    default = (lambda value: argparse.SUPPRESS) if in_subcommand else (lambda value: value)
    group = parser.add_argument_group("output and threads (before or after the command)")
    group.add_argument("-q", "--quiet", action="store_true", default=default(False),
                       help="warnings and errors only: no progress messages or bars")
    group.add_argument("-v", "--verbose", action="count", default=default(0),
                       help="debugging detail as well (logger names, levels)")
    group.add_argument("--log-file", metavar="FILE", default=default(None),
                       help="also write every message, with time stamps, to FILE (appended)")
    group.add_argument("--threads", type=int, metavar="N", default=default(None),
                       help="torch / OpenMP threads (default: the physical cores, unless OMP_NUM_THREADS is set)")


class CommandParser(argparse.ArgumentParser):
    """The parser class of every subcommand: the shared help layout and the global options,
    also for subcommands that other modules register (batch, report, models, ...)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)
        add_global_options(self, in_subcommand=True)


def verbosity(args: argparse.Namespace) -> int:
    """-1 (quiet), 0 or 1 (verbose) from the parsed global options."""
    if getattr(args, "quiet", False):
        return -1
    return 1 if (getattr(args, "verbose", 0) or 0) > 0 else 0


def start(args: argparse.Namespace) -> logging.Logger:
    """Apply the global options before a command runs: logging first (so that what follows can
    report), then the thread policy (before any command imports torch)."""
    from HCCAnalysisLib.runtime.logs import setup_logging
    from HCCAnalysisLib.runtime.threads import apply_policy

    threads = getattr(args, "threads", None)
    if threads is not None and threads < 1:
        raise HCCInputError(f"--threads {threads}: must be at least 1")
    logger = setup_logging(verbosity(args), getattr(args, "log_file", None))
    # --workers N (train / evaluate): one core each is kept for the DataLoader workers.
    chosen = apply_policy(threads=threads, workers=getattr(args, "workers", None) or 0)
    import os

    from HCCAnalysisLib.runtime.threads import THREAD_VARIABLES, WAIT_POLICY

    logger.debug("thread policy: " + ", ".join(
        f"{name}={os.environ.get(name, '(unset)')}{' (ours)' if name in chosen else ''}"
        for name in (WAIT_POLICY, *THREAD_VARIABLES)))
    return logger


def output_file(out: str | None, out_file: str | None, default_name: str, overwrite: bool = False) -> Path:
    """The file a one-file command writes: `default_name` in the folder `--out DIR` (made when
    written), or `--out-file FILE`. An existing result is refused unless `overwrite`."""
    if out_file is not None:
        path = Path(out_file)
        if path.is_dir():
            raise HCCInputError("is a folder; --out-file names the file to write (--out names a folder)", path)
    else:
        folder = Path(out)
        if folder.exists() and not folder.is_dir():
            raise HCCInputError("is a file; --out names a folder (--out-file FILE names a file)", folder)
        path = folder / default_name
    if path.exists() and not overwrite:
        raise HCCInputError("already exists", path, "choose another --out / --out-file, or pass --overwrite")
    return path
