"""Models.json: the versioned list of downloadable models, read from a file or a URL and checked strictly.

Each entry is either a "model-package" (a zip of model.json + model.safetensors that
`hcc models install` puts into <models folder>/<task>/<version>/) or "pretrained-weights"
(a third-party state dict that fine-tuning starts from). An entry's `url` may be relative:
it is then resolved against the registry's own location, so a folder (or web directory)
holding Models.json and its zips is a complete registry, and the bundled demo model
(`bundled/...zip` beside the package's Models.json) installs offline.
"""

from __future__ import annotations

from typing import Any

import json
import re
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from HCCAnalysisLib.errors import HCCInputError

SCHEMA_VERSION = 1
KINDS = ("model-package", "pretrained-weights")
REQUIRED_FIELDS = ("id", "task", "version", "kind", "url", "sha256", "size_bytes", "file_name", "license",
                   "training_data")
PACKAGE_FIELDS = ("title", "intended_use")  # a model to run must say what it is and what it is for
OPTIONAL_FIELDS = ("title", "intended_use", "source")
TOP_LEVEL_FIELDS = ("schema_version", "description", "models")
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")  # one path component, no traversal
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_SCHEMES = ("https://", "http://", "file:")


@dataclass(frozen=True)
class RegistryEntry:
    """One downloadable item of Models.json (`url` is absolute once loaded)."""

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
    intended_use: str = ""
    size_bytes: int = 0

    def to_json(self) -> dict[str, Any]:
        """The entry as Models.json holds it (empty optional fields left out)."""
        return {k: v for k, v in asdict(self).items() if v not in ("", None)}


def default_registry_path() -> Path:
    """The registry shipped inside the library (package data, so pip users and Slicer read the same file)."""
    return Path(__file__).resolve().parent / "Models.json"


def is_url(text: str) -> bool:
    return str(text).startswith(_SCHEMES)


def _read_registry_text(source: str) -> tuple[str, str]:
    """(text, base URL for relative entries) of a registry file path or URL."""
    if is_url(source):
        try:
            with urllib.request.urlopen(source, timeout=60) as response:  # noqa: S310 (user-chosen registry)
                return response.read().decode("utf-8"), source
        except (OSError, ValueError, UnicodeDecodeError) as err:
            raise HCCInputError(f"cannot be read: {err}", source, "check the registry URL") from None
    path = Path(source).expanduser()
    try:
        return path.read_text(encoding="utf-8"), path.resolve().as_uri()
    except (OSError, UnicodeDecodeError) as err:
        raise HCCInputError(f"cannot be read: {err}", path) from None


def resolve_url(url: str, base: str) -> str:
    """An entry's URL made absolute: relative ones are taken from the registry's own location."""
    return url if is_url(url) else urllib.parse.urljoin(base, urllib.parse.quote(url))


def load_registry(source: str | Path | None = None) -> list[RegistryEntry]:
    """Read and validate a Models.json (path or URL; the bundled one by default), in file order."""
    source = str(source) if source else str(default_registry_path())
    text, base = _read_registry_text(source)
    try:
        data = json.loads(text)
    except ValueError as err:
        raise HCCInputError(f"is not valid JSON: {err}", source) from None
    if not isinstance(data, dict) or data.get("schema_version") != SCHEMA_VERSION \
            or not isinstance(data.get("models"), list):
        raise HCCInputError(f"is not a model list (expected schema_version {SCHEMA_VERSION} and a 'models' list)",
                            source)
    unknown = sorted(set(data) - set(TOP_LEVEL_FIELDS))
    if unknown:
        raise HCCInputError(f"has unknown top-level field(s) {unknown}", source, f"allowed: {list(TOP_LEVEL_FIELDS)}")
    entries, ids, versions = [], set(), set()
    for index, item in enumerate(data["models"]):
        where = f"{source} models[{index}]"
        entry = parse_entry(item, where, base)
        if entry.id in ids:
            raise HCCInputError(f"repeats the id '{entry.id}'", where)
        if entry.kind == "model-package" and (entry.task, entry.version) in versions:
            raise HCCInputError(f"repeats {entry.task} version {entry.version}", where,
                                "give each release its own version")
        ids.add(entry.id)
        versions.add((entry.task, entry.version))
        entries.append(entry)
    return entries


def parse_entry(item: Any, where: str, base: str = "") -> RegistryEntry:
    """One checked entry: every field known, present, of the right type; the URL resolved against `base`."""
    if not isinstance(item, dict):
        raise HCCInputError("is not a JSON object", where)
    unknown = sorted(set(item) - set(REQUIRED_FIELDS) - set(OPTIONAL_FIELDS))
    if unknown:
        raise HCCInputError(f"has unknown field(s) {unknown}", where,
                            f"allowed: {list(REQUIRED_FIELDS) + list(OPTIONAL_FIELDS)}")
    missing = [k for k in REQUIRED_FIELDS if item.get(k) in (None, "")]
    if item.get("kind") == "model-package":
        missing += [k for k in PACKAGE_FIELDS if not str(item.get(k, "")).strip()]
    if missing:
        raise HCCInputError(f"lacks {missing}", where)
    size = item["size_bytes"]
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise HCCInputError(f"size_bytes {size!r} is not a positive whole number of bytes", where)
    texts = [k for k in item if k != "size_bytes" and not isinstance(item[k], str)]
    if texts:
        raise HCCInputError(f"field(s) {texts} must be text", where)
    entry = RegistryEntry(**item)
    if entry.kind not in KINDS:
        raise HCCInputError(f"has unknown kind '{entry.kind}'", where, f"use one of {KINDS}")
    if not _SHA256.match(entry.sha256):
        raise HCCInputError("sha256 is not 64 lowercase hex digits", where)
    for name, value in (("id", entry.id), ("task", entry.task), ("version", entry.version),
                        ("file_name", entry.file_name)):
        if not SAFE_NAME.match(value):
            raise HCCInputError(f"{name} '{value}' is not a plain file name", where)
    if not is_url(entry.url) and (not base or entry.url.startswith(("/", "\\")) or ".." in Path(entry.url).parts
                                  or ":" in entry.url):
        raise HCCInputError(f"url '{entry.url}' is neither http(s)/file nor a path inside the registry's folder",
                            where)
    return RegistryEntry(**dict(item, url=resolve_url(entry.url, base))) if base else entry


def version_key(version: str) -> list[tuple[int, int, str]]:
    """Numeric parts compare as numbers (1.10 after 1.2); text parts sort after numbers."""
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"[.+-]", version)]


def downloadable_models(task: str, registry: str | Path | None = None) -> list[RegistryEntry]:
    """The Models.json entries of kind "model-package" for `task`, newest version first
    (what the panel's Download offers; pretrained-weights entries are no model to run)."""
    entries = [e for e in load_registry(registry) if e.kind == "model-package" and e.task == task]
    return sorted(entries, key=lambda e: version_key(e.version), reverse=True)


def find_entry(ref: str, registry: str | Path | None = None) -> RegistryEntry:
    """A model-package entry by id, or the newest one of a task name."""
    entries = load_registry(registry)
    by_id = [e for e in entries if e.id == ref]
    if by_id:
        return by_id[0]
    newest = downloadable_models(ref, registry) if any(e.task == ref for e in entries) else []
    if newest:
        return newest[0]
    known = ", ".join(e.id for e in entries if e.kind == "model-package") or "none"
    raise HCCInputError(f"'{ref}' is no model id or task of the registry", registry or default_registry_path(),
                        f"model packages listed: {known}")
