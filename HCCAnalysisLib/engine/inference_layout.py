"""A trained net made faster for inference only: batch norm folded into the convolutions, channels-last.

`prepare_for_inference(net)` changes the net in place and for good: each eval-mode batch
norm that directly follows a convolution (the next module registered beside it, which is
the data flow in every conv net here: nn.Sequential stems, ResNet / Inception blocks, timm's
conv-norm-act, whose BatchNormAct2d leaves its activation behind) is folded into that convolution's weight and bias and replaced by an
identity; then the 4-D weights are stored channels-last, the layout oneDNN's CPU
convolutions and cuDNN's tensor cores run fastest in (measured: benchmarks/
results_inference_layout.md). Outputs stay within float rounding of the unprepared net.

Only for nets that will not train again (a loaded model package, the net of a finished
fold): the folded net has no batch norm left to train, and its state dict has other keys.
ResNet20+SPP folds its own batch norms in eval mode (`_folded_weights`), so its modules are
left as they are; it still gets channels-last weights.
"""

from __future__ import annotations

import torch
from torch import nn

PREPARED = "_hcc_inference_prepared"


# timm's BatchNormAct2d: batch norm, then its `drop` and `act` children (Zhen's Inception-ResNet-V2)
NORM_THEN = ("drop", "act")


def _after_norm(norm: nn.Module) -> nn.Module | None:
    """What replaces a foldable batch norm (identity, or the activation it applies after
    normalising), or None when it is not one we know to fold."""
    if not isinstance(norm, nn.BatchNorm2d) or not norm.track_running_stats or norm.running_mean is None:
        return None
    if type(norm) is nn.BatchNorm2d:
        return nn.Identity()
    children = dict(norm.named_children())
    if type(norm).__name__ == "BatchNormAct2d" and set(children) <= set(NORM_THEN):
        return nn.Sequential(*(children[name] for name in NORM_THEN if name in children))
    return None


@torch.no_grad()
def fold_conv_batch_norm(conv: nn.Conv2d, norm: nn.BatchNorm2d) -> None:
    """Put eval-mode `norm(conv(x))` into conv's weight and bias (in place)."""
    scale = torch.rsqrt(norm.running_var + norm.eps)
    if norm.affine:
        scale = scale * norm.weight
    shift = -norm.running_mean * scale
    if norm.affine:
        shift = shift + norm.bias
    if conv.bias is not None:
        shift = shift + conv.bias * scale
    conv.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
    conv.bias = nn.Parameter(shift.to(conv.weight.dtype), requires_grad=conv.weight.requires_grad)


def _self_folding_parts(net: nn.Module) -> set[int]:
    """ids of the nets that fold themselves (ResNet20+SPP) and of every module inside them."""
    inside = set()
    for module in net.modules():
        if callable(getattr(module, "_folded_weights", None)):
            inside.update(id(m) for m in module.modules())
    return inside


def fold_batch_norms(net: nn.Module) -> int:
    """Fold every eval batch norm that follows a convolution (registered next to it) into it; how many."""
    skip = _self_folding_parts(net)
    folded = 0
    with torch.inference_mode(False):  # normal tensors even when called under inference_mode
        for module in list(net.modules()):
            if id(module) in skip:
                continue
            children = list(module.named_children())
            for (_, conv), (name, norm) in zip(children, children[1:]):
                after = _after_norm(norm)
                if type(conv) is nn.Conv2d and after is not None and norm.num_features == conv.out_channels:
                    fold_conv_batch_norm(conv, norm)
                    setattr(module, name, after)
                    folded += 1
    return folded


def prepare_for_inference(net: nn.Module) -> nn.Module:
    """The net in eval mode, batch norm folded, channels-last weights (in place, once); returns it."""
    net.eval()
    if not getattr(net, PREPARED, False):
        fold_batch_norms(net)
        net.to(memory_format=torch.channels_last)
        setattr(net, PREPARED, True)
    return net


def channels_last_inputs(inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """4-D image batches in channels-last layout (others unchanged), matching prepared weights."""
    return {k: v.contiguous(memory_format=torch.channels_last) if v.ndim == 4 and v.is_floating_point() else v
            for k, v in inputs.items()}
