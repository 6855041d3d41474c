"""One folder per paper: its tasks, its sampler and the steps only it has.

`PAPERS` is the explicit list of papers the library runs. Each paper's package declares, without
importing anything heavy:
- `tasks.py` with a `TASKS` dict (name -> `Task`),
- in its `__init__.py`, `SAMPLERS`, `NETS` and optionally `LOSSES`: name -> "module:function",
  imported only when first used (so listing tasks does not import torch or timm).
A paper that is missing or broken is an error, never a silent skip. Adding a method is a
folder here, a net file in `nets/` and one word in `PAPERS`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable

from HCCAnalysisLib.errors import HCCInputError

PAPERS: tuple[str, ...] = ("jia2019", "zhen2020", "wang2020", "liang2018", "meng2019")


@dataclass
class Registry:
    """Everything the papers declare, merged; a name defined twice is an error."""

    tasks: dict[str, Any] = field(default_factory=dict)
    samplers: dict[str, str] = field(default_factory=dict)
    nets: dict[str, str] = field(default_factory=dict)
    losses: dict[str, str] = field(default_factory=dict)

    def add(self, kind: str, entries: dict, paper: str) -> None:
        table = getattr(self, kind)
        for name, value in entries.items():
            if name in table:
                raise ValueError(f"{kind[:-1]} '{name}' of paper '{paper}' is defined twice")
            table[name] = value


def load_registry(papers: tuple[str, ...] = PAPERS, package: str = __name__) -> Registry:
    """Import every paper of `papers` (under `package`) and merge what they declare."""
    registry = Registry()
    for paper in papers:
        try:
            module = importlib.import_module(f"{package}.{paper}")
            tasks = importlib.import_module(f"{package}.{paper}.tasks")
        except ModuleNotFoundError as err:
            raise ImportError(f"paper '{paper}' listed in PAPERS cannot be imported: {err}") from err
        for kind in ("samplers", "nets", "losses"):
            registry.add(kind, getattr(module, kind.upper(), {}), paper)
        registry.add("tasks", tasks.TASKS, paper)
    for task in registry.tasks.values():
        if task.sampler not in registry.samplers:
            raise ValueError(f"task '{task.name}' names sampler '{task.sampler}', which no paper declares")
    return registry


_REGISTRY: Registry | None = None


def registry() -> Registry:
    """The registry of `PAPERS`, loaded once."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = load_registry()
    return _REGISTRY


def resolve(spec: str) -> Callable:
    """'package.module:function' -> the function."""
    module_name, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module_name), attr)


_WHAT = {"samplers": "sampler", "nets": "network", "losses": "loss"}


def _lookup(kind: str, name: str) -> Callable:
    table = getattr(registry(), kind)
    try:
        return resolve(table[name])
    except KeyError:
        raise HCCInputError(f"unknown {_WHAT[kind]} '{name}'", hint=f"known: {', '.join(sorted(table))}") from None


def get_sampler(name: str) -> Callable:
    """The sampler function a task names: (case, task, phases, target_of, rng, training) -> samples."""
    return _lookup("samplers", name)


def net_builder(name: str) -> Callable:
    """The builder of the network a task or model card names."""
    return _lookup("nets", name)


def loss_builder(name: str) -> Callable | None:
    """The builder of a paper's own loss, or None when no paper declares `name` (then `losses` has it)."""
    spec = registry().losses.get(name)
    return resolve(spec) if spec else None
