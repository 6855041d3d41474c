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
import os
import pathlib
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
import torch  # noqa: E402

from HCCAnalysisLib.engine import infer  # noqa: E402

from HCCAnalysisLib.data import samples as samples_mod  # noqa: E402
from HCCAnalysisLib.data.case import load_case  # noqa: E402
from HCCAnalysisLib.models.package import load_model  # noqa: E402
from HCCAnalysisLib.data.prediction import Prediction  # noqa: E402
from HCCAnalysisLib.tasks import TASKS  # noqa: E402
from HCCAnalysisLib.workflows import train_model  # noqa: E402

IMPORT_SECONDS = time.perf_counter() - _T0

COHORT = ROOT / "HCCAnalysisLib" / "sample_data" / "demo-cohort"
HELDOUT = ROOT / "HCCAnalysisLib" / "sample_data" / "demo-heldout"
DEFAULT_OUT = ROOT / "benchmarks" / "results_case_analysis.md"


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
    from HCCAnalysisLib.slicer_io import nodes as module

    return module


# ---------------- candidate speed-ups: benchmarks/case_analysis_variants.py ----------------
from case_analysis_markdown import STAGES, markdown  # noqa: E402
from case_analysis_variants import usable_variants  # noqa: E402


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
        from HCCAnalysisLib.panel.choices import applicable_tasks

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
