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
target and the OS error, so the CLI and the panel show one clear line, not a traceback.
"""

from __future__ import annotations

import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from HCCAnalysisLib.errors import HCCInputError

_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)


def _create_sibling(path: Path) -> Path:
    """Create an empty, new temporary file beside `path` (mode 0666 & ~umask) and return it."""
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
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


@contextmanager
def atomic_path(path: str | Path) -> Iterator[str]:
    """Yield a temporary path beside `path`; on success it replaces `path`, on error it is removed.

    An OSError while creating, writing or renaming becomes an HCCInputError naming `path`;
    any other exception from the caller's block propagates unchanged (the temporary file is
    removed either way).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _create_sibling(path)
    except OSError as err:
        raise _write_error(path, err) from err
    try:
        yield str(tmp)
        os.replace(tmp, path)
    except BaseException as err:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass  # the folder vanished or turned read-only: nothing more can be done
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
