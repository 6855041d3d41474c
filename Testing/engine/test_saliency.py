"""Saliency maps (issue 6): where each sample's input lies on the case's grid (Sample.placement),
gradient maps of a briefly trained real model (bundled demo cohort), their volume on the
segmentation grid, the file writer, and the volume node the Slicer panel shows."""

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from HCCAnalysisLib.panel import jobs as panel_jobs
from HCCAnalysisLib.data.cohort import load_cohort
from HCCAnalysisLib.errors import HCCInputError
from HCCAnalysisLib.models.package import LoadedModel, load_model
from HCCAnalysisLib.data.preprocess import crop_2d, resize_channels
from HCCAnalysisLib.engine.saliency import (paste_maps, placed_samples, saliency_maps, saliency_volume,
                                     save_saliency_volume)
from HCCAnalysisLib.data.preprocess import fused_volumes
from HCCAnalysisLib.data.samples import Placement
from HCCAnalysisLib.methods import get_sampler
from HCCAnalysisLib.tasks import TASKS, get_task
from HCCAnalysisLib.workflows import train_model

DEMO = Path(__file__).resolve().parents[2] / "HCCAnalysisLib" / "sample_data" / "demo-cohort"
TASK = "jia2019-hcc-vs-background"


# One torch thread (conftest): batch-of-one gradients of a small net are many tiny ops, which two
# threads on a busy 2-core runner slow down many times over (measured: 4 s instead of 0.06 s a volume).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def lung1():
    record = load_cohort(DEMO).records[0]
    return record, record.load(phases=["image"])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A real model package: 2 epochs from the Jia 2019 CIFAR weights on the demo cohort."""
    out = tmp_path_factory.mktemp("saliency") / "model"
    train_model(TASK, DEMO, out, phases=["image"], pretrained="jia2019-cifar", epochs=2, device="cpu",
                log=lambda *a, **k: None)
    return out, load_model(out)


def _same_case_on_phases(case, phases):
    """The case with its one real image standing in for each of `phases` (one grid)."""
    from dataclasses import replace

    return replace(case, images={p: case.images["image"] for p in phases}, _grid_cache={})


def _rng():
    return np.random.default_rng(0)


# --- placement: where a sample's input came from ------------------------------------------

def test_samplers_record_where_each_input_came_from(lung1):
    _, case = lung1
    mask = case.lesion_array(case.lesions[0])
    lesion_slices = set(np.flatnonzero(mask.reshape(mask.shape[0], -1).any(axis=1)))

    jia = get_task(TASK)
    samples = get_sampler("jia2019")(case, jia, ["image"], lambda kind: -1, _rng(), False)
    volume = fused_volumes(case, ["image"], 3)
    assert {s.kind for s in samples} == {"lesion", "background"}
    for s in samples:
        p = s.placement
        # the input is exactly the crop at its placement, resized: re-derived here from the grid
        again = resize_channels(np.stack([crop_2d(v[p.z], (p.y0, p.y1, p.x0, p.x1)) for v in volume]),
                                jia.input_size)
        np.testing.assert_array_equal(again, s.inputs["image"])
        box = mask[p.z, max(p.y0, 0):p.y1, max(p.x0, 0):p.x1]
        if s.kind == "lesion":
            assert p.z in lesion_slices and box.sum() == mask[p.z].sum()  # the whole lesion slice is in the box
        else:
            assert box.sum() == 0

    wang = get_task("wang2020-image")
    three = _same_case_on_phases(case, wang.phases)
    samples = get_sampler("wang2020")(three, wang, list(wang.phases), lambda kind: -1, _rng(), False)
    assert sorted(s.placement.z for s in samples) == sorted(lesion_slices)  # every lesion slice once
    volumes = fused_volumes(three, list(wang.phases), 3)
    for s in samples:
        p = s.placement
        again = resize_channels(np.stack([crop_2d(v[p.z], (p.y0, p.y1, p.x0, p.x1)) for v in volumes]),
                                wang.input_size, "bilinear")
        np.testing.assert_array_equal(again, s.inputs["image"])
        assert mask[p.z, max(p.y0, 0):p.y1, max(p.x0, 0):p.x1].sum() == mask[p.z].sum()

    # Zhen samples planes of its own 0.7 x 0.7 x 7 mm grid: each placement is a whole plane of it
    zhen = get_task("zhen2020-model-b")
    samples = get_sampler("zhen2020")(_same_case_on_phases(case, zhen.phases), zhen, list(zhen.phases),
                                      lambda kind: -1, _rng(), False)
    assert samples and all(s.placement.grid is not None and s.placement.grid.spacing == (0.7, 0.7, 7.0)
                           for s in samples)
    # Liang 2018: each patch placed at its box (Testing/engine/test_saliency_liang.py)
    assert {t.sampler for t in TASKS.values() if t.placements} == {"jia2019", "wang2020", "zhen2020", "meng2019",
                                                                   "liang2018"}
    assert all(t.placements for t in TASKS.values())


def test_paste_maps_resizes_into_boxes_clips_and_takes_the_max(lung1):
    _, case = lung1
    reference = case.segmentation
    depth, rows, cols = reference.GetSize()[::-1]
    ones, half = np.ones((8, 8), np.float32), np.full((8, 8), 0.5, np.float32)
    placements = [Placement(2, 10, 30, 10, 30), Placement(2, 20, 40, 20, 40),  # overlapping
                  Placement(3, rows - 5, rows + 15, -6, 14),  # reaches past two borders of the grid
                  Placement(depth + 1, 0, 10, 0, 10)]  # off the grid: dropped
    pasted = paste_maps([half, ones, ones, ones], placements, reference)
    for get in ("GetSize", "GetSpacing", "GetOrigin", "GetDirection"):
        assert getattr(pasted, get)() == getattr(reference, get)()
    expected = np.zeros((depth, rows, cols), np.float32)
    expected[2, 10:30, 10:30] = 0.5
    expected[2, 20:40, 20:40] = 1.0  # max of 0.5 and 1 where the boxes overlap
    expected[3, rows - 5:, 0:14] = 1.0
    np.testing.assert_allclose(sitk.GetArrayFromImage(pasted), expected, rtol=0, atol=1e-6)  # float rounding


# --- maps of a trained model ---------------------------------------------------------------

def test_maps_have_the_sample_shape_are_in_0_1_and_not_constant(trained, lung1):
    _, model = trained
    samples = placed_samples(model, lung1[1])
    maps = saliency_maps(model.net, samples)
    assert len(maps) == len(samples) == 6
    for saliency, sample in zip(maps, samples):
        assert saliency.shape == sample.inputs["image"].shape[1:] == (32, 32)
        assert np.all(np.isfinite(saliency)) and saliency.min() >= 0 and saliency.max() == 1.0
        assert saliency.std() > 0.01  # a real map, not a constant
    smooth = saliency_maps(model.net, samples[:1], method="smoothgrad", n_noisy=4)
    assert smooth[0].shape == (32, 32) and smooth[0].max() == 1.0 and smooth[0].std() > 0.01
    again = saliency_maps(model.net, samples[:1], method="smoothgrad", n_noisy=4)
    np.testing.assert_array_equal(smooth[0], again[0])  # seeded noise: reproducible
    assert not np.allclose(smooth[0], maps[0])
    with pytest.raises(HCCInputError, match="saliency target 5"):
        saliency_maps(model.net, samples[:1], target=5)
    with pytest.raises(HCCInputError, match="unknown saliency method 'gradcam'"):
        saliency_maps(model.net, samples[:1], method="gradcam")


def test_vanilla_grad_equals_the_input_gradient_by_autograd(trained, lung1):
    """Independent reference: d logit_k / d image by torch.autograd, |.| max over channels, / max."""
    _, model = trained
    net = model.net
    samples = placed_samples(model, lung1[1])
    sample = samples[0]
    before = {k: v.clone() for k, v in net.state_dict().items()}
    saliency_maps(net, samples)  # several samples: each must leave the net (BatchNorm statistics) as it was
    image = torch.tensor(sample.inputs["image"][None], requires_grad=True)
    logits = net(image=image)
    predicted = int(logits.argmax(dim=1))
    for target in ("predicted", 1 - predicted):  # the other class too: the target is honoured
        k = predicted if target == "predicted" else target
        (gradient,) = torch.autograd.grad(logits[0, k], image, retain_graph=True)
        reference = gradient[0].abs().amax(dim=0)
        reference = (reference / reference.max()).numpy()
        (ours,) = saliency_maps(net, [sample], target=target)
        np.testing.assert_allclose(ours, reference, rtol=1e-5, atol=1e-6)
    # the loaded model is left as it was: same tensors, eval mode, trainable weights, no stored gradients
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert not net.training and all(p.requires_grad and p.grad is None for p in net.parameters())


def test_saliency_volume_lies_on_the_segmentation_grid_inside_the_crop_boxes(trained, lung1, tmp_path):
    model_dir, model = trained
    record, case = lung1
    volume = saliency_volume(model, case)
    segmentation = case.segmentation
    for get in ("GetSize", "GetSpacing", "GetOrigin", "GetDirection"):
        assert getattr(volume, get)() == getattr(segmentation, get)()
    array = sitk.GetArrayFromImage(volume)
    assert array.dtype == np.float32 and array.min() >= 0 and array.max() <= 1
    inside = np.zeros(array.shape, bool)
    samples = placed_samples(model, case)
    for p in (s.placement for s in samples):
        inside[p.z, max(p.y0, 0):p.y1, max(p.x0, 0):p.x1] = True
    assert np.all(array[~inside] == 0)
    for p in (s.placement for s in samples if s.kind == "lesion"):
        assert array[p.z, p.y0:p.y1, p.x0:p.x1].max() > 0.25  # each map peaks at 1; bilinear resizing keeps > 1/4

    out = tmp_path / "saliency.nrrd"
    save_saliency_volume(model_dir, record.folder, out)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(out))), array)
    with pytest.raises(HCCInputError, match="single-file image"):
        save_saliency_volume(model_dir, record.folder, tmp_path / "saliency.txt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["saliency.nrrd"]  # no temporary left


def test_tasks_without_placement_are_refused_before_any_work(lung1):
    from dataclasses import replace

    # every shipped task has placements now: a task without them is a user's own (or a future) task
    unplaced = replace(get_task("liang2018-resgl-bdlstm-small"), name="custom-unplaced", placements=False)
    # net=None: the refusal must come before the network (or the sampler) is touched
    model = LoadedModel(None, {"phases": list(unplaced.phases)}, unplaced, Path("unplaced-model"))
    with pytest.raises(HCCInputError, match="custom-unplaced has no saliency volume.*Liang 2018"):
        saliency_volume(model, _same_case_on_phases(lung1[1], unplaced.phases))
    with pytest.raises(HCCInputError, match="no saliency volume"):
        panel_jobs.prepare_job(unplaced, {}, None, saliency=True)


# --- the panel: the volume node over the input ---------------------------------------------

def test_panel_shows_the_saliency_volume_over_the_input_volume(trained, lung1, slicer_app):
    import vtk

    from HCCAnalysisLib.slicer_io.files import load_case_into_scene

    model_dir, model = trained
    record, case = lung1
    scene = slicer_app.scene
    volumes, segmentation = load_case_into_scene(scene, record.folder, ["image"])
    ids = panel_jobs.lesion_ids(segmentation)
    job = panel_jobs.prepare_job(TASK, volumes, segmentation, ids, str(model_dir), "cpu", case_id="lung1",
                                 saliency=True)
    plain = panel_jobs.prepare_job(TASK, volumes, segmentation, ids, str(model_dir), "cpu", case_id="lung1")
    prediction = panel_jobs.run_job(job)
    panel_jobs.run_job(plain)
    assert len(prediction.rows) == 2 and plain.saliency_image is None
    (node,) = panel_jobs.saliency_nodes([job, plain], scene)
    assert node.IsA("vtkMRMLScalarVolumeNode") and not node.IsA("vtkMRMLLabelMapVolumeNode")
    assert node.GetName() == f"lung1 saliency ({TASK})"

    image_node = volumes["image"]
    assert node.GetImageData().GetDimensions() == image_node.GetImageData().GetDimensions()
    ours, theirs = vtk.vtkMatrix4x4(), vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(ours)
    image_node.GetIJKToRASMatrix(theirs)
    np.testing.assert_allclose([ours.GetElement(i, j) for i in range(4) for j in range(4)],
                               [theirs.GetElement(i, j) for i in range(4) for j in range(4)], atol=1e-6)
    assert node.GetTransformNodeID() == image_node.GetTransformNodeID()
    display = node.GetDisplayNode()
    assert (display.GetWindowLevelMin(), display.GetWindowLevelMax()) == (0.0, 1.0)
    assert display.GetColorNodeID() == "vtkMRMLColorTableNodeRainbow"  # slicer-core has no Inferno file

    # same numbers as the file route: the MRML nodes give the same Case
    from vtk.util.numpy_support import vtk_to_numpy

    shown = vtk_to_numpy(node.GetImageData().GetPointData().GetScalars()).reshape(case.segmentation.GetSize()[::-1])
    np.testing.assert_allclose(shown, sitk.GetArrayFromImage(saliency_volume(model, case)), atol=1e-4)


def test_wang_joint_net_dict_output_and_clinical_input_pass_through(tmp_path):
    """Wang 2020 fusion D (joint loss): the net returns a dict and reads `clinical` beside the
    image; the map explains out["logits"] for that clinical vector (autograd reference)."""
    from helpers import fusion_cohort as fc
    from HCCAnalysisLib.engine.infer import make_samples
    from HCCAnalysisLib.engine.train import build_task_net

    task = get_task("wang2020-fusion-d-joint")
    record = load_cohort(fc.wang_cohort(tmp_path / "cohort")).records[0]
    case = record.load(task.phases, task)
    (sample,) = make_samples(task, case, task.phases, fields=record.fields)
    assert sample.placement is not None and set(sample.inputs) == {"image", "clinical"}
    torch.manual_seed(0)
    net = build_task_net(task).eval()
    (ours,) = saliency_maps(net, [sample], target=1)
    image = torch.tensor(sample.inputs["image"][None], requires_grad=True)
    out = net(image=image, clinical=torch.tensor(sample.inputs["clinical"][None]))
    assert isinstance(out, dict)
    (gradient,) = torch.autograd.grad(out["logits"][0, 1], image)
    reference = gradient[0].abs().amax(dim=0)
    np.testing.assert_allclose(ours, (reference / reference.max()).numpy(), rtol=1e-4, atol=1e-5)
    assert ours.shape == (224, 224)
    pasted = sitk.GetArrayFromImage(paste_maps([ours], [sample.placement], case.segmentation))
    p = sample.placement
    assert pasted[p.z].max() > 0 and pasted.sum() == pasted[p.z, p.y0:p.y1, p.x0:p.x1].sum()


def test_saliency_command_line(tmp_path, sample_data):
    """`hcc saliency` writes the volume of a trained package for a case folder."""
    import SimpleITK as sitk

    from HCCAnalysisLib.cli import main

    model = tmp_path / "model"
    assert main(["train", "--task", "jia2019-hcc-vs-background", "--cohort", str(sample_data / "demo-cohort"),
                 "--phases", "image", "--epochs", "1", "--out", str(model)]) == 0
    out = tmp_path / "saliency.nrrd"
    case = sample_data / "demo-heldout" / "brain2"
    assert main(["saliency", "--model", str(model), "--case", str(case), "--out-file", str(out)]) == 0
    volume, labels = sitk.ReadImage(str(out)), sitk.ReadImage(str(case / "labels.nrrd"))
    assert volume.GetSize() == labels.GetSize() and volume.GetSpacing() == labels.GetSpacing()
    values = sitk.GetArrayFromImage(volume)
    assert 0.5 < values.max() <= 1.0 and values.min() >= 0.0  # maps peak at 1 before resizing back
    assert values[sitk.GetArrayFromImage(labels) == 2].mean() > 0
    bad = tmp_path / "saliency.txt"
    assert main(["saliency", "--model", str(model), "--case", str(case), "--out-file", str(bad)]) == 2
    assert not bad.exists()
