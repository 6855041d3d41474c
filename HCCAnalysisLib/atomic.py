"""Writing files so that a reader (or a resumed batch) never sees half a file.

The one rule for every output: the data goes to a temporary sibling of the target
(`.<name>.<random>.tmp`, in the same folder, so the rename never crosses file systems),
then `os.replace` swaps it in. A crash leaves either the old file or the new one, and at
most a `.<name>.*.tmp` behind (the batch engine removes those on resume).

The temporary file is created with mode 0666 and the process umask applied by the kernel,
exactly as a plain `open(path, "w")` would: results on a lab share stay readable for the
group (umask 022 -> 0644, 027 -> 0640) instead of tempfile's owner-only 0600.

A failed write (full disk, quota, read-only folder: any OSError) removes the partial
temporary file, leaves the old target untouched and raises HCCInputError naming the
target and the OS error, so the CLI and the panel show one clear line, not a traceback;
folders it had to create for the target are removed again.

A folder (a model package) is replaced as a whole by `atomic_folder`: written beside the old
one, then swapped in by renames, so a kill at any moment leaves the old folder or the new one
complete; `recover_folder` finishes or undoes a swap a kill interrupted (see below).
"""

from __future__ import annotations

import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from HCCAnalysisLib.errors import HCCInputError

_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)


def _create_sibling(path: Path, suffix: str = "") -> Path:
    """Create an empty, new temporary file beside `path` (mode 0666 & ~umask) and return it."""
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp{suffix}"
        try:
            fd = os.open(tmp, _CREATE_FLAGS, 0o666)  # the kernel applies the umask, as open() does
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(f"no free temporary name beside {path}")


def _write_error(path: Path, err: OSError) -> HCCInputError:
    reason = err.strerror or str(err)
    code = f"errno {err.errno}: " if err.errno else ""
    return HCCInputError(f"could not be written ({code}{reason})", path,
                         "nothing was changed there; free disk space or choose a writable location")


def _make_parents(path: Path) -> list:
    """Create the missing folders above `path`; returns them, deepest first (to undo on failure)."""
    missing = []
    for parent in path.parents:
        if parent.exists():
            break
        missing.append(parent)
    path.parent.mkdir(parents=True, exist_ok=True)
    return missing


def _remove_empty(folders: list) -> None:
    """Undo `_make_parents` after a failed write: the folders it made, if still empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return  # not empty (another writer uses it) or already gone


@contextmanager
def atomic_path(path: str | Path, suffix: str = "") -> Iterator[str]:
    """Yield a temporary path beside `path`; on success it replaces `path`, on error it is removed.

    `suffix` ends the temporary name, for writers that choose the format by it (".nii.gz").

    An OSError while creating, writing or renaming becomes an HCCInputError naming `path`;
    any other exception from the caller's block propagates unchanged (the temporary file is
    removed either way).
    """
    path = Path(path)
    made = []
    try:
        made = _make_parents(path)
        tmp = _create_sibling(path, suffix)
    except OSError as err:
        _remove_empty(made)
        raise _write_error(path, err) from err
    try:
        yield str(tmp)
        os.replace(tmp, path)
    except BaseException as err:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass  # the folder vanished or turned read-only: nothing more can be done
        _remove_empty(made)
        if isinstance(err, OSError):
            raise _write_error(path, err) from err
        raise


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary sibling and a rename (see the module docstring)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        handle.write(data)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write `text` as UTF-8 to `path` atomically."""
    write_bytes_atomic(path, text.encode("utf-8"))


# ---------------------------------------------------------------- whole folders -------------------
# A folder (a model package) is replaced as a whole, in steps that each leave a state the next
# run can tell apart:
#   1. the new folder is written as `.<name>.<hex>.partial` (incomplete: always discarded);
#   2. renamed to `.<name>.<hex>.ready` (complete; from now on it can replace the old one);
#   3. the old folder is renamed aside to `.<name>.<hex>.old`;
#   4. `.ready` is renamed to `<name>`;
#   5. `.old` is removed.
# A kill between 3 and 4 leaves no `<name>` at all for an instant: `recover_folder` (called by the
# next save and by every load) renames `.ready` in, or `.old` back. Everything else is cleaned.
# A hook for the fault tests: HCCANALYSIS_KILL_AT=<step> kills the process (SIGKILL) at that step.
FOLDER_STEPS = ("partial-written", "ready", "aside", "swapped", "old-half-removed")


def _fault_point(step: str) -> None:
    if os.environ.get("HCCANALYSIS_KILL_AT") == step:
        import signal

        os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))


def _siblings(path: Path, kind: str) -> list:
    if not path.parent.is_dir():
        return []
    return sorted(p for p in path.parent.glob(f".{_glob_escape(path.name)}.*.{kind}") if p.is_dir())


def _glob_escape(name: str) -> str:
    """`name` with glob's special characters escaped (a folder called `model[1]`)."""
    import glob

    return glob.escape(name)


def _log_stderr(line: str) -> None:
    # A recovery is worth seeing even under -q: a warning of the library's logger (stderr under
    # `hcc`; Python's last-resort handler where no logging is set up).
    import logging

    logging.getLogger(__name__).warning(line)


def recover_folder(path: str | Path, log: Callable[[str], Any] = _log_stderr) -> None:
    """Finish or undo a folder replacement that a killed run left half-done (see the steps above)."""
    import shutil

    path = Path(path)
    partial, ready, old = (_siblings(path, k) for k in ("partial", "ready", "old"))
    if not (partial or ready or old):
        return
    actions = []
    if not path.exists() and ready:
        os.rename(ready.pop(), path)
        actions.append("completed the replacement")
    elif not path.exists() and old:
        os.rename(old.pop(), path)
        actions.append("restored the previous version")
    for leftover in partial + ready + old:
        shutil.rmtree(leftover, ignore_errors=True)
    if partial or ready or old:
        actions.append(f"removed {len(partial + ready + old)} leftover temporary folder(s)")
    log(f"{path}: an earlier run was interrupted while replacing it; {' and '.join(actions)}")


@contextmanager
def atomic_folder(path: str | Path, log: Callable[[str], Any] = _log_stderr) -> Iterator[Path]:
    """Yield a new, empty temporary folder beside `path`; when the block ends without error it
    replaces `path` as a whole (the old folder, if any, is removed). On any error the temporary
    folder is removed and `path` is left as it was; an OSError becomes an HCCInputError."""
    import shutil

    path = Path(path)
    made = []
    try:
        made = _make_parents(path)
        recover_folder(path, log)
        token = secrets.token_hex(4)
        partial = path.parent / f".{path.name}.{token}.partial"
        partial.mkdir()
    except OSError as err:
        _remove_empty(made)
        raise _write_error(path, err) from err
    ready = partial.with_name(f".{path.name}.{token}.ready")
    aside = partial.with_name(f".{path.name}.{token}.old")
    try:
        yield partial
        _fault_point("partial-written")
        os.rename(partial, ready)
        _fault_point("ready")
        if path.exists():
            os.rename(path, aside)
            _fault_point("aside")
        os.rename(ready, path)
        _fault_point("swapped")
    except BaseException as err:
        shutil.rmtree(partial, ignore_errors=True)
        shutil.rmtree(ready, ignore_errors=True)
        if aside.exists() and not path.exists():
            os.rename(aside, path)
        _remove_empty(made)
        if isinstance(err, OSError):
            raise _write_error(path, err) from err
        raise
    if aside.exists():
        _remove_aside(aside)


def _remove_aside(aside: Path) -> None:
    import shutil

    entries = sorted(aside.iterdir())
    if entries and os.environ.get("HCCANALYSIS_KILL_AT") == "old-half-removed":
        (shutil.rmtree if entries[0].is_dir() else os.unlink)(entries[0])
        _fault_point("old-half-removed")
    shutil.rmtree(aside, ignore_errors=True)
