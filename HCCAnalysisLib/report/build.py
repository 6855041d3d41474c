"""Assemble an evaluation report: read folders, compute numbers, draw figures, write files.

The heavy part of `hcc report` (scipy, statsmodels, scikit-learn, matplotlib), kept out
of report.py so that building the `hcc` argument parser stays fast.
"""

from __future__ import annotations

from typing import Sequence

import itertools
import json
import math
import os
import re
from pathlib import Path

import numpy as np

from HCCAnalysisLib.atomic import write_bytes_atomic
from HCCAnalysisLib.report import figures
from HCCAnalysisLib.report import html as report_html
from HCCAnalysisLib.report import readers as report_readers
from HCCAnalysisLib.report import tables as report_tables
from HCCAnalysisLib.errors import HCCInputError
from HCCAnalysisLib.report.reading import read_eval_dirs
from HCCAnalysisLib.report.roc_figure import roc_series
from HCCAnalysisLib.stats.checks import check_confidence


def _slug(text):
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(text)).strip("_") or "model"


def _auc_label(row):
    auc = row["auc"]
    return f"{row['class']}: AUC {auc['value']:.3f} ({auc['low']:.3f}-{auc['high']:.3f})"


def _model_figures(model, data, summary, classes, level):
    """ROC (all reported classes) and confusion figures of one model at one level."""
    name, out = model["name"], []
    curves = [(_auc_label(row), (data.labels == row["class"]).astype(int),
               data.probs[:, classes.index(row["class"])])
              for row in summary["per_class"] if row["auc"] is not None]
    if curves:
        out.append({"file": f"roc_{_slug(name)}_{level}.png", "level": level, "width": 430,
                    "caption": f"ROC curves, {name}, {level} level (AUC with DeLong CI)",
                    "png": figures.roc_figure(f"{name} ({level})", curves)})
    out.append({"file": f"confusion_{_slug(name)}_{level}.png", "level": level, "width": 760,
                "caption": f"Confusion matrix, {name}, {level} level (rows: true class)",
                "png": figures.confusion_figure(name, classes, summary["confusion_counts"],
                                                summary["confusion_normalised"])})
    return out


def _compare_figures(models, level, classes):
    """One ROC figure per reported class overlaying every model."""
    out = []
    for name in report_tables.reported_classes(classes):
        k, curves = classes.index(name), []
        for m in models:
            data, summary = m["data"][level], m["levels"][level]
            row = next(r for r in summary["per_class"] if r["class"] == name)
            if row["auc"] is not None:
                curves.append((f"{m['name']}: AUC {row['auc']['value']:.3f}",
                               (data.labels == name).astype(int), data.probs[:, k]))
        if curves:
            out.append({"file": f"roc_compare_{_slug(name)}_{level}.png", "level": level,
                        "width": 430, "caption": f"ROC curves of all models for {name} "
                                                 f"({level} level)",
                        "png": figures.roc_figure(f"{name} ({level})", curves)})
    return out


def _reader_figures(main, readers, classes, level):
    """Per reported class: the main model's ROC with each reader's operating point and the
    average reader (Zhen Fig. 2)."""
    out, data = [], main["data"][level]
    for name in report_tables.reported_classes(classes):
        truth = (data.labels == name).astype(int)
        if truth.all() or not truth.any():
            continue
        points = []
        for reader in readers:
            point = report_readers.operating_point(reader["data"][level], name) if level in reader["data"] else None
            if point is not None:
                points.append((reader["name"], *point))
        average = report_readers.average_point(readers, level, name)
        if average is not None and len(points) > 1:
            points.append(("average reader", *average))
        if not points:
            continue
        curve = [(f"{main['name']}", truth, data.probs[:, classes.index(name)])]
        out.append({"file": f"roc_readers_{_slug(name)}_{level}.png", "level": level, "width": 430,
                    "caption": f"ROC of {main['name']} for {name} ({level} level) with the readers' "
                               f"operating points (1 - specificity, sensitivity) on the cases each called",
                    "png": figures.roc_figure(f"{name} vs readers ({level})", curve, points)})
    return out


def _embedding_figure(model, run, classes):
    """The saved embeddings of the first repeat: drawn raw when 2-D (Jia Figs. 6/10), else t-SNE.

    One repeat only: every case appears once per repeat, and points of different repeats
    come from different networks; the caption says which repeat was drawn.
    """
    if run.embeddings is None:
        return []
    used = set(np.flatnonzero(run.repeats == model["first_repeat"]).tolist())
    keep = np.array([i for i, r in enumerate(run.embedding_rows) if r in used], dtype=int)
    which = f"repeat {model['first_repeat']}"
    if len(keep) == 0:
        keep, which = np.arange(len(run.embedding_rows)), "all rows"
    dims, name = run.embeddings.shape[1], model["name"]
    if dims == 2:
        labels = run.labels[run.embedding_rows[keep]]
        return [{"file": f"embedding2d_{_slug(name)}.png", "level": "tsne", "width": 460,
                 "caption": f"The 2-D embedding as the network outputs it (no t-SNE), {name}, "
                            f"{which} ({len(keep)} points, coloured by true class; each fold's "
                            f"test points come from that fold's network)",
                 "png": figures.embedding_figure(f"{name}: 2-D embedding", run.embeddings[keep],
                                                 labels, classes)}]
    points, chosen, used = figures.tsne_points(run.embeddings[keep])
    if points is None:
        return []
    labels = run.labels[run.embedding_rows[keep][chosen]]
    settings = (f"Barnes-Hut t-SNE, theta {used['angle']:g}, perplexity {used['perplexity']:.3g}"
                f"{'' if used['perplexity'] == figures.TSNE_SETTINGS['perplexity'] else ' (50 needs more points)'}, "
                f"{used['iterations_run']} of at most {used['max_iter']} iterations (Zhen 2020's settings)")
    return [{"file": f"tsne_{_slug(name)}.png", "level": "tsne", "width": 460,
             "caption": f"t-SNE of {dims}-D last hidden features, {name}, {which} "
                        f"({len(points)} points, coloured by true class); {settings}",
             "png": figures.tsne_figure(name, points, labels, classes)}]


def _mean_roc_figure(model, run, classes):
    """Mean ROC with its SD band over every repeat of one evaluation (Jia Fig. 8)."""
    series = roc_series(run.rows, classes)
    if not series:
        return []
    n_repeats = len(model["repeats"]["repeats"])
    return [{"file": f"roc_mean_{_slug(model['name'])}.png", "level": "repeats", "width": 430,
             "caption": f"Mean ROC of {model['name']} over {n_repeats} repeat(s), band +-1 SD of "
                        f"the true-positive rate at each false-positive rate; thin lines: each "
                        f"repeat's pooled out-of-fold ROC",
             "png": figures.mean_roc_figure(f"{model['name']}: mean ROC over repeats", series)}]


def _tsic_figure(model, run):
    """The evaluation's time-signal intensity curves (`hcc evaluate --dynamic-phases`), if any."""
    from HCCAnalysisLib.methods.jia2019.tsic import TSIC_FILE, mean_curves, read_curves

    if not (run.path / TSIC_FILE).is_file():
        return []
    phases, rows = read_curves(run.path / TSIC_FILE)
    curves = mean_curves(rows, phases)
    return [{"file": f"tsic_curve_{_slug(model['name'])}.png", "level": "repeats", "width": 480,
             "caption": f"Time-signal intensity curves, {model['name']}: mean raw intensity of the 16 x 16 "
                        f"centre of each ROI over the dynamic phases {', '.join(phases)}, per class, band "
                        f"+-1 SD over ROIs (Jia 2019 Fig. 4)",
             "png": figures.tsic_figure(f"{model['name']}: time-signal intensity", phases, curves)}]


def epoch_curves(run_path: Path) -> tuple[np.ndarray, dict] | None:
    """Per-epoch accuracy of every fold (`training_logs/r<R>_f<F>.tsv`): for the training samples and,
    when the evaluation scored the test fold after each epoch (`--epoch-curve`), for the test fold;
    each repeat's mean over its folds, then mean and SD over repeats. None without such logs."""
    from HCCAnalysisLib.data.prediction import read_tsv

    folder = run_path / "training_logs"
    files = sorted(folder.glob("r*_f*.tsv")) if folder.is_dir() else []
    by_repeat: dict = {}
    for file in files:
        rows = read_tsv(file)
        if rows:
            by_repeat.setdefault(file.stem.split("_")[0], []).append(rows)
    if not by_repeat:
        return None
    n = min(len(rows) for folds in by_repeat.values() for rows in folds)
    curves = {}
    for column, label in (("train_accuracy", "training samples"), ("val_accuracy", "test fold")):
        try:
            per_repeat = np.array([np.mean([[float(r[column]) for r in rows[:n]] for rows in folds], axis=0)
                                   for folds in by_repeat.values()])
        except (KeyError, ValueError):
            continue  # e.g. no test-fold column: the evaluation ran without --epoch-curve
        if np.isfinite(per_repeat).all():
            sd = per_repeat.std(axis=0, ddof=1) if len(per_repeat) > 1 else np.zeros(n)
            curves[f"{label} ({len(per_repeat)} repeat(s))"] = (per_repeat.mean(axis=0), sd)
    return (np.arange(1, n + 1), curves) if curves else None


def _epoch_figure(model, run):
    found = epoch_curves(run.path)
    if found is None:
        return []
    epochs, curves = found
    return [{"file": f"accuracy_per_epoch_{_slug(model['name'])}.png", "level": "repeats", "width": 480,
             "caption": f"Accuracy per epoch, {model['name']}: each repeat's mean over its folds, then the mean with "
                        f"a +-1 SD band over repeats (Jia 2019 Fig. 7); the test fold is scored after every epoch "
                        f"only with `hcc evaluate --epoch-curve` (sample level, before aggregation per lesion)",
             "png": figures.epoch_curve_figure(f"{model['name']}: accuracy per epoch", epochs, curves)}]


def _analyse(runs, confidence):
    models = []
    for run in runs:
        case, note = report_tables.case_level(run)
        patient, patient_note = report_tables.patient_level(case, run.classes)
        config = run.metrics.get("config") or {}
        scoring = ("test set scored in six views each (test-time augmentation, Jia 2019)"
                   if config.get("test_time_augmentation") else "test samples scored as they are (no test-time "
                                                               "augmentation)")
        if config.get("external"):
            scoring = f"external test cohort {config.get('cohort', '')} scored by {config.get('model', '')}; " + scoring
        model = {"name": run.name, "path": str(run.path), "task": run.task, "note": f"{note}; {scoring}",
                 "patient_note": patient_note, "confidence_pct": f"{100 * confidence:g}",
                 "first_repeat": report_tables.first_repeat(run),
                 "repeats": report_tables.repeat_summary(run),
                 "data": {"case": case}, "levels": {}}
        if patient is not None:
            model["data"]["patient"] = patient
        for level, data in model["data"].items():
            model["levels"][level] = report_tables.summarise(data, run.classes, confidence)
        models.append(model)
    return models


def _json_safe(value):
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return None if math.isnan(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def _write_atomic(path, data):
    write_bytes_atomic(path, data)


def _performance_tsv(models):
    """Every per-class estimate as one TSV line: model, level, class, metric, value, low, high."""
    lines = ["model\tlevel\tclass\tmetric\tvalue\tlow\thigh\tk\tn"]
    for m in models:
        for level, summary in m["levels"].items():
            for row in summary["per_class"]:
                for metric in ("auc", "sensitivity", "specificity", "accuracy"):
                    est = row[metric]
                    if est is None:
                        continue
                    cells = [m["name"], level, row["class"], metric] + [
                        repr(float(est[key])) for key in ("value", "low", "high")] + [
                        str(est.get("k", "")), str(est.get("n", ""))]
                    lines.append("\t".join(cells))
    return ("\n".join(lines) + "\n").encode("utf-8")


def _readers(runs, models, readers_csv, reader_columns, confidence):
    if readers_csv is None:
        return []
    calls = report_readers.read_reader_calls(readers_csv, runs[0].classes, reader_columns)
    case_patients = {r["case_id"]: r["patient_id"] for r in runs[0].rows}
    called = {c for by_case in calls.values() for c in by_case}
    if not called & set(case_patients):
        raise HCCInputError("no case of the evaluation has a reader's call", readers_csv,
                            "the case_id values must be those of the evaluated cohort")
    return report_readers.reader_entries(models[0], calls, runs[0].classes, case_patients, confidence)


def build_report(eval_dirs: Sequence[str | Path], out_dir: str | Path, confidence: float = 0.95,
                 title: str | None = None, readers_csv: str | Path | None = None,
                 reader_columns: Sequence[str] | None = None) -> Path:
    """Write the report of `eval_dirs` (first = main model, others compared) into `out_dir`.

    `readers_csv`: a cases.csv whose reader columns (`reader_columns`, default every column
    named reader*) hold radiologists' calls, compared with the main model (Zhen Tables 1-4).
    Returns the path of report.html. All inputs are read and checked, and every number
    and figure computed, before anything is written.
    """
    if isinstance(eval_dirs, (str, os.PathLike)):
        eval_dirs = [eval_dirs]
    eval_dirs = list(eval_dirs)
    if not eval_dirs:
        raise HCCInputError("no evaluation folder given", source="--eval")
    confidence = check_confidence(confidence)
    runs = read_eval_dirs(eval_dirs)
    classes = runs[0].classes
    models = _analyse(runs, confidence)
    readers = _readers(runs, models, readers_csv, reader_columns, confidence)
    levels = ["case"] + (["patient"] if all("patient" in m["levels"] for m in models) else [])
    comparisons, figs = {}, []
    for level in levels:
        comparisons[level] = [
            {"a": a["name"], "b": b["name"],
             "result": report_tables.compare(a["data"][level], b["data"][level], classes)}
            for a, b in itertools.combinations(models, 2)]
        comparisons[level] += [
            {"a": models[0]["name"], "b": r["name"], "reader": True,
             "result": report_tables.compare(models[0]["data"][level], r["data"][level], classes,
                                             b_has_scores=False)}
            for r in readers if level in r["data"]]
        for m in models:
            figs += _model_figures(m, m["data"][level], m["levels"][level], classes, level)
        if len(models) > 1:
            figs += _compare_figures(models, level, classes)
        if readers:
            figs += _reader_figures(models[0], readers, classes, level)
    for m, run in zip(models, runs):
        figs += _mean_roc_figure(m, run, classes)
        figs += _tsic_figure(m, run)
        figs += _epoch_figure(m, run)
        figs += _embedding_figure(m, run, classes)
    report = {"title": title or f"Evaluation report: {runs[0].task or runs[0].name}",
              "classes": classes, "reported_classes": report_tables.reported_classes(classes),
              "levels": levels, "models": models, "readers": readers, "comparisons": comparisons,
              "figures": figs}
    page = report_html.render(report).encode("utf-8")
    summary = {"classes": classes, "confidence": confidence, "levels": levels,
               "models": [{k: m[k] for k in ("name", "path", "task", "note", "patient_note",
                                             "repeats", "levels")} for m in models],
               "readers": [{k: r[k] for k in ("name", "levels")} for r in readers],
               "comparisons": comparisons, "figures": [f["file"] for f in figs]}
    out = Path(out_dir)
    for fig in figs:
        _write_atomic(out / "figures" / fig["file"], fig["png"])
    _write_atomic(out / "summary.json",
                  json.dumps(_json_safe(summary), indent=1, default=str).encode("utf-8"))
    _write_atomic(out / "performance.tsv", _performance_tsv(models + readers))
    _write_atomic(out / "report.html", page)
    return out / "report.html"
