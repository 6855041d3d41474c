"""The panel's logic without Qt: what it shows (panel_model), what it installs (dependencies),
and Apply / Run all on real MRML nodes built from the bundled demo case (panel_jobs, slicer-core).
The out-of-process runner has its own file (test_process_run.py)."""

import pytest

from HCCAnalysisLib.panel import choices as panel_model
from HCCAnalysisLib.clinical.schemas import SCHEMAS
from HCCAnalysisLib.panel.dependencies import missing_requirements
from HCCAnalysisLib.errors import HCCInputError
from HCCAnalysisLib.tasks import TASKS
from test_batch import DEMO, TASK, make_model


def test_task_choices_and_phase_inputs_follow_the_registry():
    assert [c.name for c in panel_model.task_choices()] == list(TASKS)
    for choice in panel_model.task_choices():
        assert TASKS[choice.name].paper in choice.description
    task = TASKS[TASK]
    assert [p.phase for p in panel_model.phase_inputs(TASK)] == list(task.phases)
    assert [p.label for p in panel_model.phase_inputs(TASK, ["image"])] == ["image volume:"]
    with pytest.raises(HCCInputError, match="phases"):
        panel_model.phase_inputs(TASK, ["a", "b"])  # two phases: the task takes 1 or 3


@pytest.mark.parametrize("schema", sorted(SCHEMAS))
def test_clinical_form_mirrors_each_schema(schema):
    fields = panel_model.schema_form(SCHEMAS[schema])
    assert [f.name for f in fields] == SCHEMAS[schema].field_names()
    for field, source in zip(fields, SCHEMAS[schema].fields):
        if field.kind == "choice":
            assert field.choices == ("",) + tuple(source.categories)
        else:
            assert (field.unit, field.low, field.high) == (source.unit, source.low, source.high)
        assert field.required == (getattr(source, "missing", "error") == "error")


def test_tasks_without_clinical_data_have_no_form():
    for name, task in TASKS.items():
        form = panel_model.clinical_form(name)
        assert (form == []) == (task.clinical_schema is None)
        if task.clinical_schema is None:
            assert panel_model.clinical_record(name, {"anything": "x"}) == {}


def test_missing_inputs_explain_why_apply_is_disabled():
    reasons = panel_model.missing_inputs(TASK, {}, [], "")
    assert reasons[0].startswith("choose a segmentation")
    assert [r for r in reasons if r.startswith("choose the ")] == [f"choose the {p} volume" for p in TASKS[TASK].phases]
    assert panel_model.missing_inputs(TASK, {"image": True}, ["1"], "/models/x", phases=["image"]) == []
    assert panel_model.applicable_tasks(["image"], {TASK: ["image"]}) == [TASK]
    assert panel_model.applicable_tasks(["T2"], {TASK: ["image"]}) == []


def test_lesion_segments_and_volume_matching():
    segments = [("s1", "Liver"), ("s2", "tumour A"), ("s3", "tumour B")]
    assert panel_model.lesion_segment_ids(segments) == ["s2", "s3"]
    assert panel_model.lesion_segment_ids(segments, ["s3"]) == ["s3"]
    with pytest.raises(HCCInputError, match="not in the segmentation"):
        panel_model.lesion_segment_ids(segments, ["s9"])
    names = ["case7_T2", "T2 fat-sat", "S0", "arterial phase", "S20"]
    guesses = panel_model.match_volumes(["T2", "S0", "arterial", "S2"], names)
    assert guesses == {"S0": "S0", "arterial": "arterial phase"}  # T2 is ambiguous, S2 absent (S20 is not S2)


def test_missing_requirements(tmp_path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("# comment\nnumpy>=1.0  # why\nnumpy<1.0  # too old\n"
                            "surely-not-installed-package-hcc  # absent\nscipy; python_version < '3'\n")
    assert missing_requirements(requirements) == ["numpy<1.0", "surely-not-installed-package-hcc"]


@pytest.fixture
def demo_nodes(slicer_app):
    """The demo case lung1 as MRML nodes: image volume + segmentation (liver, lesion 1)."""
    from HCCAnalysisLib.data.cohort import load_cohort
    from HCCAnalysisLib.slicer_io.files import load_case_into_scene

    record = load_cohort(DEMO).records[0]
    volumes, segmentation = load_case_into_scene(slicer_app.scene, record.folder, ["image"])
    return slicer_app.scene, volumes, segmentation


def test_apply_on_mrml_nodes_matches_the_file_path_and_fills_a_table(demo_nodes, tmp_path, monkeypatch):
    from HCCAnalysisLib.panel import jobs as panel_jobs
    from HCCAnalysisLib.data.cohort import load_cohort
    from HCCAnalysisLib.engine.infer import predict_case
    from HCCAnalysisLib.models.package import load_model

    scene, volumes, segmentation = demo_nodes
    model_dir = make_model(tmp_path / "model")
    with pytest.raises(HCCInputError, match="choose the image volume"):
        panel_jobs.prepare_job(TASK, {}, segmentation, None, str(model_dir), "cpu")
    job = panel_jobs.prepare_job(TASK, volumes, segmentation, panel_jobs.lesion_ids(segmentation), str(model_dir),
                                 "cpu", case_id="lung1", patient_id="patient-lung1")
    result = panel_jobs.run_job(job)
    expected = predict_case(load_model(model_dir), load_cohort(DEMO).records[0].load(phases=["image"]))
    as_text = lambda p: [{k: repr(v) for k, v in r.items()} for r in p.records()]  # noqa: E731 (NaN != NaN)
    assert as_text(result) == as_text(expected)

    table = panel_jobs.results_to_table([result], scene)
    assert table.GetNumberOfRows() == len(result.rows) == 2

    # "Run all": the installed model is found through the models folder.
    monkeypatch.setenv("HCCANALYSIS_MODELS_DIR", str(tmp_path / "models"))
    from HCCAnalysisLib.models.registry import import_package

    import_package(model_dir)
    jobs = panel_jobs.applicable_jobs(volumes, segmentation, None, "cpu")
    assert [j.task for j in jobs] == [TASK]
    combined = panel_jobs.results_to_table([result, panel_jobs.run_job(jobs[0])], scene)
    columns = [combined.GetColumnName(i) for i in range(combined.GetNumberOfColumns())]
    assert columns[:2] == ["task", "model"] and combined.GetNumberOfRows() == 4
    assert combined.GetTable().GetColumnByName("prob_HCC").GetValue(0) == result.rows[0].probabilities["HCC"]
    assert combined.GetCellText(0, columns.index("task")) == TASK
