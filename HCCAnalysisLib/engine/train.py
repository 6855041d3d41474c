"""Training: samples -> fitted network, one process or many (torchrun), same result.

Seeds fix the initialisation and the batch order; under torchrun every process walks
the same global batch order and takes its interleaved share, the loss is weighted so
the averaged gradient equals the one-process gradient, and batch norm spans processes.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from HCCAnalysisLib.engine import distributed
from HCCAnalysisLib.engine.augment import BatchAugmenter
from HCCAnalysisLib.engine.batches import stack_inputs
from HCCAnalysisLib.errors import HCCInputError
from HCCAnalysisLib.losses import build_loss
from HCCAnalysisLib.nets import build_net

if TYPE_CHECKING:
    from HCCAnalysisLib.data.samples import Sample
    from HCCAnalysisLib.methods.task import Task


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_task_net(task: Task, pretrained_state: Mapping[str, torch.Tensor] | str | Path | None = None,
                   log: Callable[[str], Any] | None = None) -> torch.nn.Module:
    """The task's network, with pretrained weights transferred where given (the head stays new).

    `pretrained_state` is a Jia 2019 state dict for ResNet20+SPP, or the path of a weights file
    for networks that read their own (the timm backbones of the fusion family).
    """
    if isinstance(pretrained_state, (str, Path)):
        if log:
            log(f"pretrained backbone weights from {pretrained_state}")
        return build_net(task.net, num_classes=len(task.classes), pretrained_path=str(pretrained_state),
                         **task.net_kwargs)
    net = build_net(task.net, num_classes=len(task.classes), **task.net_kwargs)
    if pretrained_state is not None:
        from HCCAnalysisLib.nets.jia2019_weights import transfer_pretrained

        first = pretrained_state.get("embedding_net.conv1.weight")
        loaded, skipped = transfer_pretrained(net, pretrained_state)
        if log:
            log(f"pretrained weights: {len(loaded)} tensors loaded, {len(skipped)} kept new ({', '.join(skipped)})")
            if first is not None and hasattr(net, "conv1") and first.shape[1] != net.conv1.weight.shape[1]:
                log(f"  first convolution: {first.shape[1]}-channel kernel spread over "
                    f"{net.conv1.weight.shape[1]} replicated channels")
    return net


def make_optimiser(name: str, parameters: Iterable[torch.nn.Parameter], lr: float,
                   weight_decay: float) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(parameters, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(parameters, lr=lr, momentum=0.9, weight_decay=weight_decay)
    raise ValueError(f"unknown optimiser '{name}' (adam or sgd)")


def fit(task: Task, samples: Sequence[Sample], device: torch.device, seed: int = 0, epochs: int | None = None,
        batch_size: int | None = None, lr: float | None = None,
        pretrained_state: Mapping[str, torch.Tensor] | str | Path | None = None,
        progress: Callable[[float, str], Any] | None = None, log: Callable[[str], Any] = print,

        optimiser: str | None = None) -> tuple[torch.nn.Module, dict[str, Any]]:

    """Train the task's net on `samples`; returns (net on CPU in eval mode, history)."""
    settings = task.training
    epochs = settings.get("epochs", 30) if epochs is None else epochs
    if epochs < 1:
        raise HCCInputError(f"epochs must be at least 1, got {epochs}")
    batch_size = batch_size or settings.get("batch_size", 32)
    lr = lr or settings.get("lr", 1e-3)
    rank, size = distributed.init_if_needed(device)
    log = log if rank == 0 else (lambda *a, **k: None)
    if pretrained_state is not None:  # Jia 2019 5.4: fine-tune at half the learning rate
        factor = settings.get("finetune_lr_factor", 0.5)
        log(f"fine-tuning from pretrained weights: learning rate {lr * factor:g} ({lr:g} x {factor:g})")
        lr = lr * factor
    else:
        log(f"training from random initialisation: learning rate {lr:g}")
    set_seed(seed)
    net = build_task_net(task, pretrained_state, log)
    if size > 1:
        net = distributed.convert_batchnorm(net, device)
    net.to(device)
    model = DistributedDataParallel(net) if size > 1 else net
    loss_fn = build_loss(task.loss, **task.loss_kwargs)
    optimiser_name = optimiser or settings.get("optimiser", "adam")
    optimiser = make_optimiser(optimiser_name, net.parameters(), lr, settings.get("weight_decay", 0.0))
    # Step decay when the task asks for it (Zhen 2020: halve every 20 epochs); constant otherwise.
    schedule = (torch.optim.lr_scheduler.StepLR(optimiser, settings["lr_step"], settings.get("lr_gamma", 0.5))
                if settings.get("lr_step") else None)
    # Batches are stacked as they are needed: the whole set at once can be many GB (Liang's
    # patches each carry their slice's 128 x 128 global ROI).
    targets = torch.tensor([s.target for s in samples], dtype=torch.long)
    order_rng = torch.Generator().manual_seed(seed)
    # Random rotations / flips per epoch where the task asks for them (Zhen 2020).
    augmenter = BatchAugmenter(settings["augment"], seed) if settings.get("augment") else None
    history, n, started = [], len(samples), time.time()
    for epoch in range(epochs):
        net.train()
        order = torch.randperm(n, generator=order_rng)
        total = 0.0
        for start in range(0, n, batch_size):
            batch = order[start:start + batch_size]
            if len(batch) < max(2, size):
                # A trailing batch of one sample gives no batch statistics (and none for some
                # process under torchrun): skipped alike in every mode so results agree.
                continue
            mine = distributed.shard(batch, rank, size)
            weight = len(mine) * size / len(batch)
            inputs = stack_inputs([samples[i] for i in mine.tolist()], device)
            if augmenter is not None:  # parameters drawn for the global batch, applied to this share
                positions = distributed.shard(torch.arange(len(batch)), rank, size)
                inputs = augmenter.apply(inputs, augmenter.draw_batch(len(batch)), positions)
            out = model(**inputs)
            loss = loss_fn(out, targets[mine].to(device))
            optimiser.zero_grad(set_to_none=True)
            (loss * weight).backward()
            optimiser.step()
            total += loss.item() * len(mine)
        history.append(distributed.sum_over_processes(total) / n)
        if schedule is not None:
            schedule.step()
        if progress:
            progress((epoch + 1) / epochs, f"epoch {epoch + 1}/{epochs} loss {history[-1]:.4f}")
        if epoch == 0 or (epoch + 1) % max(1, epochs // 10) == 0 or epoch + 1 == epochs:
            log(f"  epoch {epoch + 1:3d}/{epochs}  loss {history[-1]:.4f}  ({time.time() - started:.0f} s)")
    if size > 1:
        distributed.restore_batchnorm(net)
    return net.cpu().eval(), {"loss": history, "epochs": epochs, "batch_size": batch_size, "lr": lr,
                              "optimiser": optimiser_name,
                              "seed": seed, "processes": size}
