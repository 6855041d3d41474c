"""Downloading registry entries: size and SHA-256 checked by us before anything is installed.

The Slicer module passes SampleData's downloader (progress in Slicer's status bar);
the command line uses `urllib_download`. file: URLs (a lab's shared folder, the bundled
demo model) are always copied with urllib, so they work offline inside Slicer too.
"""

from __future__ import annotations

from typing import Callable

import os
import shutil
import urllib.request
from pathlib import Path

from HCCAnalysisLib.errors import HCCInputError
from HCCAnalysisLib.models.catalog import RegistryEntry
from HCCAnalysisLib.models.folder import check_sha256, import_package, models_dir


def urllib_download(url: str, dest_folder: str | Path, name: str, checksum: str | None = None) -> str:
    """Plain downloader with the signature of SampleData's `downloadFile` (for use outside Slicer).
    `checksum` is accepted for that signature; `download` checks the file itself."""
    path = Path(dest_folder) / name
    tmp = path.with_name(f".{name}.part")
    try:
        with urllib.request.urlopen(url, timeout=300) as response, open(tmp, "wb") as handle:  # noqa: S310
            shutil.copyfileobj(response, handle)
    except (OSError, ValueError) as err:
        Path(tmp).unlink(missing_ok=True)
        raise HCCInputError(f"could not be downloaded: {err}", url, "check the URL and the network") from None
    os.replace(tmp, path)
    return str(path)


def download(entry: RegistryEntry, downloader: Callable[..., str] = urllib_download, root: str | Path | None = None,
             overwrite: bool = False) -> Path:
    """Fetch a registry entry through `downloader(url, folder, name, checksum=...)`, check its size
    and SHA-256 ourselves (a downloader may not), then install it. Returns the installed path.

    A mismatching file is deleted and refused with HCCInputError; nothing is installed.
    """
    root = Path(root) if root else models_dir()
    target = root / entry.task / entry.version
    if entry.kind == "model-package" and target.exists() and not overwrite:  # refuse before a long download
        raise HCCInputError(f"{entry.task} {entry.version} is already installed", target,
                            "pass --overwrite (or remove it first) to replace it")
    downloads = root / ".downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    fetch = urllib_download if entry.url.startswith("file:") else downloader
    path = Path(fetch(entry.url, str(downloads), entry.file_name, checksum=f"SHA256:{entry.sha256}"))
    try:
        size = path.stat().st_size
        if entry.size_bytes and size != entry.size_bytes:
            raise HCCInputError(f"has {size} bytes, the registry says {entry.size_bytes}; the file is refused", path,
                                "the download is incomplete or the file was changed: download it again")
        check_sha256(path, entry.sha256)
    except HCCInputError:
        path.unlink(missing_ok=True)  # never leave a bad file where the next run could reuse it
        raise
    if entry.kind == "pretrained-weights":
        target = root / "pretrained" / entry.file_name
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)
        return target
    try:
        return import_package(path, root=root, overwrite=overwrite, expected=(entry.task, entry.version)).path
    finally:
        path.unlink(missing_ok=True)


def download_url(url: str, root: str | Path | None = None, overwrite: bool = False) -> Path:
    """Install a package zip from a URL that no registry lists: no checksum to compare the
    archive with, so only the card's own weights SHA-256 protects it."""
    root = Path(root) if root else models_dir()
    downloads = root / ".downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    name = Path(urllib.request.url2pathname(url.split("?")[0])).name or "package.zip"
    path = Path(urllib_download(url, downloads, name))
    try:
        return import_package(path, root=root, overwrite=overwrite).path
    finally:
        path.unlink(missing_ok=True)
