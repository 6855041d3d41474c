"""The microscopy CNN of Meng et al. (SPIE Medical Imaging 2019, section 2.4, Fig. 1).

Five hidden layers, each a 3x3 convolution + ReLU (eq. 3) + 2x2 max pooling, with
16, 16, 16, 8, 8 feature maps; then a fully connected layer of 2048 nodes and the
2-class output (probabilities through the softmax in the loss).

On the 2048 nodes: for a 512 x 512 tile the fifth pooling layer holds exactly
8 x 16 x 16 = 2048 neurons, so Fig. 1's "pooled maps ... fully connected with 2048
neural nodes" can be read as that flattened layer itself. We follow the issue and
build a hidden FC layer of `fc_hidden=2048` nodes (+ ReLU); `fc_hidden=0` gives the
other reading (flattened P5 straight to the output). Convolutions are padded (same
size), which the paper does not state. `tile_size` other than 512 keeps the layer
structure and only changes the flattened size (e.g. 150 for 150 x 150 H&E tiles).
"""

from __future__ import annotations

import torch
from torch import nn

from HCCAnalysisLib.errors import HCCInputError

CONV_MAPS = (16, 16, 16, 8, 8)
MIN_TILE = 2 ** len(CONV_MAPS)


class MengCNN(nn.Module):
    """forward(image=B x C x tile x tile) -> B x num_classes logits; embed -> last hidden layer."""

    def __init__(self, num_classes: int = 2, tile_size: int = 512, in_channels: int = 3, fc_hidden: int = 2048) -> None:
        super().__init__()
        if tile_size < MIN_TILE:
            raise HCCInputError(f"tile size {tile_size} is too small for five 2x2 poolings",
                                hint=f"use at least {MIN_TILE} pixels")
        if num_classes < 2 or in_channels < 1:
            raise HCCInputError(f"need >= 2 classes and >= 1 input channel, got {num_classes}, {in_channels}")
        layers, channels, size = [], in_channels, tile_size
        for maps in CONV_MAPS:
            layers += [nn.Conv2d(channels, maps, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            channels, size = maps, size // 2
        self.features = nn.Sequential(*layers)
        self.flat_features = channels * size * size
        if fc_hidden:
            self.hidden = nn.Sequential(nn.Linear(self.flat_features, fc_hidden), nn.ReLU(inplace=True))
            self.embedding_dim = fc_hidden
        else:
            self.hidden = nn.Identity()
            self.embedding_dim = self.flat_features
        self.classifier = nn.Linear(self.embedding_dim, num_classes)
        self.tile_size, self.in_channels = tile_size, in_channels

    def _check(self, image):
        expected = (self.in_channels, self.tile_size, self.tile_size)
        if image is None or image.ndim != 4 or tuple(image.shape[1:]) != expected:
            got = None if image is None else tuple(image.shape)
            raise HCCInputError(f"input 'image' must be B x {expected[0]} x {expected[1]} x {expected[2]}, got {got}",
                                hint="cut the image into tiles of the model's tile size (tiles.cut_tiles)")

    def embed(self, image: torch.Tensor | None = None) -> torch.Tensor:
        """The last hidden layer's representation (for t-SNE, as in the paper's Fig. 2)."""
        self._check(image)
        return self.hidden(torch.flatten(self.features(image), 1))

    def forward(self, image: torch.Tensor | None = None) -> torch.Tensor:
        return self.classifier(self.embed(image))


def build_meng_cnn(num_classes: int = 2, tile_size: int = 512, in_channels: int = 3, fc_hidden: int = 2048
                   ) -> MengCNN:
    """Meng 2019 CNN for `tile_size` square tiles with `in_channels` channels (3 = RGB)."""
    return MengCNN(num_classes=num_classes, tile_size=tile_size, in_channels=in_channels, fc_hidden=fc_hidden)
