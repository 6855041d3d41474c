"""Prediction -> vtkMRMLTableNode with typed columns, titles, units and descriptions.

Columns keep the machine names of `Prediction.columns()` (so a table saved as TSV has the
same header as `Prediction.write_tsv`), with the segment name first, as Segment Statistics
puts the segment first. Human titles, units and descriptions go into the table's schema,
which Slicer shows as header text and tooltips and saves beside the TSV.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping

import math

from HCCAnalysisLib.errors import HCCInputError
from HCCAnalysisLib.data.prediction import Prediction
from HCCAnalysisLib.slicer_io.geometry import is_a, node_source

if TYPE_CHECKING:
    import slicer

STRING, DOUBLE, INT = "string", "double", "int"

# name -> (type, title, unit, description)
_FIXED_COLUMNS = {
    "lesion_name": (STRING, "Segment", "", "Name of the lesion's segment (or of the background region)."),
    "case_id": (STRING, "Case", "", "Case (examination) identifier."),
    "patient_id": (STRING, "Patient", "", "Patient identifier."),
    "lesion_id": (STRING, "Segment ID", "", "ID of the lesion's segment in the segmentation node."),
    "kind": (STRING, "Kind", "", "'lesion' for a segmented lesion, 'background' for a background region, 'image' for a whole microscopy image."),
    "predicted_class": (STRING, "Predicted class", "", "Class with the highest probability."),
    "n_samples": (INT, "Samples", "", "Number of samples (slices, patches or regions) aggregated into this row."),
    "warnings": (STRING, "Warnings", "", "Why this row's input is unusual (a lesion outside the liver, intensities far outside the model's training cases); empty when none."),
}


def column_info(prediction: Prediction, overrides: Mapping[str, Mapping[str, str]] | None = None
                ) -> list[tuple[str, str, str, str, str]]:
    """The ordered columns of the table: (name, type, title, unit, description) per column.

    `overrides` maps a column name to a dict with any of 'title', 'unit', 'description', e.g.
    units for the extra (time-signal curve) columns, which the prediction does not describe.
    """
    overrides = dict(overrides or {})
    names = ["lesion_name"] + [c for c in prediction.columns() if c != "lesion_name"]
    info = []
    for name in names:
        if name in _FIXED_COLUMNS:
            kind, title, unit, description = _FIXED_COLUMNS[name]
        elif name.startswith("prob_") and name[5:] in prediction.classes:
            cls = name[5:]
            kind, title, unit = DOUBLE, f"P({cls})", "probability"
            description = f"Predicted probability of class '{cls}' (task {prediction.task}, model {prediction.model})."
        else:
            kind, title, unit, description = DOUBLE, name, "", f"Extra value '{name}' computed by the model."
        extra = overrides.pop(name, {})
        info.append((name, kind, extra.get("title", title), extra.get("unit", unit),
                     extra.get("description", description)))
    if overrides:
        raise HCCInputError(f"column_info names unknown column(s) {sorted(overrides)}", "prediction table",
                            f"columns: {names}")
    return info


def _check_prediction(prediction):
    if not isinstance(prediction, Prediction):
        raise HCCInputError(f"is a {type(prediction).__name__}, not a Prediction", "prediction")
    if not prediction.rows:
        raise HCCInputError("has no rows", f"prediction of task '{prediction.task}'")
    if len(set(prediction.classes)) != len(prediction.classes) or not prediction.classes:
        raise HCCInputError(f"has empty or repeated classes {prediction.classes}", "prediction")
    for row in prediction.rows:
        missing = [c for c in prediction.classes if c not in row.probabilities]
        if missing:
            raise HCCInputError(f"row of lesion '{row.lesion_name}' has no probability for {missing}", "prediction")


def _cell(value, kind, name):
    if kind == STRING:
        # Slicer's TSV writer does not escape '"' and the row reads back corrupted: use a single quote.
        return str(value).replace('"', "'")
    if kind == INT:
        return int(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise HCCInputError(f"column '{name}' holds {value!r}, not a number", "prediction") from None


def _build_table(prediction, info):
    """A filled vtkTable (not yet in any node): a failure here leaves the scene untouched."""
    import vtk

    records = prediction.records()
    table = vtk.vtkTable()
    arrays = {STRING: vtk.vtkStringArray, DOUBLE: vtk.vtkDoubleArray, INT: vtk.vtkIntArray}
    for name, kind, *_ in info:
        array = arrays[kind]()
        array.SetName(name)
        array.SetNumberOfValues(len(records))
        for row, record in enumerate(records):
            value = _cell(record[name], kind, name)
            if kind == DOUBLE and math.isinf(value):
                raise HCCInputError(f"column '{name}' holds an infinite value", "prediction")
            array.SetValue(row, value)
        table.AddColumn(array)
    return table


def _described_columns(node):
    schema = node.GetSchema()
    names = schema.GetColumnByName("columnName") if schema is not None else None
    return [] if names is None else [names.GetValue(i) for i in range(names.GetNumberOfValues())]


def prediction_to_table(prediction: Prediction, scene: slicer.vtkMRMLScene,
                        table_node: slicer.vtkMRMLTableNode | None = None, name: str | None = None,
                        column_info_overrides: Mapping[str, Mapping[str, str]] | None = None
                        ) -> slicer.vtkMRMLTableNode:
    """Write a Prediction into a table node (a new one, or `table_node` replaced), one row per lesion.

    Returns the table node. The table's attributes record the task, model and classes.
    """
    import slicer

    _check_prediction(prediction)
    if not is_a(scene, "vtkMRMLScene"):
        raise HCCInputError("is not an MRML scene", repr(scene))
    if table_node is not None:
        if not is_a(table_node, "vtkMRMLTableNode"):
            raise HCCInputError("is not a table node", node_source(table_node))
        if table_node.GetScene() is not scene:
            raise HCCInputError("is not in the given scene", node_source(table_node))
    info = column_info(prediction, column_info_overrides)
    table = _build_table(prediction, info)

    node = table_node if table_node is not None else slicer.vtkMRMLTableNode()
    was_modifying = node.StartModify()
    try:
        for column in _described_columns(node):  # a reused node must not keep stale descriptions
            node.RemoveAllColumnProperties(column)
        node.SetAndObserveTable(table)
        for column, _kind, title, unit, description in info:
            node.SetColumnTitle(column, title)
            node.SetColumnUnitLabel(column, unit)
            node.SetColumnDescription(column, description)
        node.SetUseColumnTitleAsColumnHeader(True)
        node.SetAttribute("HCCAnalysis.task", str(prediction.task))
        node.SetAttribute("HCCAnalysis.model", str(prediction.model))
        node.SetAttribute("HCCAnalysis.classes", "|".join(prediction.classes))
        if name:
            node.SetName(name)
        elif table_node is None:
            node.SetName(scene.GenerateUniqueName(f"HCC {prediction.task} prediction"))
    finally:
        node.EndModify(was_modifying)
    if table_node is None:
        scene.AddNode(node)
    return node
