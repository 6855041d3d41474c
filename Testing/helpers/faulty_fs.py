"""Odd file systems for the fault suite and the output-location catalogue.


- `small_filesystem(path, size)`: a tmpfs of `size` bytes mounted at `path` (root on Linux with
  mount rights, as in CI containers run as root), so that commands writing there run out of
  space for real (ENOSPC). Where mounting is not possible the caller falls back to a
  size-limited process (RLIMIT_FSIZE: writes beyond the limit fail with EFBIG), or skips.
- `readonly_folder(path)`: a folder this process cannot write in: a read-only tmpfs for root
  (for whom permission bits mean nothing), a 0555 folder for everyone else.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def can_mount() -> str | None:
    """None when tmpfs mounts work here, else the reason why not."""
    if sys.platform != "linux":
        return "tmpfs mounts are Linux-only"
    if os.geteuid() != 0:
        return "mounting a small tmpfs needs root"
    if shutil.which("mount") is None:
        return "no mount command"
    return None


def _mount(path: Path, options: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"tmpfs mount refused here: {done.stderr.strip()}")


@contextlib.contextmanager
def small_filesystem(path, size_bytes):
    reason = can_mount()
    if reason:
        pytest.skip(reason)
    path = Path(path)
    _mount(path, f"size={int(size_bytes)}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


@contextlib.contextmanager
def readonly_folder(path):
    """A folder (holding one file `kept.txt`) that cannot be written to."""
    path = Path(path)
    if can_mount() is None:
        path.mkdir(parents=True, exist_ok=True)
        _mount(path, "size=1m")
        (path / "kept.txt").write_text("existing\n")
        subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True, capture_output=True)
        try:
            yield path
        finally:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)
        return
    if os.name != "posix" or os.geteuid() == 0:
        pytest.skip("no way to make a read-only folder here (root without mount rights, or not POSIX)")
    path.mkdir(parents=True, exist_ok=True)
    (path / "kept.txt").write_text("existing\n")
    path.chmod(0o555)
    try:
        yield path
    finally:
        path.chmod(0o755)


def fill(path, leave_bytes=0):
    """Fill the file system holding `path` until at most `leave_bytes` are free."""
    stat = os.statvfs(path)
    free = stat.f_bavail * stat.f_frsize - leave_bytes
    if free > 0:
        try:
            with open(Path(path) / "filler.bin", "wb") as handle:
                handle.write(b"\0" * free)
        except OSError:
            pass  # full already: that is the point
