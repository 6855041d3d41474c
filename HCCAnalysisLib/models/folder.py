"""The per-user models folder: installed packages in <folder>/<task>/<version>/, imports that
replace nothing half-way, removal, and finding the package a user means.

The folder is per user, overridable with the environment variable HCCANALYSIS_MODELS_DIR.
Every install is extracted or copied into a temporary folder inside the models folder,
verified there (card + weights SHA-256) and moved into place with one rename, so a failed
or interrupted install never leaves a half-written version behind.
"""

from __future__ import annotations

from typing import Any

import os
import shutil
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from HCCAnalysisLib.errors import HCCInputError
from HCCAnalysisLib.models.catalog import SAFE_NAME, version_key
from HCCAnalysisLib.models.package import CARD_NAME, checked_weights, sha256_of
from HCCAnalysisLib.models.package import read_card as read_full_card

ENV_MODELS_DIR = "HCCANALYSIS_MODELS_DIR"


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
        if not SAFE_NAME.match(str(card.get(key, ""))):
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
    found: list[InstalledModel] = []
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
    return sorted(found, key=lambda m: (m.task, version_key(m.version)))


def check_sha256(path: str | Path, expected: str) -> None:
    """Refuse a file whose SHA-256 differs from the expected one."""
    actual = sha256_of(path)
    if actual != expected.lower():
        raise HCCInputError(f"SHA-256 mismatch: expected {expected}, got {actual}; the file is refused", path,
                            "the download is corrupt or the file was changed: download it again")


def import_package(source: str | Path, root: str | Path | None = None, sha256: str | None = None,
                   overwrite: bool = False, expected: tuple[str, str] | None = None) -> InstalledModel:
    """Install a package from a folder or a .zip (offline import); returns the InstalledModel.

    `sha256`, when given, is checked against the zip file first. An installed version is
    refused unless `overwrite`; `expected` (task, version) refuses a package that is not
    what a registry entry promised. When overwriting, the old folder is swapped out only after the new one
    verified, and put back if the swap fails.
    """
    source = Path(source)
    root = Path(root) if root else models_dir()
    if not source.exists():
        raise HCCInputError("does not exist", source)
    if sha256 is not None:
        check_sha256(source, sha256)
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
        if expected is not None and (card["task"], card["version"]) != tuple(expected):
            raise HCCInputError(f"holds {card['task']} {card['version']}, not {expected[0]} {expected[1]}", source,
                                "the registry entry and the package disagree: correct the entry")
        target = root / card["task"] / str(card["version"])
        if target.exists() and not overwrite:
            raise HCCInputError(f"{card['task']} {card['version']} is already installed", target,
                                "pass --overwrite (or remove it first) to replace it")
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            old = staging / "old"
            os.replace(target, old)
            try:
                os.replace(package, target)
            except OSError:
                os.replace(old, target)
                raise
        else:
            try:
                os.replace(package, target)
            except OSError:
                if target.exists():  # another install of the same version finished first
                    raise HCCInputError(f"{card['task']} {card['version']} is already installed", target) from None
                raise
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


def remove_model(task: str, version: str, root: str | Path | None = None) -> Path:
    """Delete one installed version (renamed aside first, so a failed delete leaves no half package)."""
    root = Path(root) if root else models_dir()
    matches = [m for m in installed_models(root, task=task) if m.version == version]
    if not matches:
        known = ", ".join(m.label for m in installed_models(root)) or "none installed"
        raise HCCInputError(f"{task} {version} is not installed", root, f"installed: {known}")
    target = matches[0].path
    trash = Path(tempfile.mkdtemp(dir=root, prefix=".import-")) / "removed"
    os.replace(target, trash)
    shutil.rmtree(trash.parent, ignore_errors=True)
    if target.parent.is_dir() and not any(target.parent.iterdir()):
        target.parent.rmdir()
    return target


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
                        f"installed: {known}; install one with `hcc models install` or the panel, or pass a folder")
