"""Losses by name: `build_loss(name, **kwargs)` returns `loss(output, target)`.

`output` is what the net's forward returned: a logits tensor, or a dict with
"logits" and auxiliary heads for the multi-head losses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Mapping

import importlib

import torch.nn.functional as F

from HCCAnalysisLib.errors import HCCInputError

if TYPE_CHECKING:
    import torch


def _logits(output):
    return output["logits"] if isinstance(output, dict) else output


class CrossEntropy:
    """Plain cross-entropy on the main logits (Jia 2019, Zhen 2020)."""

    def __init__(self, class_weights: torch.Tensor | None = None) -> None:
        self.class_weights = class_weights

    def __call__(self, output: torch.Tensor | Mapping[str, torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        weight = None
        if self.class_weights is not None:
            weight = self.class_weights.to(_logits(output).device)
        return F.cross_entropy(_logits(output), target, weight=weight)


# loss name -> (module in this package or None for this file, class or function)
LOSS_BUILDERS = {
    "cross_entropy": (None, "CrossEntropy"),
    "joint": ("joint", "JointLoss"),
    "resgl_inter_centre": ("centre", "ResGLLoss"),
    "squared_error": ("squared_error", "SquaredErrorLoss"),
}


def build_loss(name: str, **kwargs: Any) -> Callable[[Any, torch.Tensor], torch.Tensor]:
    try:
        module_name, attr = LOSS_BUILDERS[name]
    except KeyError:
        raise HCCInputError(f"unknown loss '{name}'", hint=f"known: {', '.join(sorted(LOSS_BUILDERS))}") from None
    if module_name is None:
        return globals()[attr](**kwargs)
    module = importlib.import_module(f"{__name__}.{module_name}")
    return getattr(module, attr)(**kwargs)
