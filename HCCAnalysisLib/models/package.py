"""Model packages: `model.safetensors` + `model.json` (the card), checked on every load.

The card says what the weights are for (task, classes, phases, network and its
arguments), how they were made (cohort summary, settings, library versions) and the
SHA-256 of the weights file, so an altered or swapped file is refused.
"""

from __future__ import annotations

import dataclasses

from typing import TYPE_CHECKING, Any

import errno
import hashlib
import json
import os
import platform
from dataclasses import dataclass
from pathlib import Path

from HCCAnalysisLib.atomic import atomic_folder, recover_folder
from HCCAnalysisLib.models.card_schema import check_card_size, check_card_types
from HCCAnalysisLib.errors import HCCInputError

if TYPE_CHECKING:
    import torch

    from HCCAnalysisLib.methods.task import Task

CARD_NAME = "model.json"
WEIGHTS_NAME = "model.safetensors"
CARD_FORMAT = 1
REQUIRED_CARD_FIELDS = ("format", "task", "classes", "phases", "net", "net_kwargs", "input_size",
                        "weights", "weights_sha256")


@dataclass
class LoadedModel:
    net: torch.nn.Module
    card: dict[str, Any]
    task: Task
    directory: Path

    @property
    def name(self) -> str:
        return f"{self.card['task']}@{self.card.get('version', '0')}"


def sha256_of(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def library_versions() -> dict[str, str | None]:
    """Versions that decide whether a result can be reproduced (read from the installed
    distributions: importing MONAI only to print its version would cost seconds)."""
    from importlib.metadata import PackageNotFoundError, version

    from HCCAnalysisLib import __version__

    versions = {"HCCAnalysisLib": __version__, "python": platform.python_version()}
    for name in ("torch", "monai", "numpy", "SimpleITK", "scikit-learn", "timm", "slicer-core"):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    return versions


PACKAGE_FILES = (CARD_NAME, WEIGHTS_NAME)


def _carry_other_files(old: Path, new: Path) -> None:
    """Files a user keeps in a package folder (notes, a README) move to the new package."""
    import shutil

    if not old.is_dir():
        return
    for entry in old.iterdir():
        if entry.name in PACKAGE_FILES or entry.name.startswith("."):
            continue
        (shutil.copytree if entry.is_dir() else shutil.copy2)(entry, new / entry.name)


def write_package(directory: str | Path, weights: bytes, card: dict[str, Any]) -> dict[str, Any]:
    """Write a package from serialised safetensors `weights` and a card, replacing `directory` as a
    whole (HCCAnalysisLib.atomic.atomic_folder): a kill at any moment leaves the old package or the
    new one. The card gets the weights' SHA-256 and the library versions."""
    directory = Path(directory)
    card = dict(card, format=CARD_FORMAT, weights=WEIGHTS_NAME, weights_sha256=hashlib.sha256(weights).hexdigest())
    card.setdefault("versions", library_versions())
    check_card_types(card, directory / CARD_NAME)
    with atomic_folder(directory) as new:
        try:
            _carry_other_files(directory, new)
            (new / WEIGHTS_NAME).write_bytes(weights)
            (new / CARD_NAME).write_text(json.dumps(card, indent=2, sort_keys=False) + "\n", encoding="utf-8")
            for name in PACKAGE_FILES:  # on disk before the swap makes them the package
                with open(new / name, "rb") as handle:
                    os.fsync(handle.fileno())
        except OSError as err:
            if err.errno in (errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)):
                raise HCCInputError(f"could not be written: {err.strerror.lower()} ({new.parent}); the partly "
                                    f"written package was removed", directory,
                                    "free disk space; the previous package, if any, is unchanged") from None
            raise
    return card


def save_model(directory: str | Path, net: torch.nn.Module, card: dict[str, Any]) -> dict[str, Any]:
    """Write the weights and the card as one package (see write_package)."""
    from safetensors.torch import save

    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    return write_package(directory, save(state), card)


def read_card(directory: str | Path) -> dict[str, Any]:
    directory = Path(directory)
    try:
        recover_folder(directory)  # a package whose replacement a kill interrupted
    except OSError:
        pass  # a read-only installation: it cannot hold leftovers of our own writes
    card_path = directory / CARD_NAME
    if not card_path.is_file():
        raise HCCInputError("is not a model package (no model.json)", directory)
    check_card_size(card_path)
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise HCCInputError(f"is not valid JSON: {err}", card_path) from None
    check_card_types(card, card_path)
    if card["format"] != CARD_FORMAT:
        raise HCCInputError(f"has card format {card['format']}, this version reads {CARD_FORMAT}", card_path)
    return card


def checked_weights(directory: "str | Path", card: dict) -> Path:
    """The package's weights file, after checking it lies in the package and matches the card's
    SHA-256: the one check behind loading, installing and importing a package."""
    directory = Path(directory)
    weights = directory / card["weights"]
    if Path(card["weights"]).name != card["weights"]:
        raise HCCInputError(f"weights '{card['weights']}' is not a file name inside the package", directory / CARD_NAME)
    if not weights.is_file():
        raise HCCInputError("weights file is missing", weights)
    actual = sha256_of(weights)
    if actual != card["weights_sha256"]:
        raise HCCInputError(f"SHA-256 {actual[:12]}... does not match the card's {card['weights_sha256'][:12]}...",
                            weights, "the file was altered or swapped: re-download or re-import the model")
    return weights


def check_weight_values(state: dict[str, Any], net: torch.nn.Module, weights: str | Path) -> None:
    """Refuse weights whose dtype is not the network's or that are not finite: the card's hash
    only proves the file is the one the card names, not that it holds usable numbers."""
    import torch

    expected = net.state_dict()
    wrong = [f"{k} is {v.dtype}, the network's is {expected[k].dtype}"
             for k, v in state.items() if k in expected and v.dtype != expected[k].dtype]
    if wrong:
        raise HCCInputError(f"weights have the wrong dtype ({len(wrong)} tensor(s)): {'; '.join(wrong[:3])}", weights,
                            "export the weights in the network's dtype (float32)")
    bad = [(k, int((~torch.isfinite(v)).sum())) for k, v in state.items()
           if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        shown = ", ".join(f"{k} ({n})" for k, n in bad[:3])
        raise HCCInputError(f"weights hold NaN or infinite values in {len(bad)} tensor(s): {shown}", weights,
                            "the training diverged or the file is damaged: retrain or re-download the model")


def load_model(directory: str | Path, device: str | torch.device | None = "cpu", expected_task: str | None = None
               ) -> LoadedModel:
    """Load a model package after checking its card, the weights' hash and their shapes."""
    from safetensors.torch import load_file

    from HCCAnalysisLib.nets import build_net
    from HCCAnalysisLib.tasks import get_task

    from HCCAnalysisLib.engine.device import resolve_device

    directory = Path(directory)
    device = resolve_device(device)
    card = read_card(directory)
    card_path = directory / CARD_NAME
    if expected_task and card["task"] != expected_task:
        raise HCCInputError(f"is a model for task '{card['task']}', not '{expected_task}'", directory)
    try:
        task = get_task(card["task"])
    except HCCInputError as err:
        raise HCCInputError(err.problem, card_path, err.hint) from None
    from HCCAnalysisLib.runtime.extras import require_task_extras

    require_task_extras(task)  # a missing optional package names its pip extra
    # the network and sampler as trained (`--net-option`, `--sampler-option`), not the registry's defaults
    task = dataclasses.replace(task, net_kwargs=dict(card["net_kwargs"]),
                               sampler_kwargs=dict(card.get("sampler_kwargs", task.sampler_kwargs)))
    task.check_phases(card["phases"], card_path)
    if tuple(card["classes"]) != tuple(task.classes):
        raise HCCInputError(f"classes {card['classes']} differ from task {task.name}'s {list(task.classes)}",
                            directory / CARD_NAME)
    weights = checked_weights(directory, card)
    try:
        net = build_net(card["net"], num_classes=len(card["classes"]), **card["net_kwargs"])
    except HCCInputError as err:
        raise HCCInputError(err.problem, card_path, err.hint) from None
    except TypeError as err:
        raise HCCInputError(f"net_kwargs {sorted(card['net_kwargs'])} do not fit network '{card['net']}': {err}",
                            card_path) from None
    try:
        state = load_file(str(weights))
    except Exception as err:  # safetensors raises its own error type for corrupt headers
        raise HCCInputError(f"could not be read as safetensors: {err}", weights) from None
    check_weight_values(state, net, weights)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = str(err).splitlines()[0:3]
        raise HCCInputError(f"weights do not fit network '{card['net']}': {' '.join(first)[:300]}", weights) from None
    net.to(device).eval()
    return LoadedModel(net, card, task, directory)
