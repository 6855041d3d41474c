"""Training precision: fp32, or mixed precision (bf16 / fp16 autocast) on CUDA.

`auto` picks bf16 on a CUDA device that supports it (no loss scaling needed, same range as
fp32), fp16 with a gradient scaler on older GPUs, and fp32 on the CPU, where the results
stay exactly those of a plain float32 run.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from HCCAnalysisLib.errors import HCCInputError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_precision(name: str | None, device: torch.device) -> str:
    """`auto`/None -> the machine's choice; refuses a precision the device cannot train in."""
    name = (name or "auto").lower()
    if name not in PRECISIONS:
        raise HCCInputError(f"unknown precision '{name}'", hint=f"one of {', '.join(PRECISIONS)}")
    if name == "auto":
        if device.type != "cuda":
            return "fp32"
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if name == "fp16" and device.type != "cuda":
        raise HCCInputError("fp16 training needs a CUDA device", hint="use --precision fp32 or bf16 on the CPU")
    return name


def autocast(precision: str, device: torch.device) -> Any:
    """The forward pass's context: autocast for bf16 / fp16, nothing for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=_DTYPES[precision])


def make_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler | None:
    """fp16's gradients underflow without loss scaling; bf16 and fp32 need none."""
    return torch.amp.GradScaler(device.type) if precision == "fp16" else None
