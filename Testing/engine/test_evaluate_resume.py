"""`hcc evaluate` loses nothing: fold files written as folds finish, a SIGTERM stops it with one
line and exit status 143, the rerun resumes to the same results as an uninterrupted run, and
folders holding other work (or made with other settings) are refused, as are non-empty report
folders. Real runs on the bundled demo cohort, 1 epoch, 2 folds."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from HCCAnalysisLib.cli import main

TASK = "jia2019-hcc-vs-background"
ROOT = Path(__file__).resolve().parents[2]


def _args(sample_data, out, *extra):
    return ["evaluate", "--task", TASK, "--cohort", str(sample_data / "demo-cohort"), "--phases", "image",
            "--folds", "2", "--repeats", "2", "--epochs", "1", "--pretrained", "jia2019-cifar",
            "--out", str(out), *extra]


def _snapshot(folder):
    """Every file under `folder` with its bytes and mtime: to prove a refusal changed nothing."""
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    return env


@pytest.fixture(scope="module")
def uninterrupted(sample_data, tmp_path_factory):
    """One whole evaluation, never interrupted: the reference the resumed run must equal."""
    out = tmp_path_factory.mktemp("eval") / "whole"
    assert main(_args(sample_data, out)) == 0
    return out


def test_sigterm_then_resume_gives_the_uninterrupted_results(sample_data, uninterrupted, tmp_path):
    out = tmp_path / "killed"
    # -q: no progress messages on stderr, so the stop line is all it holds
    proc = subprocess.Popen([sys.executable, "-m", "HCCAnalysisLib.cli", "-q", *_args(sample_data, out)], cwd=ROOT,
                            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not list((out / "folds").glob("r*_f*.json")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed: " + proc.stderr.read()
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    assert lines[0].startswith("hcc evaluate: stopped by SIGTERM") and "resume" in lines[0]
    kept = sorted(p.name for p in (out / "folds").iterdir())
    assert kept and len(kept) < 4 and all(not name.endswith(".tmp") for name in kept), kept
    assert not (out / "metrics.json").exists() and not (out / "predictions.tsv").exists()
    assert json.loads((out / "evaluation.json").read_text())["epochs"] == 1

    before = {name: (out / "folds" / name).read_bytes() for name in kept}
    rerun = subprocess.run([sys.executable, "-m", "HCCAnalysisLib.cli", *_args(sample_data, out)], cwd=ROOT,
                           env=_env(), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"resuming: {len(kept)} of 4 folds finished" in rerun.stderr  # a message: stderr (logging)
    assert {name: (out / "folds" / name).read_bytes() for name in kept} == before  # finished folds not redone
    assert sorted(p.name for p in (out / "folds").iterdir()) == [f"r{r}_f{f}.json" for r in (0, 1) for f in (0, 1)]
    for name in ("predictions.tsv", "evaluation.json"):
        assert (out / name).read_bytes() == (uninterrupted / name).read_bytes(), name
    resumed, whole = (json.loads((d / "metrics.json").read_text()) for d in (out, uninterrupted))
    assert resumed["folds"] == whole["folds"] and resumed["summary"] == whole["summary"]
    np.testing.assert_array_equal(np.load(out / "embeddings.npz")["embeddings"],
                                  np.load(uninterrupted / "embeddings.npz")["embeddings"])


def test_finished_evaluation_is_refused_without_overwrite(sample_data, uninterrupted, capsys):
    before = _snapshot(uninterrupted)
    assert main(_args(sample_data, uninterrupted)) == 2
    err = capsys.readouterr().err
    assert "already holds a finished evaluation" in err and "--overwrite" in err
    assert _snapshot(uninterrupted) == before


def test_folder_with_other_files_is_refused(sample_data, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("a user's file\n")
    assert main(_args(sample_data, out)) == 2
    assert "already holds" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    (tmp_path / "a-file").write_text("x")
    assert main(_args(sample_data, tmp_path / "a-file")) == 2
    assert "is a file" in capsys.readouterr().err


def test_resume_with_other_settings_is_refused_naming_them(sample_data, uninterrupted, tmp_path, capsys):
    out = tmp_path / "partial"
    out.mkdir()
    (out / "folds").mkdir()
    # an unfinished evaluation: the run record and the first fold of the uninterrupted run
    (out / "evaluation.json").write_bytes((uninterrupted / "evaluation.json").read_bytes())
    (out / "folds" / "r0_f0.json").write_bytes((uninterrupted / "folds" / "r0_f0.json").read_bytes())
    before = _snapshot(out)
    args = _args(sample_data, out)
    args[args.index("--epochs") + 1] = "2"
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "other settings" in err and "epochs: 1 there, 2 now" in err
    args = _args(sample_data, out)
    args[args.index("--repeats") + 1] = "1"
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "repeats: 2 there, 1 now" in err and "epochs" not in err
    assert _snapshot(out) == before
    # --overwrite starts afresh with the new settings: the old run record and folds are gone
    assert main([*args, "--overwrite"]) == 0
    assert json.loads((out / "evaluation.json").read_text())["repeats"] == 1
    assert sorted(p.name for p in (out / "folds").iterdir()) == ["r0_f0.json", "r0_f1.json"]
    assert len(json.loads((out / "metrics.json").read_text())["folds"]) == 2


def test_ctrl_c_prints_one_line_and_exits_130(sample_data, tmp_path):
    out = tmp_path / "interrupted"
    proc = subprocess.Popen([sys.executable, "-m", "HCCAnalysisLib.cli", "-q", *_args(sample_data, out)], cwd=ROOT,
                            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not (out / "evaluation.json").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read()
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert stderr.strip().splitlines() == [
        f"hcc evaluate: stopped by Ctrl-C; finished folds are kept in {out}; run the same command again to resume"]
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


def test_report_refuses_a_non_empty_folder_unless_overwrite(uninterrupted, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["report", "--eval", str(uninterrupted), "--out", str(out)]) == 0
    before = _snapshot(out)
    assert main(["report", "--eval", str(uninterrupted), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "already holds" in err and "--overwrite" in err
    assert _snapshot(out) == before
    assert main(["report", "--eval", str(uninterrupted), "--out", str(out), "--overwrite"]) == 0
    assert (out / "report.html").stat().st_mtime_ns >= before["report.html"][1]


def test_sigterm_during_train_prints_one_line_and_writes_no_package(sample_data, tmp_path):
    out = tmp_path / "model"
    proc = subprocess.Popen([sys.executable, "-m", "HCCAnalysisLib.cli", "train", "--task", TASK, "--cohort",
                             str(sample_data / "demo-cohort"), "--phases", "image", "--epochs", "200",
                             "--out", str(out)], cwd=ROOT, env=dict(_env(), PYTHONUNBUFFERED="1"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:  # wait until training has started (messages go to stderr)
        if "epoch" in line:
            break
    assert proc.poll() is None, proc.stderr.read()
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143
    lines = [line for line in stderr.strip().splitlines() if "epoch" not in line]  # epochs logged before the stop
    assert lines == ["hcc train: stopped by SIGTERM; nothing was left half-written"], stderr
    assert not out.exists() or not any(out.iterdir())


def test_overwrite_with_a_broken_cohort_keeps_the_earlier_evaluation(sample_data, uninterrupted, tmp_path, capsys):
    import shutil

    cohort = tmp_path / "cohort"
    shutil.copytree(sample_data / "demo-cohort", cohort)
    (cohort / "breast1" / "image.nrrd").unlink()
    out = tmp_path / "old"
    shutil.copytree(uninterrupted, out)
    before = _snapshot(out)
    args = _args(sample_data, out, "--overwrite")
    args[args.index("--cohort") + 1] = str(cohort)
    assert main(args) == 2
    assert "breast1" in capsys.readouterr().err
    assert _snapshot(out) == before  # cases are loaded before anything is removed or written
