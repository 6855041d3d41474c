"""The panel's "Allow unusual input" check box (issue 13's input check, in Slicer): a case far
outside the model card's `input_profile` is refused with a hint naming the check box (the
panel user has no `--allow-unusual-input`), and nothing reaches the scene; with the box ticked
the table comes, the reason in its `warnings` column. Through the real module, .ui and
parameter node wrapper (conftest.py), and the real job folder / `hcc run-job` child process.

The model: an untrained package whose card has the profile `hcc train` records for the real CT
cases lung1 and lung2 (helpers/profiled_model.py). The case: the real MR case breast1, its
values x 10 (MR intensities have no fixed scale; a scanner's may be ten times another's). Volume
nodes carry no DICOM Modality tag, so the modality rule cannot fire in the panel: it is the
overlap rule that refuses (the case's p5..p95 520..830 against the CT cases' -958..212).
"""

import json

import pytest

from helpers.bad_inputs import COHORT
from helpers.profiled_model import ct_profiled_package
from HCCAnalysisLib.data.intensity_profile import PANEL_OVERRIDE
from HCCAnalysisLib.errors import HCCInputError
from HCCAnalysisLib.panel.job_files import JOB_FILE, read_job_folder, write_job_folder
from HCCAnalysisLib.slicer_io.files import load_case_into_scene
from test_module_widget import THREE_PHASE, _finish

REFUSED = "do not overlap the 2 training cases'"
HINT = f"tick '{PANEL_OVERRIDE}' to predict anyway"


def _scaled_mr_case(env):
    """breast1 (real MR) as the panel's `image` volume, its voxel values multiplied by 10."""
    volumes, segmentation = load_case_into_scene(env.scene, COHORT / "breast1", ["image"])
    array = env.slicer.util.arrayFromVolume(volumes["image"])
    array *= 10
    env.slicer.util.arrayFromVolumeModified(volumes["image"])
    return volumes, segmentation


def _warnings(table):
    column = table.GetTable().GetColumnByName("warnings")
    return [column.GetValue(r) for r in range(table.GetNumberOfRows())]


@pytest.mark.parametrize("slicer_version", ["main-2026-08-21"], indirect=True)  # child runs: one framework
def test_refused_then_allowed_through_apply(module_env, one_torch_thread, caplog):
    module_env.scene.Clear(0)
    _scaled_mr_case(module_env)
    model = ct_profiled_package(module_env.models_dir / THREE_PHASE / "0.0.1", THREE_PHASE)
    widget = module_env.make_widget()
    p, box = widget._parameterNode, widget.ui.allowUnusualInputCheckBox
    assert p.model == str(model) and widget.ui.applyButton.enabled, widget.ui.applyButton.toolTip
    assert box.text == PANEL_OVERRIDE and not box.checked and p.allowUnusualInput is False
    widget.ui.deviceComboBox.currentIndex = 1  # cpu
    nodes = module_env.scene.GetNumberOfNodes()

    widget.ui.applyButton.click()
    run = _finish(widget)
    assert not run.results and len(run.errors) == 1
    [error] = run.errors.values()
    assert REFUSED in error and HINT in error and "--allow-unusual-input" not in error, error
    assert HINT in widget.ui.statusLabel.text
    assert any("The analysis failed" in r.getMessage() and HINT in r.getMessage() for r in caplog.records)
    assert module_env.scene.GetNumberOfNodes() == nodes and p.outputTable is None  # nothing added

    box.checked = True  # the user ticks the box: the parameter node follows (bound in the .ui)
    assert p.allowUnusualInput is True
    widget.ui.applyButton.click()
    run = _finish(widget)
    assert not run.errors, run.errors
    warnings = _warnings(p.outputTable)
    assert len(warnings) == 2 and all(REFUSED in w and f"(allowed by '{PANEL_OVERRIDE}')" in w for w in warnings)


def test_console_run_all_and_the_job_file(module_env, one_torch_thread, tmp_path):
    """The console's in-process call refuses, then predicts with allowUnusualInput=True; Run all's
    jobs carry the box; job.json round-trips the flag, and a job file written before it reads False."""
    module_env.scene.Clear(0)
    volumes, segmentation = _scaled_mr_case(module_env)
    model = ct_profiled_package(module_env.models_dir / THREE_PHASE / "0.0.1", THREE_PHASE)
    logic = module_env.mod.HCCAnalysisLogic()
    nodes = module_env.scene.GetNumberOfNodes()
    with pytest.raises(HCCInputError, match=REFUSED) as refused:
        logic.process(THREE_PHASE, volumes, segmentation, model=str(model), device="cpu")
    assert HINT in str(refused.value) and module_env.scene.GetNumberOfNodes() == nodes
    table = logic.process(THREE_PHASE, volumes, segmentation, model=str(model), device="cpu", allowUnusualInput=True)
    assert len(_warnings(table)) == 2 and all(REFUSED in w for w in _warnings(table))

    plan = logic.prepareApplicableJobs(segmentation, None, "cpu", chosen=volumes, allowUnusualInput=True)
    assert [j.allow_unusual_input for j in plan.jobs] == [True]
    assert [j.allow_unusual_input for j in logic.prepareApplicableJobs(segmentation, None, "cpu").jobs] == [False]

    folder = write_job_folder([plan.jobs[0], logic.prepareJob(THREE_PHASE, volumes, segmentation, model=str(model))],
                              tmp_path / "job")
    entries = json.loads((folder / JOB_FILE).read_text())["jobs"]
    assert [e["allow_unusual_input"] for e in entries] == [True, False]
    assert [j.allow_unusual_input for j in read_job_folder(folder)] == [True, False]
    for entry in entries:  # a job file from before the check box
        del entry["allow_unusual_input"]
    (folder / JOB_FILE).write_text(json.dumps({"format": 1, "jobs": entries}))
    assert [j.allow_unusual_input for j in read_job_folder(folder)] == [False, False]
