"""A validation share held out of training: a seeded patient-level split, and its per-epoch metrics.

No patient is on both sides (a patient's lesions and slices are correlated); the split is
stratified by case label where a task labels its cases, so both sides see every class.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from HCCAnalysisLib.engine.batches import stack_inputs
from HCCAnalysisLib.engine.epoch_log import logits_of
from HCCAnalysisLib.engine.precision import autocast
from HCCAnalysisLib.errors import HCCInputError

if TYPE_CHECKING:
    from HCCAnalysisLib.data.cohort import CaseRecord
    from HCCAnalysisLib.data.samples import Sample


def patient_split(records: Sequence[CaseRecord], share: float, seed: int
                  ) -> tuple[list[CaseRecord], list[CaseRecord]]:
    """(training cases, validation cases): about `share` of the patients, drawn with `seed`."""
    if not 0.0 < share < 1.0:
        raise HCCInputError(f"the validation share must lie strictly between 0 and 1, got {share:g}")
    patients = sorted({r.patient_id for r in records})
    n_val = int(round(share * len(patients)))
    if n_val < 1 or n_val >= len(patients):
        raise HCCInputError(f"a validation share of {share:g} of {len(patients)} patients leaves "
                            f"{n_val} for validation and {len(patients) - n_val} for training",
                            hint="both sides need at least one patient")
    chosen = set(np.random.default_rng(seed).permutation(len(patients))[:n_val].tolist())
    held = {p for i, p in enumerate(patients) if i in chosen}
    return [r for r in records if r.patient_id not in held], [r for r in records if r.patient_id in held]


@torch.no_grad()
def validate(net: torch.nn.Module, samples: Sequence[Sample], loss_fn: Callable[[Any, torch.Tensor], torch.Tensor],
             classes: Sequence[str], device: torch.device, precision: str = "fp32", batch_size: int = 32
             ) -> dict[str, float]:
    """Loss, accuracy and AUC of `net` (eval mode) on `samples`; the net is left in eval mode."""
    from HCCAnalysisLib.stats.metrics import fold_metrics

    net.eval()
    # a loss with state (Liang's class centres) must not learn from the validation share
    loss_was_training = isinstance(loss_fn, torch.nn.Module) and loss_fn.training
    if loss_was_training:
        loss_fn.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    probs, y_true = [], []
    try:
        for start in range(0, len(samples), batch_size):
            batch = [samples[i] for i in range(start, min(start + batch_size, len(samples)))]
            y_true += [s.target for s in batch]
            inputs = stack_inputs(batch, device)
            targets = torch.tensor(y_true[start:], dtype=torch.long, device=device)
            with autocast(precision, device):
                out = net(**inputs)
                loss = loss_fn(out, targets)
            loss_sum += loss.double() * len(batch)
            probs.append(torch.softmax(logits_of(out).float(), dim=1))
    finally:
        if loss_was_training:
            loss_fn.train()
    if not probs:
        return {"val_loss": math.nan, "val_accuracy": math.nan, "val_auc": math.nan}
    y_prob = torch.cat(probs).cpu().numpy()  # the one host synchronisation
    metrics = fold_metrics(y_true, y_prob, classes)
    return {"val_loss": float(loss_sum) / len(samples), "val_accuracy": metrics["accuracy"], "val_auc": metrics["auc"]}
