"""Gradient saliency maps of a task's network, per sample and as a volume over the case.

The papers show which pixels drive a decision (issues 3, 5, 6); here that is the gradient
of one class logit with respect to the image input (Simonyan et al. 2014, MONAI's
`VanillaGrad`), or its average over noisy copies of the input (Smilkov et al. 2017,
`SmoothGrad`). Other inputs (`clinical`, Liang's shared `global_roi`) are passed to the net
unchanged and get no map. The explained input is `Task.saliency_input` ("image"; Liang 2018:
"local", the P x 1 x s x s patch over its phases).

- `saliency_maps(net, samples, ...)`: one H x W map per sample (abs max over channels, and
  phases for a P x C x H x W input, scaled to [0, 1] per sample, or jointly over all samples
  with `scale="joint"`: Liang's many overlapping patches of one case).
- `saliency_volume(model, case, ...)`: every sample that carries a `Placement` has its map
  resized back to its crop box and pasted onto the case's segmentation grid (max where
  boxes overlap, 0 elsewhere): a float32 SimpleITK image with the segmentation's geometry,
  ready for `slicer_io.sitk_to_volume_node`.
- `save_saliency_volume(model_dir, case_dir, out_path)`: the same from files, for the CLI.

A net with an `inference_batch_size` (Liang's, thousands of patches a case) gets its vanilla
gradients many samples per backward pass (`gradient_batch_size`; the same maps, tested against
MONAI one at a time); the others, and SmoothGrad, run one sample at a time through MONAI.

Gradients run on the ordinary module path: ResNet20+SPP folds batch norm only in eval mode
without autograd, so with gradients enabled it takes the standard (differentiable) path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from contextlib import contextmanager
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from HCCAnalysisLib.errors import HCCInputError
from HCCAnalysisLib.engine.saliency_paste import paste_maps  # noqa: F401  (part of this module's API)

if TYPE_CHECKING:
    from HCCAnalysisLib.data.case import Case
    from HCCAnalysisLib.data.reading_options import CaseReading
    from HCCAnalysisLib.data.samples import Sample
    from HCCAnalysisLib.methods.task import Task
    from HCCAnalysisLib.models.package import LoadedModel

METHODS = ("vanilla", "smoothgrad")
IMAGE_INPUT = "image"
# Tasks with `Task.placements` have samples that carry a `samples.Placement` (crops of the
# segmentation grid's axial slices); Testing/engine/test_saliency.py checks the flag against the samplers.
NO_VOLUME_HINT = ("saliency volumes are available for tasks whose samples carry a placement: every Jia 2019, "
                  "Zhen 2020, Wang 2020, Liang 2018 and Meng 2019 task")
SCALES = ("sample", "joint")


class _LogitsOfImage(torch.nn.Module):
    """The net as MONAI's saliency classes call it: the explained input (`name`) positional, every
    other input as a keyword, class logits out (nets with auxiliary heads return a dict)."""

    def __init__(self, net: torch.nn.Module, name: str = IMAGE_INPUT) -> None:
        super().__init__()
        self.net = net
        self.name = name

    def forward(self, image: torch.Tensor, **others: torch.Tensor) -> torch.Tensor:
        out = self.net(**{self.name: image}, **others)
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


def _check_input(sample, name):
    if name not in sample.inputs:
        raise HCCInputError(f"sample of lesion '{sample.lesion_id}' has no '{name}' input "
                            f"(inputs: {', '.join(sample.inputs)})", sample.case_id)


def _tensors(sample, device, name=IMAGE_INPUT):
    _check_input(sample, name)
    # a fresh batch-of-one copy: MONAI sets requires_grad on the image, which must be a leaf; a
    # SharedInput (Liang's global ROI) becomes a plain 1 x ... array, the net's per-sample path
    return {k: torch.tensor(np.asarray(v)[None], dtype=torch.float32, device=device) for k, v in sample.inputs.items()}


def _class_indices(logits, target):
    """The class explained for each row of B x K logits: its predicted class or a fixed index (B, int64)."""
    classes = logits.shape[1]
    if target == "predicted":
        return logits.argmax(dim=1)
    if isinstance(target, (int, np.integer)) and not isinstance(target, bool) and 0 <= target < classes:
        return torch.full((logits.shape[0],), int(target), dtype=torch.int64, device=logits.device)
    raise HCCInputError(f"saliency target {target!r} is neither 'predicted' nor a class index 0..{classes - 1}")


def _class_index(wrapped, image, others, target):
    """The class whose logit is explained: the sample's predicted class or a fixed index.

    Fixed once on the clean input, so SmoothGrad's noisy copies all explain the same class."""
    with torch.no_grad():
        logits = wrapped(image, **others)
    return int(_class_indices(logits, target)[0])


# At most this many samples per backward pass: it keeps every layer's activations of the batch.
MAX_GRADIENT_BATCH = 32


def gradient_batch_size(net: torch.nn.Module) -> int:
    """Samples per backward pass for `net`'s saliency: its `inference_batch_size` (Liang's patch net,
    thousands of small patches a case), capped at MAX_GRADIENT_BATCH; 1 (MONAI, one at a time) else."""
    return max(1, min(int(getattr(net, "inference_batch_size", 1)), MAX_GRADIENT_BATCH))


def _batched_gradients(wrapped, samples, name, target, device, batch_size):
    """Vanilla gradients, `batch_size` samples per backward pass: in eval mode a sample's logits depend
    on its own inputs only (batch norm reads its running statistics), so the gradient of the sum of the
    samples' explained logits w.r.t. the batched input is, row by row, each sample's own gradient (what
    VanillaGrad gives one at a time). A shared input (Liang's global ROI) is batched once per entry."""
    from HCCAnalysisLib.engine.shared_inputs import INDEX_SUFFIX, stack_sample_inputs

    gradients = []
    for start in range(0, len(samples), batch_size):
        batch = samples[start:start + batch_size]
        for sample in batch:
            _check_input(sample, name)
        tensors = {k: v.to(device=device, dtype=torch.float32) if v.is_floating_point() else v.to(device)
                   for k, v in stack_sample_inputs(batch).items()}
        if name + INDEX_SUFFIX in tensors:  # the explained input itself shared: one row per sample
            tensors[name] = tensors[name][tensors.pop(name + INDEX_SUFFIX)]
        image = tensors.pop(name).clone().requires_grad_(True)
        logits = wrapped(image, **tensors)
        index = _class_indices(logits.detach(), target)
        (gradient,) = torch.autograd.grad(logits.gather(1, index[:, None]).sum(), image)
        gradients += list(gradient)
    return gradients


REDUCTIONS = ("max", "l1")


def _reduced(gradient, reduction="max"):
    """|gradient| of one sample (C x H x W, or P x C x H x W: Liang's phases) reduced over every axis
    but the last two (max, or the L1 norm = sum of |gradient|, Zhen 2020)."""
    if reduction not in REDUCTIONS:
        raise HCCInputError(f"unknown saliency channel reduction '{reduction}'", hint=f"use one of {REDUCTIONS}")
    planes = gradient.abs().reshape(-1, *gradient.shape[-2:])
    saliency = planes.amax(dim=0) if reduction == "max" else planes.sum(dim=0)
    return saliency.cpu().numpy().astype(np.float32)


def _scaled(maps, scale):
    """Maps divided by their peak (all 0 stays 0): each its own ("sample"), or one over all ("joint")."""
    if scale not in SCALES:
        raise HCCInputError(f"unknown saliency scale '{scale}'", hint=f"use one of {SCALES}")
    if scale == "sample":
        return [m / m.max() if m.max() > 0 else m for m in maps]
    peak = max((float(m.max()) for m in maps), default=0.0)
    return [m / np.float32(peak) for m in maps] if peak > 0 else list(maps)


def saliency_maps(net: torch.nn.Module, samples: Sequence[Sample], target: str | int = "predicted",
                  method: str = "vanilla", device: str | torch.device = "cpu", n_noisy: int = 25,
                  noise: float = 0.15, seed: int = 0, reduction: str = "max", input_name: str = IMAGE_INPUT,
                  scale: str = "sample", batch_size: int = 1) -> list[np.ndarray]:
    """One H x W float32 map in [0, 1] per sample, from the gradient of the target logit.

    `target`: "predicted" (each sample's own argmax) or a class index. `method`: "vanilla"
    (VanillaGrad) or "smoothgrad" (`n_noisy` copies with Gaussian noise of `noise` x the
    input's range; seeded by `seed` so a map is reproducible, the caller's RNG untouched).
    `reduction`: how the channels' |gradient| become one map ("max", or "l1" as Zhen 2020).
    `input_name`: the input explained (`Task.saliency_input`); `scale`: "sample" (each map peaks
    at 1) or "joint" (the largest value over all the samples' maps is 1: `Task.saliency_scale`).
    `batch_size` > 1: vanilla gradients of that many samples per backward pass (`_batched_gradients`,
    the same maps); SmoothGrad always runs one sample at a time.
    """
    if scale not in SCALES:  # before any gradient
        raise HCCInputError(f"unknown saliency scale '{scale}'", hint=f"use one of {SCALES}")
    device = torch.device(device)
    # eval() on the wrapper too: MONAI puts a model back in train mode after each map when it
    # found it training (a new Module is), and BatchNorm would then update its running stats
    wrapped = _LogitsOfImage(net, input_name).to(device).eval()
    batched = method == "vanilla" and batch_size > 1
    explainer = None if batched else _explainer(wrapped, method, n_noisy, noise)
    cuda = [device.index or 0] if device.type == "cuda" else []
    maps = []
    # enable_grad: callers may sit inside no_grad / inference_mode (as prediction does)
    with torch.inference_mode(False), torch.enable_grad(), _eval_mode(net), _input_gradients_only(net), \
            torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        if batched:
            gradients = _batched_gradients(wrapped, list(samples), input_name, target, device, batch_size)
            return _scaled([_reduced(g, reduction) for g in gradients], scale)
        for sample in samples:
            others = _tensors(sample, device, input_name)
            image = others.pop(input_name)
            index = _class_index(wrapped, image, others, target)
            gradient = explainer(image, index=index, retain_graph=False, **others)
            maps.append(_reduced(gradient[0], reduction))
    return _scaled(maps, scale)


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
    task = model.task
    maps = saliency_maps(model.net, samples, target, method, device, reduction=task.saliency_channels,
                         input_name=task.saliency_input, scale=task.saliency_scale,
                         batch_size=gradient_batch_size(model.net))
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
    from HCCAnalysisLib.atomic import atomic_path

    # the one atomic writer (mode from the umask, folders made as needed); the temporary name
    # keeps the suffix because ITK picks the file format by it
    with atomic_path(out_path, suffix=suffix) as tmp:
        sitk.WriteImage(image, tmp, True)
    return image
