"""Telling apart why a path cannot be read: missing, a dangling link, a symlink loop.

`Path.exists()` answers False for all three, so a loop of links read as "does not exist";
these checks name what is actually wrong.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from HCCAnalysisLib.errors import HCCInputError


def missing_reason(path: str | Path) -> str | None:
    """Why `path` cannot be opened (None when it can be stat'ed): a symlink loop, a link to a
    missing target, a folder on the way that is a file, or plain absence."""
    path = Path(path)
    try:
        os.stat(path)
        return None
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "is a symlink loop (a link that points back to itself through other links)"
        if os.path.islink(path):
            return f"is a symbolic link to {os.readlink(path)}, which does not exist"
        if err.errno == errno.ENOTDIR:
            return "does not exist (a folder on its way is a file)"
        if err.errno in (errno.EACCES, errno.EPERM):
            return f"cannot be accessed ({err.strerror})"
        return "does not exist"


def check_exists(path: str | Path, what: str = "") -> Path:
    """`path` if it exists (following links); else an HCCInputError saying why not."""
    reason = missing_reason(path)
    if reason is not None:
        raise HCCInputError(f"{what} {reason}".strip(), path)
    return Path(path)
