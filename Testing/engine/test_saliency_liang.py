"""Saliency for Liang 2018 (issue 12): each patch's map (gradient of its class logit w.r.t. its local
input, max |.| over the phases, one scale for the case) pasted at the patch's 7 x 7 box.

A real multi-phase stand-in case: the bundled breast1 MR tumour as NC, ART and PV resampled copies
on other grids (`helpers.liang_phases`), the `-small` task (16-pixel local, 32-pixel global inputs).
"""

import shutil

import numpy as np
import pytest
import SimpleITK as sitk
import torch
import torch.nn.functional as F

from HCCAnalysisLib.cli import main
from HCCAnalysisLib.data.case_loading import load_for_task
from HCCAnalysisLib.engine.infer import make_samples
from HCCAnalysisLib.models.package import load_model
from HCCAnalysisLib.models.registry import untrained_package
from HCCAnalysisLib.tasks import get_task
from helpers.liang_phases import write_phases

TASK = "liang2018-resgl-bdlstm-small"
CASE = "breast1"  # one lesion, 82 patches at pace 1: small enough for a batch-of-one reference
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def liang_case(tmp_path_factory, sample_data):
    folder = tmp_path_factory.mktemp("liang_saliency") / CASE
    folder.mkdir()
    source = sample_data / "demo-cohort" / CASE
    shutil.copy(source / "labels.nrrd", folder / "labels.nrrd")
    write_phases(sitk.ReadImage(str(source / "image.nrrd")), folder)
    package = untrained_package(folder.parent / "model", TASK, ["NC", "ART", "PV"])
    out = folder.parent / "saliency.nrrd"
    assert main(["saliency", "--model", str(package), "--case", str(folder), "--out-file", str(out),
                 "--device", "cpu"]) == 0
    return folder, package, sitk.ReadImage(str(out))


def _lesion_slice(labels):
    lesion = labels == 2
    z = int(np.argmax(lesion.reshape(lesion.shape[0], -1).sum(axis=1)))  # the sampler's "largest" slice
    return z, lesion[z]


def test_cli_volume_lies_on_the_segmentation_grid_where_the_patches_were(liang_case):
    folder, _, volume = liang_case
    labels_image = sitk.ReadImage(str(folder / "labels.nrrd"))
    for get in ("GetSize", "GetSpacing", "GetOrigin", "GetDirection"):
        assert getattr(volume, get)() == getattr(labels_image, get)()
    values = sitk.GetArrayFromImage(volume)
    assert np.isfinite(values).all() and values.min() >= 0.0 and 0.3 < values.max() <= 1.0
    z, lesion = _lesion_slice(sitk.GetArrayFromImage(labels_image))
    # pace 1 at prediction: a patch on every lesion pixel of the largest slice, its box = pixel +- 3
    covered = sitk.GetArrayFromImage(sitk.BinaryDilate(sitk.GetImageFromArray(lesion.astype(np.uint8)), [3, 3],
                                                       sitk.sitkBox)) > 0
    assert set(np.flatnonzero(values.reshape(values.shape[0], -1).any(axis=1))) == {z}
    assert not values[z][~covered].any()  # the global ROI's gradient is not mapped, nor anything else
    assert (values[z][lesion] > 0).mean() > 0.9  # the map covers the lesion itself


def test_pasted_values_are_each_patch_autograd_gradient_resized_to_its_box(liang_case):
    folder, package, volume = liang_case
    model = load_model(package)
    task = get_task(TASK)
    case = load_for_task(folder, task, task.phases)
    samples = make_samples(task, case, task.phases)
    net = model.net.eval()
    half = task.sampler_kwargs["patch_size"] // 2
    maps, boxes = [], []
    for sample in samples:  # one patch at a time, the global ROI as a plain (unshared) input
        local = torch.tensor(sample.inputs["local"][None], requires_grad=True)
        logits = net(local=local, global_roi=torch.tensor(np.asarray(sample.inputs["global_roi"])[None]))["logits"]
        (gradient,) = torch.autograd.grad(logits[0, int(logits.argmax())], local)
        maps.append(gradient[0].abs().amax(dim=(0, 1)))  # phases x 1 x s x s -> s x s
        p = sample.placement
        assert (p.y1 - p.y0, p.x1 - p.x0) == (2 * half + 1,) * 2 and p.grid is None
        boxes.append(p)
    peak = max(float(m.max()) for m in maps)  # one scale for the whole case
    expected = np.zeros(volume.GetSize()[::-1], np.float32)
    depth, rows, cols = expected.shape
    for saliency, p in zip(maps, boxes):
        box = F.interpolate((saliency / peak)[None, None], size=(p.y1 - p.y0, p.x1 - p.x0), mode="bilinear",
                            align_corners=False)[0, 0].numpy()
        for (y, x), value in np.ndenumerate(box):
            if 0 <= p.y0 + y < rows and 0 <= p.x0 + x < cols:
                expected[p.z, p.y0 + y, p.x0 + x] = max(expected[p.z, p.y0 + y, p.x0 + x], value)
    got = sitk.GetArrayFromImage(volume)  # written by `hcc saliency` (batched gradients, shared ROIs)
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    assert got.max() == pytest.approx(expected.max()) and got.max() > 0.3
