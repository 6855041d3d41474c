"""`hcc batch` and `hcc evaluate` across processes give what one process gives: under torchrun
(2 CPU processes, gloo) each process takes its share of the cases / folds and rank 0 merges;
`hcc batch --jobs 2` runs cases in two spawned workers and resumes as a one-worker run does.
Tiny runs: three demo cases (one broken), an untrained seeded model, one epoch, two folds."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from HCCAnalysisLib.batch import run_cohort
from HCCAnalysisLib.data.prediction import read_tsv
from HCCAnalysisLib.models.registry import untrained_package
from HCCAnalysisLib.workflows import evaluate_task

ROOT = Path(__file__).resolve().parents[2]
HELPER = ROOT / "Testing" / "helpers" / "torchrun_batch_evaluate.py"
TASK = "jia2019-hcc-vs-background"


@pytest.fixture(scope="module")
def setup(sample_data, tmp_path_factory):
    """A cohort of the two smallest demo cases plus one without a segmentation, and a model."""
    root = tmp_path_factory.mktemp("parallel")
    cohort = root / "cohort"
    cohort.mkdir()
    for name in ("lung1", "breast1"):
        os.symlink(sample_data / "demo-cohort" / name, cohort / name)
    (cohort / "nolabels").mkdir()
    shutil.copy(sample_data / "demo-cohort" / "lung1" / "image.nrrd", cohort / "nolabels" / "image.nrrd")
    (cohort / "cases.csv").write_text("case_id,patient_id\nlung1,p1\nnolabels,p3\nbreast1,p2\n")
    model = untrained_package(root / "model", TASK, ["image"], seed=0, version="0.0.1")
    return root, cohort, model


@pytest.fixture(scope="module")
def one_process(setup, tmp_path_factory):
    """The batch as one process in one worker makes it: the reference of both tests."""
    import torch

    _, cohort, model = setup
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return run_cohort(cohort, TASK, str(model), tmp_path_factory.mktemp("one") / "batch", device="cpu",
                          progress=None)
    finally:
        torch.set_num_threads(threads)


def _without_time(rows):
    return [{k: v for k, v in row.items() if k != "time"} for row in rows]


def _good_cohort(root, cohort):
    """The cohort without its broken case (evaluation needs every case to load)."""
    good = root / "good"
    if not good.is_dir():
        good.mkdir()
        for name in ("lung1", "breast1"):
            os.symlink(os.readlink(cohort / name), good / name)
        (good / "cases.csv").write_text("case_id,patient_id\nlung1,p1\nbreast1,p2\n")
    return good


def test_torchrun_batch_and_evaluate_equal_one_process(setup, one_process, tmp_path, one_torch_thread):
    root, cohort, model = setup
    one = one_process
    good = _good_cohort(root, cohort)
    evaluate_args = dict(folds=2, phases="image", pretrained="none", epochs=1, device="cpu", log=lambda line: None)
    evaluate_task(TASK, good, tmp_path / "eval-one", cache=False, **evaluate_args)

    batch = ["batch", "--cohort", str(cohort), "--task", TASK, "--model", str(model), "--out",
             str(tmp_path / "batch-two"), "--device", "cpu"]
    evaluate = ["evaluate", "--task", TASK, "--cohort", str(good), "--phases", "image", "--folds", "2",
                "--epochs", "1", "--pretrained", "none", "--device", "cpu", "--cache", str(tmp_path / "cache"),
                "--out", str(tmp_path / "eval-two")]
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
               str(HELPER), *batch, "--", *evaluate]
    run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT)))
    assert run.returncode == 0, run.stderr[-3000:]
    # the broken case failed (status 3) as one process reports it, in both processes
    assert sorted(re.findall(r"rank=(\d) statuses=(\d+),(\d+)", run.stdout)) == [("0", "3", "0"), ("1", "3", "0")]
    assert (tmp_path / "batch-two" / "results.tsv").read_bytes() == one.results_path.read_bytes()
    assert _without_time(read_tsv(tmp_path / "batch-two" / "errors.tsv")) == _without_time(read_tsv(one.errors_path))
    assert sorted(p.name for p in (tmp_path / "batch-two" / "cases").iterdir()) == ["breast1.tsv", "lung1.tsv"]

    assert (tmp_path / "eval-two" / "predictions.tsv").read_bytes() == \
        (tmp_path / "eval-one" / "predictions.tsv").read_bytes()
    two, whole = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("eval-two", "eval-one"))
    assert two["folds"] == whole["folds"] and two["summary"] == whole["summary"]


def test_jobs_give_the_one_worker_table_and_resume(setup, one_process, tmp_path, one_torch_thread):
    _, cohort, model = setup
    one = one_process
    steps = []
    two = run_cohort(cohort, TASK, str(model), tmp_path / "two", device="cpu", progress=steps.append, jobs=2)
    assert (two.done, two.resumed, two.failed, two.total) == (2, 0, 1, 3)
    assert two.results_path.read_bytes() == one.results_path.read_bytes()
    assert sorted(s.case_id for s in steps if s.status != "started") == ["breast1", "lung1", "nolabels"]
    (tmp_path / "two" / "cases" / "lung1.tsv").unlink()  # as if killed before lung1 finished
    breast = (tmp_path / "two" / "cases" / "breast1.tsv").stat().st_mtime_ns
    again = run_cohort(cohort, TASK, str(model), tmp_path / "two", device="cpu", progress=None, jobs=2,
                       retry_failed=False)
    assert (again.done, again.resumed, again.failed) == (1, 1, 1)
    assert (tmp_path / "two" / "cases" / "breast1.tsv").stat().st_mtime_ns == breast  # not redone
    assert again.results_path.read_bytes() == one.results_path.read_bytes()
