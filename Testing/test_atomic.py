"""The one atomic-write helper: umask-respecting modes, and failures that leave nothing behind."""

import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from HCCAnalysisLib import atomic
from HCCAnalysisLib.atomic import atomic_path, write_bytes_atomic, write_text_atomic
from HCCAnalysisLib.data.prediction import write_records_tsv
from HCCAnalysisLib.errors import HCCInputError

ROOT = Path(__file__).resolve().parent.parent
POSIX_ONLY = pytest.mark.skipif(os.name != "posix", reason="POSIX modes and umask")


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@POSIX_ONLY
@pytest.mark.parametrize("umask, expected", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_atomic_outputs_get_the_mode_a_plain_open_gives(tmp_path, umask, expected):
    old = os.umask(umask)
    try:
        with open(tmp_path / "plain.txt", "w") as handle:  # what a direct write gets
            handle.write("x")
        write_text_atomic(tmp_path / "atomic.txt", "x")
        write_records_tsv(tmp_path / "nested" / "rows.tsv", [{"a": 1}], ["a"])  # results go through it too
        write_text_atomic(tmp_path / "plain.txt", "replaced")  # replacing a file: same rule
    finally:
        os.umask(old)
    assert _mode(tmp_path / "atomic.txt") == expected == 0o666 & ~umask
    assert _mode(tmp_path / "nested" / "rows.tsv") == expected
    assert _mode(tmp_path / "plain.txt") == expected
    assert sorted(p.name for p in tmp_path.rglob(".*")) == []  # no temporary sibling left


def test_success_replaces_and_a_failing_caller_block_keeps_the_old_file(tmp_path):
    target = tmp_path / "result.tsv"
    write_text_atomic(target, "old\n")
    with pytest.raises(RuntimeError, match="caller"):
        with atomic_path(target) as tmp:
            Path(tmp).write_text("half")
            raise RuntimeError("caller failed")  # not an OSError: propagates unchanged
    assert target.read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == ["result.tsv"]
    write_bytes_atomic(target, b"new\n")
    assert target.read_bytes() == b"new\n" and sorted(p.name for p in tmp_path.iterdir()) == ["result.tsv"]


def test_full_disk_during_the_write_removes_the_partial_file_and_names_the_target(tmp_path, monkeypatch):
    import errno
    import io

    target = tmp_path / "model.json"
    write_text_atomic(target, '{"old": true}\n')
    seen = []

    class FullDisk(io.FileIO):
        """A real file that takes the first bytes, then fails as a full disk does."""

        def write(self, data):
            seen.append(self.name)
            super().write(bytes(data)[:3])  # a partial file really lies on disk
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def fake_open(path, mode="r", *args, **kwargs):
        assert mode == "wb"
        return io.BufferedWriter(FullDisk(path, "wb"))  # buffered: the error comes at flush / close

    monkeypatch.setattr(atomic, "open", fake_open, raising=False)  # the helper's own open() only
    with pytest.raises(HCCInputError) as caught:
        write_bytes_atomic(target, b'{"new": true}\n' * 100)
    monkeypatch.undo()
    message = str(caught.value)
    assert str(target) in message and os.strerror(errno.ENOSPC) in message and f"errno {errno.ENOSPC}" in message
    assert seen and Path(seen[0]).parent == tmp_path and Path(seen[0]).name.startswith(".model.json.")
    assert target.read_text() == '{"old": true}\n'  # the old file is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json"]  # the partial temporary is gone


def test_an_unwritable_folder_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder is meant")
    with pytest.raises(HCCInputError, match="could not be written"):
        write_text_atomic(blocker / "out.txt", "x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_FSIZE / SIGXFSZ semantics as on Linux")
def test_a_size_limit_hit_mid_write_in_a_real_process(tmp_path):
    """A real short write: the child may write only 4 KiB per file (RLIMIT_FSIZE), so a 64 KiB
    write fails with EFBIG inside the OS, as a full quota would."""
    target = tmp_path / "results.tsv"
    target.write_text("old results\n")
    code = textwrap.dedent(f"""
        import resource, signal, sys
        sys.path.insert(0, {str(ROOT)!r})
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG instead of being killed
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        from HCCAnalysisLib.atomic import write_bytes_atomic
        from HCCAnalysisLib.errors import HCCInputError
        try:
            write_bytes_atomic({str(target)!r}, b"x" * 65536)
        except HCCInputError as err:
            print("refused:", err)
            sys.exit(2)
        sys.exit(0)
    """)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2, run.stdout + run.stderr
    assert "Traceback" not in run.stderr and str(target) in run.stdout and "File too large" in run.stdout
    assert target.read_text() == "old results\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.tsv"]


def test_temporary_names_are_fresh_and_hidden(tmp_path, monkeypatch):
    tokens = iter(["aaaa", "aaaa", "bbbb"])
    monkeypatch.setattr(atomic.secrets, "token_hex", lambda n: next(tokens))
    with atomic_path(tmp_path / "x.txt") as first, atomic_path(tmp_path / "x.txt") as second:
        assert Path(first).name == ".x.txt.aaaa.tmp" and Path(second).name == ".x.txt.bbbb.tmp"  # taken name skipped
        Path(first).write_text("1")
        Path(second).write_text("2")
    assert (tmp_path / "x.txt").read_text() == "1"  # the outer block finished last


# ---------------------------------------------------------------- whole folders (issue 14) --------

def test_atomic_folder_replaces_a_folder_as_a_whole(tmp_path):
    target = tmp_path / "package"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with atomic.atomic_folder(target) as new:
        (new / "new.txt").write_text("new")
        assert sorted(p.name for p in target.iterdir()) == ["old.txt"]  # untouched until the block ends
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["package"]


def test_atomic_folder_failure_keeps_the_old_folder_and_leaves_nothing(tmp_path):
    target = tmp_path / "package"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic.atomic_folder(target) as new:
            (new / "new.txt").write_text("half")
            raise RuntimeError("the writer failed")
    assert sorted(p.name for p in target.iterdir()) == ["old.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["package"]


def test_recover_folder_restores_the_old_one_when_no_new_one_is_complete(tmp_path):
    target = tmp_path / "package"
    aside = tmp_path / ".package.0badc0de.old"  # killed after the old went aside, no .ready folder
    aside.mkdir()
    (aside / "old.txt").write_text("old")
    partial = tmp_path / ".package.12345678.partial"
    partial.mkdir()
    lines = []
    atomic.recover_folder(target, lines.append)
    assert (target / "old.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["package"]
    assert len(lines) == 1 and "restored the previous version" in lines[0]


def test_failed_write_removes_the_folders_it_made(tmp_path):
    target = tmp_path / "new" / "deeper" / "out.txt"
    with pytest.raises(ValueError):
        with atomic_path(target) as tmp:
            Path(tmp).write_text("half")
            raise ValueError("the caller failed")
    assert sorted(tmp_path.iterdir()) == []


@POSIX_ONLY
@pytest.mark.parametrize("name", ["saliency.nii.gz", "saliency.nrrd"])
def test_image_written_through_the_helper_keeps_its_format_and_the_umask_mode(tmp_path, name):
    """ITK picks the format by the file name, so the temporary name keeps the suffix; the image
    (e.g. `hcc saliency`'s volume) then gets the umask's mode like every other output."""
    import numpy as np
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.arange(24, dtype=np.float32).reshape(2, 3, 4))
    target = tmp_path / "out" / name
    old = os.umask(0o022)
    try:
        with atomic_path(target, suffix=name[name.index("."):]) as tmp:
            assert tmp.endswith(name[name.index("."):])
            sitk.WriteImage(image, tmp, True)
    finally:
        os.umask(old)
    assert _mode(target) == 0o644 and sorted(p.name for p in target.parent.iterdir()) == [name]
    if name.endswith(".gz"):
        assert target.read_bytes()[:2] == b"\x1f\x8b"  # compressed, as the name says
    assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(target))), sitk.GetArrayFromImage(image))
