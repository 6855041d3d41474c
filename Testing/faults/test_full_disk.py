"""Commands on a disk that fills up (issue 14): what was partly written is removed, the command
says "no space left on device" with exit status 2 (no traceback), earlier results stay intact.

The disk is a small tmpfs mounted for the test (root on Linux, as CI runs); without mount
rights these tests skip with that reason, and the file-size-limit test below (RLIMIT_FSIZE in a
forked child: writes past the limit fail with EFBIG) still checks the package writer.
"""

import os
import resource
import signal
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import bad_inputs as bad
from helpers.faulty_fs import fill, small_filesystem
from helpers.tiny_evaluation import write_tiny_evaluation
from HCCAnalysisLib.errors import HCCInputError
from HCCAnalysisLib.models.package import load_model, save_model

sys.path.insert(0, str(Path(__file__).resolve().parent))
from package_writer import TASK_CARD, weights_of  # noqa: E402
from test_package_replacement import package_version  # noqa: E402


@pytest.fixture
def disk(tmp_path):
    with small_filesystem(tmp_path / "disk", 3 << 20) as path:
        yield path


def _no_leftovers(folder):
    hidden = [p for p in Path(folder).rglob(".*") if p.name != ".lock"]
    assert hidden == [], f"partly written files left: {hidden}"


def _net():
    import torch

    from HCCAnalysisLib.nets import build_net
    from HCCAnalysisLib.tasks import get_task

    task = get_task(bad.TASK)
    torch.manual_seed(0)
    return build_net(task.net, num_classes=len(task.classes), **task.net_kwargs), task


def test_package_replaced_on_a_full_disk_keeps_the_old_one(disk):
    package = disk / "model"
    bad.build_package(package)
    old = load_model(package).card["weights_sha256"]
    fill(disk, leave_bytes=300_000)  # less than the 1.1 MB of new weights
    net, task = _net()
    card = {"task": task.name, "classes": list(task.classes), "phases": ["image"], "net": task.net,
            "net_kwargs": dict(task.net_kwargs), "input_size": task.input_size, "versions": {}}
    with pytest.raises(HCCInputError) as info:
        save_model(package, net, card)
    bad.assert_message(info.value, str(package), "no space left on device", "partly written package was removed",
                       "previous package")
    assert load_model(package).card["weights_sha256"] == old
    _no_leftovers(disk)


def test_predict_on_a_full_disk(disk, tmp_path, capsys):
    package = bad.build_package(tmp_path / "model")
    fill(disk)
    out = disk / "new-folder" / "results.tsv"  # the folder it makes is removed again
    with bad.Unchanged(package, bad.SMALL_CASE, absent=[out]):
        code, err = bad.run_cli(["predict", "--model", package, "--case", bad.SMALL_CASE, "--out-file", out,
                                 "--device", "cpu"], capsys)
    assert code == 2, err
    bad.assert_message(err, "hcc predict: error:", str(out), "no space left on device")
    _no_leftovers(disk)


def test_batch_on_a_full_disk_keeps_finished_cases(disk, tmp_path, capsys):
    package = bad.build_package(tmp_path / "model")
    cohort = bad.cohort_copy(tmp_path / "cohort", ["breast1,p1,MR", "lung1,p2,CT"])
    out = disk / "batch"
    fill(disk, leave_bytes=6000)  # room for the run record and a case or so, not for everything
    with bad.Unchanged(package, cohort):
        code, err = bad.run_cli(["batch", "--cohort", cohort, "--model", package, "--out", out, "--device", "cpu"],
                                capsys)
    assert code == 2, err
    bad.assert_message(err, "hcc batch: error:", "no space left on device")
    _no_leftovers(disk)
    for finished in (out / "cases").glob("*.tsv"):  # whatever was finished is complete
        lines = finished.read_text().splitlines()
        assert len(lines) >= 2 and all(len(line.split("\t")) == len(lines[0].split("\t")) for line in lines)


def test_report_on_a_full_disk(disk, tmp_path, capsys):
    evaluation = write_tiny_evaluation(tmp_path / "evaluation")
    fill(disk, leave_bytes=20_000)
    out = disk / "report"
    with bad.Unchanged(evaluation):
        code, err = bad.run_cli(["report", "--eval", evaluation, "--out", out], capsys)
    assert code == 2, err
    bad.assert_message(err, "hcc report: error:", "no space left on device")
    _no_leftovers(disk)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork and RLIMIT_FSIZE are POSIX-only")
def test_package_writer_under_a_file_size_limit(tmp_path):
    """No mount needed: a forked child whose files may not grow past 100 kB (EFBIG)."""
    package = tmp_path / "model"
    from HCCAnalysisLib.models.package import write_package

    write_package(package, weights_of(1), dict(TASK_CARD, version="v1"))
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        message = b"no error"
        try:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the kernel kills the writer
            resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))
            write_package(package, bytes(np.zeros(200_000, np.uint8)) + weights_of(2), dict(TASK_CARD, version="v2"))
        except BaseException as err:  # noqa: BLE001 (reported to the parent)
            message = f"{type(err).__name__}: {err}".encode()
        finally:
            os.write(write_end, message[:4000])
            os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    message = os.read(read_end, 4000).decode()
    os.close(read_end)
    bad.assert_message(message, "HCCInputError", str(package), "file too large", "partly written package was removed")
    assert package_version(package) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
