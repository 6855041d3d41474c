"""Output locations checked before any work starts, in one place for every command.

An output must not be a file where a folder is meant (or the reverse), must lie where this
process can write, must not overwrite a write-protected results file, and must not sit inside
an input (a model written into a case folder, a batch into the cohort folder would mix our
files into the user's data) nor contain one (replacing the output would touch the input).
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Iterable
from pathlib import Path

from HCCAnalysisLib.errors import HCCInputError
from HCCAnalysisLib.io.paths import missing_reason


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if os.path.lexists(candidate):
            return candidate
    return Path(os.getcwd())


def _check_parents(path: Path, flag: str) -> None:
    """The folders on the way to `path` must be folders (or not exist yet)."""
    for parent in path.parents:
        if os.path.lexists(parent):
            reason = missing_reason(parent)
            if reason is not None:
                raise HCCInputError(f"{flag}: its folder {parent} {reason}", path)
            if not parent.is_dir():
                raise HCCInputError(f"{flag}: {parent} on its way is a file, not a folder", path)
            return


def _check_writable(path: Path, flag: str) -> None:
    """Create and remove a probe file in the nearest existing folder: the only test that sees
    read-only mounts, ACLs and root alike."""
    folder = _nearest_existing(path)
    probe = folder / f".hcc-write-test.{secrets.token_hex(4)}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as err:
        raise HCCInputError(f"{flag}: cannot write in {folder} ({err.strerror or err}: a read-only location?)", path,
                            "choose a writable output location") from None
    os.close(fd)
    os.unlink(probe)


def _inside(child: Path, parent: Path) -> bool:
    try:
        child.relative_to(parent)
        return True
    except ValueError:
        return False


def _check_apart(path: Path, inputs: Iterable[str | Path], flag: str, folder: bool) -> None:
    target = path.resolve()
    for item in inputs:
        if item is None or not os.path.exists(item):
            continue
        source = Path(item).resolve()
        if _inside(target, source):
            raise HCCInputError(f"{flag} lies inside the input {source}; outputs would be mixed into the input data",
                                path, "write the output outside the cohort / case / model folders")
        if folder and _inside(source, target):
            raise HCCInputError(f"{flag} holds the input {source}; replacing the output would touch the input",
                                path, "write the output into a folder of its own")


def _refuse_protected(path: Path) -> None:
    """os.replace ignores the target's own mode, so a write-protected result is refused here."""
    if path.is_file() and not os.stat(path).st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH):
        raise HCCInputError("is write-protected; it is not overwritten", path,
                            "make it writable first if it is to be replaced, or choose another location")


def check_output_folder(path: str | Path, inputs: Iterable[str | Path] = (), flag: str = "--out",
                        results: Iterable[str] = ()) -> Path:
    """Refuse, before any work, an output folder that cannot or must not be written; `results`
    names the files in it that the command replaces (refused when write-protected)."""
    path = Path(path)
    if os.path.lexists(path):
        reason = missing_reason(path)
        if reason is not None:
            raise HCCInputError(f"{flag} {reason}", path)
        if not path.is_dir():
            raise HCCInputError(f"is a file; {flag} names a folder", path)
    _check_parents(path, flag)
    _check_writable(path, flag)
    _check_apart(path, inputs, flag, folder=True)
    for name in results:
        _refuse_protected(path / name)
    return path


def check_output_file(path: str | Path, inputs: Iterable[str | Path] = (), flag: str = "--out") -> Path:
    """Refuse, before any work, an output file that cannot or must not be written."""
    path = Path(path)
    if os.path.lexists(path):
        reason = missing_reason(path)
        if reason is not None:
            raise HCCInputError(f"{flag} {reason}", path)
        if path.is_dir():
            raise HCCInputError(f"is a folder; {flag} names the file to write", path)
        _refuse_protected(path)
    _check_parents(path, flag)
    _check_writable(path.parent, flag)
    _check_apart(path, inputs, flag, folder=False)
    return path
