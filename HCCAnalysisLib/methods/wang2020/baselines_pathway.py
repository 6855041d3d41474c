"""A Wang 2020 clinical pathway (fusion A-D) trained alone, under the baselines' folds.

This is the clinical branch of the fusion nets (`nets.fusion.build_wang_clinical`, the same
module the fusion net uses) with its classification head, trained on the clinical vector
only. Run under the same patient-level folds as `baselines.clinical_baseline`, its rows
can be compared with the random forest (and with the full fusion models) by DeLong.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch

from HCCAnalysisLib.methods.wang2020.baselines_folds import cross_validate
from HCCAnalysisLib.errors import HCCInputError

if TYPE_CHECKING:
    from HCCAnalysisLib.methods.wang2020.baselines_folds import BaselineResult, SampleTable


def _train_pathway(x_train, y_train, n_classes, variant, seed, epochs, batch_size, lr,
                   weight_decay):
    from HCCAnalysisLib.nets.fusion import build_wang_clinical

    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # the head's initial weights
    net = build_wang_clinical(variant, clinical_dim=x_train.shape[1], num_classes=n_classes)
    optimiser = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)
    x = torch.as_tensor(x_train, dtype=torch.float32)
    y = torch.as_tensor(y_train, dtype=torch.long)
    losses = []
    net.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        epoch_loss = 0.0
        for start in range(0, len(x), batch_size):
            batch = order[start:start + batch_size]
            optimiser.zero_grad()
            loss = torch.nn.functional.cross_entropy(net(x[batch]), y[batch])
            loss.backward()
            optimiser.step()
            epoch_loss += loss.item() * len(batch)
        losses.append(epoch_loss / len(x))
    net.eval()
    return net, losses


def clinical_pathway_cv(table: SampleTable, folds: Sequence[Sequence[Sequence[Any]]], classes: Sequence[str],
                        variant: str = "d", repeat: int = 0, seed: int = 0, epochs: int = 50, batch_size: int = 16,
                        lr: float = 1e-3, weight_decay: float = 1e-4) -> BaselineResult:
    """Train the clinical pathway of fusion `variant` per fold; rows in predictions.tsv format.

    Batch size 16 and 50 epochs follow Wang 2020; lr 1e-3 (Adam) is ours: the paper's 1e-4
    is for fine-tuning the pretrained ResNet, while this small branch starts from scratch.
    Each fold's info holds the first and last epoch's mean training loss.
    """
    if epochs < 1 or batch_size < 1 or lr <= 0:
        raise HCCInputError(f"epochs, batch_size and lr must be positive "
                            f"(got {epochs}, {batch_size}, {lr})")
    n_classes = len(classes)

    def fit_predict(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, groups: np.ndarray
                    ) -> tuple[np.ndarray, dict[str, Any]]:
        net, losses = _train_pathway(x_train, y_train, n_classes, variant, seed, epochs,
                                     batch_size, lr, weight_decay)
        with torch.no_grad():
            logits = net(torch.as_tensor(x_test, dtype=torch.float32))
            probs = torch.softmax(logits, dim=1).numpy().astype(np.float64)
        return probs, {"first_epoch_loss": losses[0], "last_epoch_loss": losses[-1]}

    # A branch this small runs fastest on one thread: with several, each tiny op pays the
    # thread-pool synchronisation (measured 25x slower on a busy 2-core machine).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return cross_validate(table, folds, classes, fit_predict, repeat)
    finally:
        torch.set_num_threads(threads)
