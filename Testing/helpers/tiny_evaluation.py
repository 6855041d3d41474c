"""A small evaluation folder (as `hcc evaluate` writes it) for tests of `hcc report` that are not
about the evaluation itself: 12 one-lesion patients, 2 folds, a fixed random draw."""

import csv
import json
from pathlib import Path

import numpy as np

from HCCAnalysisLib.stats.metrics import fold_metrics, summarise

CLASSES = ["benign", "malignant"]


def write_tiny_evaluation(folder, seed=3):
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(12):
        label = i % 2
        p = float(np.clip(0.3 * label + rng.uniform(0.1, 0.7), 0.01, 0.99))
        rows.append({"repeat": 0, "fold": i % 2, "case_id": f"C{i:02d}", "patient_id": f"P{i:02d}",
                     "lesion_id": "1", "kind": "lesion", "label": CLASSES[label],
                     "predicted_class": CLASSES[int(p > 0.5)], "prob_benign": repr(1 - p), "prob_malignant": repr(p)})
    with open(folder / "predictions.tsv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, list(rows[0]), delimiter="\t", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    folds = []
    for fold in (0, 1):
        chosen = [r for r in rows if r["fold"] == fold]
        probs = np.array([[float(r["prob_benign"]), float(r["prob_malignant"])] for r in chosen])
        folds.append({"repeat": 0, "fold": fold, "n_test": len(chosen),
                      **fold_metrics([CLASSES.index(r["label"]) for r in chosen], probs, CLASSES)})
    metrics = {"task": "tiny", "classes": CLASSES, "folds": folds,
               "summary": summarise(folds, predictions=rows, classes=CLASSES), "versions": {}, "seed": 0,
               "config": {"folds": 2, "repeats": 1}}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder
