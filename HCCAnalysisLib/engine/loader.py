"""Training batches streamed through a `torch.utils.data.DataLoader`.

Any `Sequence[Sample]` works (a list, or a store whose items are read from disk when asked
for): only the samples of the batch at hand are read, in worker processes when asked, so
memory stays flat in the cohort's size. The batch order is drawn in the main process from the
run's seeded generator, one `randperm` per epoch exactly as the trainer always did, so the
number of workers never changes the result and torchrun processes walk the same global order.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import torch
from torch.utils.data import DataLoader, Dataset

from HCCAnalysisLib.engine import distributed
from HCCAnalysisLib.engine.batches import stack_inputs
from HCCAnalysisLib.errors import HCCInputError
from HCCAnalysisLib.runtime.threads import worker_init

if TYPE_CHECKING:
    from HCCAnalysisLib.data.samples import Sample


class SampleDataset(Dataset):
    """A sample sequence as a map-style dataset (items are the samples themselves)."""

    def __init__(self, samples: Sequence[Sample]) -> None:
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Sample:
        return self.samples[index]


def global_batch_sizes(n: int, batch_size: int, processes: int = 1) -> list[int]:
    """Sizes of the global batches an epoch trains on, in order.

    A trailing batch smaller than two (or than the number of processes) gives no batch
    statistics (none at all for some process under torchrun): it is skipped in every mode.
    """
    sizes = [min(batch_size, n - start) for start in range(0, n, batch_size)]
    return [s for s in sizes if s >= max(2, processes)]


class EpochBatches:
    """Batch sampler: each pass (epoch) draws one permutation from `generator` and yields this
    process's interleaved share of each kept global batch."""

    def __init__(self, n: int, batch_size: int, generator: torch.Generator, rank: int = 0,
                 processes: int = 1) -> None:
        self.n, self.batch_size, self.generator = n, batch_size, generator
        self.rank, self.processes = rank, processes
        self.sizes = global_batch_sizes(n, batch_size, processes)

    def __len__(self) -> int:
        return len(self.sizes)

    def __iter__(self) -> Iterator[list[int]]:
        order = torch.randperm(self.n, generator=self.generator)
        for start in range(0, self.n, self.batch_size):
            batch = order[start:start + self.batch_size]
            if len(batch) >= max(2, self.processes):
                yield distributed.shard(batch, self.rank, self.processes).tolist()


def collate(samples: list[Sample]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Samples -> (batched inputs, class targets), on the CPU (pinned by the loader on CUDA)."""
    return stack_inputs(samples), torch.tensor([s.target for s in samples], dtype=torch.long)


def default_workers(device: torch.device) -> int:
    """Worker processes for the machine: on a GPU the host only feeds it, so most cores stack
    batches; on the CPU the cores are busy with the network itself, so workers are kept for
    machines with cores to spare (stacking in-memory samples is cheap; reading a disk store is not)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    if device.type == "cuda":
        return max(0, min(8, cores - 1))
    return min(2, cores // 8)


def make_loader(samples: Sequence[Sample], batch_size: int, generator: torch.Generator, device: torch.device,
                workers: int | None = None, rank: int = 0, processes: int = 1) -> DataLoader:
    """The trainer's loader: seeded order, this process's share, `workers` processes (None: the
    machine's default; 0: stacked in this process), pinned memory on CUDA."""
    workers = default_workers(device) if workers is None else workers
    if workers < 0:
        raise HCCInputError(f"workers must be 0 or more, got {workers}")
    return DataLoader(SampleDataset(samples), batch_sampler=EpochBatches(len(samples), batch_size, generator,
                                                                         rank, processes),
                      collate_fn=collate, num_workers=workers, pin_memory=device.type == "cuda",
                      worker_init_fn=worker_init if workers > 0 else None,  # one thread each: no fighting
                      persistent_workers=workers > 0, prefetch_factor=2 if workers > 0 else None)


def to_device(inputs: dict[str, torch.Tensor], targets: torch.Tensor, device: torch.device,
              channels_last: bool = False) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """One batch onto the training device; copies from pinned memory overlap with compute.

    With `channels_last`, 4-D image inputs are laid out NHWC (what the net's weights use)."""
    blocking = device.type != "cuda"
    out = {}
    for name, value in inputs.items():
        value = value.to(device, non_blocking=not blocking)
        if channels_last and value.dim() == 4:
            value = value.contiguous(memory_format=torch.channels_last)
        out[name] = value
    return out, targets.to(device, non_blocking=not blocking)
