"""Sharing a trained package: a reproducible zip and the Models.json entry that lists it.

`hcc train` writes a package folder; `hcc models entry PACKAGE --url U` zips it (with the
version a lab gives it) and prints the registry entry (size, SHA-256), so colleagues get the
model with `hcc models install ID --registry LAB/Models.json` or the panel's Download.
"""

from __future__ import annotations

from typing import Any

import json
import zipfile
from pathlib import Path

from HCCAnalysisLib.atomic import atomic_path
from HCCAnalysisLib.errors import HCCInputError
from HCCAnalysisLib.models.catalog import SAFE_NAME, RegistryEntry, is_url, parse_entry
from HCCAnalysisLib.models.folder import read_card, verify_package
from HCCAnalysisLib.models.package import CARD_NAME, sha256_of

_FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # zip timestamps fixed: the same package gives the same bytes and SHA-256


def zip_package(folder: str | Path, archive: str | Path, card_updates: dict[str, Any] | None = None,
                overwrite: bool = False) -> Path:
    """Write `folder` as a zip of `<task>-<version>/` with the card updated by `card_updates`
    (version, title, ...; the weights and their SHA-256 are untouched). Returns the zip path."""
    folder, archive = Path(folder), Path(archive)
    card = verify_package(folder)
    card.update(card_updates or {})
    raw = json.loads((folder / CARD_NAME).read_text(encoding="utf-8"))
    raw.update(card_updates or {})
    if archive.exists() and not overwrite:
        raise HCCInputError("already exists", archive, "pass --overwrite to replace it")
    inner = f"{card['task']}-{card['version']}"
    archive.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(archive) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(p for p in folder.iterdir() if p.is_file()):
            data = (json.dumps(raw, indent=2) + "\n").encode() if path.name == CARD_NAME else path.read_bytes()
            info = zipfile.ZipInfo(f"{inner}/{path.name}", date_time=_FIXED_TIME)
            info.compress_type, info.external_attr = zipfile.ZIP_DEFLATED, 0o644 << 16
            zf.writestr(info, data)
    return archive


def card_in_zip(archive: str | Path) -> dict[str, Any]:
    """The model card inside a package zip (without extracting the weights)."""
    with zipfile.ZipFile(archive) as zf:
        names = [n for n in zf.namelist() if Path(n).name == CARD_NAME]
        if len(names) != 1:
            raise HCCInputError(f"must hold exactly one {CARD_NAME}, found {len(names)}", archive)
        try:
            return json.loads(zf.read(names[0]).decode("utf-8"))
        except ValueError as err:
            raise HCCInputError(f"{names[0]} is not valid JSON: {err}", archive) from None


def _training_summary(card: dict[str, Any]) -> str:
    training = card.get("training") or {}
    parts = [f"{training[k]} {k[2:]}" for k in ("n_cases", "n_patients") if k in training]
    return card.get("training_data") or (f"cohort of {', '.join(parts)}" if parts else "")


def package_entry(archive: str | Path, url: str, entry_id: str | None = None, license: str | None = None,
                  training_data: str | None = None, title: str | None = None, intended_use: str | None = None
                  ) -> RegistryEntry:
    """The checked Models.json entry of a package zip; unspecified fields come from its card."""
    archive = Path(archive)
    if not zipfile.is_zipfile(archive):
        raise HCCInputError("is not a zip file", archive)
    card = card_in_zip(archive)
    item = {
        "id": entry_id or f"{card.get('task')}-{card.get('version', '0')}", "task": str(card.get("task", "")),
        "version": str(card.get("version", "0")), "kind": "model-package", "url": url,
        "sha256": sha256_of(archive), "size_bytes": archive.stat().st_size, "file_name": archive.name,
        "license": license or card.get("license", ""), "training_data": training_data or _training_summary(card),
        "title": title or card.get("title", ""), "intended_use": intended_use or card.get("intended_use", ""),
    }
    missing = [k for k in ("license", "training_data", "title", "intended_use") if not str(item[k]).strip()]
    if missing:
        raise HCCInputError(f"the entry needs {missing}: pass them as options or put them in the card", archive)
    parse_entry(item, str(archive), base="" if is_url(url) else archive.resolve().parent.as_uri())
    return RegistryEntry(**item)  # the URL as given: a relative one stays relative to the registry


def package_for_entry(package: str | Path, out_dir: str | Path, version: str | None,
                      card_updates: dict[str, Any] | None = None, overwrite: bool = False) -> Path:
    """A zip to list: `package` itself when it is a zip (its version must match), else the folder
    zipped with `card_updates` (title, intended use, ...) written into its card."""
    package = Path(package)
    if package.is_file():
        card = card_in_zip(package)
        if version and str(card.get("version")) != version:
            raise HCCInputError(f"holds version {card.get('version')}, not {version}", package,
                                "zip the package folder instead to give it a version")
        return package
    card = read_card(package)
    version = version or card["version"]
    if not SAFE_NAME.match(version):
        raise HCCInputError(f"version '{version}' is not a plain folder name", package, "use e.g. 1.0.0")
    updates = dict(card_updates or {}, version=version)
    return zip_package(package, Path(out_dir) / f"{card['task']}-{version}.zip", updates, overwrite)
