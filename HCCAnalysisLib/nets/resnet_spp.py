"""ResNet20 with spatial pyramid pooling (Jia et al. 2019, KSII TIIS).

The CIFAR-style ResNet20 of He et al. (3 stages of 3 basic blocks, 16/32/64 channels,
parameter-free "option A" shortcuts) whose global average pooling is replaced by
spatial pyramid *max* pooling (levels 1 and 2 -> 64 * (1 + 4) = 320 features), then a
linear embedding (2/16/32/64 features) and the classifier. `pyramid=None` gives the
plain ResNet20 with global average pooling, as in the authors' `resnet.py`.

Layer names follow the authors' released state dicts (minus the `embedding_net.`
prefix; their `embedding_net.linear` is our `embedding`, their `linear` our
`classifier`), see `jia2019_weights.py`.

Inference speed: in eval mode without autograd (no_grad or inference_mode) the forward
runs a folded path: each convolution carries its batch norm (weights folded once and
cached until a parameter or buffer changes), activations are channels_last, ReLU and
the residual add work in place, and the option-A shortcut adds into the middle channels
instead of building a zero-padded copy. Training and anything that needs gradients
(saliency maps) use the plain module path; both give the same numbers (tested).
Measurements: benchmarks/results_resnet_spp.md.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from HCCAnalysisLib.errors import HCCInputError

STAGE_CHANNELS = (16, 32, 64)
BLOCKS_PER_STAGE = 3


def shortcut_option_a(x: torch.Tensor, out_channels: int) -> torch.Tensor:
    """Parameter-free shortcut: subsample by 2 and zero-pad the new channels on both sides.

    The authors pad planes//4 channels on each side (16 -> 32 and 32 -> 64), which is
    (out - in) / 2 on each side; channel order therefore matters for their weights.
    """
    pad = (out_channels - x.shape[1]) // 2
    return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, pad, pad))


class BasicBlock(nn.Module):
    """Two 3x3 conv + BN layers with an identity or option-A shortcut."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.stride = stride
        self.downsample = stride != 1 or in_planes != planes

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        return shortcut_option_a(x, self.conv2.out_channels) if self.downsample else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


def spatial_pyramid_max_pool(x: torch.Tensor, levels: Sequence[int]) -> torch.Tensor:
    """Max-pool `x` (B, C, H, W) into n x n bins for each level n; concatenate the levels.

    Order matches the authors' SPPLayer: level by level in the given order, each
    flattened channel-major (c, row, col). Adaptive pooling equals their fixed-window
    pooling whenever H and W are divisible by every level (8x8 maps from 32x32 inputs);
    unlike theirs it also gives n x n bins for any other map size.
    """
    parts = []
    for level in levels:
        if level == 1:
            parts.append(torch.amax(x, dim=(2, 3)))  # global max: no pooling window set-up
        else:
            parts.append(F.adaptive_max_pool2d(x, level).flatten(1))
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


def check_pyramid(pyramid: Sequence[int] | None) -> tuple[int, ...] | None:
    """Validate pyramid levels; return a tuple of ints or None (global average pooling)."""
    if pyramid is None:
        return None
    levels = tuple(pyramid) if isinstance(pyramid, (tuple, list)) else None
    if not levels or any(not isinstance(level, int) or isinstance(level, bool) or level < 1 for level in levels):
        raise HCCInputError(f"pyramid levels must be a non-empty sequence of positive integers, got {pyramid!r}",
                            hint="e.g. (1, 2), or None for global average pooling")
    return levels


def pooled_features(pyramid: Sequence[int] | None, channels: int = STAGE_CHANNELS[-1]) -> int:
    """Length of the pooled feature vector: C for GAP, C * sum(n^2) for a pyramid."""
    return channels if pyramid is None else channels * sum(level * level for level in pyramid)


class ResNet20SPP(nn.Module):
    """ResNet20 backbone -> SPP (or GAP) -> linear embedding -> linear classifier."""

    def __init__(self, in_channels: int = 3, num_classes: int = 2, embedding_dim: int = 32,
                 pyramid: Sequence[int] | None = (1, 2), classifier_bias: bool = True) -> None:
        super().__init__()
        sizes = {"in_channels": in_channels, "num_classes": num_classes, "embedding_dim": embedding_dim}
        for name, value in sizes.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise HCCInputError(f"ResNet20-SPP: {name} must be a positive integer, got {value!r}")
        self.in_channels = in_channels
        self.pyramid = check_pyramid(pyramid)
        self.conv1 = nn.Conv2d(in_channels, STAGE_CHANNELS[0], 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(STAGE_CHANNELS[0])
        in_planes = STAGE_CHANNELS[0]
        for index, planes in enumerate(STAGE_CHANNELS):
            stride = 1 if index == 0 else 2
            blocks = []
            for block_index in range(BLOCKS_PER_STAGE):
                blocks.append(BasicBlock(in_planes, planes, stride if block_index == 0 else 1))
                in_planes = planes
            setattr(self, f"layer{index + 1}", nn.Sequential(*blocks))
        self.embedding = nn.Linear(pooled_features(self.pyramid), embedding_dim)
        self.classifier = nn.Linear(embedding_dim, num_classes, bias=classifier_bias)
        self._reset_parameters()
        self._folded = None  # (key, list of folded conv weights) for the eval fast path
        self._folded_tensors = None  # (conv/bn pairs, the tensors the key watches)

    def _reset_parameters(self):
        # He-normal for conv and linear weights, as the authors' _weights_init does
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight)

    def blocks(self) -> list[BasicBlock]:
        """The 9 basic blocks in order."""
        return [block for layer in (self.layer1, self.layer2, self.layer3) for block in layer]

    # ---- standard path (training, gradients, saliency) ----
    def _backbone(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        return out

    def _pool(self, feature_map):
        if self.pyramid is None:
            return feature_map.mean(dim=(2, 3))  # global average pooling (authors' resnet.py)
        return spatial_pyramid_max_pool(feature_map, self.pyramid)

    # ---- folded eval path ----
    def _conv_bn_pairs(self):
        pairs = [(self.conv1, self.bn1)]
        for block in self.blocks():
            pairs += [(block.conv1, block.bn1), (block.conv2, block.bn2)]
        return pairs

    def _folded_weights(self):
        """Conv weights with batch norm folded in, recomputed only when a tensor changed.

        Returns one (channels_last weight, bias) pair per conv. The key holds each
        watched tensor's in-place version counter and storage pointer, so an optimiser
        step or an in-place edit invalidates the cache; the list of watched tensors is
        itself rebuilt after train()/eval(), .to() and load_state_dict.
        """
        if self._folded_tensors is None:
            pairs = self._conv_bn_pairs()
            self._folded_tensors = (pairs, [t for conv, bn in pairs for t in (
                conv.weight, bn.weight, bn.bias, bn.running_mean, bn.running_var)])
        pairs, tensors = self._folded_tensors
        key = [t._version for t in tensors] + [t.data_ptr() for t in tensors]
        if self._folded is None or self._folded[0] != key:
            # normal tensors even when first called under inference_mode
            with torch.inference_mode(False), torch.no_grad():
                folded = []
                for conv, bn in pairs:
                    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
                    weight = conv.weight * scale.reshape(-1, 1, 1, 1)
                    folded.append((weight.contiguous(memory_format=torch.channels_last),
                                   bn.bias - bn.running_mean * scale))
            self._folded = (key, folded)
        return self._folded[1]

    def _backbone_folded(self, x):
        """Eval backbone on folded weights, run channels_last (measured faster for every
        batch size, see benchmarks/results_resnet_spp.md)."""
        x = x.contiguous(memory_format=torch.channels_last)
        folded = iter(self._folded_weights())

        def conv(inputs: torch.Tensor, stride: int) -> torch.Tensor:
            weight, bias = next(folded)
            return F.conv2d(inputs, weight, bias, stride, 1)

        out = F.relu_(conv(x, 1))
        for block in self.blocks():
            hidden = conv(F.relu_(conv(out, block.stride)), 1)
            if block.downsample:
                # option A without materialising the zero padding: add the subsampled
                # input into the middle channels only
                start = (hidden.shape[1] - out.shape[1]) // 2
                hidden[:, start:start + out.shape[1]] += out[:, :, ::2, ::2]
            else:
                hidden += out
            out = F.relu_(hidden)
        return out

    def _uses_folded_path(self):
        return not self.training and not torch.is_grad_enabled()

    def _check_image(self, image):
        if not isinstance(image, torch.Tensor) or image.dim() != 4 or image.shape[1] != self.in_channels:
            shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
            raise HCCInputError(
                f"ResNet20-SPP expects an image tensor of shape (B, {self.in_channels}, H, W), got {shape}",
                hint="inputs are 32x32 patches with one channel per fused sequence",
            )

    def features(self, image: torch.Tensor) -> torch.Tensor:
        """Pooled feature vector (B x 320 for levels (1, 2), B x 64 for GAP)."""
        self._check_image(image)
        feature_map = self._backbone_folded(image) if self._uses_folded_path() else self._backbone(image)
        return self._pool(feature_map)

    def embed(self, image: torch.Tensor) -> torch.Tensor:
        """The embedding (last hidden features, B x embedding_dim), as the authors' get_embedding."""
        return self.embedding(self.features(image))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Class logits (B x num_classes); the authors' model returns their log_softmax."""
        return self.classifier(self.embed(image))

    def _drop_folded_cache(self):
        self._folded = None
        self._folded_tensors = None

    def train(self, mode: bool = True) -> ResNet20SPP:
        self._drop_folded_cache()
        return super().train(mode)

    def _apply(self, fn, *args, **kwargs):
        self._drop_folded_cache()  # .to(), .float(), ... may create new parameter objects
        return super()._apply(fn, *args, **kwargs)

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False) -> Any:
        self._drop_folded_cache()  # assign=True puts new parameter objects in place
        return super().load_state_dict(state_dict, strict=strict, assign=assign)


def build_resnet20(in_channels: int = 3, num_classes: int = 2, embedding_dim: int = 32,
                   pyramid: Sequence[int] | None = (1, 2), classifier_bias: bool = True) -> ResNet20SPP:
    """Builder used by the `resnet20_spp` registry entry (`nets.build_net`)."""
    return ResNet20SPP(in_channels=in_channels, num_classes=num_classes, embedding_dim=embedding_dim,
                       pyramid=pyramid, classifier_bias=classifier_bias)
