"""Squared-error loss of Meng et al. (SPIE Medical Imaging 2019), eq. 4.

J = 1/q * sum_j 1/2 (y_j - p_j)^2 over the q output neurons, where p is the net's
output as probabilities (softmax of the logits) and y the expected output (one-hot
target); averaged over the batch. Cross-entropy, the usual alternative, is the
registry's "cross_entropy" loss.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping

import torch.nn.functional as F

from HCCAnalysisLib.errors import HCCInputError

if TYPE_CHECKING:
    import torch


class SquaredErrorLoss:
    """loss(output, target): eq. 4 on softmax(logits) against the one-hot target."""

    def __call__(self, output: torch.Tensor | Mapping[str, torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        logits = output["logits"] if isinstance(output, dict) else output
        if logits.ndim != 2 or target.ndim != 1 or len(logits) != len(target):
            raise HCCInputError(f"squared-error loss needs B x K logits and B targets, got "
                                f"{tuple(logits.shape)} and {tuple(target.shape)}")
        q = logits.shape[1]
        if int(target.min()) < 0 or int(target.max()) >= q:
            raise HCCInputError(f"targets must lie in 0..{q - 1}, got {int(target.min())}..{int(target.max())}")
        expected = F.one_hot(target, q).to(logits.dtype)
        per_sample = 0.5 * (expected - logits.softmax(dim=1)).pow(2).sum(dim=1) / q
        return per_sample.mean()
