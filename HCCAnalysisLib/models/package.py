"""Model packages: `model.safetensors` + `model.json` (the card), checked on every load.

The card says what the weights are for (task, classes, phases, network and its
arguments), how they were made (cohort summary, settings, library versions) and the
SHA-256 of the weights file, so an altered or swapped file is refused.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import hashlib
import json
import platform
from dataclasses import dataclass
from pathlib import Path

from HCCAnalysisLib.atomic import atomic_path, write_text_atomic
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


def _write_json_atomic(path, data):
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def save_model(directory: str | Path, net: torch.nn.Module, card: dict[str, Any]) -> dict[str, Any]:
    """Write the weights and the card; the card gets the weights' SHA-256 and the versions."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    with atomic_path(directory / WEIGHTS_NAME) as tmp:
        save_file(state, tmp)
    card = dict(card, format=CARD_FORMAT, weights=WEIGHTS_NAME,
                weights_sha256=sha256_of(directory / WEIGHTS_NAME))
    card.setdefault("versions", library_versions())
    _write_json_atomic(directory / CARD_NAME, card)
    return card


def read_card(directory: str | Path) -> dict[str, Any]:
    directory = Path(directory)
    card_path = directory / CARD_NAME
    if not card_path.is_file():
        raise HCCInputError("is not a model package (no model.json)", directory)
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise HCCInputError(f"is not valid JSON: {err}", card_path) from None
    missing = [f for f in REQUIRED_CARD_FIELDS if f not in card]
    if missing:
        raise HCCInputError(f"lacks the field(s) {missing}", card_path, "re-export the model package")
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
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = str(err).splitlines()[0:3]
        raise HCCInputError(f"weights do not fit network '{card['net']}': {' '.join(first)[:300]}", weights) from None
    net.to(device).eval()
    return LoadedModel(net, card, task, directory)
