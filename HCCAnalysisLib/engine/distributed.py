"""Running the trainer unchanged under `torchrun`: process group, data shards and a
batch norm whose statistics span all processes, so N processes train the same model as one.

`hcc evaluate` and `hcc batch` use torchrun differently: each process takes its share of the
folds or cases (`share`, round robin), works through it alone, and the processes meet at a
`barrier` (a gloo group, `start_work_group`) before rank 0 merges. A fold's training then runs
inside `alone()`, where `world()` and `sum_over_processes` report a single process, so no
collective of the trainer ever pairs processes that train different folds.

PyTorch's SyncBatchNorm only runs on GPUs; on the CPU (gloo) `CrossRankBatchNorm2d` does
the same job: per-channel sums are all-reduced (differentiably) before normalising.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn


_ALONE = False
T = TypeVar("T")
# How long a process may wait at a work group's barrier for the others (a fold can take hours).
WAIT_ENV = "HCC_DIST_TIMEOUT_S"


def world() -> tuple[int, int]:
    """(rank, world_size) from the torchrun environment; (0, 1) for a plain run or inside `alone()`."""
    if _ALONE:
        return 0, 1
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


@contextmanager
def alone() -> Iterator[None]:
    """Within this block the process works as if it were the only one (a fold of a sharded
    evaluation): the trainer sees one process and starts no collective."""
    global _ALONE
    previous, _ALONE = _ALONE, True
    try:
        yield
    finally:
        _ALONE = previous


def share(items: Sequence[T], rank: int, size: int) -> list[T]:
    """This process's items: every `size`-th from position `rank` (deterministic round robin)."""
    return list(items[rank::size])


def start_work_group() -> tuple[int, int]:
    """(rank, size); under torchrun also a gloo process group (CPU messages only: barriers and
    small objects), with a wait long enough for the slowest share (HCC_DIST_TIMEOUT_S, 7 days)."""
    rank, size = world()
    if size > 1 and not dist.is_initialized():
        seconds = float(os.environ.get(WAIT_ENV, 7 * 24 * 3600))
        dist.init_process_group(backend="gloo", timeout=datetime.timedelta(seconds=seconds))
    return rank, size


def barrier() -> None:
    """Wait for every process of the work group (nothing in a plain run)."""
    if dist.is_initialized() and not _ALONE:
        dist.barrier()


def broadcast_object(value: Any, source: int = 0) -> Any:
    """`value` as process `source` has it, on every process (itself in a plain run)."""
    if not dist.is_initialized() or _ALONE:
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=source)
    return holder[0]


def gather_objects(value: Any) -> list:
    """Every process's `value`, in rank order, on every process ([value] in a plain run)."""
    if not dist.is_initialized() or _ALONE:
        return [value]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, value)
    return out


_STATS_GROUP = None


def init_if_needed(device: torch.device) -> tuple[int, int]:
    global _STATS_GROUP
    rank, size = world()
    if size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        # Batch-norm statistics travel on their own group: DDP reduces gradient buckets
        # asynchronously on the default group, and interleaving the two there can pair up
        # one process's statistics with another's gradients.
        _STATS_GROUP = dist.new_group()
    return rank, size


def shutdown() -> None:
    global _STATS_GROUP
    if _ALONE:  # the work group outlives a fold's training
        return
    if dist.is_initialized():
        dist.destroy_process_group()
    _STATS_GROUP = None


class _SumOverProcesses(torch.autograd.Function):
    """all_reduce(SUM) with its gradient: d(sum over processes)/d(own part) is the summed gradient."""

    @staticmethod
    def forward(ctx: object, tensor: torch.Tensor) -> torch.Tensor:
        tensor = tensor.clone()
        dist.all_reduce(tensor, group=_STATS_GROUP)
        return tensor

    @staticmethod
    def backward(ctx: object, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad, group=_STATS_GROUP)
        return grad


class CrossRankBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d with batch statistics over every process's part of the batch (CPU-capable)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized()):
            return super().forward(x)
        channels = x.shape[1]
        # Sums in float64: E[x^2] - mean^2 in float32 loses the variance when |mean| >> std.
        wide = x.double()
        count = torch.tensor([x.numel() / channels], dtype=torch.float64, device=x.device)
        stats = torch.cat([wide.sum(dim=(0, 2, 3)), (wide * wide).sum(dim=(0, 2, 3)), count])
        stats = _SumOverProcesses.apply(stats)
        total = stats[-1]
        mean = stats[:channels] / total
        var = (stats[channels:2 * channels] / total - mean * mean).to(x.dtype)
        mean = mean.to(x.dtype)
        if self.track_running_stats:  # as BatchNorm2d: unbiased variance of the whole batch
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                self.running_mean.mul_(1 - m).add_(m * mean.detach())
                self.running_var.mul_(1 - m).add_(m * var.detach() * float(total / (total - 1)))
        shape = (1, channels, 1, 1)
        y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        return y * self.weight.view(shape) + self.bias.view(shape)


def convert_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Swap BatchNorm2d for a cross-process one (SyncBatchNorm on CUDA)."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            replacement = CrossRankBatchNorm2d(child.num_features, child.eps, child.momentum, child.affine,
                                               child.track_running_stats)
            replacement.load_state_dict(child.state_dict())
            setattr(module, name, replacement)
        else:
            convert_batchnorm(child, device)
    return module


def restore_batchnorm(module: nn.Module) -> nn.Module:
    """Back to plain BatchNorm2d (same parameters and buffers) before saving or predicting."""
    for name, child in module.named_children():
        if isinstance(child, (CrossRankBatchNorm2d, nn.SyncBatchNorm)):
            plain = nn.BatchNorm2d(child.num_features, child.eps, child.momentum, child.affine,
                                   child.track_running_stats)
            plain.load_state_dict(child.state_dict())
            setattr(module, name, plain)
        else:
            restore_batchnorm(child)
    return module


def sum_over_processes(value: float) -> float:
    """A float summed over every process (the value itself in a plain run or inside `alone()`)."""
    if not dist.is_initialized() or _ALONE:
        return value
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"  # nccl reduces GPU tensors only
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return float(tensor)


def shard(indices: torch.Tensor, rank: int, size: int) -> torch.Tensor:
    """This process's share of one global batch (interleaved, so shares differ by at most one)."""
    return indices[rank::size]
