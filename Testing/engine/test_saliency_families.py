"""Saliency for the Zhen 2020 and Meng 2019 families (issue 12), placed back on the case.

Zhen: each sample is a plane of the lesion's own 0.7 x 0.7 x 7 mm grid; its map is pasted on that
grid, which is resampled onto the segmentation grid. Meng: each tile's map is pasted at the tile's
place on the microscopy image. Both checked on the bundled real cases (lung CT, H&E tiles).
"""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from HCCAnalysisLib.data.cohort import load_cohort
from HCCAnalysisLib.engine.saliency import paste_maps, saliency_maps, saliency_reference, saliency_volume
from HCCAnalysisLib.methods import get_sampler
from HCCAnalysisLib.models.package import load_model
from HCCAnalysisLib.models.registry import untrained_package
from HCCAnalysisLib.tasks import get_task

ROOT = Path(__file__).resolve().parents[2] / "HCCAnalysisLib" / "sample_data"
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def zhen_case():
    # 75-pixel inputs (Inception-ResNet-V2's smallest) instead of 299: the geometry is the same, the
    # network 16x cheaper on a CPU
    task = replace(get_task("zhen2020-model-b"), input_size=75)
    case = load_cohort(ROOT / "demo-cohort").records[0].load(phases=["image"])
    case = replace(case, images={p: case.images["image"] for p in task.phases}, _grid_cache={})
    samples = get_sampler(task.sampler)(case, task, list(task.phases), lambda kind: -1,
                                        np.random.default_rng(0), False)
    return task, case, samples


def _physical(image, index_zyx):
    return np.array(image.TransformContinuousIndexToPhysicalPoint([float(v) for v in index_zyx[::-1]]))


def test_zhen_maps_land_on_the_lesion_through_its_own_grid(zhen_case):
    task, case, samples = zhen_case
    size = task.input_size
    yy, xx = np.mgrid[0:size, 0:size]
    peak = np.exp(-((yy - size / 2 + 0.5) ** 2 + (xx - size / 2 + 0.5) ** 2) / (2 * 6.0 ** 2)).astype(np.float32)
    pasted = sitk.GetArrayFromImage(paste_maps([peak] * len(samples), [s.placement for s in samples],
                                               case.segmentation))
    lesion = sitk.GetArrayViewFromImage(case.lesions[0].mask)
    zz, yy, xx = np.nonzero(lesion)
    # the peak of each plane is the centre of the lesion's square ROI: in-plane at the lesion box centre
    z, y, x = np.unravel_index(np.argmax(pasted), pasted.shape)
    centre = ((yy.min() + yy.max()) / 2.0, (xx.min() + xx.max()) / 2.0)
    spacing = case.segmentation.GetSpacing()
    assert abs(y - centre[0]) * spacing[1] < 1.5 and abs(x - centre[1]) * spacing[0] < 1.5  # mm
    assert zz.min() - 2 <= z <= zz.max() + 2
    # nothing lands outside the ROI squares (lesion box + 15 % margin each side, + one voxel of interpolation)
    nz = np.nonzero(pasted > 1e-3)
    half = max(yy.max() - yy.min(), xx.max() - xx.min()) * 0.65 + 2
    assert np.all(np.abs(nz[1] - centre[0]) <= half) and np.all(np.abs(nz[2] - centre[1]) <= half)


def test_zhen_saliency_volume_of_a_real_inception_resnet(zhen_case, tmp_path):
    pytest.importorskip("timm")
    import torch

    from HCCAnalysisLib.models.package import LoadedModel
    from HCCAnalysisLib.nets import build_net

    task, case, samples = zhen_case
    torch.manual_seed(0)
    net = build_net(task.net, num_classes=len(task.classes), **task.net_kwargs)
    model = LoadedModel(net, {"phases": list(task.phases), "seed": 0}, task, tmp_path)
    volume = saliency_volume(model, case, device="cpu")
    for get in ("GetSize", "GetSpacing", "GetOrigin", "GetDirection"):
        assert getattr(volume, get)() == getattr(case.segmentation, get)()
    array = sitk.GetArrayFromImage(volume)
    assert np.isfinite(array).all() and 0 < array.max() <= 1.0
    lesion = sitk.GetArrayViewFromImage(case.lesions[0].mask)
    zz, yy, xx = np.nonzero(lesion)
    nz = np.nonzero(array > 0)
    half = max(yy.max() - yy.min(), xx.max() - xx.min()) * 0.65 + 2
    assert np.all(np.abs(nz[1] - (yy.min() + yy.max()) / 2.0) <= half)  # only within the lesion's ROI squares


def test_meng_tiles_are_pasted_where_they_were_cut(tmp_path):
    task = get_task("meng2019-metastasis-small-tiles")
    record = load_cohort(ROOT / "histology").records[0]
    case = record.load(task=task)
    model = load_model(untrained_package(tmp_path / "meng", task.name, list(task.phases)))
    volume = saliency_volume(model, case, device="cpu")
    height, width = case.image.shape[:2]
    assert volume.GetSize() == (width, height, 1)
    assert saliency_reference(case).GetSize() == (width, height, 1)
    samples = get_sampler(task.sampler)(case, task, list(task.phases), lambda kind: -1,
                                        np.random.default_rng(0), False)
    maps = saliency_maps(model.net, samples)
    array = sitk.GetArrayFromImage(volume)[0]
    tile = task.net_kwargs["tile_size"]
    for saliency, sample in zip(maps, samples):
        p = sample.placement
        np.testing.assert_allclose(array[p.y0:min(p.y1, height), p.x0:min(p.x1, width)],
                                   saliency[:min(p.y1, height) - p.y0, :min(p.x1, width) - p.x0], atol=1e-6)
        assert p.y1 - p.y0 == tile


def test_l1_reduction_is_the_summed_absolute_gradient_of_the_class_score(tmp_path):
    import torch

    task = get_task("meng2019-metastasis-small-tiles")
    case = load_cohort(ROOT / "histology").records[0].load(task=task)
    model = load_model(untrained_package(tmp_path / "meng", task.name, list(task.phases)))
    sample = get_sampler(task.sampler)(case, task, list(task.phases), lambda kind: -1,
                                       np.random.default_rng(0), False)[0]
    image = torch.tensor(sample.inputs["image"][None], requires_grad=True)
    net = model.net.eval()
    logits = net(image=image)
    logits[0, int(logits.argmax())].backward()
    expected = image.grad[0].abs().sum(dim=0)
    expected = (expected / expected.max()).numpy()
    (l1,) = saliency_maps(net, [sample], reduction="l1")
    (peak,) = saliency_maps(net, [sample])
    np.testing.assert_allclose(l1, expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(l1, peak)  # max over channels is another map
    assert get_task("zhen2020-model-a").saliency_channels == "l1"  # Zhen 2020, "Saliency Map"


def test_liang_batched_gradients_equal_monai_one_patch_at_a_time(tmp_path):
    """Liang's patches run many per backward pass (the net's batch, shared global ROI once per entry):
    the same maps as MONAI's VanillaGrad one patch at a time; SmoothGrad takes the P x 1 x s x s input too."""
    import shutil

    from helpers.liang_phases import write_phases
    from HCCAnalysisLib.data.case_loading import load_for_task
    from HCCAnalysisLib.engine.saliency import gradient_batch_size, placed_samples

    task = get_task("liang2018-resgl-bdlstm-small")
    folder = tmp_path / "breast1"
    folder.mkdir()
    shutil.copy(ROOT / "demo-cohort" / "breast1" / "labels.nrrd", folder / "labels.nrrd")
    write_phases(sitk.ReadImage(str(ROOT / "demo-cohort" / "breast1" / "image.nrrd")), folder)
    model = load_model(untrained_package(tmp_path / "liang", task.name, list(task.phases)))
    samples = placed_samples(model, load_for_task(folder, task, task.phases))[:12]
    assert gradient_batch_size(model.net) > 1 and (task.saliency_input, task.saliency_scale) == ("local", "joint")
    options = {"input_name": "local", "scale": "joint"}
    one = saliency_maps(model.net, samples, batch_size=1, **options)
    batched = saliency_maps(model.net, samples, batch_size=5, **options)  # batches of 5, 5, 2
    for a, b in zip(one, batched):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert max(float(m.max()) for m in batched) == 1.0 and len({float(m.max()) for m in batched}) > 1
    smooth = saliency_maps(model.net, samples[:2], method="smoothgrad", n_noisy=3, batch_size=5, **options)
    assert [m.shape for m in smooth] == [(16, 16)] * 2 and not np.allclose(smooth[0], one[0])
