"""Samples -> batched tensors: shared by training and inference (so inference never imports the trainer)."""

from __future__ import annotations

import torch

from HCCAnalysisLib.engine.shared_inputs import stack_sample_inputs


def stack_inputs(samples: list, device: "torch.device | str | None" = None) -> dict[str, torch.Tensor]:
    """Samples -> dict of batched tensors (one per input name)."""
    # shared inputs (Liang's global ROI) come as their distinct entries + `<name>_index`
    out = stack_sample_inputs(samples)
    return {k: v.to(device) for k, v in out.items()} if device is not None else out
