"""HCCAnalysis/Scripts/batch.py ends the application with a status in every case.

Slicer runs the script with `--python-script`: unless it calls `slicer.util.exit(status)`,
Slicer never exits. Each test runs the real script in a subprocess of .venv's Python, where
slicer-core's real `slicer.util` is imported; the only stand-in is `slicer.app` (installed by a
sitecustomize on PYTHONPATH), which records the calls and, like Slicer's event loop, ends the
process with the status given to `app.exit` -- or with NEVER_EXITED when the script never
called it (real Slicer would hang there).
"""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "HCCAnalysis" / "Scripts" / "batch.py"
DEMO = ROOT / "HCCAnalysisLib" / "sample_data" / "demo-cohort"
TASK = "jia2019-hcc-vs-background"
NEVER_EXITED = 97

SLICER_APP_STANDIN = '''
import atexit, json, os, sys
import slicer  # slicer-core: the real slicer.util whose exit() the script calls


class _CommandOptions:
    runPythonAndExit = True  # Slicer sets it with --python-script; exit() must clear it


class _App:
    """What slicer.util.exit touches of qSlicerApplication: commandOptions() and exit()."""

    def __init__(self):
        self.options, self.statuses = _CommandOptions(), []

    def commandOptions(self):
        return self.options

    def exit(self, status):
        self.statuses.append(status)


slicer.app = _App()


def _event_loop_ends():
    sys.stdout.flush(); sys.stderr.flush()
    with open(os.environ["HCC_TEST_EXIT_RECORD"], "w") as handle:
        json.dump({"statuses": slicer.app.statuses,
                   "runPythonAndExit": slicer.app.options.runPythonAndExit}, handle)
    os._exit(slicer.app.statuses[-1] if slicer.app.statuses else %d)


atexit.register(_event_loop_ends)
''' % NEVER_EXITED


@pytest.fixture(scope="module")
def fake_slicer_app(tmp_path_factory) -> Path:
    """A folder whose sitecustomize.py installs the `slicer.app` stand-in."""
    pytest.importorskip("slicer")
    folder = tmp_path_factory.mktemp("slicer_app_standin")
    (folder / "sitecustomize.py").write_text(SLICER_APP_STANDIN, encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A real model package for the Jia 2019 task (seeded, untrained weights)."""
    from HCCAnalysisLib.models.registry import untrained_package

    return Path(untrained_package(tmp_path_factory.mktemp("model") / "pkg", TASK, ["image"], seed=0))


def make_cohort(folder: Path, cases=("lung1",), broken=()) -> Path:
    """A cohort of bundled demo cases (linked) plus `broken` cases: an image, no segmentation."""
    folder.mkdir(parents=True)
    lines = ["case_id,patient_id"]
    for case_id in cases:
        source = case_id.split("-")[0]
        os.symlink(DEMO / source, folder / case_id)
        lines.append(f"{case_id},p-{case_id}")
    for case_id in broken:
        (folder / case_id).mkdir()
        shutil.copy(DEMO / "lung1" / "image.nrrd", folder / case_id / "image.nrrd")
        lines.append(f"{case_id},p-{case_id}")
    (folder / "cases.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def _env(fake_slicer_app: Path, tmp_path: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(fake_slicer_app), HCC_TEST_EXIT_RECORD=str(tmp_path / "exit.json"),
               OMP_NUM_THREADS="1")
    env.pop("PYTHONSAFEPATH", None)
    return env


def run_in_slicer(fake_slicer_app: Path, tmp_path: Path, *args, script: Path = SCRIPT):
    """Run the script as `Slicer --python-script batch.py -- ARGS` would; returns (process, record)."""
    process = subprocess.run([sys.executable, str(script), "--", *map(str, args)], cwd=tmp_path,
                             env=_env(fake_slicer_app, tmp_path), capture_output=True, text=True, timeout=240)
    record = json.loads((tmp_path / "exit.json").read_text(encoding="utf-8"))
    return process, record


def assert_left_slicer_with(process, record, status: int) -> None:
    detail = f"stdout:\n{process.stdout}\nstderr:\n{process.stderr}"
    assert record["statuses"] == [status], detail  # slicer.util.exit called once, with this status
    assert record["runPythonAndExit"] is False, detail  # as slicer.util.exit does before app.exit
    assert process.returncode == status, detail
    assert "Traceback" not in process.stderr, detail


def test_all_cases_done_exits_0_with_results(fake_slicer_app, model_dir, tmp_path):
    cohort = make_cohort(tmp_path / "cohort", cases=("lung1", "brain1"))
    process, record = run_in_slicer(fake_slicer_app, tmp_path, "--cohort", cohort, "--task", TASK,
                                    "--model", model_dir, "--out", tmp_path / "out", "--device", "cpu")
    assert_left_slicer_with(process, record, 0)
    lines = (tmp_path / "out" / "results.tsv").read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t")
    case_ids = [line.split("\t")[header.index("case_id")] for line in lines[1:]]
    assert list(dict.fromkeys(case_ids)) == ["lung1", "brain1"]
    assert (tmp_path / "out" / "errors.tsv").read_text(encoding="utf-8").splitlines()[1:] == []
    assert "0 failed of 2" in process.stdout


def test_a_failed_case_exits_3_and_the_others_are_kept(fake_slicer_app, model_dir, tmp_path):
    cohort = make_cohort(tmp_path / "cohort", cases=("lung1",), broken=("nolabels",))
    process, record = run_in_slicer(fake_slicer_app, tmp_path, "--cohort", cohort, "--model", model_dir,
                                    "--out", tmp_path / "out", "--device", "cpu", "--quiet")
    assert_left_slicer_with(process, record, 3)
    errors = (tmp_path / "out" / "errors.tsv").read_text(encoding="utf-8")
    assert "nolabels" in errors and "segmentation" in errors
    assert "lung1" in (tmp_path / "out" / "results.tsv").read_text(encoding="utf-8")
    assert "1 failed of 2" in process.stdout


@pytest.mark.parametrize("problem", ["no-such-cohort", "no-such-model", "unknown-option", "out-is-a-file"])
def test_bad_input_exits_2_with_a_message_and_writes_nothing(fake_slicer_app, model_dir, tmp_path, problem):
    cohort = make_cohort(tmp_path / "cohort")
    out = tmp_path / "out"
    args = {"--cohort": cohort, "--model": model_dir, "--out": out, "--device": "cpu"}
    expected = {"no-such-cohort": "missing-cohort", "no-such-model": "missing-model",
                "unknown-option": "--frobnicate", "out-is-a-file": str(out)}[problem]
    extra = []
    if problem == "no-such-cohort":
        args["--cohort"] = tmp_path / "missing-cohort"
    elif problem == "no-such-model":
        args["--model"] = tmp_path / "missing-model"
    elif problem == "unknown-option":
        extra = ["--frobnicate"]
    else:
        out.write_text("not a folder\n", encoding="utf-8")
    process, record = run_in_slicer(fake_slicer_app, tmp_path, *[x for kv in args.items() for x in kv], *extra)
    assert_left_slicer_with(process, record, 2)
    assert expected in process.stderr, process.stderr
    if problem != "out-is-a-file":
        assert not out.exists()  # every check happens before the output folder is made


def test_missing_dependencies_exit_2_before_any_work(fake_slicer_app, model_dir, tmp_path):
    """The module as installed, with a requirements list this Python does not satisfy: the
    script names the missing requirement and stops before it loads anything or writes output."""
    module = tmp_path / "install" / "HCCAnalysis"
    (module / "Scripts").mkdir(parents=True)
    (module / "Resources").mkdir()
    shutil.copy(SCRIPT, module / "Scripts" / "batch.py")
    os.symlink(ROOT / "HCCAnalysisLib", tmp_path / "install" / "HCCAnalysisLib")
    requirements = (ROOT / "HCCAnalysis" / "Resources" / "requirements.txt").read_text(encoding="utf-8")
    (module / "Resources" / "requirements.txt").write_text(requirements + "monai>=99.0\n", encoding="utf-8")
    cohort = make_cohort(tmp_path / "cohort")
    process, record = run_in_slicer(fake_slicer_app, tmp_path, "--cohort", cohort, "--model", model_dir,
                                    "--out", tmp_path / "out", script=module / "Scripts" / "batch.py")
    assert_left_slicer_with(process, record, 2)
    assert "missing dependencies" in process.stderr and "monai>=99.0" in process.stderr
    assert "scikit-learn" not in process.stderr  # only what is missing is listed
    assert not (tmp_path / "out").exists()


def test_the_shipped_requirements_are_satisfied_here(fake_slicer_app, tmp_path):
    """The dependency check passes in this (complete) environment: `--help` gets past parsing
    and the script leaves with 0; and the check itself reports nothing missing."""
    process, record = run_in_slicer(fake_slicer_app, tmp_path, "--help")
    assert_left_slicer_with(process, record, 0)
    assert "--cohort" in process.stdout and "130" in process.stdout
    check = subprocess.run(
        [sys.executable, "-c", "import runpy; print(runpy.run_path(%r)['missing_dependencies']())" % str(SCRIPT)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert check.returncode == 0 and check.stdout.strip() == "[]", check.stderr


def test_interrupted_run_exits_130_and_resumes(fake_slicer_app, model_dir, tmp_path):
    """Ctrl-C (SIGINT) mid-cohort still leaves Slicer, with 130; the same command then resumes."""
    cohort = make_cohort(tmp_path / "cohort", cases=tuple(f"lung1-{k}" for k in range(8)))
    args = ["--cohort", cohort, "--model", model_dir, "--out", tmp_path / "out", "--device", "cpu"]
    process = subprocess.Popen([sys.executable, str(SCRIPT), "--", *map(str, args)], cwd=tmp_path,
                               env=_env(fake_slicer_app, tmp_path), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        for line in process.stdout:
            if line.startswith("[1/8]"):  # the first case is done: the run is mid-cohort
                process.send_signal(signal.SIGINT)
                break
        stdout, stderr = process.communicate(timeout=240)
    finally:
        process.kill()
    record = json.loads((tmp_path / "exit.json").read_text(encoding="utf-8"))
    assert record["statuses"] == [130] and process.returncode == 130, stderr
    assert "run the same command again to resume" in stderr
    done = sorted(p.name for p in (tmp_path / "out" / "cases").iterdir())
    assert 1 <= len(done) < 8
    resumed, record = run_in_slicer(fake_slicer_app, tmp_path, *args)
    assert_left_slicer_with(resumed, record, 0)
    assert f"{len(done)} from an earlier run, 0 failed of 8" in resumed.stdout
