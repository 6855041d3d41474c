"""Batch norm over distinct inputs that stand for a batch with repeats (Liang's shared global ROI).

When the global pathway sees each distinct ROI once instead of once per patch, a training
batch norm must still use the statistics of the batch the patches make: entry u counted
`counts[u]` times. Mean and (biased) variance are those count-weighted means, and the
running statistics are updated as `nn.BatchNorm2d` does over the `total` samples, so the
loss, the gradients and the running statistics equal those of the per-patch computation.
"""

from __future__ import annotations

import torch
from torch import nn


def batch_norm(module: nn.Module, x: torch.Tensor, counts: torch.Tensor | None, total: int) -> torch.Tensor:
    """`module(x)`, or with `counts` (U, how often each of the U entries of x stands in a batch of
    `total`) the training batch norm of that batch, computed on the U distinct entries."""
    if counts is None or not module.training or not isinstance(module, nn.modules.batchnorm._BatchNorm):
        return module(x)
    dims = (0, *range(2, x.ndim))
    n = total * x[0, 0].numel()  # values per channel in the batch the counts stand for
    # statistics in float32 at least, also when x comes from an autocast (bf16 / fp16) convolution
    xf = x.to(torch.promote_types(x.dtype, torch.float32))
    weight = counts.to(xf.dtype).reshape(-1, *([1] * (x.ndim - 1)))
    mean = (xf * weight).sum(dim=dims) / n
    centred = xf - mean.reshape(1, -1, *([1] * (x.ndim - 2)))
    var = (centred.square() * weight).sum(dim=dims) / n
    if module.track_running_stats:
        with torch.no_grad():
            module.num_batches_tracked.add_(1)
            factor = module.momentum if module.momentum is not None else 1.0 / float(module.num_batches_tracked)
            module.running_mean.mul_(1 - factor).add_(mean.detach().to(module.running_mean.dtype), alpha=factor)
            unbiased = var.detach() * (n / max(n - 1, 1))
            module.running_var.mul_(1 - factor).add_(unbiased.to(module.running_var.dtype), alpha=factor)
    shape = (1, -1, *([1] * (x.ndim - 2)))
    out = centred * torch.rsqrt(var + module.eps).reshape(shape)
    if module.affine:
        out = out * module.weight.reshape(shape) + module.bias.reshape(shape)
    return out.to(x.dtype)
