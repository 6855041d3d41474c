"""Model registry: the versioned list in `Models.json`, the per-user models folder,
checksum-verified downloads and offline imports of model packages.

A model package is a folder with `model.json` (the model card) and its weights
(`model.safetensors`). Installed packages live in `<models folder>/<task>/<version>/`;
downloaded pretrained weights (not packages) in `<models folder>/pretrained/`.
The models folder is per user, overridable with the environment variable
`HCCANALYSIS_MODELS_DIR`. Nothing here imports torch or slicer: the Slicer module
passes SampleData's downloader to `download`, the command line uses `urllib_download`.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import json
import os
import re
import shutil
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from HCCAnalysisLib.errors import HCCInputError
from HCCAnalysisLib.models.package import CARD_NAME, checked_weights, sha256_of
from HCCAnalysisLib.models.package import read_card as read_full_card

ENV_MODELS_DIR = "HCCANALYSIS_MODELS_DIR"
KINDS = ("model-package", "pretrained-weights")
REQUIRED_FIELDS = ("id", "task", "version", "kind", "url", "sha256", "file_name", "license", "training_data")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")  # one path component, no traversal
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class RegistryEntry:
    """One downloadable item of Models.json."""

    id: str
    task: str
    version: str
    kind: str
    url: str
    sha256: str
    file_name: str
    license: str
    training_data: str
    title: str = ""
    source: str = ""


@dataclass(frozen=True)
class InstalledModel:
    """A model package found in the models folder."""

    task: str
    version: str
    path: Path
    card: dict[str, Any]

    @property
    def label(self) -> str:
        """What the panel's model selector shows."""
        return f"{self.task} {self.version}"


sha256_file = sha256_of  # one digest function for cards, downloads and imports


def default_registry_path() -> Path:
    """Models.json in the source tree (HCCAnalysis/Resources) or, once installed
    into Slicer, beside the library (qt-scripted-modules/Resources)."""
    here = Path(__file__).resolve().parents[2]
    for candidate in (here / "HCCAnalysis" / "Resources" / "Models.json", here / "Resources" / "Models.json"):
        if candidate.is_file():
            return candidate
    raise HCCInputError("Models.json not found", here, "pass the registry path explicitly")


def load_registry(path: str | Path | None = None) -> list[RegistryEntry]:
    """Read and validate Models.json; returns the entries in file order."""
    path = Path(path) if path else default_registry_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise HCCInputError(f"cannot be read as JSON: {err}", path) from None
    if not isinstance(data, dict) or data.get("schema_version") != 1 or not isinstance(data.get("models"), list):
        raise HCCInputError("is not a model list (expected schema_version 1 and a 'models' list)", path)
    entries, seen = [], set()
    for index, item in enumerate(data["models"]):
        where = f"{path} models[{index}]"
        if not isinstance(item, dict):
            raise HCCInputError("is not a JSON object", where)
        missing = [k for k in REQUIRED_FIELDS if not str(item.get(k, "")).strip()]
        if missing:
            raise HCCInputError(f"lacks {missing}", where)
        entry = RegistryEntry(**{k: str(item[k]) for k in RegistryEntry.__dataclass_fields__ if k in item})
        _check_entry(entry, where)
        if entry.id in seen:
            raise HCCInputError(f"repeats the id '{entry.id}'", where)
        seen.add(entry.id)
        entries.append(entry)
    return entries


def _check_entry(entry, where):
    if entry.kind not in KINDS:
        raise HCCInputError(f"has unknown kind '{entry.kind}'", where, f"use one of {KINDS}")
    if not _SHA256.match(entry.sha256):
        raise HCCInputError("sha256 is not 64 lowercase hex digits", where)
    for name, value in (("task", entry.task), ("version", entry.version), ("file_name", entry.file_name)):
        if not _SAFE_NAME.match(value):
            raise HCCInputError(f"{name} '{value}' is not a plain file name", where)
    if not entry.url.startswith(("https://", "http://", "file:")):
        raise HCCInputError(f"url '{entry.url}' is not http(s) or file", where)


def models_dir(create: bool = False) -> Path:
    """The per-user models folder: $HCCANALYSIS_MODELS_DIR, else the platform's user data folder."""
    override = os.environ.get(ENV_MODELS_DIR, "").strip()
    if override:
        root = Path(override).expanduser()
    elif sys.platform.startswith("win"):
        root = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local")) / "HCCAnalysis" / "models"
    elif sys.platform == "darwin":
        root = Path.home() / "Library" / "Application Support" / "HCCAnalysis" / "models"
    else:
        root = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share")) / "HCCAnalysis" / "models"
    if create:
        root.mkdir(parents=True, exist_ok=True)
    return root


def read_card(folder: str | Path) -> dict[str, Any]:
    """The model card of a package folder (checked by models.read_card), with a usable
    task and version for the folder layout; a card without a version counts as "0"."""
    card = dict(read_full_card(folder))
    card["version"] = str(card.get("version", "0"))
    for key in ("task", "version"):
        if not _SAFE_NAME.match(str(card.get(key, ""))):
            raise HCCInputError(f"has no usable '{key}' (got {card.get(key)!r})", Path(folder) / CARD_NAME)
    return card


def verify_package(folder: str | Path) -> dict[str, Any]:
    """Refuse a package whose weights are missing or do not match the card's SHA-256."""
    card = read_card(folder)
    checked_weights(folder, card)
    return card


def installed_models(root: str | Path | None = None, task: str | None = None) -> list[InstalledModel]:
    """Every readable package under the models folder, sorted by task then version."""
    root = Path(root) if root else models_dir()
    found = []
    if not root.is_dir():
        return found
    for card_path in sorted(root.glob(f"*/*/{CARD_NAME}")):
        folder = card_path.parent
        if folder.parent.name == "pretrained" or folder.parent.name.startswith("."):
            continue
        try:
            card = read_card(folder)
        except HCCInputError:
            continue  # a damaged folder is reported when it is used, not while listing
        if task is None or card["task"] == task:
            found.append(InstalledModel(card["task"], str(card["version"]), folder, card))
    return sorted(found, key=lambda m: (m.task, _version_key(m.version)))


def _version_key(version):
    """Numeric parts compare as numbers (1.10 after 1.2); text parts sort after numbers."""
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"[.+-]", version)]


def import_package(source: str | Path, root: str | Path | None = None, sha256: str | None = None) -> InstalledModel:
    """Install a package from a folder or a .zip (offline import); returns the InstalledModel.

    `sha256`, when given, is checked against the zip file first. The package is
    verified (card + weights hash) in a temporary folder inside the models folder
    and moved into place in one rename, so a failed import leaves nothing behind.
    """
    source = Path(source)
    root = Path(root) if root else models_dir()
    if not source.exists():
        raise HCCInputError("does not exist", source)
    if sha256 is not None:
        _check_sha256(source, sha256)
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=root, prefix=".import-"))
    try:
        if source.is_dir():
            package = _copy_package(source, staging)
        elif zipfile.is_zipfile(source):
            package = _extract_package(source, staging)
        else:
            raise HCCInputError("is neither a package folder nor a .zip file", source)
        card = verify_package(package)
        target = root / card["task"] / str(card["version"])
        if target.exists():
            raise HCCInputError(f"{card['task']} {card['version']} is already installed", target,
                                "remove it first (or clear the models folder) to replace it")
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(package, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return InstalledModel(card["task"], str(card["version"]), target, card)


def _copy_package(source, staging):
    read_card(source)
    package = staging / "package"
    shutil.copytree(source, package)
    return package


def _extract_package(archive, staging):
    """Extract a zip safely (no absolute paths, no '..'); the package is the folder holding model.json."""
    with zipfile.ZipFile(archive) as zf:
        for name in zf.namelist():
            parts = Path(name).parts
            if name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
                raise HCCInputError(f"holds an unsafe path '{name}'", archive)
        zf.extractall(staging / "zip")
    cards = sorted((staging / "zip").rglob(CARD_NAME))
    if len(cards) != 1:
        raise HCCInputError(f"must hold exactly one {CARD_NAME}, found {len(cards)}", archive)
    return cards[0].parent


def _check_sha256(path, expected):
    actual = sha256_file(path)
    if actual != expected.lower():
        raise HCCInputError(f"SHA-256 mismatch: expected {expected}, got {actual}; the file is refused", path,
                            "the download is corrupt or the file was changed: download it again")


def urllib_download(url: str, dest_folder: str | Path, name: str, checksum: str | None = None) -> str:
    """Plain downloader with the signature of SampleData's `downloadFile` (for use outside Slicer)."""
    import urllib.request

    path = Path(dest_folder) / name
    tmp = path.with_name(f".{name}.part")
    with urllib.request.urlopen(url) as response, open(tmp, "wb") as handle:  # noqa: S310 (registry URLs)
        shutil.copyfileobj(response, handle)
    os.replace(tmp, path)
    return str(path)


def download(entry: RegistryEntry, downloader: Callable[..., str] = urllib_download, root: str | Path | None = None
             ) -> Path:
    """Fetch a registry entry through `downloader(url, folder, name, checksum=...)`, check its
    SHA-256 ourselves (a downloader may not), then install it. Returns the installed path.

    A mismatching file is deleted and refused with HCCInputError.
    """
    root = Path(root) if root else models_dir()
    downloads = root / ".downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    path = Path(downloader(entry.url, str(downloads), entry.file_name, checksum=f"SHA256:{entry.sha256}"))
    try:
        _check_sha256(path, entry.sha256)
    except HCCInputError:
        path.unlink(missing_ok=True)  # never leave a bad file where the next run could reuse it
        raise
    if entry.kind == "pretrained-weights":
        target = root / "pretrained" / entry.file_name
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)
        return target
    try:
        return import_package(path, root=root).path
    finally:
        path.unlink(missing_ok=True)


def clear_models_dir(root: str | Path | None = None) -> int:
    """Delete every installed package, downloaded weights and leftover temporary folder.

    Only what this module creates is removed (task/version folders with a model.json,
    `pretrained/`, `.downloads/`, `.import-*`), so a mistaken override cannot wipe a
    user's unrelated folder. Returns the number of items removed.
    """
    root = Path(root) if root else models_dir()
    removed = 0
    if not root.is_dir():
        return removed
    for card_path in root.glob(f"*/*/{CARD_NAME}"):
        shutil.rmtree(card_path.parent)
        removed += 1
    for extra in [root / "pretrained", root / ".downloads", *root.glob(".import-*")]:
        if extra.exists():
            shutil.rmtree(extra)
            removed += 1
    for task_dir in root.iterdir():
        if task_dir.is_dir() and not any(task_dir.iterdir()):
            task_dir.rmdir()
    return removed


def find_model(ref: str | Path, task: str | None = None, root: str | Path | None = None) -> Path:
    """The package folder a user means by `ref`: a folder path, or an installed version
    ("1.0.0", or "latest") of `task` in the models folder."""
    path = Path(ref).expanduser()
    if path.is_dir():
        read_card(path)
        return path
    candidates = installed_models(root, task=task)
    if ref == "latest" and candidates:
        return candidates[-1].path
    matches = [m for m in candidates if m.version == ref or m.label == ref]
    if len(matches) == 1:
        return matches[0].path
    known = ", ".join(m.label for m in candidates) or "none installed"
    raise HCCInputError(f"model '{ref}' is neither a package folder nor an installed version"
                        + (f" of task {task}" if task else ""), "model",
                        f"installed: {known}; import one with the panel or pass a folder")


def untrained_package(folder: str | Path, task_name: str, phases: Sequence[str], seed: int = 0,
                      version: str = "0.0.1") -> Path:
    """A real model package whose weights are the task's network at a seeded random
    initialisation: deterministic, for smoke tests and Slicer self-tests, not for use."""
    import torch

    from HCCAnalysisLib.models.package import save_model
    from HCCAnalysisLib.nets import build_net
    from HCCAnalysisLib.tasks import get_task

    task = get_task(task_name)
    torch.manual_seed(seed)
    net = build_net(task.net, num_classes=len(task.classes), **task.net_kwargs)
    save_model(folder, net, {"task": task.name, "version": version, "classes": list(task.classes),
                             "phases": list(phases), "net": task.net, "net_kwargs": task.net_kwargs,
                             "input_size": task.input_size, "note": "untrained (seeded random weights)"})
    return Path(folder)
