"""Which volume node feeds which model phase in the Slicer panel.

Per phase, the first of: the volume chosen in the panel's selector for that phase name; the
volume named for it in the panel's "Phase names" line ('CT=image; venous=pv', parsed by the
same parser as the command line's `--phase NAME=PHASE`, NAME being a volume node's name); the
one volume whose name holds the phase as a word (`choices.match_volumes`). "Run all" builds a
job per installed model this way and says, per model, which volume went to which phase or
which phase has none. Runs on the slicer-core wheel's MRML scene, so it is tested outside Slicer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from HCCAnalysisLib.data.reading_options import parse_phase_map
from HCCAnalysisLib.errors import HCCInputError
from HCCAnalysisLib.panel import choices as panel_model

if TYPE_CHECKING:
    import slicer

    from HCCAnalysisLib.panel.jobs import Job

OPTION = "Phase names"
HINT = "one NAME=PHASE per volume, separated by ';', e.g. 'CT=image' or 'venous=pv; arterial=art'"


def scene_volumes(scene: slicer.vtkMRMLScene) -> list[Any]:
    """The image volume nodes of `scene` in scene order: scalar and RGB volumes, never label maps."""
    nodes = scene.GetNodesByClass("vtkMRMLScalarVolumeNode")
    found = [nodes.GetItemAsObject(i) for i in range(nodes.GetNumberOfItems())]
    return [n for n in found if not n.IsA("vtkMRMLLabelMapVolumeNode")]


def installed_phases() -> list[str]:
    """Every phase some installed model reads (what a "Phase names" entry may map to)."""
    from HCCAnalysisLib.models.registry import installed_models

    return list(dict.fromkeys(p for m in installed_models() for p in m.card.get("phases", [])))


def mapped_volumes(text: str | None, volumes: Sequence[Any], known_phases: Sequence[str]) -> dict[str, Any]:
    """phase -> volume node of a "Phase names" line. Refuses (HCCInputError) an entry that is not
    NAME=PHASE, a name or a phase given twice, a phase no model reads, a name that no volume
    or several volumes of the scene have."""
    pairs = parse_phase_map(str(text or "").split(";"), OPTION)
    if not pairs:
        return {}
    known = list(dict.fromkeys(known_phases))
    unknown = [p for _, p in pairs if p not in known]
    if unknown:
        raise HCCInputError(f"{OPTION}: no model reads the phase {', '.join(map(repr, unknown))}",
                            hint=f"the models read: {', '.join(known) or 'nothing (no model installed)'}")
    by_name: dict[str, list[Any]] = {}
    for node in volumes:
        by_name.setdefault(node.GetName(), []).append(node)
    mapped = {}
    for name, phase in pairs:
        found = by_name.get(name, [])
        if not found:
            raise HCCInputError(f"{OPTION}: no volume is named '{name}'",
                                hint=f"volumes in the scene: {', '.join(map(repr, by_name)) or 'none'}")
        if len(found) > 1:
            raise HCCInputError(f"{OPTION}: {len(found)} volumes are named '{name}'", hint="rename all but one")
        mapped[phase] = found[0]
    return mapped


def phase_names_reasons(text: str | None, scene: slicer.vtkMRMLScene, task: str,
                        model_phases: Sequence[str] | None = None) -> list[str]:
    """Why the "Phase names" line cannot be used, for Apply's tooltip ([] when empty or fine).
    `model_phases`: the phases of the chosen model (default: the task's)."""
    if not str(text or "").strip():
        return []
    shown = [p.phase for p in panel_model.phase_inputs(task, model_phases)]
    try:
        mapped_volumes(text, scene_volumes(scene), shown + installed_phases())
    except HCCInputError as err:
        return [str(err)]
    return []


def suggestions(scene: slicer.vtkMRMLScene, phases: Sequence[str], text: str | None
                ) -> tuple[dict[str, Any], dict[str, Any]]:
    """(phase -> the volume to preselect for it, phase -> the volume the "Phase names" line names).
    A line that cannot be used names nothing (Apply's tooltip says why)."""
    volumes = scene_volumes(scene)
    try:
        mapped = mapped_volumes(text, volumes, list(phases) + installed_phases()) if str(text or "").strip() else {}
    except HCCInputError:
        mapped = {}
    return suggested_volumes(phases, volumes, mapped), {p: n for p, n in mapped.items() if p in phases}


def suggested_volumes(phases: Sequence[str], volumes: Sequence[Any], mapped: Mapping[str, Any]) -> dict[str, Any]:
    """phase -> volume for phases the user has not chosen: the "Phase names" entry, else the one
    volume named after the phase (a volume mapped to another phase is never guessed)."""
    taken = {id(n) for n in mapped.values()}
    free = [n for n in volumes if id(n) not in taken]
    guesses = panel_model.match_volumes([p for p in phases if p not in mapped], [n.GetName() for n in free])
    by_name = {}
    for node in reversed(free):  # the first node of a name, as GetFirstNodeByName
        by_name[node.GetName()] = node
    suggested = {p: by_name[name] for p, name in guesses.items()}
    suggested.update({p: n for p, n in mapped.items() if p in phases})
    return {p: suggested[p] for p in phases if p in suggested}


def sources_text(sources: Mapping[str, str]) -> str:
    """'image=CT' / 'T2=602: AX T2 FSE, S0=DCE_S0': which volume node fed which phase."""
    return ", ".join(f"{phase}={name}" for phase, name in sources.items())


def jobs_text(jobs: Sequence[Job]) -> str:
    """One line per job: its task and which volume fed which phase."""
    return "\n".join(f"{job.task}: {sources_text(job.phase_sources)}" for job in jobs)


@dataclass
class RunAllPlan:
    """The jobs "Run all" starts and, per installed model, the volumes it reads or why it is left out."""

    jobs: list[Job] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)

    def text(self) -> str:
        return "\n".join(self.lines)


def plan_run_all(scene: slicer.vtkMRMLScene, chosen: Mapping[str, Any] | None, phase_names: str | None,
                 segmentation_node: Any, segment_ids: Sequence[str] | None = None, device: str = "auto",
                 clinical: Mapping[str, str] | None = None, case_id: str = "case", chosen_model: str = ""
                 ) -> RunAllPlan:
    """A job per task with an installed model (the newest, or `chosen_model` for its task) whose
    phases all have a volume: chosen in the panel (`chosen`: phase -> node), else named in
    `phase_names`, else matched by node name. Refuses a bad `phase_names` before any job, and
    names the models and phases without a volume when no model can run."""
    from HCCAnalysisLib.models.registry import installed_models, read_card
    from HCCAnalysisLib.panel.jobs import prepare_job

    models = {m.task: (m.label, str(m.path), list(m.card["phases"])) for m in installed_models()}
    if chosen_model:
        card = read_card(chosen_model)
        models[card["task"]] = (f"{card['task']} {card['version']}", str(chosen_model), list(card["phases"]))
    volumes = scene_volumes(scene)
    mapped = mapped_volumes(phase_names, volumes, [p for _, _, phases in models.values() for p in phases])
    picked = {p: n for p, n in (chosen or {}).items() if n is not None}
    plan, left_out = RunAllPlan(), []
    for task, (label, path, phases) in models.items():
        found = dict(suggested_volumes(phases, volumes, mapped), **{p: n for p, n in picked.items() if p in phases})
        missing = [p for p in phases if p not in found]
        reasons = panel_model.missing_task_inputs(task, {p: True for p in found}, path, clinical, phases)
        if missing:
            left_out.append(f"{label}: no volume for the phase {', '.join(missing)} (choose it in a {task} "
                            f"selector, or map one in {OPTION}: NAME={missing[0]})")
        elif reasons:
            left_out.append(f"{label}: {'; '.join(reasons)}")
        else:
            try:  # e.g. a CT volume given to the microscopy model's 'image': that model is left out
                job = prepare_job(task, found, segmentation_node, segment_ids, path, device, clinical,
                                  case_id=case_id)
            except HCCInputError as err:
                left_out.append(f"{label}: {err}")
                continue
            plan.jobs.append(job)
            plan.lines.append(f"{label}: {sources_text(job.phase_sources)}")
    if not plan.jobs:
        raise HCCInputError("no installed model has all its inputs", "Run all",
                            "; ".join(left_out) or "install a model (Download or Import)")
    plan.lines += [f"left out {line}" for line in left_out]
    return plan
