"""The case-reading options (`--liver-label`, `--lesion-label`, `--segmentation`, `--phase`): one
object, the same on every command that reads cases, and carried through to the cases read."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from HCCAnalysisLib.cli import build_parser, main
from HCCAnalysisLib.data.reading_options import CaseReading, parse_labels, parse_phase_map, reading_from_args
from HCCAnalysisLib.errors import HCCInputError

TOTALSEG = Path(__file__).resolve().parent / "files" / "totalseg"
OPTIONS = ["--liver-label", "liver", "--lesion-label", "2,3", "--lesion-label", "gallbladder",
           "--segmentation", "*_seg.nii.gz", "--phase", "CT=image", "--phase", "PET=pet"]
EXPECTED = CaseReading(("liver",), ("2", "3", "gallbladder"), "*_seg.nii.gz", (("CT", "image"), ("PET", "pet")))
COMMANDS = {
    "train": ["train", "--task", "t", "--cohort", "c", "--out", "o"],
    "evaluate": ["evaluate", "--task", "t", "--cohort", "c", "--out", "o"],
    "predict": ["predict", "--model", "m", "--case", "c", "--out", "o"],
    "batch": ["batch", "--cohort", "c", "--model", "m", "--out", "o"],
    "saliency": ["saliency", "--model", "m", "--case", "c", "--out", "o.nrrd"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_that_reads_cases_has_the_options(command):
    args = build_parser().parse_args(COMMANDS[command] + OPTIONS)
    assert reading_from_args(args) == EXPECTED
    assert reading_from_args(build_parser().parse_args(COMMANDS[command])).is_default()


def test_labels_and_phase_maps_are_checked():
    assert parse_labels(["5", "5, 7"]) == ("5", "7")
    with pytest.raises(HCCInputError, match="label values start at 1"):
        parse_labels(["0"], "--liver-label")
    for bad, message in ((["CT"], "is not NAME=PHASE"), (["CT=image", "CT=pet"], "'CT' is mapped twice"),
                         (["CT=image", "MR=image"], "two names are mapped to the phase 'image'")):
        with pytest.raises(HCCInputError, match=message):
            parse_phase_map(bad)


def test_case_columns_take_precedence_over_the_command_line():
    reading = CaseReading(("5",), ("2",), None, (("CT", "image"),))
    assert reading.for_case({"liver_label": "", "other": "x"}) is reading
    case = reading.for_case({"lesion_label": "7,8", "segmentation": "m.nii.gz",
                             "phase_map": "A=image;B=pet"})
    assert case == CaseReading(("5",), ("7", "8"), "m.nii.gz", (("A", "image"), ("B", "pet")))


def test_batch_command_reads_a_totalsegmentator_cohort_with_the_options(tmp_path, capsys, one_torch_thread):
    from helpers.bad_inputs import build_package

    from HCCAnalysisLib.data.prediction import read_tsv

    cohort = tmp_path / "cohort"
    for case_id in ("ts1", "ts2"):
        shutil.copytree(TOTALSEG, cohort / case_id)
    (cohort / "cases.csv").write_text("case_id,patient_id,lesion_label\nts1,p1,\nts2,p2,pancreas\n")
    package = build_package(tmp_path / "pkg")
    status = main(["batch", "--cohort", str(cohort), "--model", str(package), "--out", str(tmp_path / "out"),
                   "--quiet", "--liver-label", "liver", "--lesion-label", "gallbladder", "--phase", "CT=image"])
    assert status == 0, capsys.readouterr().err
    rows = [r for r in read_tsv(tmp_path / "out" / "results.tsv") if r["kind"] == "lesion"]
    assert sorted({r["case_id"] for r in rows}) == ["ts1", "ts2"]
    assert {r["warnings"] for r in rows if r["case_id"] == "ts2"} == {"lesion lies entirely outside the liver mask"}
    assert {r.get("warnings") or "" for r in rows if r["case_id"] == "ts1"} == {""}
    # without the phase mapping, the model's phase 'image' is missing and the message says what to pass
    status = main(["batch", "--cohort", str(cohort), "--model", str(package), "--out", str(tmp_path / "out2"),
                   "--quiet", "--liver-label", "liver", "--lesion-label", "gallbladder"])
    assert status == 3
    errors = (tmp_path / "out2" / "errors.tsv").read_text()
    assert "has no phase ['image']" in errors and "--phase CT=image" in errors
