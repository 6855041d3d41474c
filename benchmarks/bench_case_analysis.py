"""Whole-case analysis time: phase images + mask -> every applicable task -> MRML table, by stage.

At start, one model package per task in `tasks.TASKS` is trained briefly
(`workflows.train_model(..., epochs=1)`) on the bundled demo cohort, with the phases the
demo cases have (they hold one phase, `image`; a task that takes one phase alone runs on
it). Tasks whose labels come from a cases.csv column the demo cohort lacks (e.g.
`differentiation`) are trained on a copy of its cases.csv with that column filled in turn
with the task's classes: the labels are placeholders, the timings are real. The tasks
that apply to a case are then chosen as the panel's "Run all" chooses them
(`panel_model.applicable_tasks`).

Each case (the 4 demo-cohort cases and the held-out brain2) is analysed in stages:

- read: `case.load_case` (files -> Case: read, validate, lesions, overlap checks)
- grid: each phase resampled onto the segmentation grid (`Case.phase_on_grid`, cached per case)
- sample: the task's sampler (normalise, crop, resize, background ROIs), split into
  normalise / background-ROI search / crop+resize (timed through wrappers)
- network: `infer.run_net` (inference_mode, batches of 256)
- aggregate: `infer.aggregate` + `Prediction`
- table: `slicer_io.prediction_to_table` into a real slicer-core vtkMRMLScene, one table per task

and also end to end through the library's own path (`load_case` + `predict_case` per task +
`prediction_to_table`), which must give the same probabilities. Candidate speed-ups are
monkeypatched in as variants and timed interleaved with the baseline. A cProfile of the
whole-case path lists the top costs.

    .venv/bin/python benchmarks/bench_case_analysis.py [--quick] [--out benchmarks/results_case_analysis.md]
"""

import argparse
import contextlib
import cProfile
import csv
import datetime
import os
import pathlib
import platform
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# Idle OpenMP threads sleep instead of spinning (see bench_trainer_overhead.py): on the shared,
# overloaded machine the active policy made 2-thread torch calls 5-20x slower and noisy.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

_T0 = time.perf_counter()
import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402
import torch  # noqa: E402

from HCCAnalysisLib import infer, samples as samples_mod  # noqa: E402
from HCCAnalysisLib.case import load_case  # noqa: E402
from HCCAnalysisLib.errors import HCCInputError  # noqa: E402
from HCCAnalysisLib.models import load_model  # noqa: E402
from HCCAnalysisLib.prediction import Prediction  # noqa: E402
from HCCAnalysisLib.tasks import TASKS  # noqa: E402
from HCCAnalysisLib.workflows import train_model  # noqa: E402

IMPORT_SECONDS = time.perf_counter() - _T0

COHORT = ROOT / "SampleData" / "demo-cohort"
HELDOUT = ROOT / "SampleData" / "demo-heldout"
TARGET_SECONDS = 3.0
DEFAULT_OUT = ROOT / "benchmarks" / "results_case_analysis.md"
STAGES = ("read", "grid", "normalise", "background ROIs", "crop+resize", "sample other", "network", "aggregate",
          "table")


def quiet(*args, **kwargs):
    pass


def case_folders():
    out = []
    for cohort in (COHORT, HELDOUT):
        with open(cohort / "cases.csv", newline="", encoding="utf-8-sig") as handle:
            out += [(row["case_id"], cohort / row["case_id"]) for row in csv.DictReader(handle)]
    return out


# ---------------- setup: brief training, one package per task ----------------
def labelled_cohort(tmp, tasks):
    """A copy of the demo cohort's cases.csv (case folders linked) with any missing label column filled."""
    folder = tmp / "cohort"
    folder.mkdir()
    with open(COHORT / "cases.csv", newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        rows, columns = list(reader), list(reader.fieldnames)
    filled = []
    for task in tasks:
        if task.label_column and task.label_column not in columns:
            columns.append(task.label_column)
            filled.append(task.label_column)
            for i, row in enumerate(rows):
                row[task.label_column] = task.classes[i % len(task.classes)]
    with open(folder / "cases.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, columns)
        writer.writeheader()
        writer.writerows(rows)
    for row in rows:
        (folder / row["case_id"]).symlink_to(COHORT / row["case_id"], target_is_directory=True)
    return folder, filled


def train_packages(tmp):
    """task name -> (model dir, seconds to train) for every task that can be trained here; and skips."""
    cohort, filled = labelled_cohort(tmp, TASKS.values())
    demo_phases = load_case(COHORT / "lung1").phases
    packages, skipped = {}, {}
    for name, task in TASKS.items():
        if set(task.phases) <= set(demo_phases):
            phases = list(task.phases)
        elif len(demo_phases) in task.phase_counts:
            phases = list(demo_phases)
        else:
            skipped[name] = f"takes {task.phase_counts} phases, the demo cases have {demo_phases}"
            continue
        start = time.perf_counter()
        try:
            train_model(name, cohort, tmp / name, phases=phases, epochs=1, device="cpu", log=quiet)
        except Exception as err:  # noqa: BLE001 - a task the demo data cannot train is reported, not fatal
            skipped[name] = f"could not be trained on the demo cohort: {type(err).__name__}: {str(err)[:200]}"
            continue
        packages[name] = (tmp / name, time.perf_counter() - start)
    return packages, skipped, filled


# ---------------- stage timing ----------------
SAMPLER_PARTS = (("normalise_top1", "normalise"), ("_background_boxes", "background ROIs"),
                 ("_crop_sample", "crop+resize"))


class Timer:
    """Accumulates seconds per stage; wrappers time the sampler's parts from inside it."""

    def __init__(self):
        self.seconds = defaultdict(float)

    @contextlib.contextmanager
    def stage(self, name):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - start

    def wrap(self, name, function):
        def wrapped(*args, **kwargs):
            with self.stage(name):
                return function(*args, **kwargs)
        return wrapped


@contextlib.contextmanager
def patched(module, name, value):
    old = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, old)


def staged_case(folder, case_id, models, tasks, scene, timer):
    """One case through every applicable task, stage by stage; returns {task: probabilities}."""
    phases = sorted({p for t in tasks for p in models[t].card["phases"]})
    with timer.stage("read"):
        case = load_case(folder, case_id, phases=phases)
    with timer.stage("grid"):
        for phase in phases:
            case.phase_on_grid(phase)
    out = {}
    with contextlib.ExitStack() as stack:
        for attr, stage in SAMPLER_PARTS:
            if hasattr(samples_mod, attr):  # the library may have moved it: then it counts as "sample other"
                stack.enter_context(patched(samples_mod, attr, timer.wrap(stage, getattr(samples_mod, attr))))
        for name in tasks:
            model = models[name]
            parts = sum(timer.seconds[k] for k in ("normalise", "background ROIs", "crop+resize"))
            with timer.stage("sample"):
                samples = infer.make_samples(model.task, case, model.card["phases"], seed=model.card.get("seed", 0))
            timer.seconds["sample other"] += timer.seconds.pop("sample") - (
                sum(timer.seconds[k] for k in ("normalise", "background ROIs", "crop+resize")) - parts)
            with timer.stage("network"):
                probs = infer.run_net(model.net, samples, torch.device("cpu"))
            with timer.stage("aggregate"):
                classes = list(model.card["classes"])
                prediction = Prediction(model.task.name, model.name, classes, infer.aggregate(samples, probs, classes))
            with timer.stage("table"):
                node = slicer_io().prediction_to_table(prediction, scene)
            scene.RemoveNode(node)
            out[name] = (prediction, len(samples), len(case.lesions))
    return out


def library_path(folder, case_id, models, tasks, scene):
    """The same work through the library's own calls: load_case, predict_case, prediction_to_table."""
    phases = sorted({p for t in tasks for p in models[t].card["phases"]})
    case = load_case(folder, case_id, phases=phases)
    out = {}
    for name in tasks:
        prediction = infer.predict_case(models[name], case, device="cpu")
        node = slicer_io().prediction_to_table(prediction, scene)
        scene.RemoveNode(node)
        out[name] = prediction
    return out


def slicer_io():
    from HCCAnalysisLib import slicer_io as module

    return module


# ---------------- candidate speed-ups (monkeypatched variants) ----------------
_NORMALISED = {}


def normalise_top1_once(volume, source="image"):
    """normalise_top1 with one percentile pass (NumPy) instead of two (NumPy + MONAI's)."""
    volume = np.asarray(volume, dtype=np.float32)
    low, high = float(volume.min()), float(np.percentile(volume, 99))
    if not high > low:
        raise HCCInputError("is constant (no contrast left after trimming the top 1 %)", source,
                            "check that the right image was loaded")
    out = (volume - np.float32(low)) * np.float32(1.0 / (high - low))
    return np.clip(out, 0.0, 1.0, out=out)


def fused_volumes_cached(case, phases, channels):
    """fused_volumes, normalised volumes kept on the case so a second task reuses them."""
    cache = case._grid_cache.setdefault("__normalised__", {})
    key = tuple(phases)
    if key not in cache:
        cache[key] = _ORIGINAL_FUSED(case, phases, channels)
    return cache[key]


_ORIGINAL_FUSED = getattr(samples_mod, "fused_volumes", None)


def _background_draws(case, lesion_box, count, rng, min_liver_fraction, tries, flat, cache):
    """samples._background_boxes, optionally with the candidate voxels as flat indices
    (`np.flatnonzero`: 8 bytes per liver voxel instead of `np.argwhere`'s 24 plus temporaries) and/or
    the dilated lesion mask and candidates kept per case. Same candidate order, so the same draws."""
    store = case._grid_cache.setdefault("__background__", {}) if cache else {}
    if "candidates" not in store:
        liver = case.liver_array()
        if liver is None:
            return _ORIGINAL_BACKGROUND(case, lesion_box, count, rng, min_liver_fraction, tries)
        lesions = sitk.GetArrayFromImage(sitk.BinaryDilate(
            sitk.Cast(sum(l.mask for l in case.lesions) > 0, sitk.sitkUInt8), [2, 2, 0]))
        free = (liver > 0) & (lesions == 0)
        store.update(liver=liver, lesions=lesions,
                     candidates=np.flatnonzero(free) if flat else np.argwhere(free))
        del free
    liver, lesions, candidates = store["liver"], store["lesions"], store["candidates"]
    y0, y1, x0, x1 = lesion_box
    height, width = y1 - y0, x1 - x0
    boxes = []
    for _ in range(tries):
        if len(boxes) == count or len(candidates) == 0:
            break
        pick = candidates[rng.integers(len(candidates))]
        z, cy, cx = np.unravel_index(pick, liver.shape) if flat else pick
        box = (int(cy - height // 2), int(cy - height // 2 + height), int(cx - width // 2), int(cx - width // 2 + width))
        if box[0] < 0 or box[2] < 0 or box[1] > liver.shape[1] or box[3] > liver.shape[2]:
            continue
        if lesions[z, box[0]:box[1], box[2]:box[3]].any():
            continue
        if liver[z, box[0]:box[1], box[2]:box[3]].mean() >= min_liver_fraction:
            boxes.append((int(z), box))
    return boxes


def background_boxes_cached(case, lesion_box, count, rng, min_liver_fraction=0.7, tries=400):
    """C: dilated all-lesion mask and candidates computed once per case (argwhere, as the library)."""
    return _background_draws(case, lesion_box, count, rng, min_liver_fraction, tries, flat=False, cache=True)


def background_boxes_flat(case, lesion_box, count, rng, min_liver_fraction=0.7, tries=400):
    """E: candidates as flat indices (np.flatnonzero + np.unravel_index on the drawn one), no cache."""
    return _background_draws(case, lesion_box, count, rng, min_liver_fraction, tries, flat=True, cache=False)


def background_boxes_flat_cached(case, lesion_box, count, rng, min_liver_fraction=0.7, tries=400):
    """C+E."""
    return _background_draws(case, lesion_box, count, rng, min_liver_fraction, tries, flat=True, cache=True)


_ORIGINAL_BACKGROUND = getattr(samples_mod, "_background_boxes", None)


def resize_channels_torch(image_chw, size):
    """preprocess.resize_channels without MONAI: the same area interpolation, called directly."""
    tensor = torch.from_numpy(np.ascontiguousarray(image_chw, dtype=np.float32))[None]
    return torch.nn.functional.interpolate(tensor, size=(size, size), mode="area")[0].numpy()

VARIANTS = {
    "baseline (library as is)": [],
    "A: normalise with one percentile pass": [(samples_mod, "normalise_top1", normalise_top1_once)],
    "B: normalised volumes cached per case": [(samples_mod, "fused_volumes", fused_volumes_cached)],
    "C: background-ROI masks cached per case": [(samples_mod, "_background_boxes", background_boxes_cached)],
    "D: resize with torch interpolate (area), no MONAI": [(samples_mod, "resize_channels", resize_channels_torch)],
    "E: background candidates as flat indices": [(samples_mod, "_background_boxes", background_boxes_flat)],
    "all: A+B+D+(C with E)": [(samples_mod, "normalise_top1", normalise_top1_once),
                              (samples_mod, "fused_volumes", fused_volumes_cached),
                              (samples_mod, "_background_boxes", background_boxes_flat_cached),
                              (samples_mod, "resize_channels", resize_channels_torch)],
}


def usable_variants():
    """The variants whose patch targets still exist in the library (it changes under us)."""
    return {name: patches for name, patches in VARIANTS.items()
            if all(hasattr(module, attr) for module, attr, _ in patches)}


def check_variants_equal(cases, models, applicable, scene):
    """Every variant must give the baseline's probabilities (to float32 rounding)."""
    reference = {cid: library_path(folder, cid, models, applicable[cid], scene) for cid, folder in cases}
    worst = {}
    for variant, patches in usable_variants().items():
        with contextlib.ExitStack() as stack:
            for module, name, value in patches:
                stack.enter_context(patched(module, name, value))
            diff = 0.0
            for cid, folder in cases:
                got = library_path(folder, cid, models, applicable[cid], scene)
                for task, prediction in got.items():
                    ref = reference[cid][task]
                    for a, b in zip(prediction.rows, ref.rows):
                        diff = max(diff, max(abs(a.probabilities[c] - b.probabilities[c]) for c in ref.classes))
        worst[variant] = diff
    return worst


def time_variants(cases, models, applicable, scene, rounds):
    """Per variant, all cases through the library path; interleaved per case (every variant runs
    the same case back to back, order rotated), so load drift hits all variants alike."""
    variants = usable_variants()
    names = list(variants)
    times = {name: [0.0] * rounds for name in names}
    for r in range(rounds):
        for index, (cid, folder) in enumerate(cases):
            shift = (r + index) % len(names)
            for name in names[shift:] + names[:shift]:
                with contextlib.ExitStack() as stack:
                    for module, attr, value in variants[name]:
                        stack.enter_context(patched(module, attr, value))
                    start = time.perf_counter()
                    library_path(folder, cid, models, applicable[cid], scene)
                    times[name][r] += time.perf_counter() - start
    base = times[names[0]]
    return {name: {"median": statistics.median(t),
                   "ratio": statistics.median([b / v for b, v in zip(base, t)])} for name, t in times.items()}


def profile_cases(cases, models, applicable, scene, top=15):
    profiler = cProfile.Profile()
    profiler.enable()
    for cid, folder in cases:
        library_path(folder, cid, models, applicable[cid], scene)
    profiler.disable()
    stats = pstats.Stats(profiler)
    total = stats.total_tt
    rows = []
    for (filename, line, function), (cc, nc, tt, ct, callers) in stats.stats.items():
        rows.append((tt, ct, nc, short_name(filename, line, function)))
    by_self = sorted(rows, reverse=True)[:top]
    by_cum = sorted([r for r in rows if "library_path" not in r[3]], key=lambda r: -r[1])
    return total, by_self, by_cum


def short_name(filename, line, function):
    path = filename.replace(str(ROOT) + os.sep, "")
    for marker in ("site-packages" + os.sep, "lib" + os.sep + "python"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{path}:{line}({function})" if line else f"{function}"


# ---------------- main ----------------
def measure(rounds, variant_rounds):
    torch.set_num_threads(THREADS)
    start = time.perf_counter()
    import slicer  # noqa: F401  (slicer-core)

    slicer_seconds = time.perf_counter() - start
    scene = slicer.vtkMRMLScene()
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="bench_case_"))
    try:
        start = time.perf_counter()
        packages, skipped, filled = train_packages(tmp)
        train_seconds = time.perf_counter() - start
        models, load_seconds = {}, {}
        for name, (folder, _) in packages.items():
            start = time.perf_counter()
            models[name] = load_model(folder, "cpu")
            load_seconds[name] = time.perf_counter() - start
        from HCCAnalysisLib.panel_model import applicable_tasks

        cases = case_folders()
        applicable = {}
        for cid, folder in cases:
            phases = load_case(folder, cid).phases
            applicable[cid] = applicable_tasks(phases, {t: m.card["phases"] for t, m in models.items()})
        # warm-up, and the staged path must give the library path's probabilities
        info = {}
        for cid, folder in cases:
            staged = staged_case(folder, cid, models, applicable[cid], scene, Timer())
            lib = library_path(folder, cid, models, applicable[cid], scene)
            for task, (prediction, n_samples, n_lesions) in staged.items():
                for a, b in zip(prediction.rows, lib[task].rows):
                    assert a.probabilities == b.probabilities, (cid, task)
            image = load_case(folder, cid).segmentation
            info[cid] = {"size": "x".join(map(str, image.GetSize())), "lesions": next(iter(staged.values()))[2],
                         "samples": {t: v[1] for t, v in staged.items()}}
        stage_times = {cid: defaultdict(list) for cid, _ in cases}
        whole_times = {cid: [] for cid, _ in cases}
        for r in range(rounds):
            for cid, folder in (cases if r % 2 == 0 else cases[::-1]):
                timer = Timer()
                staged_case(folder, cid, models, applicable[cid], scene, timer)
                for stage in STAGES:
                    stage_times[cid][stage].append(timer.seconds.get(stage, 0.0))
                start = time.perf_counter()
                library_path(folder, cid, models, applicable[cid], scene)
                whole_times[cid].append(time.perf_counter() - start)
            print(f"round {r + 1}/{rounds} done", flush=True)
        medians = {cid: {s: statistics.median(v) for s, v in st.items()} for cid, st in stage_times.items()}
        whole = {cid: statistics.median(v) for cid, v in whole_times.items()}
        worst_diff = check_variants_equal(cases, models, applicable, scene)
        variants = time_variants(cases, models, applicable, scene, variant_rounds)
        profile = profile_cases(cases, models, applicable, scene)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"cases": cases, "applicable": applicable, "info": info, "stages": medians, "whole": whole,
            "rounds": rounds, "variant_rounds": variant_rounds, "variants": variants, "variant_diff": worst_diff,
            "profile": profile, "skipped": skipped, "filled": filled, "packages": packages,
            "train_seconds": train_seconds, "load_seconds": load_seconds, "slicer_seconds": slicer_seconds,
            "import_seconds": IMPORT_SECONDS}


def versions_line():
    import monai
    import SimpleITK as sitk
    import vtk

    return (f"Run {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC on a shared, loaded machine "
            f"({os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; other engineers' tests were running): "
            f"absolute times are indicative only (an idle machine is faster), ratios between variants are "
            f"measured side by side. {torch.get_num_threads()} torch threads, OMP_WAIT_POLICY="
            f"{os.environ.get('OMP_WAIT_POLICY', 'unset')}; Python {platform.python_version()}, torch "
            f"{torch.__version__}, MONAI {monai.__version__}, NumPy {np.__version__}, SimpleITK "
            f"{sitk.Version_VersionString()}, VTK {vtk.vtkVersion.GetVTKVersion()} (slicer-core); "
            f"{platform.machine()}.")


def ms(seconds):
    return f"{seconds * 1000:.0f}"


def markdown(res):
    lines = ["## Whole-case analysis: phases + mask -> every applicable task -> MRML table", "", versions_line(), ""]
    tasks = sorted({t for ts in res["applicable"].values() for t in ts})
    lines.append(f"Tasks in `TASKS` at run time: {', '.join(TASKS)}. Applicable to the demo cases (one phase, "
                 f"`image`; chosen by `panel_model.applicable_tasks`): **{', '.join(tasks) or 'none'}**. "
                 f"Model packages trained once at start with `workflows.train_model(..., epochs=1)` "
                 f"({res['train_seconds']:.0f} s for all).")
    if res["filled"]:
        lines.append(f"Placeholder labels (timing only) were filled into the missing cases.csv column(s) "
                     f"{', '.join(res['filled'])}.")
    reasons = defaultdict(list)
    for name, why in res["skipped"].items():
        reasons[why].append(name)
    for why, names in reasons.items():
        lines.append(f"Not applicable / skipped ({len(names)}): {', '.join(names)}: {why}.")
    lines += ["", f"Median of {res['rounds']} rounds per case (cases interleaved, order alternating); milliseconds. "
              "`whole` is the library path end to end (`load_case` + `predict_case` per task + "
              "`prediction_to_table`), timed separately from the staged run; `sum` is the staged run's total.", ""]
    header = "| case | grid (x,y,z) | lesions | samples per task | " + " | ".join(STAGES) + \
        " | sum | whole | target | verdict |"
    lines += [header, "|" + "---|" * 4 + "---:|" * (len(STAGES) + 3) + "---|"]
    for cid, _ in res["cases"]:
        st, info = res["stages"][cid], res["info"][cid]
        total, whole = sum(st.values()), res["whole"][cid]
        verdict = "meets" if whole <= TARGET_SECONDS else "MISSES"
        samples = ", ".join(str(v) for v in info["samples"].values())
        lines.append(f"| {cid} | {info['size']} | {info['lesions']} | {samples} | "
                     + " | ".join(ms(st[s]) for s in STAGES)
                     + f" | {ms(total)} | **{ms(whole)}** | <= {TARGET_SECONDS * 1000:.0f} | {verdict} |")
    slowest = max(res["whole"].values())
    lines += ["", f"Slowest case: {slowest:.2f} s against the {TARGET_SECONDS:.0f} s target "
              f"({'met' if slowest <= TARGET_SECONDS else 'MISSED'}).", "",
              "One-off costs, not per case: "
              f"library import {res['import_seconds']:.1f} s, `import slicer` {res['slicer_seconds']:.1f} s, "
              "model load (`models.load_model`, SHA-256 checked) "
              + ", ".join(f"{t} {s * 1000:.0f} ms" for t, s in res["load_seconds"].items()) + ".", ""]
    lines += ["### Candidate speed-ups (monkeypatched here, not applied to the library)", "",
              f"All {len(res['cases'])} cases through the library path per variant; {res['variant_rounds']} rounds; "
              "within a round every variant runs each case back to back (order rotated per case and round); "
              "speed-up = median over rounds of baseline time / variant time. Probabilities are checked against "
              "the baseline's.", "",
              "| variant | median time, all cases (ms) | speed-up vs baseline | max abs. probability difference |",
              "|---|---:|---:|---:|"]
    for name, v in res["variants"].items():
        lines.append(f"| {name} | {ms(v['median'])} | {v['ratio']:.3f}x | {res['variant_diff'][name]:.1e} |")
    lines += ["", "What each variant changes (for the main engineer; the benchmark patches these names at run time):", "",
              "- A, `preprocess.normalise_top1`: compute `low = volume.min()`, `high = np.percentile(volume, 99)` once "
              "(already done for the constant check) and return `np.clip((volume - low) / (high - low), 0, 1)` in "
              "float32, instead of calling MONAI's `ScaleIntensityRangePercentiles`, which computes both percentiles "
              "again with `torch.quantile` on a copy. Same values to ~1e-7 (probabilities to ~1e-6).",
              "- B, `samples.fused_volumes` (or `jia2019_sampler`): keep the normalised volumes in the case's cache "
              "(`case._grid_cache`, keyed by the phase tuple) so the second jia2019 task on the same case reuses "
              "them; today each task normalises every phase again. Identical output.",
              "- C, `samples._background_boxes`: compute the dilated all-lesion mask (`BinaryDilate` of the sum of "
              "every lesion mask) and the candidate voxel list (`np.argwhere(liver & ~lesions)`) once per case "
              "(cache on the case) instead of once per lesion and per task; the random draws are unchanged, so the "
              "boxes are identical.",
              "- E, `samples._background_boxes`: `candidates = np.flatnonzero((liver > 0) & (lesions == 0))` and "
              "`z, cy, cx = np.unravel_index(candidates[rng.integers(len(candidates))], liver.shape)` instead of "
              "`np.argwhere(...)` and indexing its rows: the same candidates in the same (C) order, so the same "
              "draws and boxes; 8 bytes per candidate voxel instead of 24 (plus argwhere's temporaries). On lung2 "
              "(758k liver voxels) tracemalloc put `_background_boxes` at ~36 MiB of the ~41 MiB the predict step "
              "allocates; see results_memory.md for the measured max-RSS effect.",
              "- D, `preprocess.resize_channels`: call `torch.nn.functional.interpolate(x[None], (size, size), "
              "mode='area')[0]` directly instead of building MONAI's `Resize` per crop. Identical output. With A "
              "this removes MONAI from the jia2019 predict path (preprocess.py is its only importer there), which "
              "also saves MONAI's import: see results_memory.md (~7 s and ~330 MiB per process on this machine).",
              ""]
    total, by_self, by_cum = res["profile"]
    lines += ["", "### Profile (cProfile, all cases once through the library path, after warm-up)", "",
              f"Total {total:.2f} s (with cProfile's own overhead).", "",
              "Top functions by own time:", "", "| own s | cumulative s | calls | function |", "|---:|---:|---:|---|"]
    for tt, ct, nc, name in by_self:
        lines.append(f"| {tt:.3f} | {ct:.3f} | {nc} | `{name}` |")
    lines += ["", "Top library functions by cumulative time:", "", "| cumulative s | own s | calls | function |",
              "|---:|---:|---:|---|"]
    library = [r for r in by_cum if r[3].startswith(("HCCAnalysisLib", "benchmarks"))][:15]
    for tt, ct, nc, name in library:
        lines.append(f"| {ct:.3f} | {tt:.3f} | {nc} | `{name}` |")
    return "\n".join(lines) + "\n"


THREADS = 2


def main(argv=None):
    global THREADS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (smoke test)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=pathlib.Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    THREADS = args.threads
    started = time.perf_counter()
    res = measure(*((2, 2) if args.quick else (5, 8)))
    text = markdown(res) + f"\n_Benchmark wall time {time.perf_counter() - started + IMPORT_SECONDS:.0f} s._\n"
    print(text)
    if args.out:
        args.out.write_text(text)
    return res


if __name__ == "__main__":
    main()
