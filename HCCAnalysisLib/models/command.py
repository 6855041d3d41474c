"""`hcc models list | install | remove | entry`: the models folder and Models.json from the command line.

    hcc models list [--task T] [--registry FILE|URL] [--json]
    hcc models install ID|TASK|ZIP|FOLDER|URL [--registry FILE|URL] [--overwrite]
    hcc models remove TASK VERSION        (or: hcc models remove ID)
    hcc models entry PACKAGE --url URL [--version V] [--zip-dir DIR]   -> prints a Models.json entry

The same folder and registry as the Slicer panel's model selector, Download and Import.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from HCCAnalysisLib.errors import HCCInputError
from HCCAnalysisLib.models.catalog import default_registry_path, find_entry, is_url, load_registry
from HCCAnalysisLib.models.fetch import download, download_url
from HCCAnalysisLib.models.folder import import_package, installed_models, models_dir, read_card, remove_model
from HCCAnalysisLib.models.publish import package_entry, package_for_entry

NO_PUBLIC_MODEL = ("No public HCC model exists (no public data set lets one be trained and shared): train one on "
                   "your cohort with `hcc train`, then `hcc models install FOLDER` (or the panel's Import), "
                   "and share it with `hcc models entry`.")


def _listing(task: str | None, registry: str | None) -> dict[str, Any]:
    installed = installed_models(task=task)
    have = {(m.task, m.version) for m in installed}
    available = [e for e in load_registry(registry) if e.kind == "model-package" and task in (None, e.task)]
    return {
        "models_folder": str(models_dir()), "registry": str(registry or default_registry_path()),
        "installed": [{"task": m.task, "version": m.version, "path": str(m.path), "title": m.card.get("title", ""),
                       "intended_use": m.card.get("intended_use", "")} for m in installed],
        "available": [dict(e.to_json(), installed=(e.task, e.version) in have) for e in available],
    }


def _list(args: argparse.Namespace) -> int:
    listing = _listing(args.task, args.registry)
    if args.json:
        print(json.dumps(listing, indent=2))
        return 0
    print(f"models folder: {listing['models_folder']}\nregistry: {listing['registry']}")
    tasks = sorted({m["task"] for m in listing["installed"]} | {e["task"] for e in listing["available"]})
    for task in tasks:
        print(task)
        for m in (m for m in listing["installed"] if m["task"] == task):
            print(f"  installed  {m['version']:12s} {m['title'] or '(no title)'}\n             {m['path']}")
        for e in (e for e in listing["available"] if e["task"] == task):
            state = "installed" if e["installed"] else f"{e['size_bytes'] / 1e6:.1f} MB"
            print(f"  available  {e['version']:12s} {e['id']}  [{state}, {e['license']}]\n             {e['title']}")
    if not tasks:
        print("no model installed or listed" + (f" for task {args.task}" if args.task else ""))
    print(NO_PUBLIC_MODEL)
    return 0


def _install(args: argparse.Namespace) -> int:
    ref, path = args.ref, Path(args.ref).expanduser()
    if path.exists():
        target = import_package(path, overwrite=args.overwrite).path
    elif is_url(ref):
        listed = [e for e in load_registry(args.registry) if e.url == ref]
        if listed:
            target = download(listed[0], overwrite=args.overwrite)
        else:
            print(f"hcc models install: {ref} is in no registry, so no checksum protects the archive; "
                  "the package's own weights SHA-256 is still checked", file=sys.stderr)
            target = download_url(ref, overwrite=args.overwrite)
    else:
        entry = find_entry(ref, args.registry)
        print(f"downloading {entry.id} ({entry.size_bytes / 1e6:.1f} MB, SHA-256 {entry.sha256[:12]}...)")
        target = download(entry, overwrite=args.overwrite)
    card = read_card(target)
    print(f"installed {card['task']} {card['version']} in {target}")
    if card.get("intended_use"):
        print(f"intended use: {card['intended_use']}")
    return 0


def _remove(args: argparse.Namespace) -> int:
    if args.version:
        task, version = args.ref, args.version
    else:
        entry = find_entry(args.ref, args.registry)
        task, version = entry.task, entry.version
    print(f"removed {task} {version} from {remove_model(task, version)}")
    return 0


def _entry(args: argparse.Namespace) -> int:
    given = {"title": args.title, "intended_use": args.intended_use, "license": args.license,
             "training_data": args.training_data}
    updates = {k: v for k, v in given.items() if v}  # the card says what the entry says
    archive = package_for_entry(args.package, args.zip_dir, args.version, updates, overwrite=args.overwrite)
    entry = package_entry(archive, args.url, entry_id=args.id, license=args.license, training_data=args.training_data,
                          title=args.title, intended_use=args.intended_use)
    print(json.dumps(entry.to_json(), indent=2))
    print(f"add this entry to your lab's Models.json and put {archive} at {args.url}; colleagues then run "
          f"`hcc models install {entry.id} --registry <that Models.json>`", file=sys.stderr)
    return 0


def add_models_parser(sub: Any) -> None:
    """Register `hcc models ...` on the main parser's subcommands."""
    models = sub.add_parser("models", help="list, install, remove and share model packages",
                            description=NO_PUBLIC_MODEL)
    verbs = models.add_subparsers(dest="models_command", required=True)

    def _registry_option(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--registry", default=None, metavar="FILE|URL",
                            help="a Models.json to use instead of the bundled one (e.g. your lab's)")

    listing = verbs.add_parser("list", help="installed models, and those the registry offers, per task")
    listing.add_argument("--task", default=None)
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    _registry_option(listing)
    listing.set_defaults(func=_list)

    install = verbs.add_parser("install", help="install a registry entry (checksum-verified), a zip, a folder or a URL")
    install.add_argument("ref", metavar="ID|TASK|ZIP|FOLDER|URL")
    install.add_argument("--overwrite", action="store_true", help="replace the installed copy of the same version")
    _registry_option(install)
    install.set_defaults(func=_install)

    remove = verbs.add_parser("remove", help="remove an installed version")
    remove.add_argument("ref", metavar="TASK|ID")
    remove.add_argument("version", nargs="?", default=None)
    _registry_option(remove)
    remove.set_defaults(func=_remove)

    entry = verbs.add_parser("entry", help="zip a trained package and print its Models.json entry (with SHA-256)")
    entry.add_argument("package", metavar="PACKAGE", help="package folder (from `hcc train`) or package zip")
    entry.add_argument("--url", required=True, help="where the zip will be downloaded from (or a path relative "
                                                    "to the lab's Models.json)")
    entry.add_argument("--version", default=None, help="version to give a package folder (default: its card's)")
    entry.add_argument("--zip-dir", default=".", help="folder to write the zip of a package folder into")
    entry.add_argument("--id", default=None, help="entry id (default TASK-VERSION)")
    entry.add_argument("--license", default=None)
    entry.add_argument("--training-data", default=None, help="what it was trained on (default: the card's summary)")
    entry.add_argument("--title", default=None)
    entry.add_argument("--intended-use", default=None)
    entry.add_argument("--overwrite", action="store_true", help="replace an existing zip")
    entry.set_defaults(func=_entry)

