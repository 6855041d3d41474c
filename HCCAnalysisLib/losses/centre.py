"""The ResGL-BDLSTM loss (Liang et al., MICCAI 2018, section 2.4): inter-loss + lambda * centre loss.

- Inter-loss, eq. 3: 1/2 L_last + 1/4 L_local + 1/4 L_global, each a cross-entropy
  (eq. 2 as printed is an entropy, -p log p, with no label; the text calls it the
  cross-entropy, which is what we compute).
- Intra-loss (centre loss, eq. 4, Wen et al. 2016): 1/2 sum_i ||f_i - c_{y_i}||^2,
  summed (not averaged) over the batch as printed.
- Centres, eq. 5: updated once per training batch with rate alpha,
  delta c_j = sum_i [y_i == j] (c_j - f_i) / (1 + sum_i [y_i == j]),  c_j <- c_j - alpha * delta c_j.
  The paper's second line prints (f_i - c_j) in the numerator, which contradicts its
  first line (c_j - dL/dc_j, and dL/dc_j has c_j - f_i) and Wen et al.: with that sign
  the centres would flee their features. We follow the gradient form, so a centre
  moves towards the mean of its features; classes absent from a batch keep their centre.
- Total, eq. 6: L_inter + lambda * L_intra, lambda = 0.1, alpha = 0.2 (section 3.1).
  A public TensorFlow implementation multiplies the terms and uses other lambda/alpha;
  this follows the paper.

The centres are a buffer, not a parameter: the optimiser never sees them, and the
centre loss's gradient flows only into the features. They are updated only while the
loss module is in training mode (`loss.train()`, the default); `loss.eval()` freezes
them for validation.
"""

from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from HCCAnalysisLib.errors import HCCInputError

INTER_WEIGHTS = {"logits": 0.5, "local_logits": 0.25, "global_logits": 0.25}  # eq. 3


class CentreLoss(nn.Module):
    """Eq. 4 with the per-batch centre update of eq. 5; centres start at zero (lazily sized)."""

    def __init__(self, num_classes: int | None = None, feature_dim: int | None = None, alpha: float = 0.2) -> None:
        super().__init__()
        if not 0.0 < alpha < 1.0:
            raise HCCInputError(f"centre-loss alpha must lie in (0, 1) (eq. 5), got {alpha}")
        self.alpha = alpha
        centres = torch.zeros(num_classes, feature_dim) if num_classes and feature_dim else torch.empty(0)
        self.register_buffer("centres", centres)

    def _ensure_centres(self, features, num_classes):
        if self.centres.numel() == 0:
            self.centres = torch.zeros(num_classes, features.shape[1], device=features.device, dtype=features.dtype)
        elif self.centres.shape[1] != features.shape[1]:
            raise HCCInputError(f"features have {features.shape[1]} dimensions, the centres "
                                f"{self.centres.shape[1]}")
        if self.centres.device != features.device:
            self.centres = self.centres.to(features.device)

    def forward(self, features: torch.Tensor, target: torch.Tensor, num_classes: int | None = None) -> torch.Tensor:
        """1/2 sum_i ||f_i - c_{y_i}||^2 (centres before this batch's update), then update if training."""
        if features.ndim != 2 or target.ndim != 1 or len(features) != len(target):
            raise HCCInputError(f"centre loss needs B x D features and B targets, got {tuple(features.shape)} "
                                f"and {tuple(target.shape)}")
        self._ensure_centres(features, num_classes or int(target.max()) + 1)
        if int(target.min()) < 0 or int(target.max()) >= len(self.centres):
            raise HCCInputError(f"targets must lie in 0..{len(self.centres) - 1}, got "
                                f"{int(target.min())}..{int(target.max())}")
        loss = 0.5 * (features - self.centres[target]).pow(2).sum()
        if self.training:
            self.update_centres(features.detach(), target)
        return loss

    @torch.no_grad()
    def update_centres(self, features: torch.Tensor, target: torch.Tensor) -> None:
        """Eq. 5: c_j <- c_j - alpha * sum_{y_i=j}(c_j - f_i) / (1 + n_j), for every class j."""
        k = len(self.centres)
        onehot = F.one_hot(target, k).to(features.dtype)  # B x K
        counts = onehot.sum(dim=0)  # n_j
        feature_sums = onehot.t() @ features  # sum_{y_i=j} f_i
        delta = (counts[:, None] * self.centres - feature_sums) / (1.0 + counts[:, None])
        self.centres -= self.alpha * delta


def inter_loss(output: Mapping[str, torch.Tensor], target: torch.Tensor) -> torch.Tensor:
    """Eq. 3 when the local and global heads are present; the last cross-entropy alone otherwise."""
    if "local_logits" not in output or "global_logits" not in output:
        return F.cross_entropy(output["logits"], target)
    return sum(w * F.cross_entropy(output[key], target) for key, w in INTER_WEIGHTS.items())


class ResGLLoss(nn.Module):
    """Eq. 6: inter-loss + lambda * centre loss; `use_centre=False` is the "without intra-loss" ablation."""

    def __init__(self, lam: float = 0.1, alpha: float = 0.2, use_centre: bool = True) -> None:
        super().__init__()
        if lam < 0:
            raise HCCInputError(f"centre-loss weight lambda must be >= 0, got {lam}")
        self.lam, self.use_centre = lam, use_centre
        self.centre = CentreLoss(alpha=alpha) if use_centre else None
        self.last_parts = {}

    def forward(self, output: Mapping[str, torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        if not isinstance(output, dict) or "logits" not in output:
            raise HCCInputError("the ResGL loss needs the net's output dict with 'logits' (and 'features')")
        inter = inter_loss(output, target)
        total = inter
        self.last_parts = {"inter": float(inter.detach())}
        if self.use_centre:
            if "features" not in output:
                raise HCCInputError("the centre loss needs the net's 'features' output")
            intra = self.centre(output["features"], target, num_classes=output["logits"].shape[1])
            total = inter + self.lam * intra
            self.last_parts["intra"] = float(intra.detach())
        return total
