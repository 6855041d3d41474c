"""Peak memory (max RSS) per case and for cohort runs of 1, 2, 4 and 8 cases.

Every run is a fresh Python process that imports the library, then predicts a cohort folder
through the library's cohort path (`batch.run_cohort`, as `hcc batch` does: one model,
`load_case` + `predict_case` per case, per-case results written to disk). The process
records `resource.getrusage(RUSAGE_SELF).ru_maxrss` after the imports, after each case (via
the progress callback) and at the end, and its current RSS at the end (/proc/self/statm).

- Per case: a cohort of that one case, for each bundled case (4 demo-cohort + held-out brain2).
- Cohort growth: cohorts of 1, 2, 4, 8 (twice) and 16 cases built from the bundled cases
  repeated (folders linked), the largest case (lung2) first, so any growth of the peak with N
  is memory kept from case to case rather than a bigger case arriving later; peaks are also
  compared within one process (after the first vs after the last case), which removes the
  +-15 MiB that separate fresh processes differ by. One 8-case run repeats with glibc's mmap
  threshold fixed, to tell allocator high-water marks from memory the library keeps.
- (Candidate change E, background-ROI candidates as flat indices, is in the library now: it
  took about 30 MiB off lung2's peak when it was measured here as a variant.)
- Import cost: each child also records time and max RSS after importing torch, SimpleITK,
  monai.transforms and the library's predict path.

The model is a real package of task jia2019-hcc-vs-background (lesion + background ROIs, the
more sampling-heavy task) with seeded random weights (`model_registry.untrained_package`):
the weights' values do not change memory use.

    .venv/bin/python benchmarks/bench_memory.py [--quick] [--out benchmarks/results_memory.md]
"""

import argparse
import csv
import datetime
import json
import os
import pathlib
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

ROOT = pathlib.Path(__file__).resolve().parents[1]
COHORT = ROOT / "HCCAnalysisLib" / "sample_data" / "demo-cohort"
HELDOUT = ROOT / "HCCAnalysisLib" / "sample_data" / "demo-heldout"
TASK = "jia2019-hcc-vs-background"
DEFAULT_OUT = ROOT / "benchmarks" / "results_memory.md"
SIZES = (1, 2, 4, 8, 16)  # 1-8 asked for; 16 shows whether a rise seen by 8 keeps going
FLAT_TOLERANCE_MIB = 20.0  # peak growth over a cohort run that still counts as flat (~2 % of the ~1 GiB process)


def max_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def current_rss_mib():
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


# ---------------- child: one fresh process, one cohort ----------------
def child(cohort_dir, model_dir, out_dir, threads):
    sys.path.insert(0, str(ROOT))
    start = time.perf_counter()
    imports = [("python", 0.0, max_rss_mib())]
    for name, statement in IMPORT_STEPS:
        exec(statement)  # noqa: S102 - fixed statements
        imports.append((name, time.perf_counter() - start, max_rss_mib()))
    import torch

    torch.set_num_threads(threads)
    from HCCAnalysisLib.batch import run_cohort

    start_rss = imports[0][2]
    after_import = max_rss_mib()
    per_case = []

    def progress(step):
        if step.status == "done":
            per_case.append({"case_id": step.case_id, "max_rss": max_rss_mib(), "rss": current_rss_mib()})

    started = time.perf_counter()
    result = run_cohort(cohort_dir, None, model_dir, out_dir, device="cpu", progress=progress)
    seconds = time.perf_counter() - started
    if result.failed:
        raise SystemExit(f"cases failed: {result.failed}")
    print(json.dumps({"start": start_rss, "after_import": after_import, "imports": imports, "per_case": per_case,
                      "end_max_rss": max_rss_mib(), "end_rss": current_rss_mib(), "seconds": seconds}))


# ---------------- parent ----------------
def bundled_cases():
    out = []
    for cohort in (COHORT, HELDOUT):
        with open(cohort / "cases.csv", newline="", encoding="utf-8-sig") as handle:
            out += [(row["case_id"], cohort / row["case_id"]) for row in csv.DictReader(handle)]
    return out


def make_cohort(folder, cases):
    """A cohort folder whose case folders link to the bundled ones (ids made unique)."""
    folder.mkdir(parents=True)
    with open(folder / "cases.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["case_id", "patient_id"])
        for i, (case_id, source) in enumerate(cases):
            new_id = f"{case_id}-{i + 1}"
            writer.writerow([new_id, f"patient-{new_id}"])
            (folder / new_id).symlink_to(source, target_is_directory=True)
    return folder


def run_child(cohort_dir, model_dir, out_dir, threads, extra_env=None):
    extra_env = dict(extra_env or {})
    env = dict(os.environ, **extra_env)
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    proc = subprocess.run([sys.executable, __file__, "--child", str(cohort_dir), str(model_dir), str(out_dir),
                           str(threads)], capture_output=True, text=True, env=env, timeout=170)
    if proc.returncode != 0:
        raise RuntimeError(f"child failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


IMPORT_STEPS = (("torch", "import torch"), ("+ SimpleITK", "import SimpleITK"),
                ("+ monai.transforms", "from monai.transforms import Resize, ScaleIntensityRangePercentiles"),
                ("+ HCCAnalysisLib predict path", "from HCCAnalysisLib import batch, case, infer, models"))


def make_package(folder):
    """Child mode: write the model package (keeps torch out of the parent, see measure())."""
    sys.path.insert(0, str(ROOT))
    from HCCAnalysisLib.models.registry import untrained_package

    untrained_package(folder, TASK, ["image"])


def import_cost(runs):
    """Per step over fresh processes: the fastest cumulative import time (load only adds) and the lowest max RSS."""
    return [(name, min(r[i][1] for r in runs), min(r[i][2] for r in runs)) for i, (name, _, _) in enumerate(runs[0])]


def voxels(folder):
    """The sizes field of labels.nrrd's text header (no SimpleITK in the parent)."""
    with open(folder / "labels.nrrd", "rb") as handle:
        for line in handle:
            if line.startswith(b"sizes:"):
                return "x".join(line.decode().split(":", 1)[1].split())
            if not line.strip():
                break
    return "?"


def measure(threads, parallel, repeats):
    """The parent stays small (no torch, no SimpleITK): Linux carries a process's peak RSS across
    fork + exec into ru_maxrss of the child, so a big parent would hide the children's peaks."""
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="bench_memory_"))
    try:
        model_dir = tmp / "model"
        subprocess.run([sys.executable, __file__, "--make-package", str(model_dir)], check=True, timeout=150)
        cases = bundled_cases()
        largest = max(cases, key=lambda c: (c[1] / "image.nrrd").stat().st_size)
        ordered = [largest] + [c for c in cases if c is not largest]
        jobs = {}
        for case_id, folder in cases:
            jobs[("case", case_id)] = (make_cohort(tmp / f"case-{case_id}", [(case_id, folder)]), {})
        for n in SIZES:
            folder = make_cohort(tmp / f"cohort-{n}", [ordered[i % len(ordered)] for i in range(n)])
            for rep in range(repeats if n == 8 else 1):
                jobs[("cohort", n, rep)] = (folder, {})
        # glibc's dynamic mmap threshold as a suspect for peak growth: fixed threshold variant
        jobs[("fixed-mmap", 8, 0)] = (tmp / "cohort-8", {"MALLOC_MMAP_THRESHOLD_": "131072"})
        with ThreadPoolExecutor(max_workers=parallel) as pool:
            futures = {key: pool.submit(run_child, folder, model_dir, tmp / ("out-" + "-".join(map(str, key))),
                                        threads, env) for key, (folder, env) in jobs.items()}
            results = {key: future.result() for key, future in futures.items()}
        if repeats > 1:  # the per-case run of the largest case is a second cohort-of-1 run
            results[("cohort", 1, 1)] = results[("case", largest[0])]
        sizes = {case_id: voxels(folder) for case_id, folder in cases}
        runs = [x["imports"] for x in results.values()]
        return {"cases": cases, "largest": largest[0], "ordered": [c[0] for c in ordered], "results": results,
                "sizes": sizes, "threads": threads, "parallel": parallel, "repeats": repeats,
                "import_cost": import_cost(runs)}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def versions_line(threads):
    import numpy
    import torch

    return (f"Run {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC on a shared, loaded machine "
            f"({os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}); memory does not depend on load, "
            f"times do. {threads} torch threads per child process, OMP_WAIT_POLICY="
            f"{os.environ.get('OMP_WAIT_POLICY', 'PASSIVE (set for the children)')}; Python "
            f"{platform.python_version()}, torch {torch.__version__}, NumPy {numpy.__version__}; {platform.machine()}.")


def markdown(res):
    r = res["results"]
    lines = ["## Peak memory: per case and for cohort runs (`batch.run_cohort`, fresh process each)", "",
             versions_line(res["threads"]), "",
             f"Task {TASK}, one model package (seeded random weights). Max RSS = `ru_maxrss` of the child "
             "process (whole process: Python, torch, the library); 'after import' is before any case; "
             "'case peak - import' is what loading the model and predicting added. Current RSS is at the end.", "",
             "### Per case (a cohort of that one case)", "",
             "| case | grid (x,y,z) | max RSS after import (MiB) | max RSS at end (MiB) | case peak - import (MiB) "
             "| RSS at end (MiB) | predict time (s) |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for case_id, _ in res["cases"]:
        x = r[("case", case_id)]
        lines.append(f"| {case_id} | {res['sizes'][case_id]} | {x['after_import']:.0f} | {x['end_max_rss']:.0f} | "
                     f"{x['end_max_rss'] - x['after_import']:.0f} | {x['end_rss']:.0f} | {x['seconds']:.2f} |")
    def reps_of(n):
        return [k for k in range(res["repeats"]) if ("cohort", n, k) in r]

    def mean_peak(n):
        return sum(r[("cohort", n, k)]["end_max_rss"] for k in reps_of(n)) / len(reps_of(n))

    base = mean_peak(1)
    lines += ["", f"### Cohort runs (cases cycled in the order {', '.join(res['ordered'])}: the largest first, so "
              "every 5th case is the largest again)", "",
              "| cases | run | max RSS (MiB) | growth vs 1 case, mean of runs (MiB) | max RSS after each case (MiB) "
              "| RSS after each case (MiB) | time (s) |", "|---:|---:|---:|---:|---|---|---:|"]
    for n in SIZES:
        for k in reps_of(n):
            x = r[("cohort", n, k)]
            peaks = ", ".join(f"{c['max_rss']:.0f}" for c in x["per_case"])
            current = ", ".join(f"{c['rss']:.0f}" for c in x["per_case"])
            grow = f"{mean_peak(n) - base:+.1f}" if k == 0 else ""
            lines.append(f"| {n} | {k + 1} | {x['end_max_rss']:.0f} | {grow} | {peaks} | {current} | "
                         f"{x['seconds']:.2f} |")
    fixed = r[("fixed-mmap", 8, 0)]
    lines.append(f"| 8 | glibc mmap threshold fixed | {fixed['end_max_rss']:.0f} | | "
                 + ", ".join(f"{c['max_rss']:.0f}" for c in fixed["per_case"]) + " | "
                 + ", ".join(f"{c['rss']:.0f}" for c in fixed["per_case"]) + f" | {fixed['seconds']:.2f} |")

    def within(x):  # peak after the last case minus peak after the first, in one process
        return x["per_case"][-1]["max_rss"] - x["per_case"][0]["max_rss"]

    def kept(x):  # current RSS after the last case minus after the first
        return x["per_case"][-1]["rss"] - x["per_case"][0]["rss"]

    big = SIZES[-1]
    runs8 = [r[("cohort", 8, k)] for k in reps_of(8)]
    growth8 = sum(within(x) for x in runs8) / len(runs8)
    longest = r[("cohort", big, 0)]
    growth16 = within(longest)
    later = longest["per_case"]
    tail = later[-1]["max_rss"] - later[-6]["max_rss"]  # the last 5 cases, one more pass over the largest case
    bounded = tail <= 5.0

    def verdict(growth):
        if growth <= FLAT_TOLERANCE_MIB:
            return "flat"
        return f"bounded: no rise over the last 5 of {big} cases" if bounded else "GROWS"

    lines += ["", "| measure (within one process, so no process-to-process noise) | measured | target | verdict |",
              "|---|---:|---:|---|",
              f"| peak growth, first to last case, 8-case runs (mean of {len(runs8)}) | {growth8:+.1f} MiB | "
              f"flat (<= {FLAT_TOLERANCE_MIB:.0f} MiB) | {verdict(growth8)} |",
              f"| peak growth, first to last case, {big}-case run | {growth16:+.1f} MiB | flat (<= "
              f"{FLAT_TOLERANCE_MIB:.0f} MiB) | {verdict(growth16)} |",
              f"| peak growth over the last 5 of {big} cases (case {big - 5} to {big}) | {tail:+.1f} MiB | ~0 | "
              f"{'flat' if bounded else 'GROWS'} |",
              f"| peak growth with glibc's mmap threshold fixed (`MALLOC_MMAP_THRESHOLD_=131072`), 8 cases | "
              f"{within(fixed):+.1f} MiB | | |",
              f"| RSS kept (after last minus after first case), {big}-case run | {kept(longest):+.1f} MiB | "
              f"no steady rise | {'flat' if kept(longest) <= FLAT_TOLERANCE_MIB else 'RISES'} |",
              f"| max RSS, 1 case vs {big} cases (different processes: +-15 MiB noise between processes) | "
              f"{base:.0f} vs {mean_peak(big):.0f} MiB | | |", ""]
    lines += [f"### Import cost (cumulative, in each of the {len(r)} child processes; fastest time and lowest "
              "max RSS over them)", "",
              "| after importing | time (s) | max RSS (MiB) | step adds (MiB) |", "|---|---:|---:|---:|"]
    previous = None
    for name, seconds, rss in res["import_cost"]:
        lines.append(f"| {name} | {seconds:.2f} | {rss:.0f} | "
                     f"{'' if previous is None else f'{rss - previous:+.0f}'} |")
        previous = rss
    return "\n".join(lines)


def main(argv=None):
    if len(sys.argv) > 1 and sys.argv[1] == "--make-package":
        make_package(sys.argv[2])
        return None
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
        return None
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="accepted for symmetry; the run is already short")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--parallel", type=int, default=2, help="child processes at a time")
    parser.add_argument("--out", type=pathlib.Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    res = measure(args.threads, args.parallel, 1 if args.quick else 2)
    text = markdown(res) + f"\n\n_Benchmark wall time {time.perf_counter() - started:.0f} s._\n"
    print(text)
    if args.out:
        args.out.write_text(text)
    return res


if __name__ == "__main__":
    main()
