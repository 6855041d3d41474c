"""Model registry, public face of `models/`: the versioned list in Models.json (catalog.py),
the per-user models folder and installs (folder.py), checksum-verified downloads (fetch.py)
and sharing a trained package (publish.py).

A model package is a folder with `model.json` (the model card) and its weights
(`model.safetensors`). Installed packages live in `<models folder>/<task>/<version>/`;
downloaded pretrained weights (not packages) in `<models folder>/pretrained/`.
The models folder is per user, overridable with the environment variable
`HCCANALYSIS_MODELS_DIR`. Nothing here imports torch or slicer: the Slicer module
passes SampleData's downloader to `download`, the command line uses `urllib_download`.
"""

from __future__ import annotations

from typing import Sequence

from pathlib import Path

from HCCAnalysisLib.models.catalog import (  # noqa: F401
    KINDS, REQUIRED_FIELDS, RegistryEntry, default_registry_path, downloadable_models, find_entry, load_registry,
    version_key,
)
from HCCAnalysisLib.models.fetch import download, download_url, urllib_download  # noqa: F401
from HCCAnalysisLib.models.folder import (  # noqa: F401
    ENV_MODELS_DIR, InstalledModel, check_sha256, clear_models_dir, find_model, import_package, installed_models,
    models_dir, read_card, remove_model, verify_package,
)
from HCCAnalysisLib.models.package import sha256_of
from HCCAnalysisLib.models.publish import package_entry, zip_package  # noqa: F401

sha256_file = sha256_of  # one digest function for cards, downloads and imports


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
