"""A trained model on an external test cohort (Zhen 2020's main protocol): no training, the same
evaluation folder as cross-validation, so `hcc report` gives Tables 1-4 for it.

    hcc evaluate --model MODEL_DIR --cohort EXTERNAL_COHORT --out DIR [--tta]

Every case of the cohort is read and sampled as prediction does (the model's phases, seed and
sampler options), scored by the model, and its rows carry the cohort's true labels. The folder
is written with repeat 0 and fold "external"; `evaluation.json` records the model (task, version,
weights' SHA-256) and the cohort (folder name and the hash of its cases), never a local path.
Each case is checked against the card's input profile as prediction checks it: a case far outside
the training cases is refused unless `allow_unusual_input`, and every finding is recorded in
`evaluation.json` (`input_findings`), since an external cohort often comes from other scanners.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from HCCAnalysisLib.atomic import write_text_atomic
from HCCAnalysisLib.engine.evaluate import RUN_RECORD, clear_evaluation, cohort_fingerprint, holds_other_output
from HCCAnalysisLib.engine.infer import make_samples
from HCCAnalysisLib.engine.scoring import score_samples, write_evaluation_files
from HCCAnalysisLib.errors import HCCInputError
from HCCAnalysisLib.runtime.progress import progress

if TYPE_CHECKING:
    from HCCAnalysisLib.data.reading_options import CaseReading

_LOG = logging.getLogger(__name__)
EXTERNAL_FOLD = "external"


def evaluate_external(model_dir: str | Path, cohort_dir: str | Path, out_dir: str | Path, device: str = "auto",
                      tta: bool = False, overwrite: bool = False, reading: CaseReading | None = None,
                      log: Callable[[str], Any] | None = None, allow_unusual_input: bool = False) -> dict[str, Any]:
    """Score the model package `model_dir` on every case of `cohort_dir`; returns metrics.json's dict."""
    from HCCAnalysisLib.data.cohort import load_cohort
    from HCCAnalysisLib.data.intensity_profile import check_case_input
    from HCCAnalysisLib.engine.device import resolve_device
    from HCCAnalysisLib.io.output_location import check_output_folder
    from HCCAnalysisLib.models.package import load_model
    from HCCAnalysisLib.workflows import refuse_existing_output

    log = log or _LOG.info
    refuse_existing_output(out_dir, overwrite, holds_other_output, "a finished evaluation or other files")
    check_output_folder(out_dir, [cohort_dir, model_dir], results=("metrics.json", "predictions.tsv"))
    device = resolve_device(device)
    model = load_model(model_dir, device)
    task, card = model.task, model.card
    cohort = load_cohort(cohort_dir, reading=reading)
    if task.label_column:
        cohort.column(task.label_column)  # every case needs its true class: refused before any image is read
    phases, seed = list(card["phases"]), int(card.get("seed", 0))
    samples, findings = [], {}
    for record in progress(cohort.records, desc="scoring cases", unit="case"):
        case = record.load(phases, task)
        unusual = check_case_input(card, case, phases, allow_unusual_input, model.directory / "model.json")
        if unusual:
            findings[case.case_id] = unusual
        samples += make_samples(task, case, phases, seed=seed, training=False, fields=record.fields)
    present = {task.classes[s.target] for s in samples}
    if len(present) < 2:
        raise HCCInputError(f"the external cohort holds only the class(es) {sorted(present)}", cohort_dir,
                            "ROC, sensitivity and specificity need cases of at least two classes")
    rows, embeddings, result = score_samples(task, model.net, samples, device, 0, EXTERNAL_FOLD, tta)
    result["test_patients"] = cohort.patients()
    out_dir = Path(out_dir)
    if overwrite:
        clear_evaluation(out_dir)
    record = {"external": True, "task": task.name, "model_version": card.get("version"),
              "weights_sha256": card.get("weights_sha256"), "phases": phases, "test_time_augmentation": tta,
              "cohort": Path(cohort.folder).name, "cohort_sha256": cohort_fingerprint(cohort),
              "input_findings": findings}
    write_text_atomic(out_dir / RUN_RECORD, json.dumps(record, indent=2) + "\n")
    config = {"external": True, "model": f"{task.name} {card.get('version', '')}".strip(),
              "weights_sha256": card.get("weights_sha256"), "test_time_augmentation": tta,
              "cohort": Path(cohort.folder).name}
    metrics = write_evaluation_files(out_dir, task, phases, rows, [result], embeddings or [], seed, config)
    log(f"external cohort {Path(cohort.folder).name}: {len(cohort.records)} cases, {len(rows)} rows scored by "
        f"{config['model']}; AUC {result.get('auc', float('nan')):.3f}, accuracy {result.get('accuracy', float('nan')):.3f}")
    return metrics
