"""An external test cohort (`hcc evaluate --model`) is checked against the model card's input profile
case by case, as prediction is: a case of another modality is refused before anything is written,
`--allow-unusual-input` scores it and `evaluation.json` names it with the reason."""

import json
import shutil

from helpers.bad_inputs import COHORT
from helpers.profiled_model import ct_profiled_package
from HCCAnalysisLib.cli import main

TASK = "jia2019-hcc-vs-background"


def _external_cohort(folder):
    """Real cases as another site would send them: a CT lung case and an MR breast case, modality given."""
    folder.mkdir()
    for case in ("lung2", "breast1"):
        shutil.copytree(COHORT / case, folder / case)
    (folder / "cases.csv").write_text("case_id,patient_id,modality\nlung2,p-lung2,CT\nbreast1,p-breast1,MR\n")
    return folder


def test_external_cohort_case_of_another_modality_is_refused_or_recorded(tmp_path, one_torch_thread, capsys):
    model = ct_profiled_package(tmp_path / "model", TASK)  # profiled on the real lung CT cases
    cohort = _external_cohort(tmp_path / "site-b")
    out = tmp_path / "external"
    assert main(["evaluate", "--model", str(model), "--cohort", str(cohort), "--out", str(out), "--no-cache",
                 "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "breast1" in err and "modality MR" in err and "--allow-unusual-input" in err
    assert not out.exists()  # refused before anything is written
    assert main(["evaluate", "--model", str(model), "--cohort", str(cohort), "--out", str(out), "--no-cache",
                 "--device", "cpu", "--allow-unusual-input"]) == 0
    findings = json.loads((out / "evaluation.json").read_text())["input_findings"]
    assert list(findings) == ["breast1"] and "modality MR" in findings["breast1"][0]
    assert "allowed by --allow-unusual-input" in findings["breast1"][0]
    # cross-validation has no card to check against: the flag is refused there, by name
    assert main(["evaluate", "--task", TASK, "--cohort", str(cohort), "--out", str(tmp_path / "cv"),
                 "--allow-unusual-input"]) == 2
    assert "--allow-unusual-input: only with --model" in capsys.readouterr().err
    assert not (tmp_path / "cv").exists()
