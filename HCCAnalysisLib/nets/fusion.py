"""Builders of the Zhen 2020 and Wang 2020 networks (image pathway + clinical fusion).

- `build_zhen`: Inception-ResNet-V2 on 6 or 3 MRI sequences at 299 x 299, optionally with
  the encoded clinical vector concatenated before the final FC (Models A-G).
- `build_wang`: ResNet-50 on NC/ART/PV ROIs ("image"), fusion models A-D, optionally with
  the joint-loss heads (`joint=True`).
- `build_wang_clinical`: a Wang clinical pathway with its own head, trained alone.

All accept a local pretrained-weights file for the image backbone; nothing is downloaded.
See fusion_zhen.py, fusion_wang.py and fusion_weights.py for the parts.
"""

from __future__ import annotations

from HCCAnalysisLib.nets.fusion_wang import VARIANTS as WANG_VARIANTS  # noqa: F401
from HCCAnalysisLib.nets.fusion_wang import _CLINICAL_KIND, ClinicalClassifier, WangNet
from HCCAnalysisLib.nets.fusion_zhen import ZhenNet


def build_zhen(in_channels: int = 6, num_classes: int = 7, clinical_dim: int = 0,
               pretrained_path: str | None = None) -> ZhenNet:
    """Zhen 2020 net: forward(image=B x C x 299 x 299[, clinical=B x clinical_dim]) -> logits."""
    return ZhenNet(in_channels, num_classes, clinical_dim, pretrained_path)


def build_wang(variant: str = "d", clinical_dim: int = 9, num_classes: int = 2, in_channels: int = 3,
               pretrained_path: str | None = None, joint: bool = False, image_hidden: int = 64,
               clinical_hidden: int = 64, conv_channels: int = 8) -> WangNet:
    """Wang 2020 net; variant "image", "a", "b", "c" or "d".

    forward(image=B x 3 x H x W, clinical=B x 9) returns logits, or with `joint=True` the dict
    {"logits", "image_logits", "clinical_logits"} for the joint loss.
    """
    return WangNet(variant, clinical_dim, num_classes, in_channels, pretrained_path, joint,
                   image_hidden, clinical_hidden, conv_channels)


def build_wang_clinical(variant: str = "d", clinical_dim: int = 9, num_classes: int = 2, clinical_hidden: int = 64,
                        conv_channels: int = 8) -> ClinicalClassifier:

    """The clinical pathway of fusion `variant` (a-d) with its head: forward(clinical) -> logits."""
    from HCCAnalysisLib.errors import HCCInputError

    if variant not in _CLINICAL_KIND:
        raise HCCInputError(f"variant '{variant}' has no clinical pathway", hint="a, b, c or d")
    return ClinicalClassifier(_CLINICAL_KIND[variant], clinical_dim, num_classes,
                              clinical_hidden, conv_channels)
