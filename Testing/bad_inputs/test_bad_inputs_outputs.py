"""Output locations (issue 14): checked before any work, by every command that writes.

case                                          -> command     -> expected (exit 2, nothing created or changed)
--out inside the cohort (a case folder)       -> train       -> "lies inside the input <cohort>"
--out holding the cohort                      -> train       -> "holds the input <cohort>"
--out in a read-only location                 -> train       -> "cannot write in <folder> (Read-only file system"
write-protected model.json, --overwrite       -> train       -> "model.json: is write-protected; it is not overwritten"
--out under a file                            -> train       -> "<file> on its way is a file"
--out inside the cohort                       -> evaluate    -> "lies inside the input"
write-protected metrics.json                  -> evaluate    -> "metrics.json: is write-protected"
--out-file inside the case folder             -> predict     -> "lies inside the input <case>"
--out-file inside the model package           -> predict     -> "lies inside the input <model>"
write-protected results file, --overwrite     -> predict     -> "is write-protected", content unchanged
--out-file in a read-only location            -> predict     -> "cannot write in"
--out inside the cohort                       -> batch       -> "lies inside the input"
--out is a file                               -> batch       -> "is a file; --out names a folder"
--out under a file                            -> batch       -> "on its way is a file"
--out is a symlink loop                       -> batch       -> "symlink loop"
write-protected results.tsv of earlier run    -> batch       -> "results.tsv: is write-protected"
--out in a read-only location                 -> batch       -> "cannot write in"
--out inside the evaluation folder            -> report      -> "lies inside the input <evaluation>"
--out in a read-only location                 -> report      -> "cannot write in"
"""

import os
import stat

import pytest

from helpers import bad_inputs as bad
from helpers.faulty_fs import readonly_folder
from helpers.tiny_evaluation import write_tiny_evaluation

ROWS = ["breast1,p1,MR", "lung1,p2,CT"]
TRAIN = ["train", "--task", bad.TASK, "--phases", "image", "--epochs", "1", "--pretrained", "none", "--device", "cpu"]


cli_refused = bad.cli_refused  # `hcc ARGV` exits 2 naming every part, nothing written


@pytest.fixture
def cohort(tmp_path):
    return bad.cohort_copy(tmp_path / "cohort", ROWS)


@pytest.fixture
def package(tmp_path):
    return bad.build_package(tmp_path / "model")


def _protect(path):
    path.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    return path


# ---------------------------------------------------------------- train / evaluate ---------------

def test_train_into_a_case_folder(cohort, capsys):
    out = cohort / "breast1" / "model"
    cli_refused([*TRAIN, "--cohort", cohort, "--out", out], capsys, str(out), "lies inside the input",
                str(cohort.resolve()), inputs=[cohort], absent=[out])


def test_train_into_a_folder_holding_the_cohort(cohort, tmp_path, capsys):
    cli_refused([*TRAIN, "--cohort", cohort, "--out", tmp_path, "--overwrite"], capsys, "holds the input",
                inputs=[tmp_path])


def test_train_into_a_read_only_location(cohort, tmp_path, capsys):
    with readonly_folder(tmp_path / "ro") as ro:
        cli_refused([*TRAIN, "--cohort", cohort, "--out", ro / "model"], capsys, str(ro / "model"),
                    f"cannot write in {ro}", "read-only location", inputs=[cohort, ro], absent=[ro / "model"])


def test_train_over_a_write_protected_package(cohort, package, capsys):
    card = _protect(package / "model.json")
    cli_refused([*TRAIN, "--cohort", cohort, "--out", package, "--overwrite"], capsys, f"{card}:",
                "is write-protected; it is not overwritten", inputs=[cohort, package])


def test_train_out_under_a_file(cohort, tmp_path, capsys):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file, not a folder\n")
    out = blocker / "model"
    cli_refused([*TRAIN, "--cohort", cohort, "--out", out], capsys, f"{blocker} on its way is a file",
                inputs=[cohort, blocker])


def test_evaluate_into_the_cohort(cohort, capsys):
    out = cohort / "evaluation"
    cli_refused(["evaluate", "--task", bad.TASK, "--phases", "image", "--cohort", cohort, "--folds", "2",
                 "--out", out], capsys, "lies inside the input", inputs=[cohort], absent=[out])


def test_evaluate_over_a_write_protected_metrics_file(cohort, tmp_path, capsys):
    out = tmp_path / "evaluation"
    out.mkdir()
    metrics = out / "metrics.json"
    metrics.write_text("{}\n")
    _protect(metrics)
    cli_refused(["evaluate", "--task", bad.TASK, "--phases", "image", "--cohort", cohort, "--folds", "2",
                 "--out", out, "--overwrite"], capsys, f"{metrics}:", "write-protected", inputs=[cohort, out])


# ---------------------------------------------------------------- predict ------------------------

def test_predict_into_the_case_folder(cohort, package, capsys):
    out = cohort / "breast1" / "results.tsv"
    cli_refused(["predict", "--model", package, "--case", cohort / "breast1", "--out-file", out], capsys,
                "lies inside the input", str((cohort / "breast1").resolve()), inputs=[cohort, package], absent=[out])


def test_predict_into_the_model_package(cohort, package, capsys):
    out = package / "results.tsv"
    cli_refused(["predict", "--model", package, "--case", cohort / "breast1", "--out-file", out], capsys,
                "lies inside the input", str(package.resolve()), inputs=[cohort, package], absent=[out])


def test_predict_over_a_write_protected_results_file(cohort, package, tmp_path, capsys):
    out = tmp_path / "results.tsv"
    out.write_text("earlier results\n")
    _protect(out)
    cli_refused(["predict", "--model", package, "--case", cohort / "breast1", "--out-file", out, "--overwrite"],
                capsys, f"{out}:", "is write-protected; it is not overwritten", inputs=[cohort, package, out])
    assert out.read_text() == "earlier results\n"


def test_predict_into_a_read_only_location(cohort, package, tmp_path, capsys):
    with readonly_folder(tmp_path / "ro") as ro:
        out = ro / "results.tsv"
        cli_refused(["predict", "--model", package, "--case", cohort / "breast1", "--out-file", out], capsys,
                    "cannot write in", inputs=[cohort, package, ro], absent=[out])


# ---------------------------------------------------------------- batch --------------------------

def _batch(cohort, package, out):
    return ["batch", "--cohort", cohort, "--model", package, "--out", out, "--device", "cpu"]


def test_batch_into_the_cohort(cohort, package, capsys):
    out = cohort / "batch"
    cli_refused(_batch(cohort, package, out), capsys, "lies inside the input", inputs=[cohort, package], absent=[out])


def test_batch_out_is_a_file(cohort, package, tmp_path, capsys):
    out = tmp_path / "batch"
    out.write_text("not a folder\n")
    cli_refused(_batch(cohort, package, out), capsys, f"{out}:", "is a file; --out names a folder",
                inputs=[cohort, package, out])


def test_batch_out_under_a_file(cohort, package, tmp_path, capsys):
    blocker = tmp_path / "batch.txt"
    blocker.write_text("a file\n")
    cli_refused(_batch(cohort, package, blocker / "out"), capsys, "on its way is a file",
                inputs=[cohort, package, blocker])


def test_batch_out_is_a_symlink_loop(cohort, package, tmp_path, capsys):
    os.symlink(tmp_path / "loop-b", tmp_path / "loop-a")
    os.symlink(tmp_path / "loop-a", tmp_path / "loop-b")
    cli_refused(_batch(cohort, package, tmp_path / "loop-a"), capsys, "symlink loop", inputs=[cohort, package])


def test_batch_over_a_write_protected_results_file(cohort, package, tmp_path, capsys):
    out = tmp_path / "batch"
    out.mkdir()
    results = out / "results.tsv"
    results.write_text("case_id\nearlier\n")
    _protect(results)
    cli_refused(_batch(cohort, package, out), capsys, f"{results}:", "write-protected", inputs=[cohort, package, out])


def test_batch_into_a_read_only_location(cohort, package, tmp_path, capsys):
    with readonly_folder(tmp_path / "ro") as ro:
        cli_refused(_batch(cohort, package, ro / "batch"), capsys, "cannot write in", inputs=[cohort, package, ro],
                    absent=[ro / "batch"])


# ---------------------------------------------------------------- report -------------------------

def test_report_into_the_evaluation_folder(tmp_path, capsys):
    evaluation = write_tiny_evaluation(tmp_path / "evaluation")
    out = evaluation / "report"
    cli_refused(["report", "--eval", evaluation, "--out", out], capsys, "lies inside the input",
                inputs=[evaluation], absent=[out])


def test_report_into_a_read_only_location(tmp_path, capsys):
    evaluation = write_tiny_evaluation(tmp_path / "evaluation")
    with readonly_folder(tmp_path / "ro") as ro:
        cli_refused(["report", "--eval", evaluation, "--out", ro / "report"], capsys, "cannot write in",
                    inputs=[evaluation, ro], absent=[ro / "report"])
