"""The per-epoch record of a training: loss, training accuracy, validation metrics.

Sums are kept on the training device and read once per epoch (`EpochMeter.read`): a `.item()`
per step would stall a GPU on every batch. The records go to `training_log.tsv` (rewritten
atomically each epoch) and, where TensorBoard is installed, to a TensorBoard event log (what
this field's users open); without TensorBoard that log is skipped with one line, never an error.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from HCCAnalysisLib.atomic import write_text_atomic
from HCCAnalysisLib.engine import distributed

LOG_NAME = "training_log.tsv"
TENSORBOARD_DIR = "tensorboard"
COLUMNS = ("epoch", "loss", "train_accuracy", "val_loss", "val_accuracy", "val_auc", "lr", "seconds")


_LOG = logging.getLogger(__name__)


def logits_of(output: Any) -> torch.Tensor:
    return output["logits"] if isinstance(output, dict) else output


class EpochMeter:
    """Loss and correct-prediction sums of one epoch, accumulated on the device."""

    def __init__(self, device: torch.device) -> None:
        # float64: the loss sum equals the float sum the trainer always reported
        self.loss = torch.zeros((), dtype=torch.float64, device=device)
        self.correct = torch.zeros((), dtype=torch.int64, device=device)

    def add(self, loss: torch.Tensor, output: Any, targets: torch.Tensor) -> None:
        self.loss += loss.detach().double() * len(targets)
        self.correct += (logits_of(output).detach().argmax(dim=1) == targets).sum()

    def read(self, n: int) -> tuple[float, float]:
        """(mean loss, accuracy) over the `n` samples of the epoch, summed over processes."""
        loss = distributed.sum_over_processes(float(self.loss))  # the epoch's one host synchronisation
        correct = distributed.sum_over_processes(float(self.correct))
        return loss / n, correct / n


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.6g}"
    return str(value)


def tsv_text(records: Sequence[Mapping[str, Any]]) -> str:
    columns = [c for c in COLUMNS if any(c in r for r in records)]
    lines = ["\t".join(columns)] + ["\t".join(_cell(r.get(c)) for c in columns) for r in records]
    return "\n".join(lines) + "\n"


def write_tsv(path: str | Path, records: Sequence[Mapping[str, Any]]) -> None:
    write_text_atomic(path, tsv_text(records))


class TensorBoardLog:
    """Scalars per epoch under `folder`; inactive (and says so once) without TensorBoard.

    `first_epoch` > 1 (a resumed run) purges events a killed run wrote after its last checkpoint."""

    def __init__(self, folder: str | Path | None, first_epoch: int = 1, log: Callable[[str], Any] = _LOG.info) -> None:
        self.writer = None
        if folder is None:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            log("TensorBoard is not installed: no TensorBoard log (training_log.tsv is written as usual)")
            return
        self.writer = SummaryWriter(str(folder), purge_step=first_epoch if first_epoch > 1 else None)

    def add(self, record: Mapping[str, Any]) -> None:
        if self.writer is None:
            return
        for name in COLUMNS[1:-1]:
            value = record.get(name)
            if value is not None and not (isinstance(value, float) and math.isnan(value)):
                group = "validation" if name.startswith("val_") else "training"
                self.writer.add_scalar(f"{group}/{name.replace('val_', '').replace('train_', '')}", value,
                                       record["epoch"])
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
