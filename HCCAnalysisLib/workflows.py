"""The three jobs behind `hcc train | evaluate | predict`, callable from Python as well."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

# engine.evaluate (scikit-learn, scipy.stats) and engine.train are imported where they are used:
# `hcc predict` needs neither, and importing them cost it 1.4-3 s of start-up.
from HCCAnalysisLib.engine import distributed
from HCCAnalysisLib.data.cohort import load_cohort
from HCCAnalysisLib.data.reading_options import CaseReading
from HCCAnalysisLib.errors import HCCInputError
from HCCAnalysisLib.engine.infer import predict_case, run_net
from HCCAnalysisLib.io.output_location import check_output_file, check_output_folder
from HCCAnalysisLib.models.package import CARD_NAME, WEIGHTS_NAME, load_model, save_model
from HCCAnalysisLib.models.pretrained import KNOWN_SOURCES, describe_start, resolve_pretrained
from HCCAnalysisLib.tasks import get_task
from HCCAnalysisLib.engine.class_check import check_classes, class_counts
from HCCAnalysisLib.engine.device import resolve_device
from HCCAnalysisLib.runtime.extras import require_task_extras

_LOG = logging.getLogger(__name__)

if TYPE_CHECKING:
    import torch

    from HCCAnalysisLib.data.prediction import Prediction
    from HCCAnalysisLib.engine.evaluate import EvaluationOptions
    from HCCAnalysisLib.methods.task import Task


def parse_phases(task: Task, phases: str | Sequence[str] | None) -> tuple[str, ...]:
    """'a,b,c' or a sequence -> a checked tuple; the task's default phases when empty."""
    if isinstance(phases, str):
        phases = [p.strip() for p in phases.split(",") if p.strip()]
    return task.check_phases(phases or task.phases)


def check_epochs(epochs: int | None) -> None:
    if epochs is not None and epochs < 1:
        raise HCCInputError(f"--epochs {epochs}: must be at least 1 (or left out for the task default)")


def refuse_existing_output(out_dir: str | Path, overwrite: bool, occupied: Callable[[Path], bool],
                           what: str) -> None:
    """The one rule of `hcc train`, `evaluate` and `report` for their output folder, checked before
    any work: a path that is a file is refused, and a folder that `occupied(folder)` says already
    holds results (`what`) is refused unless `overwrite` - no finished work is replaced by mistake."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise HCCInputError("is a file; --out names a folder", out_dir)
    if not overwrite and out_dir.is_dir() and occupied(out_dir):
        raise HCCInputError(f"already holds {what}", out_dir, "choose another folder or pass --overwrite")


def refuse_non_empty(out_dir: str | Path, overwrite: bool, what: str = "files") -> None:
    """`refuse_existing_output` for commands whose output folder must be empty (`hcc report`)."""
    refuse_existing_output(out_dir, overwrite, lambda folder: any(folder.iterdir()), what)


def _refuse_existing_model(out_dir, overwrite, cohort_dir=None):
    refuse_existing_output(out_dir, overwrite, lambda folder: (folder / CARD_NAME).exists(), "a model package")
    check_output_folder(out_dir, [cohort_dir], results=(CARD_NAME, WEIGHTS_NAME))


def _class_counts(task, samples):
    counts = {c: 0 for c in task.classes}
    for sample in samples:
        counts[task.classes[sample.target]] += 1
    return counts


def train_model(task_name: str, cohort_dir: str | Path, out_dir: str | Path,
                phases: str | Sequence[str] | None = None, pretrained: str | Path | None = None,
                epochs: int | None = None, seed: int = 0, device: str | torch.device | None = "auto",
                overwrite: bool = False, log: Callable[[str], Any] | None = None,
                allow_missing_classes: bool = False, cache: str | Path | bool | None = None,
                reading: CaseReading | None = None, resume: bool = False, workers: int | None = None,
                precision: str | None = "auto", val_share: float | None = None,
                net_options: Sequence[str] | None = None, sampler_options: Sequence[str] | None = None
                ) -> dict[str, Any]:
    """Train on the whole cohort and write a model package; returns its card. Messages go to
    `log` (default: this module's logger). A cohort lacking a class of the task is refused
    unless `allow_missing_classes` (then a loud warning). `cache`: the sample cache folder
    (True: the default one; None: none), see data/sample_cache.py.

    Each epoch leaves a checkpoint in `<out_dir>.partial/`; `resume` continues from it bit for
    bit (engine/train_resume.py). `val_share`: that share of the patients is held out of training
    and evaluated after every epoch. The package gets training_log.tsv and a TensorBoard log.
    `net_options` / `sampler_options`: KEY=VALUE changes of the task's network arguments and sampler
    options (Task.with_net_options / with_sampler_options), recorded in the card."""
    from HCCAnalysisLib.data.sample_views import ConcatSamples, sample_targets, target_only
    from HCCAnalysisLib.engine.evaluate import cohort_fingerprint, load_samples, training_set
    from HCCAnalysisLib.engine.train import fit

    log = log or _LOG.info
    task = get_task(task_name).with_net_options(net_options).with_sampler_options(sampler_options)
    require_task_extras(task)
    phases = parse_phases(task, phases)
    check_epochs(epochs)
    _refuse_existing_model(out_dir, overwrite, cohort_dir)
    from HCCAnalysisLib.engine import train_resume

    partial = train_resume.prepare_checkpoint_folder(out_dir, resume, overwrite)
    cohort = load_cohort(cohort_dir, reading=reading)
    train_records, held_records = train_resume.validation_share(cohort.records, val_share, seed, log)
    device = resolve_device(device)
    source = resolve_pretrained(pretrained, task, len(phases))  # None: the task's recipe; "none": random
    log(describe_start(source, task, len(phases)))
    started = time.time()
    samples_by_case = load_samples(task, cohort, phases, seed, log, cache=cache)
    base = ConcatSamples(list(samples_by_case.values()))  # a view: cached samples stay on disk
    check_classes(task, class_counts(task, target_only(base)), cohort_dir, "training", allow_missing_classes, log)
    val_samples = train_resume.validation_samples(held_records, samples_by_case)
    train_samples = training_set(task, train_records, samples_by_case)
    net, history = fit(task, train_samples, device, seed=seed, epochs=epochs,
                       pretrained_state=None if source is None else source[1], log=log, workers=workers,
                       precision=precision, val_samples=val_samples, checkpoint_dir=partial, resume=resume,
                       run_settings=train_resume.run_key(cohort, phases, source, val_share))
    probs = run_net(net, base, __import__("torch").device("cpu"))
    train_accuracy = float(np.mean(probs.argmax(axis=1) == np.array(sample_targets(base))))
    card = {
        "task": task.name, "version": "local", "classes": list(task.classes), "phases": list(phases),
        "net": task.net, "net_kwargs": dict(task.net_kwargs), "sampler_kwargs": dict(task.sampler_kwargs),
        "input_size": task.input_size, "seed": seed, "description": task.one_line(),
        # the cohort by its folder's name and the hash of its cases: no local path in a package made to be shared
        "training": {"cohort": Path(cohort_dir).resolve().name, "cohort_sha256": cohort_fingerprint(cohort),
                     "n_cases": len(cohort.records),
                     "n_patients": len(cohort.patients()), "samples_per_class": _class_counts(task, target_only(base)),
                     "augmented_samples": len(train_samples),
                     "pretrained": None if source is None else (source.name if source.name in KNOWN_SOURCES
                                                                else Path(source[0]).name),
                     "seconds": round(time.time() - started, 1),
                     **{k: v for k, v in history.items() if k not in ("loss", "records")}, "val_share": val_share,
                     "final_loss": history["loss"][-1] if history["loss"] else None},
        "metrics": {"training_accuracy": train_accuracy,
                    "note": "resubstitution accuracy on the training cohort; use `hcc evaluate` for cross-validated metrics"},
    }
    rank, _ = distributed.world()
    if rank == 0:
        from HCCAnalysisLib.data.intensity_profile import PROFILE_KEY, training_profile

        # per phase the training cases' intensity percentiles (and modality): prediction checks cases against it
        profile = training_profile(task, train_records, phases, log)
        if profile is not None:
            card[PROFILE_KEY] = profile
        card = save_model(out_dir, net, card)
        train_resume.finish(out_dir, partial, history["records"])
        log(f"model package written to {out_dir} (training accuracy {train_accuracy:.3f})")
    distributed.shutdown()
    return card


def evaluate_task(task_name: str, cohort_dir: str | Path, out_dir: str | Path, folds: int = 5, repeats: int = 1,
                  phases: str | Sequence[str] | None = None, pretrained: str | Path | None = None,
                  epochs: int | None = None, seed: int = 0, device: str | torch.device | None = "auto",
                  log: Callable[[str], Any] | None = None, overwrite: bool = False,
                  allow_missing_classes: bool = False, cache: str | Path | bool | None = None,
                  reading: CaseReading | None = None, net_options: Sequence[str] | None = None,
                  sampler_options: Sequence[str] | None = None, options: EvaluationOptions | None = None,
                  dynamic_phases: str | Sequence[str] | None = None) -> dict[str, Any]:
    """Cross-validate a task on a cohort into `out_dir`; returns metrics.json's dict. `cache`: the
    sample cache folder (True: the default one; None: none), see data/sample_cache.py.

    A folder holding an unfinished evaluation made with the same settings is resumed; one holding
    a finished evaluation or other files is refused unless `overwrite` (then the earlier
    evaluation's files are removed first). `options`: engine.evaluate.EvaluationOptions (test-time
    augmentation, the per-epoch test curve, workers, precision). `dynamic_phases`: also write Jia
    2019's time-signal intensity curves over these phases (tsic.tsv)."""
    from HCCAnalysisLib.engine.evaluate import cross_validate, holds_other_output

    log = log or _LOG.info
    task = get_task(task_name).with_net_options(net_options).with_sampler_options(sampler_options)
    dynamic = _dynamic_phases(dynamic_phases)
    require_task_extras(task)
    phases = parse_phases(task, phases)
    check_epochs(epochs)
    refuse_existing_output(out_dir, overwrite, holds_other_output,
                           "a finished evaluation or other files (an unfinished evaluation is resumed)")
    check_output_folder(out_dir, [cohort_dir], results=("metrics.json", "predictions.tsv"))
    cohort = load_cohort(cohort_dir, reading=reading)
    n_patients = len(cohort.patients())
    if folds < 2 or folds > n_patients:  # before any case is loaded
        raise HCCInputError(f"{folds} folds asked for {n_patients} patients", hint="use 2 <= folds <= patients")
    if repeats < 1:
        raise HCCInputError(f"--repeats {repeats}: must be at least 1", hint="an evaluation with no repeat has no result")
    source = resolve_pretrained(pretrained, task, len(phases))  # None: the task's recipe; "none": random
    log(describe_start(source, task, len(phases)))
    metrics = cross_validate(task, cohort, phases, out_dir, folds, repeats, seed, resolve_device(device),
                             None if source is None else source[1], epochs, log,
                             pretrained=None if source is None else source.name, fresh=overwrite,
                             allow_missing_classes=allow_missing_classes, cache=cache, options=options)
    if dynamic:
        from HCCAnalysisLib.methods.jia2019.tsic import TSIC_FILE, cohort_curves, write_curves

        write_curves(Path(out_dir) / TSIC_FILE, cohort_curves(task, cohort, dynamic, seed), dynamic)
        log(f"time-signal intensity curves over {', '.join(dynamic)} written to {Path(out_dir) / TSIC_FILE}")
    for name, value in metrics["summary"].items():
        over = f"over {value.get('n_repeats', 1)} repeat(s)" if value.get("over") == "repeats" else "over folds"
        per_fold = value.get("per_fold", value)
        log(f"  {name:12s} {value['mean']:.3f} +- {value['sd']:.3f} {over};  per fold "
            f"{per_fold['mean']:.3f} +- {per_fold['sd']:.3f} ({value['n_folds']} folds)")
    return metrics


def _dynamic_phases(text: str | Sequence[str] | None) -> tuple[str, ...]:
    if not text:
        return ()
    from HCCAnalysisLib.methods.jia2019.tsic import parse_dynamic_phases

    return parse_dynamic_phases(text)


def case_fields(case_dir: str | Path, cases_csv: str | Path | None = None, case_id: str | None = None,
                clinical: Iterable[str] | None = ()) -> dict[str, str]:
    """A case's table fields: its row of a cases.csv (when given), then COLUMN=VALUE pairs."""
    fields = {}
    case_id = case_id or Path(case_dir).name
    if cases_csv:
        from HCCAnalysisLib.data.cohort import read_cases_table

        rows = [r for r in read_cases_table(cases_csv)[1] if r.get("case_id", "") == case_id]
        if len(rows) != 1:
            raise HCCInputError(f"has {len(rows)} rows for case_id '{case_id}', expected one", cases_csv)
        fields.update({k: (v or "").strip() for k, v in rows[0].items() if k not in ("case_id", "patient_id")})
    for pair in clinical or ():
        if "=" not in pair:
            raise HCCInputError(f"--clinical '{pair}' is not COLUMN=VALUE")
        key, value = pair.split("=", 1)
        fields[key.strip()] = value.strip()
    return fields


def predict_folder(model_dir: str | Path, case_dir: str | Path, out_path: str | Path,
                   device: str | torch.device | None = "auto", case_id: str | None = None,
                   patient_id: str | None = None, fields: dict[str, str] | None = None,
                   reading: CaseReading | None = None, allow_unusual_input: bool = False,
                   then: Callable[[Any, Any, Prediction], None] | None = None) -> Prediction:

    """Run a model package on one case folder (with its table fields) and write the per-lesion TSV.
    A case far outside the model card's input profile is refused unless `allow_unusual_input`
    (then the reason is in the table's warnings column): data/intensity_profile.py."""
    from HCCAnalysisLib.data.case_loading import load_for_task

    if Path(out_path).is_dir():
        raise HCCInputError("is a folder; --out names the results TSV file to write", out_path)
    check_output_file(out_path, [case_dir, model_dir])
    device = resolve_device(device)
    model = load_model(model_dir, device)
    case = load_for_task(case_dir, model.task, model.card["phases"], case_id, patient_id, fields, reading=reading)
    prediction = predict_case(model, case, device=device, allow_unusual_input=allow_unusual_input)
    if then is not None:  # more outputs of this model and case (`--dicom`); first, so a failure leaves no TSV
        then(model, case, prediction)
    prediction.write_tsv(out_path)
    return prediction
