"""`hcc demo`: the whole pipeline on the bundled real sample data, in a few minutes on 2 cores.

1. patient-level cross-validation of jia2019-hcc-vs-background, repeated, with the test fold
   scored after every epoch, fine-tuned from the task's own start: the authors' MNIST weights,
   as Jia 2019 sec. 4.1 does for one grey sequence (metrics.json, predictions.tsv, roc.png), and
   its report (Jia's accuracy per epoch and mean ROC with +-1 SD over repeats, DeLong CIs, t-SNE);
2. the final model trained on the whole demo cohort from the same start (a model package);
3. that model run on the held-out case through real MRML nodes: the result table as TSV and
   a Slicer scene (volume, segmentation, table) that Slicer opens.
The sample cases are real CT / MR tumours, not liver MRI: see HCCAnalysisLib/sample_data/LICENSES.md.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from HCCAnalysisLib.atomic import write_text_atomic
from HCCAnalysisLib.workflows import evaluate_task, train_model

if TYPE_CHECKING:
    import slicer

    from HCCAnalysisLib.data.prediction import Prediction

# Package data, so that `hcc demo` runs from a pip install as well as from a clone.
SAMPLE_DATA = Path(__file__).resolve().parent / "sample_data"
COHORT = SAMPLE_DATA / "demo-cohort"
HELD_OUT = SAMPLE_DATA / "demo-heldout" / "brain2"
TASK = "jia2019-hcc-vs-background"
PHASES = ["image"]
# 12, not the task's 30: training accuracy is 1.0 by epoch 3 and the test fold's levels off by epoch 5
# (the report's accuracy per epoch), and 2 repeats x 4 folds + the final model stay within ~4 minutes
DEMO_EPOCHS = 12
DEMO_REPEATS = 2  # the least that gives an SD over repeats (Jia 2019 Figs. 7 and 8)
PRETRAINED = None  # the task's recipe for one phase (Task.default_pretrained): jia2019-mnist
# Why the report has no time-signal intensity curve (Jia 2019 Fig. 4): it is drawn over dynamic phases.
NO_TSIC = (f"no time-signal intensity curve: the demo cohort has one phase ({', '.join(PHASES)}); Jia's curve "
           "runs over the dynamic phases S0-S5 (hcc evaluate --dynamic-phases S0,...,S5)")


def run_held_out_through_mrml(model_dir: str | Path, case_dir: str | Path,
                              out_dir: Path) -> tuple[Prediction, slicer.vtkMRMLTableNode, Path]:
    """Held-out case -> MRML nodes -> Case -> prediction -> table node -> TSV + scene."""
    from HCCAnalysisLib.models.package import load_model
    from HCCAnalysisLib.engine.infer import predict_case
    from HCCAnalysisLib.slicer_io.files import load_case_into_scene, save_scene, standalone_scene
    from HCCAnalysisLib.slicer_io.nodes import case_from_nodes, prediction_to_table

    scene = standalone_scene()
    volumes, segmentation = load_case_into_scene(scene, case_dir, PHASES)
    model = load_model(model_dir)
    case = case_from_nodes(volumes, segmentation, case_id=Path(case_dir).name, patient_id=f"patient-{Path(case_dir).name}")
    prediction = predict_case(model, case)
    table = prediction_to_table(prediction, scene, name=f"{TASK} results")
    prediction.write_tsv(out_dir / "heldout_results.tsv")
    scene_file = save_scene(scene, out_dir / "scene")
    return prediction, table, scene_file


def run_demo(out_dir: str | Path = "out/demo", epochs: int | None = None,
             log: Callable[[str], Any] | None = None) -> dict[str, Any]:
    """The three demo steps into `out_dir`; messages go to `log` (default: this module's logger)."""
    log = log or logging.getLogger(__name__).info

    from HCCAnalysisLib.engine.evaluate import EvaluationOptions
    from HCCAnalysisLib.workflows import check_epochs

    check_epochs(epochs)  # 0 is refused, not silently taken as the default
    out_dir = Path(out_dir)
    epochs = DEMO_EPOCHS if epochs is None else epochs
    started = time.time()
    n_patients = len({line.split(",")[1] for line in (COHORT / "cases.csv").read_text().splitlines()[1:]})
    log(f"[1/3] {TASK}: leave-one-patient-out cross-validation on {n_patients} patients ({COHORT.name}), "
        f"{DEMO_REPEATS} repeats, the test fold scored after every epoch")
    metrics = evaluate_task(TASK, COHORT, out_dir / "evaluation", folds=n_patients, repeats=DEMO_REPEATS,
                            phases=PHASES, pretrained=PRETRAINED, epochs=epochs, log=log, overwrite=True,
                            options=EvaluationOptions(epoch_curve=True))
    from HCCAnalysisLib.report.command import make_report

    report = make_report([out_dir / "evaluation"], out_dir / "report", overwrite=True)
    log(f"  report (accuracy per epoch and mean ROC +- SD over repeats, ROC with DeLong CIs, confusion, kappa, "
        f"t-SNE): {report}")
    log(f"  {NO_TSIC}")
    log("[2/3] training the final model on the whole demo cohort")
    card = train_model(TASK, COHORT, out_dir / "model", PHASES, PRETRAINED, epochs, overwrite=True, log=log)
    log(f"[3/3] held-out case {HELD_OUT.name} through MRML nodes")
    prediction, _, scene_file = run_held_out_through_mrml(out_dir / "model", HELD_OUT, out_dir)
    for record in prediction.records():
        log(f"  {record['lesion_name']:28s} -> {record['predicted_class']:10s} P(HCC) = {record['prob_HCC']:.3f}")
    summary = {"seconds": round(time.time() - started, 1), "cv_summary": metrics["summary"],
               "evaluation": str(out_dir / "evaluation"), "report": str(report), "report_notes": [NO_TSIC],
               "pretrained": card["training"].get("pretrained"), "model": str(out_dir / "model"),
               "heldout_table": str(out_dir / "heldout_results.tsv"), "scene": str(scene_file)}
    write_text_atomic(out_dir / "demo_summary.json", json.dumps(summary, indent=2) + "\n")
    log(f"done in {summary['seconds']} s: metrics {out_dir / 'evaluation' / 'metrics.json'}, "
        f"ROC {out_dir / 'evaluation' / 'roc.png'}, scene {scene_file}")
    return summary
