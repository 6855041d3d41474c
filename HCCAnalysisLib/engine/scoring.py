"""The test side of an evaluation: score samples with a trained net, and write the evaluation folder.

Shared by cross-validation (`engine/evaluate.py`: each fold's test cases) and by an external test
cohort (`engine/external.py`: a trained model package on another cohort, Zhen 2020's protocol),
so both write the same files and `hcc report` reads either.

Test-time augmentation (`tta`): Jia 2019 scores an augmented test set (sec. 5.2: "training and
testing sets are augmented separately"); with `tta` every test sample is scored in its six views
(the original, three rotations, two flips: `data/preprocess.augment_x6`) and the lesion's
probabilities are the mean over all its views, as over its slices.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from HCCAnalysisLib.atomic import atomic_path, write_text_atomic
from HCCAnalysisLib.data.prediction import write_records_tsv
from HCCAnalysisLib.engine.augment import augment_samples
from HCCAnalysisLib.engine.infer import aggregate, prepare_for_inference, run_net
from HCCAnalysisLib.models.package import library_versions
from HCCAnalysisLib.stats.metrics import fold_metrics, summarise

if TYPE_CHECKING:
    import torch

    from HCCAnalysisLib.data.samples import Sample
    from HCCAnalysisLib.methods.task import Task

ROW_COLUMNS = ("repeat", "fold", "case_id", "patient_id", "lesion_id", "kind", "label", "predicted_class")


def scored_views(samples: Sequence[Sample], tta: bool) -> list[Sample]:
    """The samples as scored: themselves, or with `tta` their six views each (same ids)."""
    samples = list(samples)
    return augment_samples(samples) if tta else samples


def score_samples(task: Task, net: torch.nn.Module, samples: Sequence[Sample], device: torch.device, repeat: Any,
                  fold: Any, tta: bool = False) -> tuple[list[dict], list[np.ndarray] | None, dict[str, Any]]:
    """(prediction rows, one embedding per row or None, the fold's metrics) of `samples`.

    The net runs on `device` in one forward for probabilities and embeddings; it never trains
    again, so it gets the inference layout (folded batch norm, channels-last)."""
    classes = list(task.classes)
    samples = scored_views(samples, tta)
    net = prepare_for_inference(net.to(device))
    probs, embedded = run_net(net, samples, device, with_embeddings=True)
    rows = aggregate(samples, probs, classes, votes=task.vote_extras)
    truth = {(s.case_id, s.lesion_id, s.kind): classes[s.target] for s in samples}
    records, embeddings = [], []
    for row in rows:
        record = {"repeat": repeat, "fold": fold, "case_id": row.case_id, "patient_id": row.patient_id,
                  "lesion_id": row.lesion_id, "kind": row.kind,
                  "label": truth[(row.case_id, row.lesion_id, row.kind)], "predicted_class": row.predicted_class}
        record.update({f"prob_{c}": row.probabilities[c] for c in classes})
        records.append(record)
    if embedded is not None:
        keys = [(s.case_id, s.lesion_id, s.kind) for s in samples]
        for row in rows:
            mask = np.array([k == (row.case_id, row.lesion_id, row.kind) for k in keys])
            embeddings.append(np.asarray(embedded[mask].mean(axis=0), dtype=np.float32))
    y_true = [classes.index(r["label"]) for r in records]
    y_prob = np.array([[r[f"prob_{c}"] for c in classes] for r in records])
    result = {"repeat": repeat, "fold": fold, "n_test": len(records)}
    result.update(fold_metrics(y_true, y_prob, classes))
    return records, (None if embedded is None else embeddings), result


def write_evaluation_files(out_dir: str | Path, task: Task, phases: Sequence[str], rows: Sequence[dict],
                           fold_results: Sequence[dict], embeddings: Sequence[np.ndarray], seed: int,
                           config: Mapping[str, Any]) -> dict[str, Any]:
    """predictions.tsv, embeddings.npz, roc.png, then metrics.json (its presence marks a finished
    evaluation); returns metrics.json's dict."""
    from HCCAnalysisLib.report.roc_figure import save_roc_figure

    out_dir = Path(out_dir)
    classes = list(task.classes)
    write_records_tsv(out_dir / "predictions.tsv", rows, list(ROW_COLUMNS) + [f"prob_{c}" for c in classes])
    if embeddings:
        with atomic_path(out_dir / "embeddings.npz") as tmp, open(tmp, "wb") as handle:
            np.savez(handle, embeddings=np.array(embeddings, dtype=np.float32), row=np.arange(len(embeddings)))
    save_roc_figure(rows, classes, out_dir / "roc.png", title=task.name)
    metrics = {"task": task.name, "classes": classes, "phases": list(phases), "folds": list(fold_results),
               "summary": summarise(fold_results, predictions=rows, classes=classes), "versions": library_versions(),
               "seed": seed, "config": dict(config)}
    write_text_atomic(out_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    return metrics
