"""What the Slicer panel shows, computed without Qt so it is unit-tested.

The panel's dynamic parts come from the task registry: one volume selector per
phase the task reads, a clinical form generated from the task's clinical schema,
and the reasons Apply is disabled. The module file only turns these plain
descriptions into widgets.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from HCCAnalysisLib.errors import HCCInputError
from HCCAnalysisLib.tasks import TASKS, get_task

if TYPE_CHECKING:
    from HCCAnalysisLib.clinical.schemas import ClinicalSchema

#: Liver segments are context, never a lesion to classify (matched case-insensitively).
LIVER_SEGMENT_NAMES = ("liver",)


@dataclass(frozen=True)
class TaskChoice:
    name: str
    label: str  # shown in the combo box
    description: str  # one line + the paper, shown under it


@dataclass(frozen=True)
class PhaseInput:
    phase: str
    label: str  # "T2 volume:"
    reference: str  # MRML node reference role on the parameter node


@dataclass(frozen=True)
class FormField:
    """One clinical input: a combo box ("choice") or a spin box with unit ("number")."""

    name: str
    label: str
    kind: str  # "choice" | "number"
    choices: tuple = ()  # first entry "" = not given
    unit: str = ""
    low: float = 0.0
    high: float = 0.0
    tooltip: str = ""
    required: bool = True


def task_choices() -> list[TaskChoice]:
    """The task registry as the panel lists it."""
    return [TaskChoice(t.name, t.name, t.one_line()) for t in TASKS.values()]


def phase_reference(phase: str) -> str:
    """The node-reference role that stores the volume chosen for `phase`."""
    return "phaseVolume_" + re.sub(r"[^A-Za-z0-9_]", "_", phase)


def phase_inputs(task_name: str, phases: Sequence[str] | None = None) -> list[PhaseInput]:
    """One volume input per phase the task (or `phases`, when given) needs, in channel order."""
    task = get_task(task_name)
    phases = task.check_phases(phases) if phases else task.phases
    return [PhaseInput(p, f"{p} volume:", phase_reference(p)) for p in phases]


def volume_node_types(task_name: str) -> tuple:
    """The MRML classes a phase selector offers: scalar volumes, plus RGB vector volumes for a
    whole-image (microscopy) task, whose inputs are colour images. Label maps never."""
    if get_task(task_name).needs_segmentation:
        return ("vtkMRMLScalarVolumeNode",)
    return ("vtkMRMLScalarVolumeNode", "vtkMRMLVectorVolumeNode")


def model_index(paths: list, current: str) -> int:
    """Which installed model the combo box shows: the one chosen before, else the newest
    (the last of `paths`), else none (-1)."""
    if current in paths:
        return paths.index(current)
    return len(paths) - 1


#: Shown when no model is installed: there is no public HCC model to download (issue 11).
NO_MODEL_TEXT = ("No model installed for this task. No public HCC model exists: train one on your cohort with "
                 "`hcc train`, then `hcc models install` it (or Import it here).")


def download_choice(entries: Sequence[Any], task_name: str) -> tuple[bool, str]:
    """(enabled, one-line tooltip) of the Download button for a task's model-package entries."""
    if not entries:
        return False, f"Models.json lists no model package for {task_name}: train one with `hcc train`, then Import it"
    return True, f"Download one of the {len(entries)} model package(s) listed for {task_name}"


def download_labels(entries: Sequence[Any]) -> list[str]:
    """The chooser's lines, one per model-package entry: title, version, licence, training data."""
    return [f"{e.title or e.id} {e.version} ({e.license}): {e.training_data}" for e in entries]


def model_summary(card: dict) -> str:
    """One line under the model combo box: what the chosen model reads and predicts."""
    if not card:
        return NO_MODEL_TEXT
    return f"Reads {', '.join(card['phases'])}; classes {', '.join(card['classes'])}"


def clinical_form(task_name: str) -> list[FormField]:
    """The form for the task's clinical schema; empty when the task takes no clinical data."""
    schema_name = get_task(task_name).clinical_schema
    if not schema_name:
        return []
    # Imported here, not at import time: the clinical package needs scipy, which Slicer
    # installs on first use, after the module has loaded.
    from HCCAnalysisLib.clinical.schemas import get_schema

    return schema_form(get_schema(schema_name))


def schema_form(schema: ClinicalSchema) -> list[FormField]:
    """One FormField per field of a clinical schema, in the schema's order."""
    from HCCAnalysisLib.clinical.schema_fields import CategoryField, NumberField

    fields = []
    for fld in schema.fields:
        tip = f"{fld.description}; allowed: {fld.allowed()}"
        required = getattr(fld, "missing", "error") == "error"
        if isinstance(fld, CategoryField):
            fields.append(FormField(fld.name, fld.description, "choice", ("",) + tuple(fld.categories),
                                    tooltip=tip, required=required))
        elif isinstance(fld, NumberField):
            fields.append(FormField(fld.name, fld.description, "number", unit=fld.unit, low=float(fld.low),
                                    high=float(fld.high), tooltip=tip, required=required))
        else:  # a new field kind must be given a widget here before it is used
            raise HCCInputError(f"clinical field '{fld.name}' has a kind the panel cannot show",
                                f"schema {schema.name}")
    return fields


def clinical_record(task_name: str, values: Mapping[str, Any] | None) -> dict[str, str]:
    """The raw record (field -> text) from the form's values, validated by the schema.

    Empty entries are left out so the schema reports them as missing (or imputes them where
    the schema allows). Returns {} for a task without clinical data.
    """
    schema_name = get_task(task_name).clinical_schema
    if not schema_name:
        return {}
    from HCCAnalysisLib.clinical.schemas import get_schema

    record = {k: str(v).strip() for k, v in (values or {}).items() if str(v).strip()}
    get_schema(schema_name).encode(record, source="clinical form")
    return record


def lesion_segment_ids(segments: Sequence[tuple[str, str]], selected: Sequence[str] | None = None) -> list[str]:
    """The segments to analyse: the user's selection, else every segment not named liver.

    `segments` is a list of (segment_id, name) in the segmentation's order.
    """
    if selected:
        known = {sid for sid, _ in segments}
        unknown = [s for s in selected if s not in known]
        if unknown:
            raise HCCInputError(f"segment(s) {unknown} are not in the segmentation", "segment selection")
        return [sid for sid, _ in segments if sid in set(selected)]
    return [sid for sid, name in segments if name.strip().lower() not in LIVER_SEGMENT_NAMES]


def missing_inputs(task_name: str, volumes: Mapping[str, bool], segments: Sequence[str], model: str | None,
                   clinical: Mapping[str, Any] | None = None, phases: Sequence[str] | None = None) -> list[str]:
    """Why Apply cannot run yet, as short sentences; an empty list means it can.

    `volumes`: phase -> True when a volume is chosen; `segments`: the lesion segment ids
    that would be analysed; `model`: the chosen model label or path ('' when none);
    `clinical`: the form's values (field -> text); `phases`: the phases the chosen model
    reads (default: the task's).
    """
    needs_segments = get_task(task_name).needs_segmentation
    reasons = [] if segments or not needs_segments else ["choose a segmentation with at least one lesion segment"]
    return reasons + missing_task_inputs(task_name, volumes, model, clinical, phases)


def missing_task_inputs(task_name: str, volumes: Mapping[str, bool], model: str | None,
                        clinical: Mapping[str, Any] | None, phases: Sequence[str] | None = None) -> list[str]:
    """The task's own inputs still missing: phase volumes, model, required clinical fields."""
    reasons = [f"choose the {p.phase} volume" for p in phase_inputs(task_name, phases) if not volumes.get(p.phase)]
    if not model:
        reasons.append("choose, download or import a model for this task")
    for fld in clinical_form(task_name):
        if fld.required and not str((clinical or {}).get(fld.name, "")).strip():
            reasons.append(f"enter the clinical field '{fld.label}'")
    return reasons


def applicable_tasks(available_phases: Iterable[str], model_phases: Mapping[str, Sequence[str]],
                     clinical: Mapping[str, Any] | None = None) -> list[str]:
    """Tasks "Run all" can run: a model installed (`model_phases`: task -> the phases its
    model reads), a volume for each of those phases, the clinical form complete."""
    present = set(available_phases)
    runnable = []
    for task in TASKS.values():
        if task.name not in model_phases:
            continue
        phases = model_phases[task.name]
        if not missing_task_inputs(task.name, {p: p in present for p in phases}, "installed", clinical, phases):
            runnable.append(task.name)
    return runnable


def match_volumes(phases: Iterable[str], volume_names: Sequence[str]) -> dict[str, str]:
    """Guess phase -> volume name from node names ('T2', 'case1_T2', '602: AX T2 FSE', 'DCE_S2').

    A name matches a phase when the phase appears in it as a whole word (case-insensitive; not
    'S20' nor 'S2.5' for S2, not 'T2*' for T2). A name equal to the phase wins over names that
    merely contain it. Left for the user: a phase several names match, and a name that several
    phases match ('T2 S0 map'): a wrong guess is worse than none.
    """
    found, best = {}, {}
    for phase in phases:
        pattern = re.compile(rf"(?<![A-Za-z0-9.]){re.escape(phase)}(?![A-Za-z0-9*]|\.\d)", re.IGNORECASE)
        found[phase] = [name for name in volume_names if pattern.search(name.replace("_", " "))]
        best[phase] = [name for name in found[phase] if name.strip().lower() == phase.lower()] or found[phase]
    matched_by = [name for names in found.values() for name in set(names)]
    return {p: names[0] for p, names in best.items() if len(names) == 1 and matched_by.count(names[0]) == 1}
