"""Compute-device selection: "auto", "cpu" or "cuda" (optionally "cuda:N").

The panel, the console and `hcc` all pass the user's choice through
`select_device`, so the same words mean the same thing everywhere and the
user sees, in plain language, what was found on the machine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dataclasses import dataclass

from HCCAnalysisLib.errors import HCCInputError

if TYPE_CHECKING:
    import torch

#: The choices offered to users (the panel's combo box lists these in order).
DEVICE_CHOICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class DeviceChoice:
    """The device that will run the model, and why."""

    requested: str
    device: str  # a string torch.device() accepts: "cpu", "cuda:0", ...
    description: str  # one human-readable line, e.g. "CUDA GPU 0: NVIDIA H100 (79 GiB)"


def _cuda_gpus():
    """(index, name, memory GiB) for every visible CUDA GPU; empty when there is none."""
    import torch  # imported here: torch is heavy and may be installed on first use in Slicer

    if not torch.cuda.is_available():
        return []
    gpus = []
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        gpus.append((index, props.name, props.total_memory / 2**30))
    return gpus


def describe_devices() -> str:
    """One line saying which compute devices torch can use here (for the panel and logs)."""
    import torch

    gpus = _cuda_gpus()
    if gpus:
        names = ", ".join(f"GPU {i}: {name} ({mem:.0f} GiB)" for i, name, mem in gpus)
        return f"CUDA available: {names} (torch {torch.__version__})"
    build = "CPU-only build" if torch.version.cuda is None else f"CUDA {torch.version.cuda} build"
    return f"no CUDA GPU found; running on CPU (torch {torch.__version__}, {build})"


def select_device(requested: str | None = "auto") -> DeviceChoice:
    """Resolve "auto" / "cpu" / "cuda" / "cuda:N" to a concrete device.

    "auto" takes the first CUDA GPU when there is one, else the CPU. Asking for
    CUDA where none is usable raises HCCInputError instead of silently running
    on the CPU, because a user who asked for a GPU would be misled by the timing.
    """
    text = str(requested or "auto").strip().lower()
    if text not in DEVICE_CHOICES and not text.startswith("cuda:"):
        raise HCCInputError(
            f"unknown device {requested!r}", source="device", hint="use auto, cpu, cuda or cuda:N"
        )
    if text == "cpu":
        return DeviceChoice(text, "cpu", "CPU (requested)")
    gpus = _cuda_gpus()
    if text == "auto":
        if gpus:
            index, name, mem = gpus[0]
            return DeviceChoice(text, f"cuda:{index}", f"CUDA GPU {index}: {name} ({mem:.0f} GiB)")
        return DeviceChoice(text, "cpu", describe_devices())
    index = 0 if text == "cuda" else _parse_index(text)
    if not gpus:
        raise HCCInputError(
            "CUDA was requested but no CUDA GPU is usable", source="device",
            hint=f"{describe_devices()}; choose auto or cpu",
        )
    found = {i: (name, mem) for i, name, mem in gpus}
    if index not in found:
        raise HCCInputError(
            f"CUDA GPU {index} does not exist", source="device",
            hint=f"found GPUs {sorted(found)}",
        )
    name, mem = found[index]
    return DeviceChoice(text, f"cuda:{index}", f"CUDA GPU {index}: {name} ({mem:.0f} GiB)")


def resolve_device(requested: "str | torch.device | None" = "auto") -> "torch.device":
    """The torch.device for the user's choice, through `select_device` (one resolver everywhere)."""
    import torch

    if isinstance(requested, torch.device):
        requested = str(requested)
    return torch.device(select_device(requested).device)


def _parse_index(text):
    """The N of "cuda:N"; a clear error for anything else."""
    try:
        index = int(text.split(":", 1)[1])
    except ValueError:
        index = -1
    if index < 0:
        raise HCCInputError(f"bad CUDA device {text!r}", source="device", hint="write cuda:0, cuda:1, ...")
    return index
