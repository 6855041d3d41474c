"""Zhen et al. 2020: Inception-ResNet-V2 on 6 or 3 MRI sequences, optionally with clinical data.

The image pathway is timm's `inception_resnet_v2` (299 x 299 input, any number of input
channels, global-average-pooled 1536 features). With clinical data (Models F and G), the
encoded clinical vector is concatenated with the image features right before the final
fully connected layer, as the paper describes ("these features together with encoded
clinical data were input to the fully connected layer").
The [0, 1] image is normalised to timm's ImageNet mean/std for this model (0.5 / 0.5) inside
`embed`, before the backbone (`fusion_inputs.ImageNetNormalise`), to match its ImageNet weights.
"""

from __future__ import annotations

import torch
from torch import nn

from HCCAnalysisLib.nets.fusion_inputs import check_clinical, check_image, imagenet_normaliser
from HCCAnalysisLib.nets.fusion_weights import load_backbone_weights

ARCH = "timm inception_resnet_v2"


class ZhenNet(nn.Module):
    """Inception-ResNet-V2 + optional clinical concatenation + one FC classifier."""

    def __init__(self, in_channels: int = 6, num_classes: int = 7, clinical_dim: int = 0,
                 pretrained_path: str | None = None) -> None:
        super().__init__()
        from HCCAnalysisLib.runtime.extras import require

        # imported here so that `import HCCAnalysisLib.nets` stays cheap; missing: names the pip extra
        timm = require("timm", "fusion", "the Zhen 2020 net (timm's Inception-ResNet-V2)")

        self.in_channels = int(in_channels)
        self.clinical_dim = int(clinical_dim)
        # pretrained=False always: weights come only from a local file.
        self.backbone = timm.create_model("inception_resnet_v2", pretrained=False,
                                          in_chans=self.in_channels, num_classes=0)
        # [0, 1] inputs -> the ImageNet mean/std of timm's weights for this model (fixed, not trained).
        self.normalise = imagenet_normaliser(self.backbone, self.in_channels)
        self.weights_report = None
        if pretrained_path:
            cfg = self.backbone.pretrained_cfg
            self.weights_report = load_backbone_weights(
                self.backbone, pretrained_path, cfg["first_conv"], cfg["classifier"], ARCH)
        self.feature_dim = self.backbone.num_features + self.clinical_dim
        self.classifier = nn.Linear(self.feature_dim, int(num_classes))

    def embed(self, image: torch.Tensor, clinical: torch.Tensor | None = None) -> torch.Tensor:
        """The last hidden representation: image features (+ clinical vector), B x D."""
        # Both inputs are checked before the (costly) backbone runs.
        check_image(image, self.in_channels, "zhen2020 net")
        if self.clinical_dim:
            clinical = check_clinical(clinical, image.shape[0], self.clinical_dim, "zhen2020 net")
        features = self.backbone(self.normalise(image))
        if self.clinical_dim:
            features = torch.cat([features, clinical.to(features.dtype)], dim=1)
        return features

    def forward(self, image: torch.Tensor, clinical: torch.Tensor | None = None) -> torch.Tensor:

        return self.classifier(self.embed(image, clinical))
