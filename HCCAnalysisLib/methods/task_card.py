"""A task as its user reads it (`hcc tasks TASK`, `hcc tasks --json`): what a cohort must hold
for it (phases, the label column and its classes, the clinical columns with units) and what it
runs (network, input size, pretraining, extras). Built from the Task's fields only."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

from HCCAnalysisLib.methods.task import Task


def _clinical_fields(schema_name: str | None) -> list[dict[str, Any]]:
    if schema_name is None:
        return []
    from HCCAnalysisLib.clinical.schemas import get_schema

    fields = []
    for fld in get_schema(schema_name).fields:
        entry = {"column": fld.name, "description": fld.description, "allowed": fld.allowed(),
                 "required": fld.missing == "error"}
        unit = getattr(fld, "unit", None)
        if unit is not None:
            entry.update(unit=unit, other_units=sorted(getattr(fld, "alt_units", {}) or {}))
        fields.append(entry)
    return fields


def _pretraining(task: Task) -> dict[str, Any]:
    by_phases = {str(n): task.default_pretrained(n) for n in task.phase_counts}
    return {"default_by_phase_count": by_phases, "family": task.pretraining_family,
            "accepts": ("a named source of this family, a local weights file, or none"
                        if task.pretraining_family else "a local weights file, or none")}


def task_card(task: Task) -> dict[str, Any]:
    """The facts of `task` as plain JSON-ready data."""
    if task.label_column is None:
        label = {"column": None, "from": "the sample kind", "kind_classes": dict(task.kind_classes)}
    else:
        label = {"column": task.label_column, "from": "cases.csv"}
    return {
        "name": task.name,
        "paper": task.paper,
        "description": task.description,
        "phases": list(task.phases),
        "phase_counts": list(task.phase_counts),
        "needs_segmentation": task.needs_segmentation,
        "label": label,
        "classes": list(task.classes),
        "clinical_schema": task.clinical_schema,
        "clinical_fields": _clinical_fields(task.clinical_schema),
        "net": task.net,
        "input_size": [task.input_size, task.input_size],
        "pretraining": _pretraining(task),
        "extras": list(getattr(task, "extras", ())),
    }


def format_task_card(card: dict[str, Any]) -> str:
    """The card as aligned text lines."""
    label = card["label"]
    label_text = (f"column '{label['column']}' of cases.csv" if label["column"] else
                  "no column: " + ", ".join(f"{k} samples -> {v}" for k, v in label["kind_classes"].items()))
    counts = " or ".join(map(str, card["phase_counts"]))
    pretraining = ", ".join(f"{n} phase(s): {src or 'random initialisation'}"
                            for n, src in card["pretraining"]["default_by_phase_count"].items())
    lines = [
        f"{card['name']}: {card['description']}",
        f"  paper          {card['paper']}",
        f"  phases         {', '.join(card['phases'])} (a run takes {counts}; --phases to choose)",
        f"  segmentation   {'required (liver / lesion label map)' if card['needs_segmentation'] else 'none'}",
        f"  label          {label_text}",
        f"  classes        {', '.join(card['classes'])}",
        f"  input size     {card['input_size'][0]} x {card['input_size'][1]} pixels",
        f"  network        {card['net']}",
        f"  pretraining    {pretraining} ({card['pretraining']['accepts']})",
        f"  extras         {', '.join(card['extras']) or 'none (core install)'}",
    ]
    if card["clinical_fields"]:
        lines.append(f"  clinical       schema '{card['clinical_schema']}', one column each in cases.csv:")
        width = max(len(f["column"]) for f in card["clinical_fields"])
        for fld in card["clinical_fields"]:
            unit = f" [{fld['unit']}]" if fld.get("unit") else ""
            optional = "" if fld["required"] else " (optional)"
            lines.append(f"    {fld['column']:{width}s}{unit} {fld['allowed']}{optional}")
    else:
        lines.append("  clinical       none")
    return "\n".join(lines)


def close_names(name: str, names: Iterable[str], n: int = 5) -> list[str]:
    """Known names that look like `name`: same prefix first, then difflib's closest."""
    names = sorted(names)
    stem = name.split("-")[0].lower()
    prefixed = [known for known in names if stem and known.lower().startswith(stem)]
    similar = difflib.get_close_matches(name, names, n=n, cutoff=0.5)
    return list(dict.fromkeys(similar + prefixed))[:n]
