"""Training checkpoints: everything a run needs to continue bit for bit after epoch k.

Written atomically after every epoch (a kill leaves the previous epoch's checkpoint or this
one, never half a file): the network, optimiser, schedule and loss scaler states, every random
stream (torch, CUDA, numpy, python, the batch order's and the augmentation's generators), the
per-epoch records and the settings the run was started with (a resume with other settings is
refused). Only tensors and plain values are stored, so it is read back with
`torch.load(weights_only=True)`: opening a checkpoint never runs pickled code.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from HCCAnalysisLib.atomic import atomic_path
from HCCAnalysisLib.errors import HCCInputError

CHECKPOINT_NAME = "checkpoint.pt"


def rng_states(generators: Mapping[str, torch.Generator]) -> dict[str, Any]:
    """The global random streams and the named generators' states."""
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    version, mt_state, python_gauss = random.getstate()
    states = {"torch": torch.get_rng_state(),
              "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(position),
                        "has_gauss": int(has_gauss), "gauss": float(gauss)},
              "python": {"version": version, "state": torch.tensor(mt_state, dtype=torch.int64),
                         "gauss": python_gauss},
              "generators": {name: g.get_state() for name, g in generators.items()}}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: Mapping[str, Any], generators: Mapping[str, torch.Generator]) -> None:
    torch.set_rng_state(states["torch"])
    n = states["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = states["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["state"].tolist()), p["gauss"]))
    for name, generator in generators.items():
        generator.set_state(states["generators"][name])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save_checkpoint(path: str | Path, state: Mapping[str, Any]) -> None:
    """Write `state` (tensors, dicts, lists, numbers, strings) to `path` atomically."""
    with atomic_path(path) as tmp:
        torch.save(dict(state), tmp)


def load_checkpoint(path: str | Path, settings: Mapping[str, Any]) -> dict[str, Any]:
    """The checkpoint at `path`, refused when it was made with other `settings`."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated by hand, another torch's format, not a checkpoint at all
        raise HCCInputError(f"is not a readable training checkpoint ({err})", path,
                            "remove it (or use --overwrite) to start the training afresh") from None
    differing = {k: (state.get("settings", {}).get(k), v) for k, v in settings.items()
                 if state.get("settings", {}).get(k) != v}
    if differing:
        listed = ", ".join(f"{k}: {old!r} then, {new!r} now" for k, (old, new) in sorted(differing.items()))
        raise HCCInputError(f"was made with other settings ({listed})", path,
                            "resume with the same settings, or use --overwrite to start afresh")
    return state


def json_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Settings as plain values (lists, not tuples), so a loaded checkpoint compares equal."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()}


def _module_state(module: Any) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()} if isinstance(
        module, torch.nn.Module) else {}


def _load_buffers(module: Any, state: Mapping[str, torch.Tensor]) -> None:
    """A stateful loss's buffers, set whatever their size was (Liang's centres are sized lazily)."""
    for key, value in state.items():
        owner_name, _, name = key.rpartition(".")
        owner = module.get_submodule(owner_name) if owner_name else module
        setattr(owner, name, value.clone())


def training_state(net: torch.nn.Module, optimiser: torch.optim.Optimizer, schedule: Any, scaler: Any,
                   loss_fn: Any, generators: Mapping[str, torch.Generator], epoch: int,
                   records: list[dict[str, Any]], settings: Mapping[str, Any]) -> dict[str, Any]:
    """Everything needed to continue a training after `epoch` completed epochs."""
    return {"epoch": epoch, "settings": json_settings(settings), "records": [dict(r) for r in records],
            "model": {k: v.detach().cpu().clone() for k, v in net.state_dict().items()},
            "optimiser": optimiser.state_dict(), "schedule": schedule.state_dict() if schedule is not None else None,
            "scaler": scaler.state_dict() if scaler is not None else None, "loss": _module_state(loss_fn),
            "rng": rng_states(generators)}


def restore_training_state(state: Mapping[str, Any], net: torch.nn.Module, optimiser: torch.optim.Optimizer,
                           schedule: Any, scaler: Any, loss_fn: Any,
                           generators: Mapping[str, torch.Generator]) -> tuple[int, list[dict[str, Any]]]:
    """Load a checkpoint's states in place; returns (completed epochs, their records)."""
    net.load_state_dict(state["model"])
    optimiser.load_state_dict(state["optimiser"])
    if schedule is not None and state["schedule"] is not None:
        schedule.load_state_dict(state["schedule"])
    if scaler is not None and state["scaler"] is not None:
        scaler.load_state_dict(state["scaler"])
    if state["loss"]:
        _load_buffers(loss_fn, state["loss"])
    restore_rng_states(state["rng"], generators)
    return int(state["epoch"]), [dict(r) for r in state["records"]]
