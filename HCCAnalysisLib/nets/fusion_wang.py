"""Wang et al. 2020: ResNet-50 image pathway on NC/ART/PV ROIs, fused with 9 clinical bits.

Variants (the paper's Fig. 4, read from its section III.B):
- "image": ResNet-50 (one conv, one pooling layer, 16 bottleneck blocks = 49 conv layers)
  + one FC layer; no clinical data (the "deep learning model").
- "a": flattened 2048 image features concatenated with the raw clinical vector -> FC.
- "b": as A with an FC layer on the image features first (to balance 2048 vs. 9 features).
- "c": as B with a convolution layer on the clinical vector before concatenation.
- "d": as B with a fully connected layer on the clinical vector before concatenation.
The paper gives no sizes for these layers; ours: image FC 64 units, clinical FC 64 units,
clinical convolution 8 filters of width 3 (padding 1), each followed by ReLU.

`joint=True` adds the paper's section III.D heads: a classifier on the image pathway and
one on the clinical pathway (softmax at loss time), and forward returns
{"logits", "image_logits", "clinical_logits"} for `losses.joint.JointLoss`.
The [0, 1] image is normalised to timm's ImageNet mean/std for resnet50 (0.485/0.456/0.406,
0.229/0.224/0.225) before the backbone (`fusion_inputs.ImageNetNormalise`), to match its weights.
"""

from __future__ import annotations

import torch
from torch import nn

from HCCAnalysisLib.errors import HCCInputError
from HCCAnalysisLib.nets.fusion_inputs import check_clinical, check_image, imagenet_normaliser
from HCCAnalysisLib.nets.fusion_weights import load_backbone_weights

ARCH = "resnet50 (timm or torchvision key names)"
VARIANTS = ("image", "a", "b", "c", "d")
_CLINICAL_KIND = {"a": "identity", "b": "identity", "c": "conv", "d": "fc"}


class ClinicalPathway(nn.Module):
    """Clinical vector -> features: identity (A, B), 1-D convolution (C) or FC (D)."""

    def __init__(self, kind: str, clinical_dim: int, hidden: int = 64, conv_channels: int = 8) -> None:
        super().__init__()
        if kind not in ("identity", "conv", "fc"):
            raise HCCInputError(f"unknown clinical pathway '{kind}'", hint="identity, conv, fc")
        self.kind, self.clinical_dim = kind, int(clinical_dim)
        if kind == "identity":
            self.layers, self.out_dim = nn.Identity(), self.clinical_dim
        elif kind == "conv":
            # The vector is read as a 1-channel sequence of length clinical_dim.
            self.layers = nn.Sequential(nn.Unflatten(1, (1, self.clinical_dim)),
                                        nn.Conv1d(1, conv_channels, 3, padding=1), nn.ReLU(),
                                        nn.Flatten())
            self.out_dim = conv_channels * self.clinical_dim
        else:
            self.layers = nn.Sequential(nn.Linear(self.clinical_dim, hidden), nn.ReLU())
            self.out_dim = hidden

    def forward(self, clinical: torch.Tensor) -> torch.Tensor:
        return self.layers(clinical)


class ClinicalClassifier(nn.Module):
    """A clinical pathway with its own classification head (the joint loss's clinical
    branch; trained alone it is "fusion D's clinical pathway alone")."""

    def __init__(self, kind: str, clinical_dim: int, num_classes: int = 2, hidden: int = 64,
                 conv_channels: int = 8) -> None:
        super().__init__()
        self.pathway = ClinicalPathway(kind, clinical_dim, hidden, conv_channels)
        self.head = nn.Linear(self.pathway.out_dim, int(num_classes))

    def forward(self, clinical: torch.Tensor) -> torch.Tensor:
        clinical = check_clinical(clinical, None, self.pathway.clinical_dim, "clinical pathway")
        return self.head(self.pathway(clinical))


class WangNet(nn.Module):
    """The deep-learning model ("image") and fusion models A-D of Wang et al. 2020."""

    def __init__(self, variant: str = "d", clinical_dim: int = 9, num_classes: int = 2, in_channels: int = 3,
                 pretrained_path: str | None = None, joint: bool = False, image_hidden: int = 64,
                 clinical_hidden: int = 64, conv_channels: int = 8) -> None:
        super().__init__()
        from HCCAnalysisLib.runtime.extras import require

        # imported here so that `import HCCAnalysisLib.nets` stays cheap; missing: names the pip extra
        timm = require("timm", "fusion", "the Wang 2020 net (timm's ResNet-50)")

        variant = str(variant).lower()
        if variant not in VARIANTS:
            raise HCCInputError(f"unknown Wang 2020 variant '{variant}'",
                                hint=f"one of {', '.join(VARIANTS)}")
        if variant == "image" and joint:
            raise HCCInputError("the joint loss needs a clinical pathway; variant 'image' has none")
        if variant != "image" and int(clinical_dim) < 1:
            raise HCCInputError(f"fusion variant '{variant}' needs clinical_dim >= 1")
        self.variant, self.joint = variant, bool(joint)
        self.in_channels = int(in_channels)
        self.clinical_dim = 0 if variant == "image" else int(clinical_dim)
        self.backbone = timm.create_model("resnet50", pretrained=False,
                                          in_chans=self.in_channels, num_classes=0)
        # [0, 1] inputs -> the ImageNet mean/std of timm's weights for this model (fixed, not trained).
        self.normalise = imagenet_normaliser(self.backbone, self.in_channels)
        self.weights_report = None
        if pretrained_path:
            cfg = self.backbone.pretrained_cfg
            self.weights_report = load_backbone_weights(
                self.backbone, pretrained_path, cfg["first_conv"], cfg["classifier"], ARCH)
        image_dim = self.backbone.num_features  # 2048
        if variant in ("b", "c", "d"):
            self.image_fc = nn.Sequential(nn.Linear(image_dim, image_hidden), nn.ReLU())
            image_dim = image_hidden
        else:
            self.image_fc = nn.Identity()
        self.clinical = None
        clinical_out = 0
        if variant != "image":
            self.clinical = ClinicalClassifier(_CLINICAL_KIND[variant], self.clinical_dim,
                                               num_classes, clinical_hidden, conv_channels)
            clinical_out = self.clinical.pathway.out_dim
        self.image_head = nn.Linear(image_dim, int(num_classes)) if self.joint else None
        self.feature_dim = image_dim + clinical_out
        self.classifier = nn.Linear(self.feature_dim, int(num_classes))

    def _pathways(self, image, clinical):
        # Both inputs are checked before the (costly) backbone runs.
        check_image(image, self.in_channels, f"wang2020 net ({self.variant})")
        if self.clinical is not None:
            clinical = check_clinical(clinical, image.shape[0], self.clinical_dim,
                                      f"wang2020 net ({self.variant})")
        image_features = self.image_fc(self.backbone(self.normalise(image)))
        if self.clinical is None:
            return image_features, None
        return image_features, self.clinical.pathway(clinical.to(image_features.dtype))

    def embed(self, image: torch.Tensor, clinical: torch.Tensor | None = None) -> torch.Tensor:
        """The fused vector before the last FC layer (image features alone for 'image')."""
        image_features, clinical_features = self._pathways(image, clinical)
        if clinical_features is None:
            return image_features
        return torch.cat([image_features, clinical_features], dim=1)

    def forward(self, image: torch.Tensor,
                clinical: torch.Tensor | None = None) -> torch.Tensor | dict[str, torch.Tensor]:

        image_features, clinical_features = self._pathways(image, clinical)
        if clinical_features is None:
            return self.classifier(image_features)
        logits = self.classifier(torch.cat([image_features, clinical_features], dim=1))
        if not self.joint:
            return logits
        return {"logits": logits, "image_logits": self.image_head(image_features),
                "clinical_logits": self.clinical.head(clinical_features)}
