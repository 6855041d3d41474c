"""Checks of the tensors handed to the Zhen / Wang nets, with messages a user can act on."""

import torch

from HCCAnalysisLib.errors import HCCInputError


def check_image(image, in_channels, net):
    """`image` must be a finite B x C x H x W float tensor with C == in_channels."""
    if not isinstance(image, torch.Tensor) or image.ndim != 4:
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise HCCInputError(f"{net}: 'image' must be a B x C x H x W tensor, got {shape}")
    if image.shape[1] != in_channels:
        raise HCCInputError(f"{net}: 'image' has {image.shape[1]} channels, the net was built "
                            f"for {in_channels}", hint="check the task's phase list")


def check_clinical(clinical, batch, clinical_dim, net):
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
