"""The three jobs behind `hcc train | evaluate | predict`, callable from Python as well."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from HCCAnalysisLib.engine import distributed
from HCCAnalysisLib.data.cohort import load_cohort
from HCCAnalysisLib.errors import HCCInputError
from HCCAnalysisLib.engine.evaluate import cross_validate, load_samples, training_set
from HCCAnalysisLib.engine.infer import predict_case, run_net
from HCCAnalysisLib.models.package import CARD_NAME, load_model, save_model
from HCCAnalysisLib.models.pretrained import describe_start, resolve_pretrained
from HCCAnalysisLib.tasks import get_task
from HCCAnalysisLib.engine.device import resolve_device
from HCCAnalysisLib.engine.train import fit

if TYPE_CHECKING:
    import torch

    from HCCAnalysisLib.data.prediction import Prediction
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


def _refuse_existing_model(out_dir, overwrite):
    refuse_existing_output(out_dir, overwrite, lambda folder: (folder / CARD_NAME).exists(), "a model package")


def _class_counts(task, samples):
    counts = {c: 0 for c in task.classes}
    for sample in samples:
        counts[task.classes[sample.target]] += 1
    return counts


def train_model(task_name: str, cohort_dir: str | Path, out_dir: str | Path,
                phases: str | Sequence[str] | None = None, pretrained: str | Path | None = None,
                epochs: int | None = None, seed: int = 0, device: str | torch.device | None = "auto",
                overwrite: bool = False, log: Callable[[str], Any] = print) -> dict[str, Any]:
    """Train on the whole cohort and write a model package; returns its card."""
    task = get_task(task_name)
    phases = parse_phases(task, phases)
    check_epochs(epochs)
    _refuse_existing_model(out_dir, overwrite)
    cohort = load_cohort(cohort_dir)
    device = resolve_device(device)
    source = resolve_pretrained(pretrained, task, len(phases))  # None: the task's recipe; "none": random
    log(describe_start(source, task, len(phases)))
    started = time.time()
    samples_by_case = load_samples(task, cohort, phases, seed, log)
    base = [s for samples in samples_by_case.values() for s in samples]
    train_samples = training_set(task, cohort.records, samples_by_case)
    net, history = fit(task, train_samples, device, seed=seed, epochs=epochs,
                       pretrained_state=None if source is None else source[1], log=log)
    probs = run_net(net, base, __import__("torch").device("cpu"))
    train_accuracy = float(np.mean(probs.argmax(axis=1) == np.array([s.target for s in base])))
    card = {
        "task": task.name, "version": "local", "classes": list(task.classes), "phases": list(phases),
        "net": task.net, "net_kwargs": dict(task.net_kwargs), "input_size": task.input_size, "seed": seed,
        "description": task.one_line(),
        "training": {"cohort": str(Path(cohort_dir).resolve()), "n_cases": len(cohort.records),
                     "n_patients": len(cohort.patients()), "samples_per_class": _class_counts(task, base),
                     "augmented_samples": len(train_samples), "pretrained": None if source is None else str(source[0]),
                     "seconds": round(time.time() - started, 1), **{k: v for k, v in history.items() if k != "loss"},
                     "final_loss": history["loss"][-1] if history["loss"] else None},
        "metrics": {"training_accuracy": train_accuracy,
                    "note": "resubstitution accuracy on the training cohort; use `hcc evaluate` for cross-validated metrics"},
    }
    rank, _ = distributed.world()
    if rank == 0:
        card = save_model(out_dir, net, card)
        log(f"model package written to {out_dir} (training accuracy {train_accuracy:.3f})")
    distributed.shutdown()
    return card


def evaluate_task(task_name: str, cohort_dir: str | Path, out_dir: str | Path, folds: int = 5, repeats: int = 1,
                  phases: str | Sequence[str] | None = None, pretrained: str | Path | None = None,
                  epochs: int | None = None, seed: int = 0, device: str | torch.device | None = "auto",
                  log: Callable[[str], Any] = print, overwrite: bool = False) -> dict[str, Any]:
    """Cross-validate a task on a cohort into `out_dir`; returns metrics.json's dict.

    A folder holding an unfinished evaluation made with the same settings is resumed; one holding
    a finished evaluation or other files is refused unless `overwrite` (then the earlier
    evaluation's files are removed first)."""
    from HCCAnalysisLib.engine.evaluate import holds_other_output

    task = get_task(task_name)
    phases = parse_phases(task, phases)
    check_epochs(epochs)
    refuse_existing_output(out_dir, overwrite, holds_other_output,
                           "a finished evaluation or other files (an unfinished evaluation is resumed)")
    cohort = load_cohort(cohort_dir)
    n_patients = len(cohort.patients())
    if folds < 2 or folds > n_patients:  # before any case is loaded
        raise HCCInputError(f"{folds} folds asked for {n_patients} patients", hint="use 2 <= folds <= patients")
    source = resolve_pretrained(pretrained, task, len(phases))  # None: the task's recipe; "none": random
    log(describe_start(source, task, len(phases)))
    metrics = cross_validate(task, cohort, phases, out_dir, folds, repeats, seed, resolve_device(device),
                             None if source is None else source[1], epochs, log,
                             pretrained=None if source is None else str(Path(source[0]).resolve()), fresh=overwrite)
    for name, value in metrics["summary"].items():
        over = f"over {value.get('n_repeats', 1)} repeat(s)" if value.get("over") == "repeats" else "over folds"
        per_fold = value.get("per_fold", value)
        log(f"  {name:12s} {value['mean']:.3f} +- {value['sd']:.3f} {over};  per fold "
            f"{per_fold['mean']:.3f} +- {per_fold['sd']:.3f} ({value['n_folds']} folds)")
    return metrics


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
                   patient_id: str | None = None, fields: dict[str, str] | None = None) -> Prediction:

    """Run a model package on one case folder (with its table fields) and write the per-lesion TSV."""
    from HCCAnalysisLib.data.case_loading import load_for_task

    if Path(out_path).is_dir():
        raise HCCInputError("is a folder; --out names the results TSV file to write", out_path)
    device = resolve_device(device)
    model = load_model(model_dir, device)
    case = load_for_task(case_dir, model.task, model.card["phases"], case_id, patient_id, fields)
    prediction = predict_case(model, case, device=device)
    prediction.write_tsv(out_path)
    return prediction
