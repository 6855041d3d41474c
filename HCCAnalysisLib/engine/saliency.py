"""Gradient saliency maps of a task's network, per sample and as a volume over the case.

The papers show which pixels drive a decision (issues 3, 5, 6); here that is the gradient
of one class logit with respect to the image input (Simonyan et al. 2014, MONAI's
`VanillaGrad`), or its average over noisy copies of the input (Smilkov et al. 2017,
`SmoothGrad`). Other inputs (`clinical`) are passed to the net unchanged and get no map.

- `saliency_maps(net, samples, ...)`: one H x W map per sample (abs max over channels,
  scaled to [0, 1] per sample).
- `saliency_volume(model, case, ...)`: every sample that carries a `Placement` has its map
  resized back to its crop box and pasted onto the case's segmentation grid (max where
  boxes overlap, 0 elsewhere): a float32 SimpleITK image with the segmentation's geometry,
  ready for `slicer_io.sitk_to_volume_node`.
- `save_saliency_volume(model_dir, case_dir, out_path)`: the same from files, for the CLI.

Gradients run on the ordinary module path: ResNet20+SPP folds batch norm only in eval mode
without autograd, so with gradients enabled it takes the standard (differentiable) path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
import torch.nn.functional as F

from HCCAnalysisLib.errors import HCCInputError

if TYPE_CHECKING:
    from HCCAnalysisLib.data.case import Case
    from HCCAnalysisLib.data.reading_options import CaseReading
    from HCCAnalysisLib.data.samples import Placement, Sample
    from HCCAnalysisLib.methods.task import Task
    from HCCAnalysisLib.models.package import LoadedModel

METHODS = ("vanilla", "smoothgrad")
IMAGE_INPUT = "image"
# Tasks with `Task.placements` have samples that carry a `samples.Placement` (crops of the
# segmentation grid's axial slices); Testing/engine/test_saliency.py checks the flag against the samplers.
NO_VOLUME_HINT = "saliency volumes are available for the Jia 2019, Zhen 2020, Wang 2020 and Meng 2019 tasks"


class _LogitsOfImage(torch.nn.Module):
    """The net as MONAI's saliency classes call it: the image positional, every other input
    as a keyword, class logits out (nets with auxiliary heads return a dict)."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor, **others: torch.Tensor) -> torch.Tensor:
        out = self.net(**{IMAGE_INPUT: image}, **others)
        return out["logits"] if isinstance(out, dict) else out


@contextmanager
def _input_gradients_only(net):
    """Weights need no gradient for a saliency map: skipping them saves backward work and
    leaves no `.grad` on a loaded model that the panel keeps and reuses."""
    flags = [(p, p.requires_grad) for p in net.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


@contextmanager
def _eval_mode(net):
    training = net.training
    net.eval()
    try:
        yield
    finally:
        net.train(training)


def _explainer(wrapped, method, n_noisy, noise):
    from monai.visualize import SmoothGrad, VanillaGrad

    if method == "vanilla":
        return VanillaGrad(wrapped)
    if method == "smoothgrad":
        return SmoothGrad(wrapped, stdev_spread=noise, n_samples=n_noisy, magnitude=True, verbose=False)
    raise HCCInputError(f"unknown saliency method '{method}'", hint=f"use one of {', '.join(METHODS)}")


def _tensors(sample, device):
    if IMAGE_INPUT not in sample.inputs:
        raise HCCInputError(f"sample of lesion '{sample.lesion_id}' has no '{IMAGE_INPUT}' input "
                            f"(inputs: {', '.join(sample.inputs)})", sample.case_id)
    # a fresh batch-of-one copy: MONAI sets requires_grad on the image, which must be a leaf
    return {k: torch.tensor(np.asarray(v)[None], dtype=torch.float32, device=device) for k, v in sample.inputs.items()}


def _class_index(wrapped, image, others, target):
    """The class whose logit is explained: the sample's predicted class or a fixed index.

    Fixed once on the clean input, so SmoothGrad's noisy copies all explain the same class."""
    with torch.no_grad():
        logits = wrapped(image, **others)
    classes = logits.shape[1]
    if target == "predicted":
        return int(logits.argmax(dim=1)[0])
    if isinstance(target, (int, np.integer)) and not isinstance(target, bool) and 0 <= target < classes:
        return int(target)
    raise HCCInputError(f"saliency target {target!r} is neither 'predicted' nor a class index 0..{classes - 1}")


REDUCTIONS = ("max", "l1")


def _normalised(gradient_chw, reduction="max"):
    """|gradient| reduced over channels (max, or the L1 norm = sum of |gradient|, Zhen 2020), scaled
    so that the largest value is 1 (all 0 stays 0)."""
    if reduction not in REDUCTIONS:
        raise HCCInputError(f"unknown saliency channel reduction '{reduction}'", hint=f"use one of {REDUCTIONS}")
    saliency = gradient_chw.abs().amax(dim=0) if reduction == "max" else gradient_chw.abs().sum(dim=0)
    peak = saliency.max()
    if peak > 0:
        saliency = saliency / peak
    return saliency.cpu().numpy().astype(np.float32)


def saliency_maps(net: torch.nn.Module, samples: Sequence[Sample], target: str | int = "predicted",
                  method: str = "vanilla", device: str | torch.device = "cpu", n_noisy: int = 25,
                  noise: float = 0.15, seed: int = 0, reduction: str = "max") -> list[np.ndarray]:
    """One H x W float32 map in [0, 1] per sample, from the gradient of the target logit.

    `target`: "predicted" (each sample's own argmax) or a class index. `method`: "vanilla"
    (VanillaGrad) or "smoothgrad" (`n_noisy` copies with Gaussian noise of `noise` x the
    input's range; seeded by `seed` so a map is reproducible, the caller's RNG untouched).
    `reduction`: how the channels' |gradient| become one map ("max", or "l1" as Zhen 2020).
    """
    device = torch.device(device)
    # eval() on the wrapper too: MONAI puts a model back in train mode after each map when it
    # found it training (a new Module is), and BatchNorm would then update its running stats
    wrapped = _LogitsOfImage(net).to(device).eval()
    explainer = _explainer(wrapped, method, n_noisy, noise)
    cuda = [device.index or 0] if device.type == "cuda" else []
    maps = []
    # enable_grad: callers may sit inside no_grad / inference_mode (as prediction does)
    with torch.inference_mode(False), torch.enable_grad(), _eval_mode(net), _input_gradients_only(net), \
            torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        for sample in samples:
            others = _tensors(sample, device)
            image = others.pop(IMAGE_INPUT)
            index = _class_index(wrapped, image, others, target)
            gradient = explainer(image, index=index, retain_graph=False, **others)
            maps.append(_normalised(gradient[0], reduction))
    return maps


def _paste_on(grid: np.ndarray, maps: Sequence[np.ndarray], placements: Sequence[Placement]) -> None:
    depth, rows, cols = grid.shape
    for saliency, p in zip(maps, placements):
        if not 0 <= p.z < depth:
            continue
        box = torch.from_numpy(np.ascontiguousarray(saliency, dtype=np.float32))[None, None]
        box = F.interpolate(box, size=(p.y1 - p.y0, p.x1 - p.x0), mode="bilinear", align_corners=False)[0, 0].numpy()
        y0, y1, x0, x1 = max(p.y0, 0), min(p.y1, rows), max(p.x0, 0), min(p.x1, cols)
        if y1 > y0 and x1 > x0:
            region = grid[p.z, y0:y1, x0:x1]
            np.maximum(region, box[y0 - p.y0:y1 - p.y0, x0 - p.x0:x1 - p.x0], out=region)


def paste_maps(maps: Sequence[np.ndarray], placements: Sequence[Placement], reference: sitk.Image) -> sitk.Image:
    """Maps resized (bilinear) to their crop boxes and pasted onto `reference`'s grid.

    Max where boxes overlap; the parts of a box outside the grid (padding) are dropped. A placement
    on a grid of its own (Zhen's 0.7 x 0.7 x 7 mm lesion grid) is pasted there first, and that grid
    is resampled (linear, physical coordinates) onto `reference`'s. Returns a float32 SimpleITK
    image with `reference`'s geometry.
    """
    grid = np.zeros(reference.GetSize()[::-1], dtype=np.float32)  # (z, y, x)
    own = [(m, p) for m, p in zip(maps, placements) if p.grid is None]
    _paste_on(grid, [m for m, _ in own], [p for _, p in own])
    others: dict = {}
    for m, p in zip(maps, placements):
        if p.grid is not None:
            others.setdefault(p.grid, []).append((m, p))
    target = sitk.Image(list(reference.GetSize()), sitk.sitkFloat32)
    target.CopyInformation(reference)
    for geometry, pairs in others.items():
        lesion_grid = np.zeros(geometry.size[::-1], dtype=np.float32)
        _paste_on(lesion_grid, [m for m, _ in pairs], [p for _, p in pairs])
        source = sitk.GetImageFromArray(lesion_grid)
        source.CopyInformation(geometry.empty_image())
        resampled = sitk.Resample(source, target, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
        np.maximum(grid, sitk.GetArrayViewFromImage(resampled), out=grid)
    image = sitk.GetImageFromArray(grid)
    image.CopyInformation(reference)
    return image


def saliency_reference(case: Any) -> sitk.Image:
    """The grid a case's saliency volume lies on: the segmentation grid, or for a microscopy case
    its image as a one-slice volume (its own geometry when it came from a volume node)."""
    segmentation = getattr(case, "segmentation", None)
    if segmentation is not None:
        return segmentation
    reference = getattr(case, "reference", None)
    if reference is not None:
        return reference
    height, width = case.image.shape[:2]
    return sitk.Image([int(width), int(height), 1], sitk.sitkUInt8)


def check_saliency_task(task: str | Task) -> Task:
    """Refuse, before any work, a task (name or `tasks.Task`) whose samples carry no placement."""
    from HCCAnalysisLib.tasks import get_task

    task = get_task(task) if isinstance(task, str) else task
    if not task.placements:
        raise HCCInputError(f"task {task.name} has no saliency volume: its inputs ({task.sampler} sampler) are "
                            "not crops of the segmentation grid's axial slices", hint=NO_VOLUME_HINT)
    return task


def placed_samples(model: LoadedModel, case: Case, phases: Sequence[str] | None = None) -> list[Sample]:
    """The model's samples of the case that carry a placement; refuses a task with none."""
    from HCCAnalysisLib.engine.infer import make_samples

    check_saliency_task(model.task)
    phases = list(phases or model.card["phases"])
    if phases != list(model.card["phases"]):
        raise HCCInputError(f"phases {phases} differ from the {model.card['phases']} the model was trained on",
                            model.directory)
    samples = make_samples(model.task, case, phases, seed=model.card.get("seed", 0))
    placed = [s for s in samples if s.placement is not None]
    if not placed:  # a task with `placements` whose sampler set none
        raise HCCInputError(f"task {model.task.name} gave no sample with a placement on the segmentation grid",
                            case.source, NO_VOLUME_HINT)
    return placed


def saliency_volume(model: LoadedModel, case: Case, phases: Sequence[str] | None = None,
                    target: str | int = "predicted", method: str = "vanilla",
                    device: str | torch.device = "cpu") -> sitk.Image:
    """The saliency of a loaded model (`models.LoadedModel`) over one Case, on its segmentation grid."""
    samples = placed_samples(model, case, phases)
    model.net.to(device)
    maps = saliency_maps(model.net, samples, target, method, device, reduction=model.task.saliency_channels)
    return paste_maps(maps, [s.placement for s in samples], saliency_reference(case))


def save_saliency_volume(model_dir: str | Path, case_dir: str | Path, out_path: str | Path,
                         phases: Sequence[str] | None = None, target: str | int = "predicted",
                         method: str = "vanilla", device: str | torch.device | None = "cpu",
                         fields: dict[str, Any] | None = None, reading: CaseReading | None = None) -> sitk.Image:
    """Load a model package and a case folder (read by `reading`: labels, segmentation, phase map),
    write the saliency volume (NRRD, NIfTI, MHA) atomically."""
    from HCCAnalysisLib.data.case_loading import load_for_task
    from HCCAnalysisLib.io.images import image_suffix
    from HCCAnalysisLib.models.package import load_model
    from HCCAnalysisLib.engine.device import resolve_device

    suffix = image_suffix(out_path)
    if not suffix or suffix in (".seg.nrrd", ".nhdr", ".mhd"):
        raise HCCInputError("is not a single-file image name", out_path, "end it in .nrrd, .nii.gz, .nii or .mha")
    device = resolve_device(device)
    model = load_model(model_dir, device)
    check_saliency_task(model.task)  # before the case is read
    case = load_for_task(case_dir, model.task, phases or model.card["phases"], fields=fields, reading=reading)
    image = saliency_volume(model, case, phases, target, method, device)
    out_path = Path(out_path)
    fd, tmp = tempfile.mkstemp(dir=out_path.parent, prefix=".saliency.", suffix=suffix)
    os.close(fd)
    try:
        sitk.WriteImage(image, tmp, True)
        os.replace(tmp, out_path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return image
