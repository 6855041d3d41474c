"""A finished out-of-process run's result files back into the scene, all or nothing (GUI thread).

Every file is read before the first node is added; if adding fails part way, the nodes
added so far are removed again, so a failed load leaves the scene as it was. The table
is built from the child's prediction.json through the same `jobs_table` as the in-process
path, so both give the same table, with a `phase_sources` column saying which volume node fed
which phase ('image=CT').
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Sequence

import json
from dataclasses import dataclass, field
from pathlib import Path

from HCCAnalysisLib.data.prediction import Prediction, PredictionRow
from HCCAnalysisLib.errors import HCCInputError
from HCCAnalysisLib.panel import jobs as panel_jobs

if TYPE_CHECKING:
    import SimpleITK as sitk
    import slicer

_NON_FINITE = ("nan", "inf", "-inf")


def _number(value: Any) -> Any:
    return float(value) if isinstance(value, str) and value in _NON_FINITE else value


def read_prediction(path: str) -> Prediction:
    """The Prediction the child wrote as JSON (non-finite numbers were written as 'nan' / 'inf')."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        rows = []
        for row in data["rows"]:
            row = dict(row, probabilities={k: _number(v) for k, v in row["probabilities"].items()},
                       extras={k: _number(v) for k, v in row["extras"].items()})
            rows.append(PredictionRow(**row))
        return Prediction(data["task"], data["model"], list(data["classes"]), rows)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise HCCInputError(f"is not a readable prediction ({err})", path) from err


@dataclass
class RunResults:
    """What one run added to the scene."""

    table: Any = None  # vtkMRMLTableNode
    saliency: list = field(default_factory=list)  # scalar volume nodes
    labelmaps: list = field(default_factory=list)  # label map volume nodes (Liang 2018 patch votes)


def _read_image(path: str) -> sitk.Image:
    import SimpleITK as sitk

    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as err:
        raise HCCInputError(f"could not be read ({err})", path) from err


def _labelmap_node(job, image, classes, scene):
    from HCCAnalysisLib.methods.liang2018.label_map_output import class_colour_node
    from HCCAnalysisLib.slicer_io.nodes import labelmap_to_volume_node

    name = scene.GenerateUniqueName(f"{job.case.case_id} patch votes ({job.task})")
    node = labelmap_to_volume_node(image, None, scene, name, labelmap=True)
    colours = class_colour_node(scene, classes, f"{name} classes")
    node.GetDisplayNode().SetAndObserveColorNodeID(colours.GetID())
    return [node, colours]


def load_run_results(results: Mapping[int, Mapping[str, str]], jobs: Sequence[panel_jobs.Job],
                     scene: slicer.vtkMRMLScene, table_node: slicer.vtkMRMLTableNode | None = None) -> RunResults:
    """Add the table (one, for all finished jobs), saliency volumes and label maps of a run."""
    done = sorted(results)
    if not done:
        raise HCCInputError("the run has no results to show")
    read = []  # every file first: a missing or broken one adds nothing
    for index in done:
        files = results[index]
        if "prediction" not in files:
            raise HCCInputError(f"job {index} reported no prediction file", str(dict(files)))
        read.append((jobs[index], read_prediction(files["prediction"]),
                     _read_image(files["saliency"]) if files.get("saliency") else None,
                     _read_image(files["labelmap"]) if files.get("labelmap") else None))
    out, added = RunResults(), []
    try:
        for job, _, saliency, _ in read:
            job.saliency_image = saliency
        out.saliency = panel_jobs.saliency_nodes([job for job, *_ in read], scene)
        added += out.saliency
        for job, prediction, _, labelmap in read:
            if labelmap is not None:
                nodes = _labelmap_node(job, labelmap, prediction.classes, scene)
                added += nodes
                out.labelmaps.append(nodes[0])
        out.table = jobs_table([job for job, *_ in read], [p for _, p, _, _ in read], scene, table_node)
    except Exception:
        for node in added:
            scene.RemoveNode(node)
        raise
    return out


def jobs_table(jobs: Sequence[panel_jobs.Job], predictions: Sequence[Prediction], scene: slicer.vtkMRMLScene,
               table_node: slicer.vtkMRMLTableNode | None = None) -> slicer.vtkMRMLTableNode:
    """The table of finished jobs (`jobs.results_to_table`) saying which volume fed which phase."""
    table = panel_jobs.results_to_table(predictions, scene, table_node)
    try:
        record_phase_sources(table, jobs, predictions)
    except Exception:
        if table_node is None:
            scene.RemoveNode(table)
        raise
    return table


PHASE_SOURCES = "phase_sources"  # the column (and, prefixed "HCCAnalysis.", the attribute)


def record_phase_sources(table_node: slicer.vtkMRMLTableNode, jobs: Sequence[panel_jobs.Job],
                         predictions: Sequence[Prediction]) -> None:
    """Say in the table which volume node fed which phase ('image=CT'): a column, one value per row
    from the row's job, and the attribute HCCAnalysis.phase_sources; both are saved with the scene."""
    import vtk

    from HCCAnalysisLib.panel.phase_mapping import sources_text

    texts = [sources_text(job.phase_sources) for job, p in zip(jobs, predictions) for _ in p.records()]
    table = table_node.GetTable()
    if len(texts) != table.GetNumberOfRows():
        raise HCCInputError(f"has {table.GetNumberOfRows()} rows, the predictions {len(texts)}", table_node.GetName())
    column = vtk.vtkStringArray()
    column.SetName(PHASE_SOURCES)
    column.SetNumberOfValues(len(texts))
    for row, text in enumerate(texts):
        column.SetValue(row, text.replace('"', "'"))  # Slicer's TSV writer does not escape '"'
    table.AddColumn(column)
    table_node.SetColumnTitle(PHASE_SOURCES, "Phase sources")
    table_node.SetColumnDescription(PHASE_SOURCES, "Volume node that fed each model phase (phase=node name).")
    table_node.SetAttribute("HCCAnalysis." + PHASE_SOURCES,
                            " | ".join(f"{job.task}: {sources_text(job.phase_sources)}" for job in jobs))
    table_node.Modified()


def tables_match(a: slicer.vtkMRMLTableNode, b: slicer.vtkMRMLTableNode, rel: float = 1e-5, abs_tol: float = 1e-9
                 ) -> bool:
    """Two result tables hold the same cells: text equal, numbers within `rel` (NaN equals NaN).

    Not exact: the child process and the console may run torch with other thread counts, and a
    convolution summed in another order differs in its last bits (seen: 1.1142215e-09 vs 1.1142222e-09)."""
    import math

    left, right = table_values(a), table_values(b)
    if [len(r) for r in left] != [len(r) for r in right]:
        return False
    for x, y in zip((c for r in left for c in r), (c for r in right for c in r)):
        try:
            fx, fy = float(x), float(y)
        except ValueError:
            if x != y:
                return False
            continue
        if not ((math.isnan(fx) and math.isnan(fy)) or math.isclose(fx, fy, rel_tol=rel, abs_tol=abs_tol)):
            return False
    return True


def table_values(table_node: slicer.vtkMRMLTableNode) -> list[list[str]]:
    """A table node's values, row by row, as repr text: exact, and NaN compares equal to NaN."""
    table = table_node.GetTable()
    return [[repr(table.GetColumn(c).GetValue(r)) for c in range(table.GetNumberOfColumns())]
            for r in range(table.GetNumberOfRows())]
