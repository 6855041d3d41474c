"""Training: samples -> fitted network, one process or many (torchrun), same result.

Seeds fix the initialisation and the batch order; under torchrun every process walks
the same global batch order and takes its interleaved share, the loss is weighted so
the averaged gradient equals the one-process gradient, and batch norm spans processes.
Batches stream from any sample sequence through a DataLoader (engine/loader.py), so worker
processes change nothing but the speed; each epoch can leave a checkpoint from which a killed
run continues bit for bit (engine/checkpoint.py) and a record of its metrics (engine/epoch_log.py).
"""

from __future__ import annotations

import logging
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
from HCCAnalysisLib.engine.checkpoint import (CHECKPOINT_NAME, load_checkpoint, restore_training_state,
                                              save_checkpoint, training_state)
from HCCAnalysisLib.engine.epoch_log import LOG_NAME, TENSORBOARD_DIR, EpochMeter, TensorBoardLog, write_tsv
from HCCAnalysisLib.engine.loader import make_loader, to_device
from HCCAnalysisLib.engine.precision import autocast, make_scaler, resolve_precision
from HCCAnalysisLib.errors import HCCInputError
from HCCAnalysisLib.losses import build_loss
from HCCAnalysisLib.nets import build_net

if TYPE_CHECKING:
    from HCCAnalysisLib.data.samples import Sample
    from HCCAnalysisLib.methods.task import Task


_LOG = logging.getLogger(__name__)


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


def uses_channels_last(net: torch.nn.Module, device: torch.device, choice: bool | None = None) -> bool:
    """Channels-last (NHWC) layout for nets with 2-D convolutions, where it is faster (`choice`
    None: on CUDA, whose tensor-core kernels want NHWC; measured on this project's CPU it is not
    faster, see benchmarks/results_training_throughput.md)."""
    if choice is not None:
        return choice and any(isinstance(m, torch.nn.Conv2d) for m in net.modules())
    return device.type == "cuda" and any(isinstance(m, torch.nn.Conv2d) for m in net.modules())


def _as_channels_last(inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.contiguous(memory_format=torch.channels_last) if v.dim() == 4 else v for k, v in inputs.items()}


def fit(task: Task, samples: Sequence[Sample], device: torch.device, seed: int = 0, epochs: int | None = None,
        batch_size: int | None = None, lr: float | None = None,
        pretrained_state: Mapping[str, torch.Tensor] | str | Path | None = None,
        progress: Callable[[float, str], Any] | None = None, log: Callable[[str], Any] = _LOG.info,
        optimiser: str | None = None, workers: int | None = None, precision: str | None = "auto",
        channels_last: bool | None = None, val_samples: Sequence[Sample] | None = None,
        checkpoint_dir: str | Path | None = None, resume: bool = False,
        run_settings: Mapping[str, Any] | None = None) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Train the task's net on `samples` (any sequence: a list, or a store read from disk);
    returns (net on CPU in eval mode, history).

    `workers`: DataLoader worker processes (None: the machine's default; results never depend on
    it). `precision`: auto, fp32, bf16 or fp16 (engine/precision.py). `val_samples`: a held-out
    share evaluated after every epoch. `checkpoint_dir`: where each epoch's checkpoint, the
    running training_log.tsv and the TensorBoard log go; with `resume`, a checkpoint found there
    (made with the same settings, plus `run_settings`) is continued from.
    """
    settings = task.training
    epochs = settings.get("epochs", 30) if epochs is None else epochs
    if epochs < 1:
        raise HCCInputError(f"epochs must be at least 1, got {epochs}")
    batch_size = batch_size or settings.get("batch_size", 32)
    lr = lr or settings.get("lr", 1e-3)
    if len(samples) < 2:
        raise HCCInputError(f"training needs at least 2 samples, got {len(samples)}")
    rank, size = distributed.init_if_needed(device)
    log = log if rank == 0 else (lambda *a, **k: None)
    precision = resolve_precision(precision, device)
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
    layout_nhwc = uses_channels_last(net, device, channels_last)
    if layout_nhwc:
        net.to(memory_format=torch.channels_last)
    model = DistributedDataParallel(net) if size > 1 else net
    loss_fn = build_loss(task.loss, **task.loss_kwargs)
    optimiser_name = optimiser or settings.get("optimiser", "adam")
    optimiser = make_optimiser(optimiser_name, net.parameters(), lr, settings.get("weight_decay", 0.0))
    # Step decay when the task asks for it (Zhen 2020: halve every 20 epochs); constant otherwise.
    schedule = (torch.optim.lr_scheduler.StepLR(optimiser, settings["lr_step"], settings.get("lr_gamma", 0.5))
                if settings.get("lr_step") else None)
    scaler = make_scaler(precision, device)
    order_rng = torch.Generator().manual_seed(seed)
    # Random rotations / flips per epoch where the task asks for them (Zhen 2020).
    augmenter = BatchAugmenter(settings["augment"], seed) if settings.get("augment") else None
    generators = {"order": order_rng, **({"augment": augmenter.generator} if augmenter else {})}
    key = {"task": task.name, "seed": seed, "epochs": epochs, "batch_size": batch_size, "lr": lr,
           "optimiser": optimiser_name, "samples": len(samples), "validation_samples": len(val_samples or ()),
           "precision": precision, "processes": size, "pretrained": pretrained_state is not None,
           **dict(run_settings or {})}
    folder = Path(checkpoint_dir) if checkpoint_dir is not None else None
    first, records = 0, []
    if resume and folder is not None and (folder / CHECKPOINT_NAME).is_file():
        state = load_checkpoint(folder / CHECKPOINT_NAME, key)
        first, records = restore_training_state(state, net, optimiser, schedule, scaler, loss_fn, generators)
        log(f"resuming after epoch {first}/{epochs} from {folder / CHECKPOINT_NAME}")
    loader = make_loader(samples, batch_size, order_rng, device, workers, rank, size)
    sizes, trained = loader.batch_sampler.sizes, sum(loader.batch_sampler.sizes)
    board = TensorBoardLog(folder / TENSORBOARD_DIR if folder is not None and rank == 0 else None, first + 1, log)
    started = time.perf_counter()
    try:
        for epoch in range(first, epochs):
            net.train()
            meter = EpochMeter(device)
            for (inputs, targets), global_size in zip(loader, sizes):
                weight = len(targets) * size / global_size
                inputs, targets = to_device(inputs, targets, device)
                if augmenter is not None:  # parameters drawn for the global batch, applied to this share
                    positions = distributed.shard(torch.arange(global_size), rank, size)
                    inputs = augmenter.apply(inputs, augmenter.draw_batch(global_size), positions)
                if layout_nhwc:
                    inputs = _as_channels_last(inputs)
                with autocast(precision, device):
                    out = model(**inputs)
                    loss = loss_fn(out, targets)
                optimiser.zero_grad(set_to_none=True)
                if scaler is None:
                    (loss * weight).backward()
                    optimiser.step()
                else:  # fp16: scaled against underflow; steps with inf/nan gradients are skipped
                    scaler.scale(loss * weight).backward()
                    scaler.step(optimiser)
                    scaler.update()
                meter.add(loss, out, targets)
            mean_loss, accuracy = meter.read(trained)
            record = {"epoch": epoch + 1, "loss": mean_loss, "train_accuracy": accuracy,
                      "lr": optimiser.param_groups[0]["lr"]}
            if val_samples:
                from HCCAnalysisLib.engine.validation import validate

                record.update(validate(net, val_samples, loss_fn, task.classes, device, precision))
            record["seconds"] = time.perf_counter() - started
            records.append(record)
            if schedule is not None:
                schedule.step()
            if folder is not None and rank == 0:
                save_checkpoint(folder / CHECKPOINT_NAME, training_state(
                    net, optimiser, schedule, scaler, loss_fn, generators, epoch + 1, records, key))
                write_tsv(folder / LOG_NAME, records)
                board.add(record)
            if progress:
                progress((epoch + 1) / epochs, f"epoch {epoch + 1}/{epochs} loss {mean_loss:.4f}")
            if epoch == first or (epoch + 1) % max(1, epochs // 10) == 0 or epoch + 1 == epochs:
                log(_epoch_line(record, epochs))
    finally:
        board.close()
    if size > 1:
        distributed.restore_batchnorm(net)
    net.to(memory_format=torch.contiguous_format)
    return net.cpu().eval(), {"loss": [r["loss"] for r in records], "epochs": epochs, "batch_size": batch_size,
                              "lr": lr, "optimiser": optimiser_name, "seed": seed, "processes": size,
                              "precision": precision, "channels_last": layout_nhwc, "records": records}


def _epoch_line(record: Mapping[str, Any], epochs: int) -> str:
    line = (f"  epoch {record['epoch']:3d}/{epochs}  loss {record['loss']:.4f}  "
            f"accuracy {record['train_accuracy']:.3f}")
    if "val_loss" in record:
        line += (f"  validation loss {record['val_loss']:.4f} accuracy {record['val_accuracy']:.3f} "
                 f"AUC {record['val_auc']:.3f}")
    return line + f"  ({record['seconds']:.0f} s)"
