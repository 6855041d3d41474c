"""Rebuild the bundled demo model and its Models.json entry.

    .venv/bin/python tools/build_demo_model.py [--epochs 12] [--seed 0]

Trains jia2019-hcc-vs-background with the library on HCCAnalysisLib/sample_data/demo-cohort exactly as
`make demo` trains its final model (the same as
`hcc train --task jia2019-hcc-vs-background --cohort HCCAnalysisLib/sample_data/demo-cohort --phases image
--epochs 12 --seed 0 --device cpu --out MODEL`: no --pretrained, so the task's recipe for one phase, the
authors' MNIST weights), names it a
pipeline demonstration in its card, zips it reproducibly into
HCCAnalysisLib/models/bundled/, writes how it was made beside it (PROVENANCE.json) and
replaces the demo's entry in HCCAnalysisLib/models/Models.json (size and SHA-256).
Training on CPU is not bit-identical across machines and library versions, so a rebuild
may give other weights (and a new SHA-256); the provenance file records the versions used.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from HCCAnalysisLib.atomic import write_text_atomic  # noqa: E402
from HCCAnalysisLib.demo import COHORT, DEMO_EPOCHS, PHASES, PRETRAINED, TASK  # noqa: E402
from HCCAnalysisLib.models.catalog import default_registry_path  # noqa: E402
from HCCAnalysisLib.models.package import library_versions  # noqa: E402
from HCCAnalysisLib.models.publish import package_entry, zip_package  # noqa: E402

VERSION = "0.2.0-demo"  # 0.2.0: fine-tuned from the MNIST weights (the task's one-phase recipe)
ENTRY_ID = f"{TASK}-pipeline-demo"
BUNDLED = default_registry_path().parent / "bundled"
TITLE = ("PIPELINE DEMONSTRATION ONLY - not a clinical model, not an HCC model: ResNet20+SPP trained on "
         "4 non-liver tumours (lung CT, brain and breast MR; pyradiomics test data)")
INTENDED_USE = ("testing the pipeline (install, predict, saliency, the Slicer panel) end to end; "
                "its outputs mean nothing for liver images or any patient")
TRAINING_DATA = ("HCCAnalysisLib/sample_data/demo-cohort: 4 real tumour images of 4 patients (2 lung CT, 1 brain MR, 1 breast MR) "
                 "from the pyradiomics 3.0.1 test data (BSD-3-Clause), with a ring of tissue around each tumour "
                 "standing in for the 'background' class; fine-tuned from Jia et al. 2019's MNIST weights "
                 "(Apache-2.0), their start for one grey sequence (sec. 4.1). No liver, no HCC.")
LICENSE = "Apache-2.0"
DESCRIPTION = (f"Pipeline demonstration of task {TASK} (tumour vs. the tissue ring around it), one channel "
               "repeated as three, on non-liver sample data; the task itself reads three fused liver MRI sequences")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=DEMO_EPOCHS)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    import torch

    from HCCAnalysisLib.workflows import train_model

    torch.set_num_threads(1)  # one thread: the most repeatable CPU run
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "model"
        card = train_model(TASK, COHORT, model, PHASES, PRETRAINED, args.epochs, seed=args.seed, device="cpu",
                           log=print)
        # the card names the start the recipe resolved to (jia2019-mnist); keep it, add the cohort's repo path
        training = dict(card["training"], cohort=COHORT.relative_to(ROOT).as_posix())
        updates = {"version": VERSION, "title": TITLE, "description": DESCRIPTION, "intended_use": INTENDED_USE, "license": LICENSE,
                   "training_data": TRAINING_DATA, "training": training}
        archive = zip_package(model, BUNDLED / f"{TASK}-{VERSION}.zip", updates, overwrite=True)
    entry = package_entry(archive, f"bundled/{archive.name}", entry_id=ENTRY_ID).to_json()
    for earlier in BUNDLED.glob(f"{TASK}-*-demo.zip"):  # an earlier version's zip: its entry is replaced below
        if earlier != archive:
            earlier.unlink()
            print(f"removed {earlier.name} (replaced by {archive.name})")
    command = (f"hcc train --task {TASK} --cohort {training['cohort']} --phases {','.join(PHASES)} "
               f"--epochs {args.epochs} --seed {args.seed} --device cpu --out MODEL")
    provenance = {"what": TITLE, "intended_use": INTENDED_USE, "training_data": TRAINING_DATA,
                  "file": archive.name, "sha256": entry["sha256"], "size_bytes": entry["size_bytes"],
                  "built_with": f"python tools/build_demo_model.py --epochs {args.epochs} --seed {args.seed}",
                  "equivalent_command": command, "pretrained": training.get("pretrained"), "seed": args.seed,
                  "epochs": args.epochs, "torch_threads": 1,
                  "versions": library_versions(), "machine": f"{platform.system()} {platform.machine()}",
                  "training_accuracy": card["metrics"]["training_accuracy"], "final_loss": training["final_loss"],
                  "seconds": round(time.time() - started, 1), "built": time.strftime("%Y-%m-%d", time.gmtime())}
    write_text_atomic(BUNDLED / "PROVENANCE.json", json.dumps(provenance, indent=2) + "\n")
    registry = default_registry_path()
    data = json.loads(registry.read_text(encoding="utf-8"))
    data["models"] = [entry] + [m for m in data["models"] if m.get("id") != ENTRY_ID]
    write_text_atomic(registry, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps(provenance, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
