"""Degenerate experiments refused with a reason (issue 14), before any result is written.

case                                          -> command / function -> expected (exit 2, nothing written)
evaluation --repeats 0                        -> hcc evaluate       -> "--repeats 0: must be at least 1"
evaluation of a one-class cohort              -> hcc evaluate       -> "evaluation data hold 1 class(es) ... at least two"
evaluation lacking a class of the task        -> hcc evaluate       -> "class(es) ['well'] ... are absent"
training on a one-class cohort                -> hcc train          -> "training data hold 1 class(es)"
training lacking a class of the task          -> hcc train          -> "absent from the training data", "--allow-missing-classes"
demo --epochs 0                               -> hcc demo           -> "--epochs 0: must be at least 1", no output folder
cross_validate(repeats=0)                     -> library            -> "0 repeats asked for"
--allow-missing-classes                       -> check_classes      -> a WARNING line on stderr, no refusal
"""

import pytest

from helpers import bad_inputs as bad
from HCCAnalysisLib.engine.class_check import check_classes
from HCCAnalysisLib.errors import HCCInputError
from HCCAnalysisLib.tasks import get_task

HEADER = "case_id,patient_id,modality,differentiation"
COMMON = ["--task", bad.DIFF_TASK, "--phases", "image", "--pretrained", "none", "--epochs", "1", "--device", "cpu"]


cli_refused = bad.cli_refused  # `hcc ARGV` exits 2 naming every part, nothing written


def _cohort(tmp_path, labels):
    rows = [f"{case},p{i},MR,{label}" for i, (case, label) in enumerate(zip(("breast1", "lung1", "brain1"), labels))]
    return bad.cohort_copy(tmp_path / "cohort", rows, header=HEADER, cases=("breast1", "lung1", "brain1")[:len(rows)])


def test_evaluation_with_zero_repeats(tmp_path, capsys):
    cohort = _cohort(tmp_path, ["poorly", "well"])
    out = tmp_path / "evaluation"
    cli_refused(["evaluate", *COMMON, "--cohort", cohort, "--folds", "2", "--repeats", "0", "--out", out], capsys,
                "--repeats 0: must be at least 1", inputs=[cohort], absent=[out])


def test_evaluation_of_one_class(tmp_path, capsys):
    cohort = _cohort(tmp_path, ["poorly", "poorly"])
    out = tmp_path / "evaluation"
    cli_refused(["evaluate", *COMMON, "--cohort", cohort, "--folds", "2", "--out", out], capsys,
                "the evaluation data hold 1 class(es) of task jia2019-differentiation", "at least two are needed",
                inputs=[cohort], absent=[out])


def test_evaluation_lacking_a_class(tmp_path, capsys):
    cohort = _cohort(tmp_path, ["poorly", "moderately"])
    out = tmp_path / "evaluation"
    cli_refused(["evaluate", *COMMON, "--cohort", cohort, "--folds", "2", "--out", out], capsys,
                "class(es) ['well'] of task jia2019-differentiation are absent from the evaluation data",
                "--allow-missing-classes", inputs=[cohort], absent=[out])


def test_training_on_one_class(tmp_path, capsys):
    cohort = _cohort(tmp_path, ["well", "well"])
    out = tmp_path / "model"
    cli_refused(["train", *COMMON, "--cohort", cohort, "--out", out], capsys, str(cohort),
                "the training data hold 1 class(es)", "well: 6", inputs=[cohort], absent=[out])


def test_training_lacking_a_class(tmp_path, capsys):
    cohort = _cohort(tmp_path, ["poorly", "well"])
    out = tmp_path / "model"
    cli_refused(["train", *COMMON, "--cohort", cohort, "--out", out], capsys,
                "class(es) ['moderately'] of task jia2019-differentiation are absent from the training data",
                "--allow-missing-classes", inputs=[cohort], absent=[out])


def test_demo_with_zero_epochs(tmp_path, capsys):
    out = tmp_path / "demo"
    cli_refused(["demo", "--out", out, "--epochs", "0"], capsys, "--epochs 0: must be at least 1", absent=[out])


def test_cross_validate_with_zero_repeats(tmp_path):
    from HCCAnalysisLib.data.cohort import load_cohort
    from HCCAnalysisLib.engine.evaluate import cross_validate

    cohort_dir = _cohort(tmp_path, ["poorly", "well"])
    out = tmp_path / "evaluation"
    bad.refused(lambda: cross_validate(get_task(bad.DIFF_TASK), load_cohort(cohort_dir), ["image"], out, folds=2,
                                       repeats=0), "0 repeats asked for", inputs=[cohort_dir], absent=[out])


def test_allow_missing_classes_warns_loudly(capsys):
    task = get_task(bad.DIFF_TASK)
    logged = []
    check_classes(task, {"poorly": 3, "moderately": 0, "well": 2}, "cohort", allow_missing=True, log=logged.append)
    err = capsys.readouterr().err
    assert "WARNING: class(es) ['moderately']" in err and "never predict them" in err
    assert len(logged) == 1 and logged[0] in err
    with pytest.raises(HCCInputError, match="at least two are needed"):  # one class: never allowed
        check_classes(task, {"poorly": 3, "moderately": 0, "well": 0}, "cohort", allow_missing=True)
