"""Samples -> batched tensors: shared by training and inference (so inference never imports the trainer)."""

from __future__ import annotations

import numpy as np
import torch


def stack_inputs(samples: list, device: "torch.device | str | None" = None) -> dict[str, torch.Tensor]:
    """Samples -> dict of batched tensors (one per input name)."""
    names = samples[0].inputs.keys()
    out = {k: torch.from_numpy(np.stack([s.inputs[k] for s in samples])) for k in names}
    return {k: v.to(device) for k, v in out.items()} if device is not None else out
