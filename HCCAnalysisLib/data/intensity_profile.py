"""Input sanity against the model card: the intensities (and modality) a model was trained on.

Training records, per phase, an intensity profile of the training cases in the model card
(`input_profile`); prediction compares each case with it before the net sees the case, so that
an MR volume saved under a CT phase's name, an unrescaled CT or a swapped phase is named instead
of classified in silence.

Region of interest: the voxels of the case's segmentation that are liver or lesion (the 0/1/2
map > 0), so that air, table and bowel outside the organ do not decide; where a segmentation
has no liver label this is the lesions alone. Each phase is read on the segmentation grid, as
the samplers read it.

Per case and phase: the percentiles p1, p5, p50, p95, p99 of the ROI's intensities, and the
modality when known (the image's DICOM Modality tag (0008,0060), else the cases.csv column
`modality`). Per phase of a card: each percentile's min / median / max over the training cases,
the number of cases, and the modalities seen.

The rule (`compare_phase`), and why:

- refuse when the case's modality is known, the training cases' is known, and it is not one of
  them: intensities of another modality mean something else (MR has no Hounsfield scale);
- refuse when the case's [p5, p95] does not overlap the training cases' [lowest p5, highest
  p95] at all: not one typical voxel of the case lies where the training cases' lie (another
  modality, unrescaled or rescaled values);
- warn when the case's p5, p50 or p95 lies outside the training cases' range of that
  percentile widened on each side by max(the range's width, WIDEN_FLOOR x the training
  intensity span (highest p95 - lowest p5)): the width allows for the spread the cohort
  already shows, the floor for a cohort of few cases whose range is narrow by chance. p1 and
  p99 are recorded but not checked: a few metal or air voxels move them.

`hcc predict` / `hcc batch --allow-unusual-input` (the panel's check box 'Allow unusual input')
turn refusals into warnings; every warning is logged and written into the result table's
`warnings` column. A card without `input_profile`
(made before this check) is used unchecked, with one log line saying so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from HCCAnalysisLib.errors import HCCInputError

if TYPE_CHECKING:
    from HCCAnalysisLib.data.case import Case
    from HCCAnalysisLib.data.cohort import CaseRecord
    from HCCAnalysisLib.methods.task import Task

_LOG = logging.getLogger(__name__)

PROFILE_KEY = "input_profile"
PROFILE_VERSION = 1
PERCENTILES = (1, 5, 50, 95, 99)
CHECKED = ("p5", "p50", "p95")  # p1 / p99: recorded only (a few outlier voxels move them)
WIDEN_FLOOR = 0.25
ROI = "liver and lesion voxels of the segmentation (the lesions alone where it has no liver label)"
DICOM_MODALITY = "0008|0060"
OVERRIDE_FLAG = "--allow-unusual-input"
PANEL_OVERRIDE = "Allow unusual input"  # the Slicer panel's check box (HCCAnalysis.ui) for the same
_ALIASES = {"MRI": "MR", "CAT": "CT", "PET": "PT"}


@dataclass(frozen=True)
class Finding:
    level: str  # "warn" | "refuse"
    phase: str
    reason: str


def normal_modality(value: Any) -> str | None:
    """'mr', 'MRI ' -> 'MR'; empty -> None (unknown)."""
    text = str(value or "").strip().upper()
    return _ALIASES.get(text, text) or None


def phase_modality(case: Case, phase: str) -> str | None:
    """The phase's DICOM Modality tag when it was a DICOM series, else the case's `modality` field."""
    image = case.images[phase]
    if image.HasMetaDataKey(DICOM_MODALITY):
        return normal_modality(image.GetMetaData(DICOM_MODALITY))
    return normal_modality((case.labels or {}).get("modality") or (case.clinical or {}).get("modality"))


def case_percentiles(case: Case, phases: Sequence[str]) -> dict[str, dict[str, Any]]:
    """phase -> {"p1": .., "p5": .., "p50": .., "p95": .., "p99": .., "modality": ..} of the ROI."""
    import SimpleITK as sitk

    roi = sitk.GetArrayViewFromImage(case.segmentation) > 0
    if not roi.any():
        raise HCCInputError("has no liver or lesion voxel to profile", case.source)
    out = {}
    for phase in phases:
        values = np.percentile(case.phase_on_grid(phase)[roi], PERCENTILES)
        out[phase] = {f"p{q}": round(float(v), 3) for q, v in zip(PERCENTILES, values)}
        out[phase]["modality"] = phase_modality(case, phase)
    return out


def cohort_profile(per_case: Sequence[Mapping[str, Mapping[str, Any]]], phases: Sequence[str]) -> dict[str, Any]:
    """The card's `input_profile` from the cases' `case_percentiles`."""
    if not per_case:
        raise HCCInputError("no training case to build the input profile from")
    profile: dict[str, Any] = {"version": PROFILE_VERSION, "roi": ROI, "percentiles": [f"p{q}" for q in PERCENTILES],
                               "phases": {}}
    for phase in phases:
        stats = [case[phase] for case in per_case]
        entry: dict[str, Any] = {"n_cases": len(stats),
                                 "modalities": sorted({s["modality"] for s in stats if s.get("modality")}),
                                 "n_modality_known": sum(1 for s in stats if s.get("modality"))}
        for name in profile["percentiles"]:
            values = np.array([s[name] for s in stats], dtype=float)
            entry[name] = {"min": float(values.min()), "median": float(np.median(values)), "max": float(values.max())}
        profile["phases"][phase] = entry
    return profile


def training_profile(task: Task, records: Iterable[CaseRecord], phases: Sequence[str],
                     log: Callable[[str], Any] | None = None) -> dict[str, Any] | None:
    """The profile of a training cohort (one light read per case: the phases and segmentation
    only, no sampling); None for tasks that do not read radiology volumes (microscopy)."""
    import time

    if getattr(task, "loader", "volumes") != "volumes":
        return None
    started = time.time()
    per_case = [case_percentiles(record.load(phases, task), phases) for record in records]
    profile = cohort_profile(per_case, phases)
    (log or _LOG.info)(f"input profile of {len(per_case)} training case(s) recorded in the card "
                       f"({time.time() - started:.1f} s): {describe_profile(profile)}")
    return profile


def describe_profile(profile: Mapping[str, Any]) -> str:
    parts = []
    for phase, entry in profile["phases"].items():
        modality = "/".join(entry["modalities"]) or "modality unknown"
        parts.append(f"{phase} ({modality}) p50 {_num(entry['p50']['min'])}..{_num(entry['p50']['max'])}")
    return "; ".join(parts)


def _num(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


def check_profile(profile: Any, source: Any) -> dict[str, Any]:
    """Refuse a malformed `input_profile` (a card edited by hand) naming what is wrong."""
    def bad(what: str) -> HCCInputError:
        return HCCInputError(f"field '{PROFILE_KEY}' {what}", source, "re-export the model package, or remove the "
                             "field to predict without the input check")

    if not isinstance(profile, dict) or not isinstance(profile.get("phases"), dict):
        raise bad("is not an object with 'phases'")
    for phase, entry in profile["phases"].items():
        if not isinstance(entry, dict) or not isinstance(entry.get("modalities", []), list):
            raise bad(f"phase '{phase}' is not an object with a list of modalities")
        for name in CHECKED:
            value = entry.get(name)
            if not (isinstance(value, dict) and all(isinstance(value.get(k), (int, float)) and
                                                    not isinstance(value.get(k), bool) for k in ("min", "max"))):
                raise bad(f"phase '{phase}' lacks numbers min / max for {name}")
    return profile


def compare_phase(phase: str, case_stats: Mapping[str, Any], entry: Mapping[str, Any]) -> list[Finding]:
    """A case's `case_percentiles` of one phase against the card's profile of that phase."""
    n = entry.get("n_cases", "?")
    modalities = [normal_modality(m) for m in entry.get("modalities", []) if normal_modality(m)]
    modality = case_stats.get("modality")
    if modality and modalities and modality not in modalities:
        return [Finding("refuse", phase, f"phase {phase}: modality {modality}, the model was trained on "
                                         f"{'/'.join(modalities)} ({entry.get('n_modality_known', n)} of {n} "
                                         f"training cases known)")]
    low, high = entry["p5"]["min"], entry["p95"]["max"]
    if case_stats["p95"] < low or case_stats["p5"] > high:
        return [Finding("refuse", phase, f"phase {phase}: intensities p5..p95 {_num(case_stats['p5'])}.."
                                         f"{_num(case_stats['p95'])} do not overlap the {n} training cases' "
                                         f"{_num(low)}..{_num(high)} at all (another modality, or rescaled values?)")]
    span = high - low
    outside = []
    for name in CHECKED:
        lo, hi = entry[name]["min"], entry[name]["max"]
        margin = max(hi - lo, WIDEN_FLOOR * span)
        value = case_stats[name]
        if value < lo - margin or value > hi + margin:
            side = "below" if value < lo else "above"
            outside.append(f"{name} {_num(value)} lies far {side} the training cases' {_num(lo)}..{_num(hi)}")
    if not outside:
        return []
    return [Finding("warn", phase, f"phase {phase}: {', '.join(outside)} ({n} training cases)")]


def compare_case(case_stats: Mapping[str, Mapping[str, Any]], profile: Mapping[str, Any]) -> list[Finding]:
    """Findings over every phase the profile knows."""
    findings = []
    for phase, entry in profile["phases"].items():
        if phase in case_stats:
            findings += compare_phase(phase, case_stats[phase], entry)
    return findings


_NOTED_UNCHECKED: set = set()


def check_case_input(card: Mapping[str, Any], case: Any, phases: Sequence[str], allow_unusual: bool = False,
                     source: Any = None, override: str = OVERRIDE_FLAG) -> list[str]:
    """The warnings for the result table of `case`; refusals raise HCCInputError unless
    `allow_unusual` (then they are warnings too). Every warning is logged. `override`: what the
    refusal's hint tells the user to set, a command-line flag (`--...`) or a check box's label
    (PANEL_OVERRIDE, for the Slicer panel)."""
    if not hasattr(case, "segmentation") or not hasattr(case, "images"):
        return []  # microscopy images: no intensity profile
    profile = card.get(PROFILE_KEY)
    if profile is None:
        key = (card.get("task"), card.get("weights_sha256"))
        if key not in _NOTED_UNCHECKED:
            _NOTED_UNCHECKED.add(key)
            _LOG.info(f"model {card.get('task')}@{card.get('version', '0')}: its card has no '{PROFILE_KEY}' (made "
                      f"before input checks), so the cases' intensities are not checked against its training cases")
        return []
    profile = check_profile(profile, source)
    findings = compare_case(case_percentiles(case, phases), profile)
    refusals = [f.reason for f in findings if f.level == "refuse"]
    flag = override.startswith("--")
    if refusals and not allow_unusual:
        how = (f"check the phase names (--phase) and the images; {override} predicts anyway" if flag else
               f"check the volumes chosen for the phases and the images; tick '{override}' to predict anyway")
        raise HCCInputError(f"is far outside what the model was trained on: {'; '.join(refusals)}", case.source,
                            f"{how}, with the reason in the table's warnings column")
    allowed = override if flag else f"'{override}'"
    warnings = [f.reason if f.level == "warn" else f"{f.reason} (allowed by {allowed})" for f in findings]
    for text in warnings:
        _LOG.warning(f"case {case.case_id}: unusual input: {text}")
    return warnings


def add_input_warnings(rows: Sequence[Any], warnings: Sequence[str]) -> None:
    """Put the case's input warnings into every row's `warnings` cell (after any lesion warning)."""
    if not warnings:
        return
    text = "; ".join(warnings)
    for row in rows:
        earlier = row.extras.get("warnings") or ""
        row.extras["warnings"] = f"{earlier}; {text}" if earlier else text


def add_unusual_input_argument(parser: Any) -> None:
    """`--allow-unusual-input` on `hcc predict`, `hcc batch` and `hcc evaluate --model`."""
    parser.add_argument(OVERRIDE_FLAG, dest="allow_unusual_input", action="store_true",
                        help="predict a case even when its intensities or modality lie far outside the model's "
                             "training cases (model.json's input_profile); the reason goes into the table's "
                             "warnings column instead of refusing the case")
