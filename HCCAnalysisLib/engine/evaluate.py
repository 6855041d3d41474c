"""Patient-level cross-validation: folds, repeats, per-fold metrics and the evaluation folder
(`predictions.tsv`, `metrics.json`, `embeddings.npz`, `roc.png`) that `hcc report` reads.

The folder also holds `evaluation.json` (the run record: task, phases, folds, repeats, seed,
epochs, pretraining, cohort and its hash) and `folds/r<repeat>_f<fold>.json`, one file per
finished fold, written atomically: a rerun of the same command resumes from them.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

from HCCAnalysisLib.atomic import atomic_path, write_text_atomic
from HCCAnalysisLib.errors import HCCInputError
from HCCAnalysisLib.engine.infer import aggregate, make_samples, run_net
from HCCAnalysisLib.stats.metrics import fold_metrics, summarise
from HCCAnalysisLib.models.package import library_versions
from HCCAnalysisLib.data.prediction import write_records_tsv
from HCCAnalysisLib.engine.augment import augment_samples
from HCCAnalysisLib.engine.train import fit

if TYPE_CHECKING:
    import torch

    from HCCAnalysisLib.data.cohort import CaseRecord, Cohort
    from HCCAnalysisLib.data.samples import Sample
    from HCCAnalysisLib.methods.task import Task


def patient_folds(records: Sequence[CaseRecord], k: int, seed: int,
                  labels: Sequence[Any] | None = None) -> list[tuple[list[CaseRecord], list[CaseRecord]]]:
    """K folds over cases with no patient on both sides; stratified by case label when given.

    k equal to the number of patients gives leave-one-patient-out.
    """
    patients = [r.patient_id for r in records]
    n_patients = len(set(patients))
    if k < 2 or k > n_patients:
        raise HCCInputError(f"{k} folds asked for {n_patients} patients", hint="use 2 <= folds <= patients")
    index = np.arange(len(records))
    if labels is not None and k < n_patients:
        splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
        splits = splitter.split(index, labels, groups=patients)
    else:
        splits = GroupKFold(n_splits=k, shuffle=True, random_state=seed).split(index, groups=patients)
    return [([records[i] for i in train], [records[i] for i in test]) for train, test in splits]


def load_samples(task: Task, cohort: Cohort, phases: Sequence[str], seed: int, log: Callable[[str], Any] = print,
                 test_side: bool = False
                 ) -> dict[str, list[Sample]] | tuple[dict[str, list[Sample]], dict[str, list[Sample]]]:
    """Every case of the cohort loaded once and sampled: case_id -> training samples, and with
    `test_side` also case_id -> samples as prediction makes them (e.g. Liang's pace 1)."""
    train, test = {}, {}
    for record in cohort.records:
        case = record.load(phases, task)
        train[record.case_id] = make_samples(task, case, phases, seed=seed, training=True, fields=record.fields)
        if test_side:
            test[record.case_id] = make_samples(task, case, phases, seed=seed, training=False, fields=record.fields)
    log(f"{len(cohort.records)} cases, {sum(map(len, train.values()))} training samples")
    return (train, test) if test_side else train


RUN_RECORD = "evaluation.json"
FOLDS_DIR = "folds"
FINAL_OUTPUTS = ("metrics.json", "predictions.tsv", "embeddings.npz", "roc.png")


def training_set(task: Task, records: Sequence[CaseRecord],
                 samples_by_case: Mapping[str, Sequence[Sample]]) -> list[Sample]:
    samples = [s for r in records for s in samples_by_case[r.case_id]]
    return augment_samples(samples) if task.augment else samples


def cohort_fingerprint(cohort: Cohort) -> str:
    """SHA-256 over cases.csv and every file of every case folder (name, size, content): a resume
    into a folder made from another cohort, or from edited cases, is refused."""
    digest = hashlib.sha256()
    digest.update((Path(cohort.folder) / "cases.csv").read_bytes())
    for record in cohort.records:
        folder = Path(record.folder)
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            digest.update(f"\0{record.case_id}/{path.relative_to(folder).as_posix()}\0{path.stat().st_size}\0".encode())
            with open(path, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()


def run_settings(task: Task, cohort: Cohort, phases: Sequence[str], folds: int, repeats: int, seed: int,
                 epochs: int | None, pretrained: str | None) -> dict:
    """What identifies an evaluation for resuming; stored in the run record and compared."""
    return {"task": task.name, "phases": list(phases), "folds": int(folds), "repeats": int(repeats),
            "seed": int(seed), "epochs": epochs or task.training.get("epochs"),
            "pretrained": None if pretrained in (None, False) else str(pretrained),
            "cohort": str(Path(cohort.folder).resolve()), "cohort_sha256": cohort_fingerprint(cohort)}


def holds_other_output(out_dir: str | Path) -> bool:
    """True when `out_dir` has entries but is not an unfinished evaluation that can be resumed:
    a finished evaluation, or anything else (what `--overwrite` is needed for)."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir() or not any(out_dir.iterdir()):
        return False
    return (out_dir / "metrics.json").exists() or not (out_dir / RUN_RECORD).is_file()


def clear_evaluation(out_dir: str | Path) -> None:
    """Remove what an earlier evaluation wrote into `out_dir` (--overwrite); other files stay."""
    out_dir = Path(out_dir)
    for name in (*FINAL_OUTPUTS, RUN_RECORD):
        (out_dir / name).unlink(missing_ok=True)
    if (out_dir / FOLDS_DIR).is_dir():
        shutil.rmtree(out_dir / FOLDS_DIR)


def check_run(out_dir: str | Path, settings: Mapping[str, Any]) -> None:
    """Refuse, naming the settings that differ, to resume into a folder whose run record was made
    with other settings. Reads only: nothing is written before the cases have loaded."""
    record = Path(out_dir) / RUN_RECORD
    if not record.is_file():
        return
    try:
        previous = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise HCCInputError("is not valid JSON", record, "use a new output folder or pass --overwrite") from None
    if not isinstance(previous, dict):
        raise HCCInputError("is not an evaluation run record", record, "use a new output folder or pass --overwrite")
    settings = json.loads(json.dumps(settings))
    changed = sorted(k for k in set(previous) | set(settings) if previous.get(k) != settings.get(k))
    if changed:
        detail = ", ".join(f"{k}: {previous.get(k)!r} there, {settings.get(k)!r} now" for k in changed)
        raise HCCInputError(f"holds an evaluation made with other settings ({detail})", out_dir,
                            "run the same command to resume, use a new output folder, or pass --overwrite")


def start_run(out_dir: str | Path, settings: Mapping[str, Any]) -> Path:
    """Write the run record (when new) and the folds folder, cleared of the temporary files a
    killed run left behind; returns the folds folder."""
    out_dir = Path(out_dir)
    if not (out_dir / RUN_RECORD).is_file():
        write_text_atomic(out_dir / RUN_RECORD, json.dumps(settings, indent=2, sort_keys=True) + "\n")
    folds_dir = out_dir / FOLDS_DIR
    folds_dir.mkdir(parents=True, exist_ok=True)
    stale = [*folds_dir.glob(".*.tmp"), *(p for name in FINAL_OUTPUTS for p in out_dir.glob(f".{name}.*.tmp"))]
    for path in stale:
        path.unlink(missing_ok=True)  # never a result
    return folds_dir


def _json_value(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def _run_fold(task, repeat, fold, train, test, samples_by_case, test_samples_by_case, device, seed, epochs,
              pretrained_state, log):
    """Train and test one fold; returns the fold file's content (rows, metrics, embeddings)."""
    import torch

    classes = list(task.classes)
    # the seed depends on the repeat only, never on which folds ran before in this process
    net, _ = fit(task, training_set(task, train, samples_by_case), device, seed=seed + repeat,
                 epochs=epochs, pretrained_state=pretrained_state, log=log)
    test_samples = [s for r in test for s in test_samples_by_case[r.case_id]]
    probs, embedded = run_net(net, test_samples, torch.device("cpu"), with_embeddings=True)
    fold_rows = aggregate(test_samples, probs, classes, votes=task.vote_extras)
    truth = {(s.case_id, s.lesion_id, s.kind): classes[s.target] for s in test_samples}
    records, embeddings = [], []
    for row in fold_rows:
        record = {"repeat": repeat, "fold": fold, "case_id": row.case_id, "patient_id": row.patient_id,
                  "lesion_id": row.lesion_id, "kind": row.kind,
                  "label": truth[(row.case_id, row.lesion_id, row.kind)],
                  "predicted_class": row.predicted_class}
        record.update({f"prob_{c}": row.probabilities[c] for c in classes})
        records.append(record)
    if embedded is not None:
        keys = [(s.case_id, s.lesion_id, s.kind) for s in test_samples]
        for row in fold_rows:
            mask = [k == (row.case_id, row.lesion_id, row.kind) for k in keys]
            embeddings.append(embedded[np.array(mask)].mean(axis=0))
    y_true = [classes.index(r["label"]) for r in records]
    y_prob = np.array([[r[f"prob_{c}"] for c in classes] for r in records])
    result = {"repeat": repeat, "fold": fold, "n_test": len(records),
              "test_patients": sorted({r.patient_id for r in test})}
    result.update(fold_metrics(y_true, y_prob, classes))
    return {"repeat": repeat, "fold": fold, "rows": records, "result": result,
            "embeddings": None if embedded is None else [np.asarray(e, dtype=np.float32) for e in embeddings]}


def fold_path(folds_dir: str | Path, repeat: int, fold: int) -> Path:
    return Path(folds_dir) / f"r{repeat}_f{fold}.json"


def read_fold(path: str | Path) -> dict:
    """A finished fold's file; one that does not parse is refused (it was written atomically, so
    this means it was edited or damaged, not half-written)."""
    try:
        payload = json.loads(Path(path).read_text(encoding="utf-8"))
        payload["rows"], payload["result"]  # noqa: B018 (checks the keys are there)
    except (ValueError, KeyError, TypeError):
        raise HCCInputError("is not a fold file of this evaluation", path,
                            "delete it to compute the fold again, or pass --overwrite") from None
    return payload


def cross_validate(task: Task, cohort: Cohort, phases: Sequence[str], out_dir: str | Path, folds: int = 5,
                   repeats: int = 1, seed: int = 0, device: torch.device | None = None,
                   pretrained_state: Mapping[str, torch.Tensor] | str | Path | None = None,
                   epochs: int | None = None, log: Callable[[str], Any] = print, pretrained: str | None = None,
                   fresh: bool = False) -> dict[str, Any]:

    """Repeated patient-level K-fold CV; writes the evaluation folder and returns metrics.json's dict.

    Resumable: each finished fold is written at once (atomically) to folds/r<repeat>_f<fold>.json,
    and a rerun with the same settings skips the folds that have a file, so an interrupted run
    loses at most the fold it was working on and ends with the same results as one that was not
    interrupted (the final files are always built from the fold files). `pretrained` names the
    pretraining for the run record; `fresh` first removes an earlier evaluation (--overwrite).
    """
    import torch

    device = device or torch.device("cpu")
    out_dir = Path(out_dir)
    settings = run_settings(task, cohort, phases, folds, repeats, seed, epochs,
                            pretrained if pretrained is not None else (pretrained_state is not None or None))
    if not fresh:
        check_run(out_dir, settings)
    labels = cohort.column(task.label_column) if task.label_column else None
    classes = list(task.classes)
    plan = [(repeat, fold, train, test) for repeat in range(repeats)
            for fold, (train, test) in enumerate(patient_folds(cohort.records, folds, seed + repeat, labels))]
    todo = [step for step in plan if fresh or not fold_path(out_dir / FOLDS_DIR, step[0], step[1]).is_file()]
    if len(todo) < len(plan):
        log(f"resuming: {len(plan) - len(todo)} of {len(plan)} folds finished in an earlier run")
    if todo:  # loaded before anything is written or removed: a bad case leaves the folder as it was
        samples_by_case, test_samples_by_case = load_samples(task, cohort, phases, seed, log, test_side=True)
    if fresh:
        clear_evaluation(out_dir)
    folds_dir = start_run(out_dir, settings)
    for repeat, fold, train, test in todo:
        log(f"repeat {repeat + 1}/{repeats} fold {fold + 1}/{folds}: {len(train)} training cases, "
            f"test {[r.case_id for r in test]}")
        payload = _run_fold(task, repeat, fold, train, test, samples_by_case, test_samples_by_case, device, seed,
                            epochs, pretrained_state, log)
        write_text_atomic(fold_path(folds_dir, repeat, fold), json.dumps(payload, default=_json_value) + "\n")
    rows, fold_results, embeddings = [], [], []
    for repeat, fold, _, _ in plan:
        payload = read_fold(fold_path(folds_dir, repeat, fold))
        rows += payload["rows"]
        fold_results.append(payload["result"])
        embeddings += payload.get("embeddings") or []
    columns = ["repeat", "fold", "case_id", "patient_id", "lesion_id", "kind", "label", "predicted_class"] + \
        [f"prob_{c}" for c in classes]
    write_records_tsv(out_dir / "predictions.tsv", rows, columns)
    if embeddings:
        with atomic_path(out_dir / "embeddings.npz") as tmp, open(tmp, "wb") as handle:
            np.savez(handle, embeddings=np.array(embeddings, dtype=np.float32), row=np.arange(len(embeddings)))
    from HCCAnalysisLib.report.roc_figure import save_roc_figure

    save_roc_figure(rows, classes, out_dir / "roc.png", title=task.name)
    metrics = {"task": task.name, "classes": classes, "phases": list(phases), "folds": fold_results,
               "summary": summarise(fold_results, predictions=rows, classes=classes), "versions": library_versions(), "seed": seed,
               "config": {"folds": folds, "repeats": repeats, "epochs": epochs or task.training.get("epochs"),
                          "pretrained": pretrained_state is not None, "cohort": str(cohort.folder)}}
    # metrics.json last: its presence marks a finished evaluation
    write_text_atomic(out_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    return metrics
