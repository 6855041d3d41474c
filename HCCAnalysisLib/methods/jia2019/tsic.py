"""Jia 2019's time-signal intensity curve (sec. 3.2, Fig. 4) over the dynamic phases of a cohort.

The curve is the mean raw intensity of the 16 x 16 voxel centre of an ROI on each dynamic phase
(S0-S5 in the paper), whatever three sequences the network fuses as channels. It is computed
for every lesion ROI (the lesion's square box on its largest cross-section, as the sampler crops
it) and for background liver ROIs of the same size clear of every lesion (drawn like the sampler's,
with a fixed seed per case), then averaged per class: the lesion's class of the task (e.g. the
differentiation grade) and "background". Raw, not normalised: the curve is the signal's change
with time, and Jia normalises only the network's inputs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import math
import zlib
from pathlib import Path

import numpy as np

from HCCAnalysisLib.data.preprocess import bounding_box, largest_slices, square_box, time_signal_curve
from HCCAnalysisLib.errors import HCCInputError
from HCCAnalysisLib.methods.jia2019.sampler import _background_boxes

if TYPE_CHECKING:
    from HCCAnalysisLib.data.case import Case
    from HCCAnalysisLib.data.cohort import Cohort
    from HCCAnalysisLib.methods.task import Task

BACKGROUND = "background"
TSIC_FILE = "tsic.tsv"


def parse_dynamic_phases(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """`S0,S1,...,S5` -> a tuple of at least two distinct phase names (empty: none asked for)."""
    if not text:
        return ()
    phases = tuple(p.strip() for p in (text.split(",") if isinstance(text, str) else text) if p.strip())
    if len(phases) < 2 or len(set(phases)) != len(phases):
        raise HCCInputError(f"--dynamic-phases {','.join(phases)}: a curve needs at least two distinct phases",
                            hint="e.g. --dynamic-phases S0,S1,S2,S3,S4,S5")
    return phases


def case_curves(case: Case, task: Task, dynamic_phases: Sequence[str], fields: dict[str, Any] | None = None,
                window: int = 16, seed: int = 0) -> list[dict[str, Any]]:
    """One row per lesion ROI and per background ROI of `case`: its class and curve values.
    `fields`: the case's cases.csv values (its label column gives the lesions' class)."""
    raw = [case.phase_on_grid(p) for p in dynamic_phases]
    spacing_yx = case.spacing_zyx()[1:]
    target = task.target_function(fields, case.source)
    rng = np.random.default_rng([zlib.crc32(case.case_id.encode("utf-8")), seed])  # same ROIs every run
    rows = []
    for lesion in case.lesions:
        mask = case.lesion_array(lesion)
        lo, hi = bounding_box(mask)
        box = square_box(lo[1:], hi[1:], spacing_yx)
        z = largest_slices(mask, 1)[0]
        label = task.classes[target("lesion")]
        rows.append(_row(case, lesion.lesion_id, "lesion", label, dynamic_phases,
                         time_signal_curve(raw, z, _centre(box), window)))
        if case.liver_array() is not None:
            for bz, bg_box in _background_boxes(case, box, 1, rng):
                rows.append(_row(case, f"bg-{lesion.lesion_id}", BACKGROUND, BACKGROUND, dynamic_phases,
                                 time_signal_curve(raw, bz, _centre(bg_box), window)))
    return rows


def _centre(box: Sequence[int]) -> tuple[float, float]:
    return (box[0] + box[1]) / 2.0, (box[2] + box[3]) / 2.0


def _row(case, roi, kind, label, phases, values):
    return {"case_id": case.case_id, "patient_id": case.patient_id, "roi": roi, "kind": kind, "class": label,
            **{f"tsic_{p}": float(v) for p, v in zip(phases, values)}}


def cohort_curves(task: Task, cohort: Cohort, dynamic_phases: Sequence[str], seed: int = 0,
                  window: int | None = None) -> list[dict[str, Any]]:
    """The curve rows of every case of `cohort` (each case read with its dynamic phases only)."""
    window = int(window or task.sampler_kwargs.get("tsic_window", 16))
    rows = []
    for record in cohort.records:
        case = record.load(list(dynamic_phases), task)
        rows += case_curves(case, task, dynamic_phases, record.fields, window, seed)
    return rows


def write_curves(path: str | Path, rows: Sequence[dict[str, Any]], dynamic_phases: Sequence[str]) -> Path:
    """tsic.tsv: one row per ROI (see case_curves), written atomically."""
    from HCCAnalysisLib.data.prediction import write_records_tsv

    columns = ["case_id", "patient_id", "roi", "kind", "class"] + [f"tsic_{p}" for p in dynamic_phases]
    write_records_tsv(path, rows, columns)
    return Path(path)


def mean_curves(rows: Sequence[dict[str, Any]], dynamic_phases: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per class: mean and SD (ddof=1; 0 for one ROI) of the curve over its ROIs, and their count."""
    out: dict[str, dict[str, Any]] = {}
    for label in sorted({str(r["class"]) for r in rows}, key=lambda c: (c == BACKGROUND, c)):
        values = np.array([[float(r[f"tsic_{p}"]) for p in dynamic_phases] for r in rows if str(r["class"]) == label])
        sd = values.std(axis=0, ddof=1) if len(values) > 1 else np.zeros(values.shape[1])
        out[label] = {"mean": values.mean(axis=0).tolist(), "sd": sd.tolist(), "n": int(len(values))}
    return out


def read_curves(path: str | Path) -> tuple[tuple[str, ...], list[dict[str, str]]]:
    """(dynamic phases, rows) of a tsic.tsv; a malformed file is an HCCInputError."""
    from HCCAnalysisLib.data.prediction import read_tsv

    rows = read_tsv(path)
    if not rows:
        raise HCCInputError("holds no curve", path)
    phases = tuple(c[len("tsic_"):] for c in rows[0] if c.startswith("tsic_"))
    for n, row in enumerate(rows, start=2):
        for p in phases:
            try:
                if not math.isfinite(float(row[f"tsic_{p}"])):
                    raise ValueError
            except (TypeError, ValueError):
                raise HCCInputError(f"line {n}: tsic_{p} is not a finite number", path) from None
    return phases, rows
