"""Patient-level cross-validation: folds, repeats, per-fold metrics and the evaluation folder
(`predictions.tsv`, `metrics.json`, `embeddings.npz`, `roc.png`) that `hcc report` reads.

The folder also holds `evaluation.json` (the run record: task, phases, folds, repeats, seed,
epochs, pretraining, cohort and its hash) and `folds/r<repeat>_f<fold>.json`, one file per
finished fold, written atomically: a rerun of the same command resumes from them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

from HCCAnalysisLib.atomic import write_text_atomic
from HCCAnalysisLib.engine.class_check import check_classes, class_counts
from HCCAnalysisLib.errors import HCCInputError
from HCCAnalysisLib.engine.infer import make_samples
from HCCAnalysisLib.engine.scoring import score_samples, scored_views, write_evaluation_files
from HCCAnalysisLib.engine.augment import augment_samples
from HCCAnalysisLib.engine.train import fit
from HCCAnalysisLib.engine.epoch_log import write_tsv
from HCCAnalysisLib.runtime.progress import progress

if TYPE_CHECKING:
    import torch

    from HCCAnalysisLib.data.cohort import CaseRecord, Cohort
    from HCCAnalysisLib.data.sample_cache import SampleCache
    from HCCAnalysisLib.data.samples import Sample
    from HCCAnalysisLib.methods.task import Task


_LOG = logging.getLogger(__name__)


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


def load_samples(task: Task, cohort: Cohort, phases: Sequence[str], seed: int, log: Callable[[str], Any] = _LOG.info,
                 test_side: bool = False, cache: SampleCache | str | Path | bool | None = None
                 ) -> dict[str, Sequence[Sample]] | tuple[dict[str, Sequence[Sample]], dict[str, Sequence[Sample]]]:
    """Every case of the cohort loaded once and sampled: case_id -> training samples, and with
    `test_side` also case_id -> samples as prediction makes them (e.g. Liang's pace 1).

    With a `cache` (data/sample_cache.py: a SampleCache, a folder, or True for the default one)
    the samples of a case come from its cache entry when the case's files and the sampling are
    unchanged (no image is read), and are stored there otherwise; each case's samples are then a
    sequence that reads one sample's arrays from disk when asked for, not a list in memory."""
    from HCCAnalysisLib.data.sample_cache import resolve_cache

    store = resolve_cache(cache, log)
    sides = (True, False) if test_side else (True,)
    train, test = {}, {}
    for record in progress(cohort.records, desc="loading cases", unit="case"):
        loaded = []  # the case, read at most once for both sides

        def build(training: bool, record: CaseRecord = record, loaded: list = loaded) -> list[Sample]:
            if not loaded:
                loaded.append(record.load(phases, task))
            return make_samples(task, loaded[0], phases, seed=seed, training=training, fields=record.fields)

        if store is None:
            by_side = [build(training) for training in sides]
        else:
            by_side = store.case_samples(task, record, phases, seed, sides, build)
        train[record.case_id] = by_side[0]
        if test_side:
            test[record.case_id] = by_side[1]
    cached = "" if store is None else f" (sample cache {store.root}: {store.hits} entries reused, {store.misses} built)"
    log(f"{len(cohort.records)} cases, {sum(map(len, train.values()))} training samples{cached}")
    return (train, test) if test_side else train


RUN_RECORD = "evaluation.json"
FOLDS_DIR = "folds"
TRAINING_LOGS_DIR = "training_logs"  # each fold's training_log.tsv (engine/epoch_log.py)
FINAL_OUTPUTS = ("metrics.json", "predictions.tsv", "embeddings.npz", "roc.png")


def training_set(task: Task, records: Sequence[CaseRecord],
                 samples_by_case: Mapping[str, Sequence[Sample]]) -> Sequence[Sample]:
    """The samples of `records`, augmented where the task asks: a list when the cases' samples
    are lists, else a view that reads each sample (and computes each view) when asked for."""
    parts = [samples_by_case[r.case_id] for r in records]
    if all(isinstance(p, list) for p in parts):
        samples = [s for part in parts for s in part]
        return augment_samples(samples) if task.augment else samples
    from HCCAnalysisLib.data.sample_views import AugmentedSamples, ConcatSamples

    samples = ConcatSamples(parts)
    return AugmentedSamples(samples) if task.augment else samples


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


@dataclass(frozen=True)
class EvaluationOptions:
    """How an evaluation scores and trains, beyond the task's recipe (all off or automatic by default)."""

    tta: bool = False  # test-time augmentation: each test sample in its six views (engine/scoring.py)
    epoch_curve: bool = False  # score the test fold after every epoch (Jia 2019 Fig. 7); costs a forward per epoch
    workers: int | None = None  # DataLoader workers (None: the machine's default; results never depend on it)
    precision: str | None = "auto"  # training precision (engine/precision.py)

    def record(self) -> dict:
        """The options that change results, for the run record (workers never do)."""
        return {"test_time_augmentation": self.tta, "epoch_curve": self.epoch_curve, "precision": self.precision}


def run_settings(task: Task, cohort: Cohort, phases: Sequence[str], folds: int, repeats: int, seed: int,
                 epochs: int | None, pretrained: str | None, options: EvaluationOptions | None = None) -> dict:
    """What identifies an evaluation for resuming; stored in the run record and compared. The cohort
    by its folder's name and a hash of its cases (no local path: the record is shared with the results)."""
    return {"task": task.name, "phases": list(phases), "folds": int(folds), "repeats": int(repeats),
            "seed": int(seed), "epochs": epochs or task.training.get("epochs"),
            "pretrained": None if pretrained in (None, False) else str(pretrained),
            "net_kwargs": json.loads(json.dumps(task.net_kwargs)),
            "sampler_kwargs": json.loads(json.dumps(task.sampler_kwargs)),
            **(options or EvaluationOptions()).record(),
            "cohort": Path(cohort.folder).name, "cohort_sha256": cohort_fingerprint(cohort)}


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
    for folder in (FOLDS_DIR, TRAINING_LOGS_DIR):
        if (out_dir / folder).is_dir():
            shutil.rmtree(out_dir / folder)


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
              pretrained_state, log, options=None):
    """Train and test one fold; returns the fold file's content (rows, metrics, embeddings).

    `options` (EvaluationOptions): test-time augmentation, loader workers, precision, and whether
    the test fold is scored after every epoch (Jia 2019 Fig. 7's accuracy curve)."""
    options = options or EvaluationOptions()
    test_samples = [s for r in test for s in test_samples_by_case[r.case_id]]
    # the seed depends on the repeat only, never on which folds ran before in this process
    net, history = fit(task, training_set(task, train, samples_by_case), device, seed=seed + repeat,
                       epochs=epochs, pretrained_state=pretrained_state, log=log, workers=options.workers,
                       precision=options.precision,
                       val_samples=scored_views(test_samples, options.tta) if options.epoch_curve else None)
    records, embeddings, result = score_samples(task, net, test_samples, device, repeat, fold, options.tta)
    result["test_patients"] = sorted({r.patient_id for r in test})
    return {"repeat": repeat, "fold": fold, "rows": records, "result": result, "training_log": history["records"],
            "embeddings": embeddings}


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
                   epochs: int | None = None, log: Callable[[str], Any] = _LOG.info, pretrained: str | None = None,
                   fresh: bool = False, allow_missing_classes: bool = False,
                   cache: SampleCache | str | Path | bool | None = None,
                   options: EvaluationOptions | None = None) -> dict[str, Any]:

    """Repeated patient-level K-fold CV; writes the evaluation folder and returns metrics.json's dict.

    Resumable: each finished fold is written at once (atomically) to folds/r<repeat>_f<fold>.json,
    and a rerun with the same settings skips the folds that have a file, so an interrupted run
    loses at most the fold it was working on and ends with the same results as one that was not
    interrupted (the final files are always built from the fold files). `pretrained` names the
    pretraining for the run record; `fresh` first removes an earlier evaluation (--overwrite).
    `cache`: the sample cache (see `load_samples`). `options`: EvaluationOptions (test-time
    augmentation, loader workers, precision, the per-epoch test curve).

    Under torchrun each process trains and tests its share of the unfinished folds (round
    robin), alone (no collective across processes that train different folds), writing the
    same fold files; rank 0 builds the final files once every process is done.
    """
    import torch

    from HCCAnalysisLib.data.sample_views import target_only
    from HCCAnalysisLib.engine import distributed

    if repeats < 1:  # a library caller's zero: no fold would run and the summary would be empty
        raise HCCInputError(f"{repeats} repeats asked for; at least one is needed", out_dir)
    device = device or torch.device("cpu")
    out_dir = Path(out_dir)
    options = options or EvaluationOptions()
    settings = run_settings(task, cohort, phases, folds, repeats, seed, epochs,
                            pretrained if pretrained is not None else (pretrained_state is not None or None), options)
    if not fresh:
        check_run(out_dir, settings)
    labels = cohort.column(task.label_column) if task.label_column else None
    classes = list(task.classes)
    plan = [(repeat, fold, train, test) for repeat in range(repeats)
            for fold, (train, test) in enumerate(patient_folds(cohort.records, folds, seed + repeat, labels))]
    todo = [step for step in plan if fresh or not fold_path(out_dir / FOLDS_DIR, step[0], step[1]).is_file()]
    if len(todo) < len(plan):
        log(f"resuming: {len(plan) - len(todo)} of {len(plan)} folds finished in an earlier run")
    rank, size = distributed.start_work_group()
    mine = distributed.share(todo, rank, size)
    if todo:  # loaded before anything is written or removed: a bad case leaves the folder as it was
        samples_by_case, test_samples_by_case = load_samples(task, cohort, phases, seed, log, test_side=True,
                                                             cache=cache)
        counts = class_counts(task, (s for samples in samples_by_case.values() for s in target_only(samples)))
        check_classes(task, counts, cohort.folder, "evaluation", allow_missing_classes, log)
    distributed.barrier()  # every process has seen the folder as it was before rank 0 changes it
    if rank == 0:
        if fresh:
            clear_evaluation(out_dir)
        start_run(out_dir, settings)
    distributed.barrier()
    folds_dir = out_dir / FOLDS_DIR
    if size > 1:
        log(f"process {rank + 1}/{size}: {len(mine)} of the {len(todo)} folds to run")
    with distributed.alone():
        for repeat, fold, train, test in progress(mine, desc="folds", unit="fold"):
            log(f"repeat {repeat + 1}/{repeats} fold {fold + 1}/{folds}: {len(train)} training cases, "
                f"test {[r.case_id for r in test]}")
            payload = _run_fold(task, repeat, fold, train, test, samples_by_case, test_samples_by_case, device,
                                seed, epochs, pretrained_state, log, options)
            # the fold's per-epoch record first (not in the fold file: it holds wall-clock seconds),
            # since the fold file is what marks the fold finished
            write_tsv(out_dir / TRAINING_LOGS_DIR / f"r{repeat}_f{fold}.tsv", payload.pop("training_log"))
            write_text_atomic(fold_path(folds_dir, repeat, fold), json.dumps(payload, default=_json_value) + "\n")
    distributed.barrier()  # every fold file is written
    if rank != 0:
        distributed.barrier()  # rank 0 has written metrics.json
        return json.loads((out_dir / "metrics.json").read_text(encoding="utf-8"))
    rows, fold_results, embeddings = [], [], []
    for repeat, fold, _, _ in plan:
        payload = read_fold(fold_path(folds_dir, repeat, fold))
        rows += payload["rows"]
        fold_results.append(payload["result"])
        embeddings += payload.get("embeddings") or []
    config = {"folds": folds, "repeats": repeats, "epochs": epochs or task.training.get("epochs"),
              "pretrained": pretrained_state is not None, "cohort": Path(cohort.folder).name,
              "test_time_augmentation": options.tta, "net_kwargs": dict(task.net_kwargs)}
    metrics = write_evaluation_files(out_dir, task, phases, rows, fold_results, embeddings, seed, config)
    distributed.barrier()  # the other processes return metrics.json's content
    return metrics
