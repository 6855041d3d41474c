"""A second evaluation of the bundled cohort: samples from the cache vs reading the images again.

In one process (imports paid before any timing, one torch thread), on the bundled demo cohort
(4 cases) with task jia2019-hcc-vs-background:

- loading the samples (`engine.evaluate.load_samples`, training and prediction sides, as
  `hcc evaluate` does): without the cache (every case read and resampled), filling an empty
  cache, and from a filled cache; median of `--rounds` rounds each, with the image files read
  per load (SimpleITK's reader, counted);
- the whole evaluation (`workflows.evaluate_task`, 2 folds, 1 epoch), after one untimed
  warm-up evaluation: without the cache and from the filled cache, with its results compared
  byte for byte (predictions.tsv).

    .venv/bin/python benchmarks/bench_cache.py [--quick] [--out benchmarks/results_cache.md]
"""

import argparse
import datetime
import os
import pathlib
import platform
import shutil
import statistics
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
COHORT = ROOT / "HCCAnalysisLib" / "sample_data" / "demo-cohort"
TASK = "jia2019-hcc-vs-background"
DEFAULT_OUT = ROOT / "benchmarks" / "results_cache.md"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two rounds")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=pathlib.Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    rounds = 2 if args.quick else args.rounds

    import SimpleITK as sitk
    import torch

    torch.set_num_threads(1)
    sys.path.insert(0, str(ROOT))
    from HCCAnalysisLib.data.cohort import load_cohort
    from HCCAnalysisLib.engine.evaluate import load_samples
    from HCCAnalysisLib.tasks import get_task
    from HCCAnalysisLib.workflows import evaluate_task

    reads = {"n": 0}
    execute = sitk.ImageFileReader.Execute

    def counting(self, *a, **k):
        reads["n"] += 1
        return execute(self, *a, **k)

    sitk.ImageFileReader.Execute = counting
    quiet = lambda line: None  # noqa: E731
    task, cohort = get_task(TASK), load_cohort(COHORT)

    def timed_load(cache):
        reads["n"] = 0
        started = time.perf_counter()
        load_samples(task, cohort, ["image"], 0, quiet, test_side=True, cache=cache)
        return time.perf_counter() - started, reads["n"]

    with tempfile.TemporaryDirectory(prefix="bench_cache_") as scratch:
        scratch = pathlib.Path(scratch)
        timed_load(None)  # warm-up: lazy imports, the files in the page cache
        plain = [timed_load(None) for _ in range(rounds)]
        fills = []
        for k in range(rounds):
            fills.append(timed_load(scratch / f"fill{k}"))
        hits = [timed_load(scratch / "fill0") for _ in range(rounds)]
        evaluations = {}
        # warm-up: the evaluation's own lazy imports (scikit-learn, matplotlib) paid before timing
        evaluate_task(TASK, COHORT, scratch / "warm-up", folds=2, phases="image", pretrained="none", epochs=1,
                      device="cpu", cache=False, log=quiet)
        for name, cache in (("reading the images", False), ("from the cache", scratch / "fill0")):
            out = scratch / f"eval-{len(evaluations)}"
            reads["n"] = 0
            started = time.perf_counter()
            evaluate_task(TASK, COHORT, out, folds=2, phases="image", pretrained="none", epochs=1, device="cpu",
                          cache=cache, log=quiet)
            evaluations[name] = (time.perf_counter() - started, reads["n"], (out / "predictions.tsv").read_bytes())
        same = len({v[2] for v in evaluations.values()}) == 1
        entries = sum(p.stat().st_size for p in (scratch / "fill0").rglob("*") if p.is_file())
        shutil.rmtree(scratch, ignore_errors=True)

    def median(runs):
        return statistics.median(t for t, _ in runs)

    lines = ["# Sample cache: a second evaluation from the cache vs reading the images again", "",
             f"`benchmarks/bench_cache.py`, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; Python "
             f"{platform.python_version()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; task {TASK} "
             f"on the demo cohort (4 cases), one torch thread, median of {rounds} rounds.", "",
             "| loading the samples (both sides) | time (s) | image files read | vs reading |", "|---|---:|---:|---:|",
             f"| reading and sampling every case | {median(plain):.3f} | {plain[0][1]} | 1.00x |",
             f"| filling an empty cache | {median(fills):.3f} | {fills[0][1]} | {median(plain) / median(fills):.2f}x |",
             f"| from the cache | {median(hits):.4f} | {hits[0][1]} | {median(plain) / median(hits):.0f}x |", "",
             "| whole evaluation (2 folds, 1 epoch) | time (s) | image files read |", "|---|---:|---:|"]
    for name, (seconds, n, _) in evaluations.items():
        lines.append(f"| {name} | {seconds:.1f} | {n} |")
    lines += ["", f"Predictions identical byte for byte: {'yes' if same else 'NO'}. Cache size for the cohort "
              f"(both sides): {entries / 2**20:.1f} MiB. The evaluation's remaining time is training and testing "
              "the folds, which the cache does not change; the larger a cohort's images (resampling whole volumes) "
              "the larger the share the cache removes.", ""]
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
