"""Pretraining sources that fine-tuning starts from, resolved by name or path, hash-checked.

Nothing is downloaded: the authors' MNIST and CIFAR-10 weights of Jia et al. 2019 ship as
package data (HCCAnalysisLib/methods/jia2019/weights/, Apache-2.0, SHA-256 checked here);
any other file is the user's own (loaded weights-only, never unpickled freely).

Which sources a task accepts is data on the Task (`pretraining_family`), and which one a run
starts from when none is named is too (`Task.default_pretrained(n_phases)`): no name checks.
"""

from __future__ import annotations

import collections
from pathlib import Path
from typing import TYPE_CHECKING, Any

from HCCAnalysisLib.errors import HCCInputError
from HCCAnalysisLib.models.package import sha256_of

if TYPE_CHECKING:
    from HCCAnalysisLib.methods.task import Task

ROOT = Path(__file__).resolve().parents[1]  # the HCCAnalysisLib folder (installed or not): files are package data
NO_PRETRAINING = ("none",)
KnownSource = collections.namedtuple("KnownSource", "file sha256 family description base embedding_dim pyramid",
                                     defaults=(None, None, None))
_W = "methods/jia2019/weights/"
_JIA = "jia2019-resnet20"
KNOWN_SOURCES = {
    # name -> file under HCCAnalysisLib/, SHA-256, family (the Task.pretraining_family it fits), description,
    # and for released variants of one pretraining: its base name and the net it holds (see release_for)
    "jia2019-cifar": KnownSource(_W + "cifar_resnet_32_dict_withSPP.pkl",
                                 "b6fdd546ef30ea7f6f73b043261c6493938e9348a8d7099ac4ce090391a911c0", _JIA,
                                 "Jia 2019 ResNet20+SPP pretrained on CIFAR10 (3 channels, 32-feature embedding)",
                                 "jia2019-cifar", 32, (1, 2)),
    "jia2019-cifar-emb16": KnownSource(_W + "cifar_resnet_16_dict_withSPP.pkl",
                                       "e05908049382df18963393d8e962c40f03912fbf4de8bbf2e14f4a8d010ec117", _JIA,
                                       "Jia 2019 ResNet20+SPP pretrained on CIFAR10 (16-feature embedding)",
                                       "jia2019-cifar", 16, (1, 2)),
    "jia2019-cifar-emb2": KnownSource(_W + "cifar_resnet_2_dict_withSPP.pkl",
                                      "422c41450342400e88930d02d06a0a212a0f05f76855d7e71a58dea3b138120f", _JIA,
                                      "Jia 2019 ResNet20+SPP pretrained on CIFAR10 (2-feature embedding)",
                                      "jia2019-cifar", 2, (1, 2)),
    "jia2019-cifar-gap-emb2": KnownSource(_W + "cifar_resnet_2_dict.pkl",
                                          "a6c95eef5e7c05696371df0baab1abb9ae7d658fb2c08a5f28730bd7b3019ce8", _JIA,
                                          "Jia 2019 plain ResNet20 (global pooling) pretrained on CIFAR10 "
                                          "(2-feature embedding)", "jia2019-cifar", 2, None),
    "jia2019-mnist": KnownSource(_W + "mnist_resnet_2_dict_withSPP.pkl",
                                 "ca4c4171d30ae75dbeb24fb8fdc768782b8800cb75bfd5d4e93df5b6a61ae5be", _JIA,
                                 "Jia 2019 ResNet20+SPP pretrained on MNIST (1 channel, 2-feature embedding)",
                                 "jia2019-mnist", 2, (1, 2)),
    "jia2019-mnist-gap": KnownSource(_W + "mnist_resnet_2_dict.pkl",
                                     "2e824f398925d872e3d2a91d0eefe683a154a3fc1024f70b75b95a172b3b62f0", _JIA,
                                     "Jia 2019 plain ResNet20 (global pooling) pretrained on MNIST "
                                     "(1 channel, 2-feature embedding)", "jia2019-mnist", 2, None),
}


def _pyramid(value: Any) -> tuple[int, ...] | None:
    return None if value is None else tuple(int(v) for v in value)


def release_for(name: str, net_kwargs: dict[str, Any]) -> str:
    """The released variant of pretraining `name` that holds the same net as `net_kwargs` (Jia 2019's
    grid: plain ResNet20 or SPP, embeddings of 2/16/32): the same pooling and embedding size when the
    authors released one, else the same pooling (the backbone transfers, the embedding starts fresh),
    else `name` itself (only the backbone's convolutions transfer)."""
    entry = KNOWN_SOURCES.get(name)
    if entry is None or entry.base is None or "pyramid" not in net_kwargs:
        return name
    pyramid, size = _pyramid(net_kwargs.get("pyramid")), net_kwargs.get("embedding_dim")
    family = [(n, e) for n, e in KNOWN_SOURCES.items() if e.base == entry.base]
    for wanted in (lambda e: _pyramid(e.pyramid) == pyramid and e.embedding_dim == size,
                   lambda e: _pyramid(e.pyramid) == pyramid):
        if wanted(entry):
            return name
        matches = [n for n, e in family if wanted(e)]
        if matches:
            return matches[0]
    return name


FAMILY_NAMES = {"jia2019-resnet20": "ResNet20+SPP"}


class ResolvedPretrained(tuple):
    """(path, what the trainer takes) plus `name` and `description` for the run's log and record.

    A 2-tuple, so `path, state = resolve_pretrained(...)` keeps working.
    """

    def __new__(cls, path: Path, state: Any, name: str, description: str) -> ResolvedPretrained:
        self = super().__new__(cls, (path, state))
        self.name, self.description = name, description
        return self


def known_source_path(name: str) -> Path:
    """The checked file of a named source: HCCInputError when it is missing or its SHA-256 differs."""
    entry = KNOWN_SOURCES[name]
    path = ROOT / entry.file
    if not path.is_file():
        raise HCCInputError(f"pretrained weights '{name}' are not installed", path,
                            "reinstall HCCAnalysisLib: the weights are package data")
    actual = sha256_of(path)
    if actual != entry.sha256:
        raise HCCInputError(f"SHA-256 {actual[:12]}... differs from the recorded {entry.sha256[:12]}...", path,
                            "the bundled weights were altered: restore them from the repository")
    return path


def resolve_pretrained(source: str | Path | None, task: Task | None = None,
                       n_phases: int | None = None) -> ResolvedPretrained | None:
    """'none' -> None; None -> the task's default for `n_phases`; a known name or a file -> ResolvedPretrained.

    Left out (None or ''), the source is the task's own recipe (`task.default_pretrained`),
    None when the task has none. For a task whose net fits a named family (and when no task
    is given) the file is read here as a Jia 2019 state dict; other networks get the checked
    path and read it with their own loader.
    """
    from HCCAnalysisLib.nets.jia2019_weights import load_jia2019_file

    if source in (None, "") and task is not None:
        source = task.default_pretrained(len(task.phases) if n_phases is None else n_phases)
        if source:  # the recipe's pretraining, in the variant that fits the task's net (Jia's grid)
            source = release_for(source, task.net_kwargs)
    if source in (None, "") or str(source).lower() in NO_PRETRAINING:
        return None
    source = str(source)
    family = "jia2019-resnet20" if task is None else task.pretraining_family
    if source in KNOWN_SOURCES:
        entry = KNOWN_SOURCES[source]
        if entry.family != family:
            raise HCCInputError(
                f"pretrained source '{source}' is for {FAMILY_NAMES.get(entry.family, entry.family)}, "
                f"not for task {task.name}", hint="give a local weights file for this network, or none")
        path = known_source_path(source)
        return ResolvedPretrained(path, load_jia2019_file(path), source, f"{entry.description}, {path}")
    path = Path(source)
    if not path.is_file():
        raise HCCInputError("pretrained weights file does not exist", path,
                            f"give a file or one of: {', '.join(KNOWN_SOURCES)}, none")
    if family is None:  # the net reads its own file (timm backbones of the fusion family)
        return ResolvedPretrained(path, path, str(path), f"weights file {path}")
    return ResolvedPretrained(path, load_jia2019_file(path), str(path), f"weights file {path}")


def describe_start(resolved: ResolvedPretrained | None, task: Task | None = None, n_phases: int | None = None) -> str:

    """One log line naming the weights a run starts from, and saying when that is not the task's recipe."""
    if resolved is None:
        recipe = None if task is None else task.default_pretrained(len(task.phases) if n_phases is None else n_phases)
        return ("initial weights: random initialisation (no pretraining)" if recipe is None else
                f"initial weights: random initialisation (--pretrained none; the task's recipe starts from {recipe})")
    return f"initial weights: {resolved.name} ({resolved.description}); fine-tuning at the task's reduced learning rate"
