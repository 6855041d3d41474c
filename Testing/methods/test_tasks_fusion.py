"""Zhen 2020 and Wang 2020 tasks through the same paths as Jia 2019: task registry -> sampler
-> net -> `hcc train | predict | evaluate | batch` and the MRML route.

Data: real tumours of the sample data (CT lung, MR brain / breast); the extra phases / sequences are
resampled copies of the real image on other grids, labels are assigned and clinical columns
are real asaur rows paired arbitrarily with the cases, plus stand-ins: all stand-ins, see
Testing/helpers/fusion_cohort.py. The numbers say nothing about the methods' accuracy.
"""

import csv
import json
import math

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from helpers import fusion_cohort as fc
from HCCAnalysisLib.methods.wang2020 import tasks as wang_tasks
from HCCAnalysisLib.methods.zhen2020 import tasks as zhen_tasks
from HCCAnalysisLib.cli import main
from HCCAnalysisLib.clinical.schemas import get_schema
from HCCAnalysisLib.data.cohort import load_cohort
from HCCAnalysisLib.errors import HCCInputError
from HCCAnalysisLib.engine.infer import aggregate, make_samples, predict_case, run_net
from HCCAnalysisLib.models.package import load_model, save_model
from HCCAnalysisLib.methods.zhen2020.sampler import zhen_lesion_grid
from HCCAnalysisLib.tasks import get_task
from HCCAnalysisLib.engine.train import build_task_net, fit, set_seed

ZHEN_TASKS = sorted(zhen_tasks.TASKS)
WANG_TASKS = sorted(wang_tasks.TASKS)
CLI_TASKS = ("wang2020-image", "wang2020-fusion-d-joint")


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest: one torch thread


@pytest.fixture(scope="module")
def zhen_root(tmp_path_factory):
    return fc.zhen_cohort(tmp_path_factory.mktemp("zhen") / "cohort")


@pytest.fixture(scope="module")
def wang_root(tmp_path_factory):
    """Wang cohort (largest lesion slice labelled) + the held-out case as a cohort of one."""
    base = tmp_path_factory.mktemp("wang")
    root = fc.wang_cohort(base / "cohort")
    heldout = fc.wang_heldout(base / "heldout")
    return root, heldout


@pytest.fixture(scope="module")
def wang_full(tmp_path_factory):
    """Wang cohort with the whole real tumour labelled (every lesion slice one sample)."""
    return fc.wang_cohort(tmp_path_factory.mktemp("wang_full") / "cohort", largest_slice_only=False)


def _record(root, case_id):
    return next(r for r in load_cohort(root).records if r.case_id == case_id)


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


# --- every registered task -------------------------------------------------------------------

def test_registry_matches_the_papers():
    tasks = {**zhen_tasks.TASKS, **wang_tasks.TASKS}
    assert sorted(tasks) == sorted([f"zhen2020-model-{m}" for m in "abcdefg"] + ["wang2020-image"]
                                   + [f"wang2020-fusion-{v}" for v in "abcd"] + ["wang2020-fusion-d-joint"])
    for task in tasks.values():
        assert "pretrained_path" not in task.net_kwargs  # net kwargs go into the model card
        assert task.net_kwargs["in_channels"] == len(task.phases) and task.phase_counts == (len(task.phases),)
        schema_dim = get_schema(task.clinical_schema).dim if task.clinical_schema else 0
        assert task.net_kwargs.get("clinical_dim", 0) == (0 if task.net_kwargs.get("variant") == "image"
                                                          else schema_dim)
    assert [len(tasks[f"zhen2020-model-{m}"].phases) for m in "abcdefg"] == [6, 3, 6, 3, 6, 6, 3]
    assert [len(tasks[f"zhen2020-model-{m}"].classes) for m in "abcdefg"] == [7, 7, 2, 2, 3, 3, 3]
    assert [tasks[f"zhen2020-model-{m}"].clinical_schema for m in "efg"] == [None, "zhen2020", "zhen2020"]
    assert tasks["wang2020-fusion-d-joint"].loss == "joint" and tasks["wang2020-fusion-d-joint"].net_kwargs["joint"]
    assert {t.loss for n, t in tasks.items() if n != "wang2020-fusion-d-joint"} == {"cross_entropy"}


@pytest.mark.parametrize("name", ZHEN_TASKS)
def test_zhen_task_samples(name, zhen_root):
    """Each Zhen task samples the real case from its cases.csv row: C x 299 x 299, clinical 34."""
    task = get_task(name)
    record = _record(zhen_root, "lung1")
    case = record.load(task.phases, task)
    samples = make_samples(task, case, task.phases, fields=record.fields)
    assert len(samples) == 2  # lung1: lesion slices 2-4 at 5 mm -> planes at 14 and 21 mm on the 7 mm grid
    for sample in samples:
        assert sample.inputs["image"].shape == (len(task.phases), 299, 299)
        assert sample.inputs["image"].dtype == np.float32
        assert 0.0 <= sample.inputs["image"].min() and sample.inputs["image"].max() <= 1.0
        assert sample.target == task.classes.index(record.fields[task.label_column])
        if task.clinical_schema:
            assert sample.inputs["clinical"].dtype == np.float32
            np.testing.assert_array_equal(sample.inputs["clinical"],
                                          get_schema("zhen2020").encode(record.fields))
        else:
            assert "clinical" not in sample.inputs


@pytest.mark.parametrize("name", WANG_TASKS)
def test_wang_task_builds_and_runs(name, wang_root):
    """Each Wang task's net is built and runs on the task's real sample (input names match)."""
    task = get_task(name)
    record = _record(wang_root[0], "breast1")
    case = record.load(task.phases, task)
    samples = make_samples(task, case, task.phases, fields=record.fields)
    assert len(samples) == 1 and samples[0].inputs["image"].shape == (3, 224, 224)
    assert ("clinical" in samples[0].inputs) == (task.clinical_schema == "wang2020")
    if task.clinical_schema:
        assert samples[0].inputs["clinical"].shape == (9,)
    torch.manual_seed(0)
    net = build_task_net(task).eval()
    probs = run_net(net, samples, torch.device("cpu"))
    assert probs.shape == (1, 2) and abs(probs.sum() - 1) < 1e-5


# --- Zhen 2020: the 0.7 x 0.7 x 7 mm grid, geometry, one real training step -----------------

def _expected_planes(case, spacing_z=7.0):
    """Lesion planes of the 7 mm grid, by arithmetic: plane k lies at k * 7 mm from the label
    origin; its nearest source slice is round(k * 7 / s_z); it counts when that slice is a
    lesion slice."""
    s_z = case.segmentation.GetSpacing()[2]
    total = 0
    for lesion in case.lesions:
        zs = set(np.flatnonzero(sitk.GetArrayViewFromImage(lesion.mask).any(axis=(1, 2))).tolist())
        ks = range(-2, int(case.segmentation.GetSize()[2] * s_z / spacing_z) + 3)
        total += sum(1 for k in ks if math.floor(k * spacing_z / s_z + 0.5) in zs)
    return total


def test_zhen_model_a_grid_and_geometry(zhen_root, tmp_path):
    """Model A on the real lung2 tumour (11 slices at 5 mm): one sample per lesion plane of the
    0.7 x 0.7 x 7 mm grid, 6 x 299 x 299; the five resampled sequences line up with T2 only
    because they are read through physical coordinates."""
    fc.write_cohort(tmp_path / "c", fc.ZHEN_PHASES, ("lung2",), [fc.ZHEN_LABELS[2]],
                    lambda row, index, _mm: fc.zhen_clinical(row, index))
    task = get_task("zhen2020-model-a")
    record = load_cohort(tmp_path / "c").records[0]
    case = record.load(task.phases, task)
    grid = zhen_lesion_grid(case.segmentation, case.lesions[0].mask)
    assert grid.GetSpacing() == pytest.approx((0.7, 0.7, 7.0))
    samples = make_samples(task, case, task.phases, fields=record.fields)
    assert len(samples) == _expected_planes(case) == 7  # slices 2-12 at 5 mm: planes k = 2..8
    assert len(case.images["t2"].GetSize()) == 3 and case.images["dwi"].GetSpacing() != case.images["t2"].GetSpacing()
    for sample in samples:
        image = sample.inputs["image"]
        assert image.shape == (6, 299, 299)
        for channel in range(1, 6):
            assert np.corrcoef(image[0].ravel(), image[channel].ravel())[0, 1] > 0.95
    # Control: the same dwi file with its origin moved 6 mm (header only) no longer lines up.
    moved = sitk.ReadImage(str(tmp_path / "c" / "lung2" / "dwi.nrrd"))
    moved.SetOrigin(tuple(np.array(moved.GetOrigin()) + [6.0, 0.0, 0.0]))
    sitk.WriteImage(moved, str(tmp_path / "c" / "lung2" / "dwi.nrrd"))
    shifted = make_samples(task, record.load(task.phases, task), task.phases, fields=record.fields)
    r_moved = [np.corrcoef(s.inputs["image"][0].ravel(), s.inputs["image"][1].ravel())[0, 1] for s in shifted]
    r_kept = [np.corrcoef(s.inputs["image"][0].ravel(), s.inputs["image"][2].ravel())[0, 1] for s in shifted]
    assert max(r_moved) < min(r_kept) - 0.05


def test_zhen_clinical_errors_name_the_case(zhen_root):
    task = get_task("zhen2020-model-g")
    record = _record(zhen_root, "lung1")
    case = record.load(task.phases, task)
    # The sampler encodes the Case's own fields (cases.csv row / the fields given to case_from_nodes).
    case.clinical = {k: v for k, v in record.fields.items() if k != "albumin"}
    case.clinical["afp"] = "1,5"
    with pytest.raises(HCCInputError, match=r"lung1.*missing column\(s\) albumin.*afp"):
        make_samples(task, case, task.phases, fields=record.fields)
    case.clinical = {}  # prediction without the case's fields
    with pytest.raises(HCCInputError, match="lung1.*clinical data for schema 'zhen2020'"):
        make_samples(task, case, task.phases)


def test_zhen_model_g_one_training_step_and_round_trip(zhen_root, tmp_path):
    """Model G (3 sequences + 34 clinical values): one real SGD step on the 2 samples of the
    real lung1 case, then save_model / load_model / predict_case give the fitted net's numbers."""
    task = get_task("zhen2020-model-g")
    record = _record(zhen_root, "lung1")
    case = record.load(task.phases, task)
    samples = make_samples(task, case, task.phases, fields=record.fields)
    assert len(samples) == 2 and samples[0].inputs["clinical"].shape == (34,)
    set_seed(0)
    initial = build_task_net(task).classifier.weight.detach().clone()
    net, history = fit(task, samples, torch.device("cpu"), seed=0, epochs=1, batch_size=2, log=lambda *a: None)
    assert history["optimiser"] == "sgd" and history["lr"] == 0.1 and len(history["loss"]) == 1
    assert math.isfinite(history["loss"][0]) and history["loss"][0] > 0
    assert not torch.equal(net.classifier.weight, initial)  # the step changed the weights
    assert net.classifier.in_features == 1536 + 34
    card = {"task": task.name, "version": "test", "classes": list(task.classes), "phases": list(task.phases),
            "net": task.net, "net_kwargs": dict(task.net_kwargs), "input_size": task.input_size, "seed": 0}
    save_model(tmp_path / "pkg", net, card)
    model = load_model(tmp_path / "pkg")
    prediction = predict_case(model, case)
    expected = aggregate(samples, run_net(net, samples, torch.device("cpu")), list(task.classes))
    assert len(prediction.rows) == len(expected) == len(case.lesions)
    for row, reference in zip(prediction.rows, expected):
        assert row.n_samples == 2 and abs(sum(row.probabilities.values()) - 1) < 1e-5
        assert row.probabilities == pytest.approx(reference.probabilities, abs=1e-5)
        # patient-level rule of the paper: the class with the largest summed probability
        assert row.predicted_class == max(row.probabilities, key=row.probabilities.get)


# --- Wang 2020: every lesion slice; the CLI and the MRML path ---------------------------------

def test_wang_every_lesion_slice_is_a_sample(wang_full):
    """With the whole real tumour labelled, each labelled axial slice gives one sample, the three
    phases aligned by physical coordinates (art / pv are resampled copies on other grids)."""
    task = get_task("wang2020-fusion-a")
    record = _record(wang_full, "lung2")
    case = record.load(task.phases, task)
    samples = make_samples(task, case, task.phases, fields=record.fields)
    slices = sum(int(sitk.GetArrayViewFromImage(l.mask).any(axis=(1, 2)).sum()) for l in case.lesions)
    assert len(samples) == slices == 11
    np.testing.assert_array_equal(samples[0].inputs["clinical"], get_schema("wang2020").encode(record.fields))
    for sample in samples:
        image = sample.inputs["image"]
        assert image.shape == (3, 224, 224)
        assert min(np.corrcoef(image[0].ravel(), image[c].ravel())[0, 1] for c in (1, 2)) > 0.95


@pytest.fixture(scope="module", params=CLI_TASKS)
def trained(request, wang_root, tmp_path_factory):
    """`hcc train` (1 epoch) of a Wang task on the 4-patient cohort."""
    root, _ = wang_root
    out = tmp_path_factory.mktemp("model") / "pkg"
    assert main(["train", "--task", request.param, "--cohort", str(root), "--epochs", "1", "--device", "cpu",
                 "--out", str(out)]) == 0
    return request.param, out


def test_wang_train_card(trained):
    name, model_dir = trained
    card = json.loads((model_dir / "model.json").read_text())
    task = get_task(name)
    assert card["task"] == name and card["phases"] == ["nc", "art", "pv"] and card["classes"] == ["non_ER", "ER"]
    assert card["net_kwargs"] == task.net_kwargs and "pretrained_path" not in card["net_kwargs"]
    assert card["training"]["n_patients"] == 4
    assert card["training"]["samples_per_class"] == {"non_ER": 2, "ER": 2}
    assert card["training"]["epochs"] == 1 and card["training"]["lr"] == 1e-4


def test_wang_predict_and_batch(trained, wang_root, tmp_path, capsys):
    """`hcc predict` on the held-out case folder; for a clinical task the case folder alone has no
    clinical data, so it is refused naming the case, and `hcc batch` (cases.csv) predicts it."""
    name, model_dir = trained
    heldout = wang_root[1]
    out = tmp_path / "results.tsv"
    code = main(["predict", "--model", str(model_dir), "--case", str(heldout), "--out-file", str(out),
                 "--device", "cpu"])
    if get_task(name).clinical_schema:
        assert code == 2 and not out.exists()
        err = capsys.readouterr().err
        assert "brain2" in err and "clinical data for schema 'wang2020'" in err and "missing column" in err
        # With its cases.csv row, `hcc predict` runs the clinical task, and `hcc batch` agrees.
        with_fields = tmp_path / "with_fields.tsv"
        assert main(["predict", "--model", str(model_dir), "--case", str(heldout), "--out-file", str(with_fields),
                     "--device", "cpu", "--cases-csv", str(heldout.parent / "cases.csv")]) == 0
        assert main(["batch", "--cohort", str(heldout.parent), "--model", str(model_dir), "--out",
                     str(tmp_path / "batch"), "--device", "cpu", "--quiet"]) == 0
        out = tmp_path / "batch" / "results.tsv"
        assert float(_rows(with_fields)[0]["prob_ER"]) == pytest.approx(float(_rows(out)[0]["prob_ER"]), abs=1e-6)
    else:
        assert code == 0
    rows = _rows(out)
    assert len(rows) == 1 and rows[0]["case_id"] == "brain2" and rows[0]["kind"] == "lesion"
    assert rows[0]["predicted_class"] in ("non_ER", "ER")
    assert abs(float(rows[0]["prob_non_ER"]) + float(rows[0]["prob_ER"]) - 1) < 1e-5


def test_wang_evaluate(trained, wang_root, tmp_path):
    name, _ = trained
    evaluation = tmp_path / "eval"
    assert main(["evaluate", "--task", name, "--cohort", str(wang_root[0]), "--folds", "2", "--epochs", "1",
                 "--device", "cpu", "--out", str(evaluation)]) == 0
    metrics = json.loads((evaluation / "metrics.json").read_text())
    assert metrics["task"] == name and metrics["classes"] == ["non_ER", "ER"] and len(metrics["folds"]) == 2
    assert {"accuracy", "auc"} <= set(metrics["summary"])
    rows = _rows(evaluation / "predictions.tsv")
    assert sorted(r["case_id"] for r in rows) == sorted(fc.WANG_CASES)
    assert {r["label"] for r in rows} == {"ER", "non_ER"}
    for fold in ("0", "1"):
        tested = {r["patient_id"] for r in rows if r["fold"] == fold}
        assert tested and not tested & {r["patient_id"] for r in rows if r["fold"] != fold}
    dim = 64 + 64 if get_task(name).clinical_schema else 2048
    assert np.load(evaluation / "embeddings.npz")["embeddings"].shape == (4, dim)


@pytest.mark.parametrize("trained", ["wang2020-fusion-d-joint"], indirect=True)
def test_wang_joint_through_mrml_nodes(trained, wang_root, slicer_app):
    """The held-out case as MRML nodes + its cases.csv fields -> Case -> prediction -> table node:
    the same numbers as the file route (`hcc batch`)."""
    _, model_dir = trained
    from HCCAnalysisLib.slicer_io.files import load_case_into_scene
    from HCCAnalysisLib.slicer_io.nodes import case_from_nodes, prediction_to_table

    heldout = wang_root[1]
    fields = load_cohort(heldout.parent).records[0].fields
    model = load_model(model_dir)
    volumes, segmentation = load_case_into_scene(slicer_app.scene, heldout, model.card["phases"])
    case = case_from_nodes(volumes, segmentation, case_id="brain2", patient_id="patient-brain2", fields=fields)
    prediction = predict_case(model, case)
    table = prediction_to_table(prediction, slicer_app.scene, name="wang2020 results")
    assert table.GetNumberOfRows() == len(prediction.rows) == 1
    by_file = predict_case(model, load_cohort(heldout.parent).records[0].load(model.card["phases"], model.task))
    assert prediction.rows[0].probabilities == pytest.approx(by_file.rows[0].probabilities, abs=1e-4)
    with pytest.raises(HCCInputError, match="clinical data for schema 'wang2020'"):
        predict_case(model, case_from_nodes(volumes, segmentation, case_id="brain2"))


def test_zhen_thin_lesion_between_planes_keeps_one_plane(zhen_root):
    """A lesion slab that no 7 mm plane crosses (the real breast1 tumour's slice 2 alone, 2.1 mm
    thick at 4.2 mm: planes at 0 and 7 mm miss it) still gives one sample, at its own slice."""
    task = get_task("zhen2020-model-d")
    record = _record(zhen_root, "breast1")
    case = record.load(task.phases, task)
    array = sitk.GetArrayFromImage(case.lesions[0].mask)
    array[3:] = 0
    thin = sitk.GetImageFromArray(array)
    thin.CopyInformation(case.lesions[0].mask)
    grid = zhen_lesion_grid(case.segmentation, thin)
    assert grid.GetSize()[2] == 1
    assert grid.GetOrigin()[2] == pytest.approx(case.segmentation.TransformIndexToPhysicalPoint((0, 0, 2))[2])
    case.lesions = case.lesions[:1]
    case.lesions[0].mask = thin
    samples = make_samples(task, case, task.phases, fields=record.fields)
    assert len(samples) == 1 and samples[0].inputs["image"].shape == (3, 299, 299)
