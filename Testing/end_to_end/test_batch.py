"""The cohort batch engine on the bundled demo cohort, with a real (untrained, seeded) model package."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from HCCAnalysisLib.batch import add_batch_parser, case_file_stem, main, merge_results, run_batch, run_cohort
from HCCAnalysisLib.data.cohort import load_cohort
from HCCAnalysisLib.errors import HCCInputError
from HCCAnalysisLib.models.registry import untrained_package
from HCCAnalysisLib.data.prediction import read_tsv

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "HCCAnalysisLib" / "sample_data" / "demo-cohort"
TASK = "jia2019-hcc-vs-background"


def make_model(folder, seed=0, version="0.0.1"):
    """A real model package: the task's network with seeded random weights, saved by models.save_model."""
    return untrained_package(folder, TASK, ["image"], seed=seed, version=version)


def make_cohort(folder, copies=1, broken=()):
    """A cohort of the demo cases (repeated `copies` times under new ids, as links) plus
    `broken` cases whose folder has an image but no segmentation."""
    folder = Path(folder)
    folder.mkdir(parents=True)
    lines = ["case_id,patient_id"]
    for record in load_cohort(DEMO).records:
        for k in range(copies):
            case_id = record.case_id if k == 0 else f"{record.case_id}-{k}"
            os.symlink(record.folder, folder / case_id)
            lines.append(f"{case_id},{record.patient_id}")
    for case_id in broken:
        (folder / case_id).mkdir()
        shutil.copy(DEMO / "lung1" / "image.nrrd", folder / case_id / "image.nrrd")
        lines.append(f"{case_id},p-{case_id}")
    (folder / "cases.csv").write_text("\n".join(lines) + "\n")
    return folder


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_model(tmp_path_factory.mktemp("model") / "pkg")


def test_cohort_run_writes_one_row_set_per_case_and_logs_failures(tmp_path, model_dir):
    cohort = make_cohort(tmp_path / "cohort", broken=["nolabels"])
    steps = []
    result = run_cohort(cohort, TASK, str(model_dir), tmp_path / "out", device="cpu", progress=steps.append)
    assert (result.done, result.resumed, result.failed, result.total) == (4, 0, 1, 5)
    rows = read_tsv(result.results_path)
    assert list(dict.fromkeys(r["case_id"] for r in rows)) == ["lung1", "lung2", "brain1", "breast1"]  # cohort order
    assert {r["kind"] for r in rows} == {"lesion", "background"}
    for row in rows:  # probabilities of each row sum to one
        assert float(row["prob_background"]) + float(row["prob_HCC"]) == pytest.approx(1.0, abs=1e-6)
    errors = read_tsv(result.errors_path)
    assert [e["case_id"] for e in errors] == ["nolabels"]
    assert "segmentation" in errors[0]["message"] and errors[0]["error_type"] == "HCCInputError"
    assert [s.status for s in steps] == ["started", "done", "done", "done", "done", "failed"]


def test_resume_skips_finished_cases_and_retries_failed(tmp_path, model_dir):
    cohort = make_cohort(tmp_path / "cohort", broken=["nolabels"])
    out = tmp_path / "out"
    first = read_tsv(run_cohort(cohort, TASK, str(model_dir), out, device="cpu", progress=None).results_path)
    before = {p.name: p.stat().st_mtime_ns for p in (out / "cases").iterdir()}
    # The user fixes the broken case: the next run processes it and keeps the rest.
    shutil.copy(DEMO / "lung1" / "labels.nrrd", cohort / "nolabels" / "labels.nrrd")
    second = run_cohort(cohort, TASK, str(model_dir), out, device="cpu", progress=None)
    assert (second.done, second.resumed, second.failed) == (1, 4, 0)
    after = {p.name: p.stat().st_mtime_ns for p in (out / "cases").iterdir()}
    assert {k: after[k] for k in before} == before  # finished cases were not rewritten
    assert read_tsv(second.errors_path) == [] and not (out / "errors" / "nolabels.tsv").exists()
    rows = read_tsv(second.results_path)
    assert [r for r in rows if r["case_id"] != "nolabels"] == first
    # nolabels now holds lung1's image and labels: identical lesion rows (background ROIs
    # are drawn with a generator seeded by the case id, so those differ).
    lesion = lambda c: [{k: v for k, v in r.items() if k not in ("case_id", "patient_id")}  # noqa: E731
                        for r in rows if r["case_id"] == c and r["kind"] == "lesion"]
    assert lesion("nolabels") == lesion("lung1") != []


def test_resume_with_another_model_is_refused_before_writing(tmp_path, model_dir):
    cohort = make_cohort(tmp_path / "cohort")
    out = tmp_path / "out"
    run_cohort(cohort, TASK, str(model_dir), out, device="cpu", progress=None)
    other = make_model(tmp_path / "other", seed=1)
    snapshot = sorted((p.name, p.read_bytes()) for p in out.rglob("*") if p.is_file())
    with pytest.raises(HCCInputError, match="model_weights_sha256"):
        run_cohort(cohort, TASK, str(other), out, device="cpu", progress=None)
    assert sorted((p.name, p.read_bytes()) for p in out.rglob("*") if p.is_file()) == snapshot


def test_engine_rejects_duplicate_and_colliding_ids(tmp_path):
    class Job:
        def __init__(self, case_id):
            self.case_id = case_id

    with pytest.raises(HCCInputError, match="listed twice"):
        run_batch([Job("a"), Job("a")], len, tmp_path / "o1")
    with pytest.raises(HCCInputError, match="letter case"):
        run_batch([Job("Case1"), Job("case1")], len, tmp_path / "o2")
    assert case_file_stem("a/b c") == "a%2Fb%20c" and case_file_stem("ok-1.2") == "ok-1.2"


def test_a_second_concurrent_run_into_the_same_folder_is_refused(tmp_path):
    """A real batch holds the folder (its first case blocks); a second batch started from
    another process while it runs is refused and writes nothing; once the first finishes,
    the folder is free again (the lock is filelock's: flock here, LockFileEx on Windows)."""
    import threading

    out = tmp_path / "out"
    records = load_cohort(DEMO).records
    entered, release = threading.Event(), threading.Event()

    def slow_case(record):
        entered.set()
        assert release.wait(60)
        return [{"case_id": record.case_id, "value": 1}]

    first = {}
    runner = threading.Thread(target=lambda: first.setdefault("result", run_batch(records[:1], slow_case, out)))
    runner.start()
    try:
        assert entered.wait(60)
        before = sorted((p.relative_to(out), p.read_bytes()) for p in out.rglob("*") if p.is_file())
        second = subprocess.run(
            [sys.executable, "-c",
             "import sys; from HCCAnalysisLib.batch import run_batch; from HCCAnalysisLib.data.cohort import "
             "load_cohort; from HCCAnalysisLib.errors import HCCInputError\n"
             "try:\n    run_batch(load_cohort(sys.argv[1]).records, len, sys.argv[2])\n"
             "except HCCInputError as err:\n    print(err); sys.exit(2)\n",
             str(DEMO), str(out)],
            cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True, timeout=120)
        after = sorted((p.relative_to(out), p.read_bytes()) for p in out.rglob("*") if p.is_file())
    finally:
        release.set()
        runner.join(60)
    assert second.returncode == 2, second.stdout + second.stderr
    assert "is being written by another batch run" in second.stdout and str(out) in second.stdout
    assert after == before  # the refused run changed nothing
    assert first["result"].done == 1 and read_tsv(out / "results.tsv") == [{"case_id": "lung1", "value": "1"}]
    again = run_batch(records[:1], slow_case, out)  # released: a resume goes ahead
    assert (again.done, again.resumed) == (0, 1)


def test_the_lock_does_not_depend_on_fcntl(tmp_path, monkeypatch):
    """Where `import fcntl` fails (Windows) the folder is still locked: the lock is filelock's."""
    import filelock

    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.setitem(sys.modules, "fcntl", None)  # `import fcntl` now raises ImportError
    with filelock.FileLock(str(out / ".lock")):  # what a running batch holds
        with pytest.raises(HCCInputError, match="another batch run"):
            run_batch(load_cohort(DEMO).records, len, out)
    assert sorted(p.name for p in out.iterdir() if p.name != ".lock") == []  # nothing written


def test_a_case_listed_without_its_folder_fails_alone(tmp_path, model_dir):
    cohort = make_cohort(tmp_path / "cohort")
    with open(cohort / "cases.csv", "a") as table:
        table.write("ghost,p-ghost\n")  # listed, but no folder ghost/
    result = run_cohort(cohort, TASK, str(model_dir), tmp_path / "out", device="cpu", progress=None)
    assert (result.done, result.failed, result.total) == (4, 1, 5)
    assert "ghost" not in {r["case_id"] for r in read_tsv(result.results_path)}
    (error,) = read_tsv(result.errors_path)
    assert error["case_id"] == "ghost" and error["error_type"] == "HCCInputError"
    assert "has no folder ghost/" in error["message"] and str(cohort / "ghost") in error["message"]
    assert "Traceback" not in error["message"]
    # The user adds the folder: the resume processes that case only.
    os.symlink(DEMO / "lung1", cohort / "ghost")
    second = run_cohort(cohort, TASK, str(model_dir), tmp_path / "out", device="cpu", progress=None)
    assert (second.done, second.resumed, second.failed) == (1, 4, 0) and read_tsv(second.errors_path) == []


def test_every_result_row_names_task_model_version_and_weights_hash(tmp_path, model_dir):
    """Rows merged from two runs with two models can be told apart by their trace columns."""
    import json

    from HCCAnalysisLib.models.package import sha256_of

    other = make_model(tmp_path / "other", seed=1, version="0.0.2")
    cohort = make_cohort(tmp_path / "cohort")
    tables = []
    for package in (model_dir, other):
        card = json.loads((package / "model.json").read_text())
        result = run_cohort(cohort, TASK, str(package), tmp_path / f"out-{card['version']}", device="cpu",
                            progress=None)
        header = result.results_path.read_text().splitlines()[0].split("\t")
        assert header[-3:] == ["task", "model_version", "model_weights_sha256"]
        weights_hash = sha256_of(package / card["weights"])
        assert card["weights_sha256"] == weights_hash
        for path in [result.results_path, *sorted((result.out_dir / "cases").glob("*.tsv"))]:
            rows = read_tsv(path)
            assert rows and all((r["task"], r["model_version"], r["model_weights_sha256"]) ==
                                (TASK, card["version"], weights_hash) for r in rows), path
        tables.append(read_tsv(result.results_path))
    assert {r["model_version"] for r in tables[0] + tables[1]} == {"0.0.1", "0.0.2"}
    assert {r["model_weights_sha256"] for r in tables[0]}.isdisjoint(r["model_weights_sha256"] for r in tables[1])


def test_cancel_keeps_finished_cases_and_merge_is_byte_exact(tmp_path, model_dir):
    from HCCAnalysisLib.batch import file_case_processor
    from HCCAnalysisLib.models.package import load_model

    records = load_cohort(DEMO).records
    model = load_model(model_dir, "cpu")
    seen = []
    result = run_batch(records, file_case_processor(model, "cpu"), tmp_path / "out",
                       progress=seen.append, should_stop=lambda: len(seen) >= 2)
    assert result.cancelled and result.done == 2
    assert sorted(p.name for p in (tmp_path / "out" / "cases").iterdir()) == ["lung1.tsv", "lung2.tsv"]
    merged = (tmp_path / "out" / "results.tsv").read_text().splitlines()
    parts = [(tmp_path / "out" / "cases" / f"{c}.tsv").read_text().splitlines() for c in ("lung1", "lung2")]
    assert merged == parts[0] + parts[1][1:]  # same header, rows copied as text
    merge_results(tmp_path / "out", ["lung2", "lung1"])  # order follows the given ids
    assert (tmp_path / "out" / "results.tsv").read_text().splitlines() == parts[1] + parts[0][1:]


def test_cli_parser_and_bad_input(tmp_path, model_dir, capsys):
    import argparse

    parser = argparse.ArgumentParser(prog="hcc")
    sub = parser.add_subparsers(dest="command")
    add_batch_parser(sub)
    args = parser.parse_args(["batch", "--cohort", "c", "--model", "m", "--out", "o"])
    assert args.func.__name__ == "_cli_batch" and args.device == "auto" and args.retry_failed and args.task is None
    status = main(["--cohort", str(tmp_path / "none"), "--task", TASK, "--model", str(model_dir),
                   "--out", str(tmp_path / "o2")])
    assert status == 2 and "has no cases.csv" in capsys.readouterr().err and not (tmp_path / "o2").exists()
    with pytest.raises(HCCInputError, match="is a model for task"):
        run_cohort(DEMO, "jia2019-differentiation", str(model_dir), tmp_path / "o3", progress=None)


def _doc_blocks(name):
    """The code block after `<!-- tested: name -->` in docs/user-guide.md."""
    text = (ROOT / "docs" / "user-guide.md").read_text(encoding="utf-8")
    after = text.split(f"<!-- tested: {name} -->", 1)[1]
    return after.split("```", 2)[1].split("\n", 1)[1]


def test_user_guide_console_and_batch_examples(tmp_path):
    """The guide's examples, run as written (in a scratch folder holding the sample data and a model
    package at out/demo/model): `hcc`, Slicer's batch script (with slicer-core instead of the
    Slicer executable) and the Python console give byte-identical cohort tables."""
    (tmp_path / "HCCAnalysisLib").mkdir()
    os.symlink(ROOT / "HCCAnalysisLib" / "sample_data", tmp_path / "HCCAnalysisLib" / "sample_data")
    (tmp_path / "HCCAnalysis").symlink_to(ROOT / "HCCAnalysis")
    make_model(tmp_path / "out" / "demo" / "model")
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    console = subprocess.run([sys.executable, "-c", _doc_blocks("console")], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=300)
    assert console.returncode == 0 and "4 cases done, 0 failed" in console.stdout, console.stderr
    for line in _doc_blocks("batch").strip().splitlines():
        words = line.split()
        if words[0] == "hcc":
            command = [sys.executable, "-m", "HCCAnalysisLib.cli", *words[1:]]
        else:  # Slicer --no-main-window --python-script SCRIPT -- ARGS: run the script with slicer-core
            assert words[:3] == ["Slicer", "--no-main-window", "--python-script"]
            command = [sys.executable, *words[3:]]
        run = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stdout + run.stderr
        assert "[4/4] breast1 done" in run.stdout + run.stderr  # hcc: on stderr (a log line); Slicer: stdout
    tables = [(tmp_path / "out" / name / "results.tsv").read_bytes()
              for name in ("console-batch", "batch", "batch-slicer")]
    assert tables[0] == tables[1] == tables[2]
    assert list(dict.fromkeys(r["case_id"] for r in read_tsv(tmp_path / "out" / "batch" / "results.tsv"))) == [
        "lung1", "lung2", "brain1", "breast1"]
