"""Checks of the tensors handed to the Zhen / Wang nets, with messages a user can act on."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from HCCAnalysisLib.errors import HCCInputError


def check_image(image: Any, in_channels: int, net: str) -> None:
    """`image` must be a finite B x C x H x W float tensor with C == in_channels."""
    if not isinstance(image, torch.Tensor) or image.ndim != 4:
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise HCCInputError(f"{net}: 'image' must be a B x C x H x W tensor, got {shape}")
    if image.shape[1] != in_channels:
        raise HCCInputError(f"{net}: 'image' has {image.shape[1]} channels, the net was built "
                            f"for {in_channels}", hint="check the task's phase list")


def check_clinical(clinical: Any, batch: int | None, clinical_dim: int, net: str) -> torch.Tensor:
    """`clinical` must be a finite B x clinical_dim tensor matching the image batch."""
    if clinical is None:
        raise HCCInputError(f"{net}: this net needs 'clinical' (B x {clinical_dim})",
                            hint="give the encoded clinical vector of the task's schema")
    if not isinstance(clinical, torch.Tensor) or clinical.ndim != 2 or \
            clinical.shape[1] != clinical_dim or (batch is not None and clinical.shape[0] != batch):
        shape = tuple(clinical.shape) if isinstance(clinical, torch.Tensor) else type(clinical).__name__
        raise HCCInputError(f"{net}: 'clinical' must be {batch or 'B'} x {clinical_dim}, got {shape}")
    if not torch.isfinite(clinical).all():
        raise HCCInputError(f"{net}: 'clinical' holds NaN or infinite values",
                            hint="encode the record with its clinical schema first")
    return clinical.float()


class ImageNetNormalise(torch.nn.Module):
    """Fixed, non-trainable (x - mean) / std at the start of an ImageNet-pretrained backbone.

    Samplers give images in [0, 1]; timm's ImageNet weights expect the model's own mean/std
    (`pretrained_cfg`: resnet50 0.485/0.456/0.406 and 0.229/0.224/0.225, inception_resnet_v2
    0.5/0.5/0.5). Done inside the net, samplers, model cards and saliency (gradients with
    respect to the [0, 1] input) stay unchanged. Channel c of a C-channel net takes RGB
    channel c mod 3, as timm's `adapt_input_conv` repeats the stem's kernels; one channel takes
    the mean of the three (its stem kernel is their sum). The buffers are not persistent, so
    state dicts and saved model packages are unchanged.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], channels: int) -> None:
        super().__init__()
        mean, std = torch.tensor(mean, dtype=torch.float32), torch.tensor(std, dtype=torch.float32)
        if channels == 1:
            mean, std = mean.mean().reshape(1), std.mean().reshape(1)
        else:
            index = torch.arange(channels) % len(mean)
            mean, std = mean[index], std[index]
        self.register_buffer("mean", mean.reshape(1, channels, 1, 1), persistent=False)
        self.register_buffer("std", std.reshape(1, channels, 1, 1), persistent=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return (image - self.mean.to(image.dtype)) / self.std.to(image.dtype)

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


def imagenet_normaliser(backbone: torch.nn.Module, channels: int) -> ImageNetNormalise:

    """The normalisation matching a timm backbone's pretrained_cfg (its ImageNet weights)."""
    cfg = backbone.pretrained_cfg
    return ImageNetNormalise(cfg["mean"], cfg["std"], channels)
