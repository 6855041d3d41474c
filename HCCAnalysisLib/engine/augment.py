"""Training augmentation: Jia 2019's fixed x6 views of every sample (`augment_samples`), and random
rotations and flips of training batches (Zhen 2020: -40..40 degrees and flips), drawn per epoch from the run's seed.

The parameters for a whole global batch are drawn on every process from the same generator,
and each process applies those of its own share, so a torchrun run augments exactly as a
one-process run does.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import math

import numpy as np
import torch
import torch.nn.functional as F

from HCCAnalysisLib.data.preprocess import augment_x6
from HCCAnalysisLib.data.samples import Sample


def draw(generator: torch.Generator, n: int, rotate_deg: float = 0.0, flip_prob: float = 0.0
         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Angles (radians) and horizontal / vertical flip flags for n images."""
    angles = (torch.rand(n, generator=generator) * 2 - 1) * math.radians(rotate_deg)
    flip_h = torch.rand(n, generator=generator) < flip_prob
    flip_v = torch.rand(n, generator=generator) < flip_prob
    return angles, flip_h, flip_v


def rotate_flip(images: torch.Tensor, angles: torch.Tensor, flip_h: torch.Tensor, flip_v: torch.Tensor
                ) -> torch.Tensor:
    """Rotate each B x C x H x W image about its centre (bilinear, zero outside) and flip it."""
    images = images.clone()
    images[flip_h] = images[flip_h].flip(-1)
    images[flip_v] = images[flip_v].flip(-2)
    if not torch.any(angles != 0):
        return images
    cos, sin = torch.cos(angles), torch.sin(angles)
    zero = torch.zeros_like(cos)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(theta.to(images.dtype).to(images.device), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class BatchAugmenter:
    """Per-epoch random rotation/flip of the `image` input, from settings such as
    {"rotate_deg": 40, "flip_prob": 0.5} (a task's `training["augment"]`)."""

    def __init__(self, settings: Mapping[str, Any], seed: int) -> None:
        self.rotate_deg = float(settings.get("rotate_deg", 0.0))
        self.flip_prob = float(settings.get("flip_prob", 0.0))
        self.generator = torch.Generator().manual_seed(seed + 7919)  # apart from the batch order's stream

    def draw_batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return draw(self.generator, n, self.rotate_deg, self.flip_prob)

    @staticmethod
    def apply(inputs: Mapping[str, torch.Tensor], params: Sequence[torch.Tensor], positions: torch.Tensor
              ) -> dict[str, torch.Tensor]:
        """Augment `inputs["image"]` with the parameters at `positions` of the global batch."""
        angles, flip_h, flip_v = (p[positions] for p in params)
        out = dict(inputs)
        out["image"] = rotate_flip(inputs["image"], angles, flip_h, flip_v)
        return out


def augment_samples(samples: Sequence[Sample]) -> list[Sample]:
    """Jia 2019 x6 augmentation of every 2D input of every sample (training only).

    The views are flipped / rotated, so they no longer map pixel for pixel onto the crop box:
    they carry no placement.
    """
    out = []
    for sample in samples:
        views = {k: augment_x6(v) for k, v in sample.inputs.items()}
        for i in range(6):
            inputs = {k: np.ascontiguousarray(v[i]) for k, v in views.items()}
            out.append(Sample(inputs, sample.target, sample.case_id, sample.patient_id, sample.lesion_id,
                              sample.lesion_name, sample.kind, sample.extras))
    return out
