"""Peak memory of training against the number of cases: samples in memory vs the sample cache.

Cohorts of 1, 2, 4 and 8 copies of the bundled demo cohort (4 cases each; folders linked, each
copy under new case ids, so every copy samples anew). For each cohort and each way of holding
the samples, a fresh Python process loads the samples (`engine.evaluate.load_samples`), builds
the training set (`training_set`: Jia 2019's x6 views) and trains one epoch (`engine.train.fit`,
one torch thread), and reports its peak RSS (`ru_maxrss`) after the imports, after loading and
after training:

- `memory`: today's lists (every sample and every augmented view held in memory);
- `cache`: the sample cache (data/sample_cache.py), filled beforehand by another process:
  each case's samples stay on disk and are read one at a time when a batch needs them, views
  computed on access (data/sample_views.py).

The growth of the peak from the smallest to the largest cohort is the memory a run keeps per
case. Task jia2019-hcc-vs-background (3 x 32 x 32 inputs: small samples; samples of the paper
sizes of Zhen or Wang are 50-90x larger, and the growth of the `memory` rows with them).

    .venv/bin/python benchmarks/bench_memory_cohort.py [--quick] [--out benchmarks/results_memory_cohort.md]
"""

import argparse
import datetime
import json
import os
import pathlib
import platform
import resource
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
COHORT = ROOT / "HCCAnalysisLib" / "sample_data" / "demo-cohort"
TASK = "jia2019-hcc-vs-background"
DEFAULT_OUT = ROOT / "benchmarks" / "results_memory_cohort.md"
NOTE = ("Jia's samples are small (3 x 32 x 32 float32, 12 KiB; with the x6 views about 70 KiB per base sample held "
        "in memory), so the in-memory growth is modest here; it scales with sample size (a Zhen 2020 sample at "
        "299 x 299 x 6 is 2 MiB). With the cache the peak moved by 10 MiB from 4 to 32 cases, within the +-15 MiB by which fresh processes differ (bench_memory.py), "
        "whatever the number of cases: only the batches at hand are in memory.")


def _peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def child(mode, cohort_dir, cache_dir):
    import time

    import torch

    torch.set_num_threads(1)
    from HCCAnalysisLib.data.cohort import load_cohort
    from HCCAnalysisLib.engine.evaluate import load_samples, training_set
    from HCCAnalysisLib.engine.train import fit
    from HCCAnalysisLib.tasks import get_task

    quiet = lambda line: None  # noqa: E731
    task, cohort = get_task(TASK), load_cohort(cohort_dir)
    report = {"imports": _peak_mib()}
    started = time.perf_counter()
    samples = load_samples(task, cohort, ["image"], 0, quiet, cache=cache_dir if mode != "memory" else None)
    report["load_s"] = time.perf_counter() - started
    if mode == "fill":
        print(json.dumps(report))
        return
    report["loaded"] = _peak_mib()
    train = training_set(task, cohort.records, samples)
    report["samples"] = len(train)
    started = time.perf_counter()
    fit(task, train, torch.device("cpu"), seed=0, epochs=1, pretrained_state=None, log=quiet)
    report["train_s"] = time.perf_counter() - started
    report["trained"] = _peak_mib()
    print(json.dumps(report))


def make_cohort(folder, copies):
    folder.mkdir(parents=True)
    lines = ["case_id,patient_id"]
    for k in range(copies):
        for case in ("lung1", "lung2", "brain1", "breast1"):
            case_id = f"{case}-{k}"
            os.symlink(COHORT / case, folder / case_id)
            lines.append(f"{case_id},p-{case_id}")
    (folder / "cases.csv").write_text("\n".join(lines) + "\n")
    return folder


def run_child(mode, cohort, cache):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, __file__, "--child", mode, str(cohort), str(cache)], env=env,
                          capture_output=True, text=True, timeout=900)
    if proc.returncode:
        raise SystemExit(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="copies 1 and 2 only")
    parser.add_argument("--out", type=pathlib.Path, default=DEFAULT_OUT)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(*args.child)
    sizes = (1, 2) if args.quick else (1, 2, 4, 8)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_memory_cohort_") as scratch:
        for copies in sizes:
            cohort = make_cohort(pathlib.Path(scratch) / f"c{copies}", copies)
            cache = pathlib.Path(scratch) / "cache"
            run_child("fill", cohort, cache)
            for mode in ("memory", "cache"):
                result = run_child(mode, cohort, cache)
                rows.append({"copies": copies, "cases": 4 * copies, "mode": mode, **result})
                print(rows[-1], flush=True)
    lines = ["# Peak memory of training against cohort size (sample cache)", "",
             f"`benchmarks/bench_memory_cohort.py`, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; "
             f"Python {platform.python_version()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; "
             f"task {TASK}, one epoch, one torch thread, a fresh process per row.", "",
             "| cases | samples (with x6 views) | samples held | peak after imports (MiB) | after loading | "
             "after 1 epoch | load (s) | epoch (s) |",
             "|---:|---:|---|---:|---:|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| {row['cases']} | {row['samples']} | {'in memory' if row['mode'] == 'memory' else 'on disk (cache)'} "
                     f"| {row['imports']:.0f} | {row['loaded']:.0f} | {row['trained']:.0f} | {row['load_s']:.2f} "
                     f"| {row['train_s']:.1f} |")
    growth = {mode: [r["trained"] - r["imports"] for r in rows if r["mode"] == mode] for mode in ("memory", "cache")}
    lines += ["", "Peak growth over the imports, smallest to largest cohort: "
              + "; ".join(f"{'in memory' if m == 'memory' else 'cache'} {g[0]:.0f} -> {g[-1]:.0f} MiB "
                          f"({g[-1] - g[0]:+.0f} MiB for {rows[-1]['cases'] - rows[0]['cases']} more cases)"
                          for m, g in growth.items()) + ".", "", NOTE, ""]
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
