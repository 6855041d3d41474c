"""Joint loss of Wang et al. 2020 (eq. 4): 1/4 image + 1/4 clinical + 1/2 fused cross-entropy.

The three heads come from a fusion net built with `joint=True`; each is a cross-entropy
on its logits (softmax inside). The weighted sum is MONAI's `DeepSupervisionLoss` over
the list [fused, image, clinical] with explicit weights, so the arithmetic is MONAI's.
"""

from __future__ import annotations

from typing import Mapping

import torch
from monai.losses import DeepSupervisionLoss

from HCCAnalysisLib.errors import HCCInputError

HEADS = ("logits", "image_logits", "clinical_logits")


class JointLoss:
    """loss(output_dict, target): w_fused*CE(logits) + w_image*CE(image) + w_clin*CE(clinical)."""

    def __init__(self, image_weight: float = 0.25, clinical_weight: float = 0.25, fused_weight: float = 0.5) -> None:
        weights = [float(fused_weight), float(image_weight), float(clinical_weight)]
        if any(w < 0 or w != w for w in weights) or sum(weights) <= 0:
            raise HCCInputError(f"joint loss weights must be >= 0 and not all 0, got "
                                f"image={image_weight}, clinical={clinical_weight}, "
                                f"fused={fused_weight}")
        self.image_weight, self.clinical_weight, self.fused_weight = weights[1], weights[2], weights[0]
        self._loss = DeepSupervisionLoss(torch.nn.CrossEntropyLoss(), weights=weights)

    def __call__(self, output: Mapping[str, torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        if not isinstance(output, dict) or any(k not in output for k in HEADS):
            have = sorted(output) if isinstance(output, dict) else type(output).__name__
            raise HCCInputError(f"the joint loss needs the net outputs {', '.join(HEADS)}; "
                                f"got {have}", hint="build the fusion net with joint=True")
        return self._loss([output[k] for k in HEADS], target)
