"""Read and check an evaluation folder (docs/DESIGN.md, "Evaluation folder") for `hcc report`.

The folder holds predictions.tsv (one row per sample group per fold and repeat),
metrics.json (classes, per-fold metrics, summary) and optionally embeddings.npz.
Everything is validated here so that a report is never half-written from bad input.
"""

from __future__ import annotations

from typing import Any, Sequence

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from HCCAnalysisLib.errors import HCCInputError

REQUIRED_COLUMNS = ("repeat", "fold", "case_id", "patient_id", "lesion_id", "kind", "label",
                    "predicted_class")


@dataclass
class EvalRun:
    """One evaluation folder, as arrays aligned with the rows of predictions.tsv."""

    name: str
    path: Path
    task: str
    classes: list[str]
    rows: list[dict[str, str]]            # dicts, as read
    labels: np.ndarray    # true class names (object)
    predicted: np.ndarray  # predicted class names (object)
    probs: np.ndarray     # N x K, classes order
    repeats: np.ndarray   # str per row
    metrics: dict[str, Any]
    embeddings: np.ndarray | None = None     # M x D or None
    embedding_rows: np.ndarray | None = None  # M indices into rows

    def keys(self) -> list[tuple[str, str, str]]:
        """Identity of each row within a repeat: (case_id, lesion_id, kind)."""
        return [(r["case_id"], r["lesion_id"], r["kind"]) for r in self.rows]


def _read_metrics(path):
    file = path / "metrics.json"
    if not file.is_file():
        raise HCCInputError("no metrics.json", source=path,
                            hint="an evaluation folder is written by `hcc evaluate`")
    try:
        metrics = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise HCCInputError(f"metrics.json is not valid JSON ({err})", source=file)
    classes = metrics.get("classes") if isinstance(metrics, dict) else None
    distinct = isinstance(classes, list) and len(set(map(str, classes))) == len(classes)
    if not distinct or len(classes) < 2:
        raise HCCInputError("metrics.json must list at least two distinct 'classes'", source=file)
    return metrics, [str(c) for c in classes]


def _read_rows(path, classes):
    file = path / "predictions.tsv"
    if not file.is_file():
        raise HCCInputError("no predictions.tsv", source=path)
    with open(file, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle, delimiter="\t")
        columns = reader.fieldnames or []
        rows = list(reader)
    missing = [c for c in REQUIRED_COLUMNS + tuple(f"prob_{k}" for k in classes)
               if c not in columns]
    if missing:
        raise HCCInputError(f"missing column(s) {missing}", source=file,
                            hint="columns are fixed in docs/DESIGN.md, 'Evaluation folder'")
    if not rows:
        raise HCCInputError("has no rows (n = 0)", source=file)
    return file, rows


def _parse_probs(file, rows, classes):
    probs = np.empty((len(rows), len(classes)))
    for i, row in enumerate(rows):
        for k, name in enumerate(classes):
            try:
                probs[i, k] = float(row[f"prob_{name}"])
            except (TypeError, ValueError):
                probs[i, k] = math.nan
        if not np.isfinite(probs[i]).all():
            raise HCCInputError(f"row {i + 2}: probability is missing, NaN or not a number",
                                source=file)
    return probs


def _check_labels(file, rows, classes):
    for column in ("label", "predicted_class"):
        unknown = sorted({r[column] for r in rows} - set(classes))
        if unknown:
            raise HCCInputError(f"column {column!r} holds {unknown[:5]}, not among the classes "
                                f"{classes} of metrics.json", source=file)


def _read_embeddings(path, n_rows):
    file = path / "embeddings.npz"
    if not file.is_file():
        return None, None
    try:
        with np.load(file, allow_pickle=False) as data:
            emb, idx = np.asarray(data["embeddings"], float), np.asarray(data["row"])
    except (OSError, ValueError, KeyError) as err:
        raise HCCInputError(f"cannot read 'embeddings' and 'row' ({err})", source=file)
    if emb.ndim != 2 or idx.ndim != 1 or len(emb) != len(idx) or len(idx) == 0:
        raise HCCInputError(f"expected embeddings N x D and row (N,), got {emb.shape} and "
                            f"{idx.shape}", source=file)
    if idx.dtype.kind not in "iu" or idx.min() < 0 or idx.max() >= n_rows:
        raise HCCInputError(f"'row' must be integer indices into the {n_rows} prediction rows",
                            source=file)
    if not np.isfinite(emb).all():
        raise HCCInputError("embeddings contain NaN or infinite values", source=file)
    return emb, idx.astype(int)


def read_eval_dir(path: str | Path, name: str | None = None) -> EvalRun:
    """Read one evaluation folder into an EvalRun, or raise HCCInputError naming the file."""
    path = Path(path)
    if not path.is_dir():
        raise HCCInputError("is not a folder", source=path)
    metrics, classes = _read_metrics(path)
    file, rows = _read_rows(path, classes)
    _check_labels(file, rows, classes)
    probs = _parse_probs(file, rows, classes)
    embeddings, embedding_rows = _read_embeddings(path, len(rows))
    return EvalRun(name=name or path.resolve().name, path=path,
                   task=str(metrics.get("task", "")), classes=classes, rows=rows,
                   labels=np.array([r["label"] for r in rows], dtype=object),
                   predicted=np.array([r["predicted_class"] for r in rows], dtype=object),
                   probs=probs, repeats=np.array([r["repeat"] for r in rows], dtype=object),
                   metrics=metrics, embeddings=embeddings, embedding_rows=embedding_rows)


def read_eval_dirs(paths: Sequence[str | Path]) -> list[EvalRun]:
    """Read several folders; they must share the classes; names are made unique."""
    runs, seen = [], {}
    for path in paths:
        run = read_eval_dir(path)
        count = seen.get(run.name, 0)
        seen[run.name] = count + 1
        if count:
            run.name = f"{run.name} ({count + 1})"
        runs.append(run)
    first = runs[0]
    for run in runs[1:]:
        if run.classes != first.classes:
            raise HCCInputError(f"classes {run.classes} differ from {first.classes} of "
                                f"{first.path}", source=run.path,
                                hint="only evaluations of the same task can be compared")
    return runs
