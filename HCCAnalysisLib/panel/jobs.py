"""The work behind the panel's Apply and "Run all": MRML inputs -> jobs -> predictions -> table.

In three steps: `prepare_job` reads the nodes into a Case on the GUI thread; `run_job` (model
loading and prediction, no MRML) runs in the child process the panel starts (`process_run`,
`hcc run-job`), or in this process for the blocking console call; `results_to_table` (and
`saliency_nodes` for jobs that asked for a saliency map) write the table (and volume nodes)
on the GUI thread again. Used by HCCAnalysisLogic; runs the same with the slicer-core wheel,
so it is tested outside Slicer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Sequence

import math
from dataclasses import dataclass, field
from pathlib import Path

from HCCAnalysisLib.panel import choices as panel_model
from HCCAnalysisLib.errors import HCCInputError
from HCCAnalysisLib.models.registry import installed_models
from HCCAnalysisLib.tasks import get_task

if TYPE_CHECKING:
    import SimpleITK as sitk
    import slicer

    from HCCAnalysisLib.data.case import Case
    from HCCAnalysisLib.data.microscopy_case import MicroscopyCase
    from HCCAnalysisLib.data.prediction import Prediction
    from HCCAnalysisLib.models.package import LoadedModel

_MODEL_CACHE = {}  # (package folder, device, weights mtime) -> LoadedModel


# Colour maps for a saliency volume, first one present wins: Inferno ships with Slicer's
# colour files; the procedural Rainbow exists wherever the Colors logic runs (slicer-core too).
SALIENCY_COLOURS = ("vtkMRMLColorTableNodeFileInferno.txt", "vtkMRMLColorTableNodeRainbow")


@dataclass
class Job:
    task: str
    case: Case | MicroscopyCase
    model_dir: str
    device: str
    saliency: bool = False  # also compute the saliency volume of the case (issue 6)
    phase_sources: dict[str, str] = field(default_factory=dict)  # phase -> name of the volume node read
    # Predict a case far outside the model card's input_profile anyway, the reason in `warnings`.
    allow_unusual_input: bool = False
    # Set by run_job (in the child process), or from its saliency file once the run has finished.
    saliency_image: sitk.Image | None = None  # SimpleITK image on the case's segmentation grid


def prepare_job(task: str, volume_nodes: Mapping[str, slicer.vtkMRMLScalarVolumeNode | None],
                segmentation_node: slicer.vtkMRMLSegmentationNode | None, segment_ids: Sequence[str] | None = None,
                model_dir: str | Path = "", device: str = "auto", clinical: Mapping[str, str] | None = None,
                case_id: str = "case", patient_id: str | None = None, saliency: bool = False,
                allow_unusual_input: bool = False) -> Job:
    """Check the inputs of one task and read them into a Case (GUI thread: touches MRML).

    `volume_nodes`: phase -> scalar volume node (phases the model does not read are ignored);
    `segment_ids`: lesion segments (None: every segment not named liver); `model_dir`: an
    installed model package folder; `clinical`: field -> text; `saliency`: also compute a
    saliency volume (refused here, before any work, for a task that cannot give one);
    `allow_unusual_input`: the panel's "Allow unusual input" (data/intensity_profile.py).
    """
    from HCCAnalysisLib.slicer_io.nodes import case_from_nodes

    if saliency:
        from HCCAnalysisLib.engine.saliency import check_saliency_task

        check_saliency_task(task)

    phases = model_phases(model_dir) if model_dir else None
    present = {p: n is not None for p, n in volume_nodes.items()}
    reasons = panel_model.missing_task_inputs(task, present, model_dir, clinical, phases)
    whole_image = not get_task(task).needs_segmentation  # Meng 2019: one microscopy image, no segmentation
    if segmentation_node is None and not whole_image:
        reasons.insert(0, "choose a segmentation")
    if reasons:
        raise HCCInputError("; ".join(reasons), f"task {task}")
    record = panel_model.clinical_record(task, clinical)
    if whole_image:
        from HCCAnalysisLib.data.microscopy_case import microscopy_case_from_node

        case = microscopy_case_from_node(volume_nodes[phases[0]], case_id=case_id, patient_id=patient_id,
                                         fields=record)
        return Job(task, case, str(model_dir), device, saliency=bool(saliency),
                   phase_sources={phases[0]: volume_nodes[phases[0]].GetName()},
                   allow_unusual_input=bool(allow_unusual_input))
    nodes = {p: volume_nodes[p] for p in phases}
    case = case_from_nodes(nodes, segmentation_node, segment_ids or None, case_id=case_id, patient_id=patient_id,
                           fields=record)
    return Job(task, case, str(model_dir), device, saliency=bool(saliency),
               phase_sources={p: n.GetName() for p, n in nodes.items()}, allow_unusual_input=bool(allow_unusual_input))


def lesion_ids(segmentation_node: slicer.vtkMRMLSegmentationNode | None, selected: Sequence[str] | None = None
               ) -> list[str]:
    """The lesion segment IDs of a segmentation node: `selected`, else all not named liver.

    Selected IDs the node does not have (a selection made on another segmentation) are ignored.
    """
    if segmentation_node is None:
        return []
    segmentation = segmentation_node.GetSegmentation()
    segments = [(segmentation.GetNthSegmentID(i), segmentation.GetNthSegment(i).GetName())
                for i in range(segmentation.GetNumberOfSegments())]
    present = [s for s in (selected or []) if s in {sid for sid, _ in segments}]
    return panel_model.lesion_segment_ids(segments, present)


def model_phases(model_dir: str | Path) -> list[str]:
    """The phases (in channel order) that the model package reads."""
    from HCCAnalysisLib.models.registry import read_card

    return list(read_card(model_dir)["phases"])


def load_cached_model(model_dir: str | Path, device: str) -> tuple[LoadedModel, str]:
    """A loaded model, reused while its weights file is unchanged (loading costs seconds)."""
    from HCCAnalysisLib.engine.device import select_device
    from HCCAnalysisLib.models.package import load_model

    choice = select_device(device)
    weights = Path(model_dir) / "model.safetensors"
    key = (str(Path(model_dir).resolve()), choice.device, weights.stat().st_mtime_ns if weights.exists() else 0)
    if key not in _MODEL_CACHE:
        _MODEL_CACHE.clear()  # keep one model in memory: GPU memory is the scarce resource
        _MODEL_CACHE[key] = load_model(model_dir, choice.device)
    return _MODEL_CACHE[key], choice.device


def run_job(job: Job) -> Prediction:
    """Predict one job (no MRML). Returns a Prediction.

    With `job.saliency`, also puts the case's saliency volume in `job.saliency_image` (the
    result stays a Prediction, which the table code expects)."""
    from HCCAnalysisLib.data.intensity_profile import PANEL_OVERRIDE
    from HCCAnalysisLib.engine.infer import predict_case

    model, device = load_cached_model(job.model_dir, job.device)
    if model.card["task"] != job.task:
        raise HCCInputError(f"is a model for task {model.card['task']}, not {job.task}", job.model_dir)
    # a refusal's hint names the panel's check box, which the panel user has, not the CLI flag
    prediction = predict_case(model, job.case, device=device, allow_unusual_input=job.allow_unusual_input,
                              unusual_input_override=PANEL_OVERRIDE)
    job.saliency_image = None
    if job.saliency:
        from HCCAnalysisLib.engine.saliency import saliency_volume

        job.saliency_image = saliency_volume(model, job.case, device=device)
    return prediction


def allowing_unusual_input(plan: Any, allow: bool) -> Any:
    """`plan` (anything with `.jobs`, e.g. Run all's plan) with every job's `allow_unusual_input` set."""
    for job in plan.jobs:
        job.allow_unusual_input = bool(allow)
    return plan


def saliency_nodes(jobs: Sequence[Job], scene: slicer.vtkMRMLScene) -> list[slicer.vtkMRMLScalarVolumeNode]:
    """A scalar volume node per finished job with a saliency volume (GUI thread: touches MRML).

    The node is in world coordinates on the case's segmentation grid, so it lies over the
    input volumes; its display shows 0..1 (the maps' range) in a heat colour map."""
    from HCCAnalysisLib.slicer_io.nodes import sitk_to_volume_node

    nodes = []
    for job in jobs:
        if job.saliency_image is None:
            continue
        node = sitk_to_volume_node(job.saliency_image, scene, name=f"{job.case.case_id} saliency ({job.task})")
        display = node.GetDisplayNode()
        display.AutoWindowLevelOff()
        display.SetWindowLevelMinMax(0.0, 1.0)
        colour = next((c for c in SALIENCY_COLOURS if scene.GetNodeByID(c) is not None), None)
        if colour is not None:
            display.SetAndObserveColorNodeID(colour)
        nodes.append(node)
    return nodes


def applicable_jobs(volume_nodes: Mapping[str, slicer.vtkMRMLScalarVolumeNode | None],
                    segmentation_node: slicer.vtkMRMLSegmentationNode | None, segment_ids: Sequence[str] | None,
                    device: str = "auto", clinical: Mapping[str, str] | None = None,
                    models: Mapping[str, str] | None = None, case_id: str = "case") -> list[Job]:
    """Jobs for every task whose phases, model and clinical data are all present ("Run all").

    `models`: task -> model package folder (default: the newest installed package per task);
    `case_id`: the table's case name (the panel gives the segmentation's name, as for Apply).
    """
    if models is None:
        models = {}
        for model in installed_models():
            models[model.task] = str(model.path)  # sorted by version: the newest wins
    phases = {task: model_phases(path) for task, path in models.items()}
    tasks = panel_model.applicable_tasks([p for p, n in volume_nodes.items() if n is not None], phases, clinical)
    if not tasks:
        raise HCCInputError("no task has all its inputs (phases, installed model, clinical data)", "Run all",
                            "choose the phase volumes of a task and install its model")
    return [prepare_job(t, volume_nodes, segmentation_node, segment_ids, models[t], device, clinical, case_id=case_id)
            for t in tasks]


def combined_records(predictions: Sequence[Prediction]) -> tuple[list[str], list[dict[str, Any]]]:
    """(columns, rows) of several tasks' predictions in one table: a `task` column first,
    then the union of their columns; a class a task does not have is NaN."""
    columns, rows = ["task", "model"], []
    for prediction in predictions:
        columns += [c for c in prediction.columns() if c not in columns]
    for prediction in predictions:
        for record in prediction.records():
            rows.append(dict({c: math.nan for c in columns}, task=prediction.task, model=prediction.model, **record))
    return columns, rows


def results_to_table(predictions: Sequence[Prediction], scene: slicer.vtkMRMLScene,
                     table_node: slicer.vtkMRMLTableNode | None = None) -> slicer.vtkMRMLTableNode:
    """One prediction: slicer_io's typed, titled table. Several ("Run all"): one combined table."""
    from HCCAnalysisLib.slicer_io.nodes import prediction_to_table

    if len(predictions) == 1:
        return prediction_to_table(predictions[0], scene, table_node)
    import vtk

    columns, rows = combined_records(predictions)
    table = vtk.vtkTable()
    for name in columns:
        numeric = all(isinstance(r[name], (int, float)) for r in rows)
        array = vtk.vtkDoubleArray() if numeric else vtk.vtkStringArray()
        array.SetName(name)
        array.SetNumberOfValues(len(rows))
        for i, row in enumerate(rows):
            array.SetValue(i, float(row[name]) if numeric else str(row[name]).replace('"', "'"))
        table.AddColumn(array)
    node = table_node if table_node is not None else scene.AddNewNodeByClass("vtkMRMLTableNode", "HCCAnalysis results")
    node.SetAndObserveTable(table)
    node.SetAttribute("HCCAnalysis.task", "|".join(p.task for p in predictions))
    return node
