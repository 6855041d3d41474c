"""Run every benchmark script and write benchmarks/RESULTS.md from their markdown result files.

    .venv/bin/python benchmarks/run_all.py [--quick] [--only NAME ...]

Each script runs in its own process, one after the other (they time things: running them
side by side would make them measure each other), with its own time limit. RESULTS.md is
the concatenation of each script's result file (for bench_resnet_spp.py, another engineer's,
a temporary copy of its result file updated by this run: the committed one is not touched); a
script that fails or runs over its limit is reported in RESULTS.md with the tail of its
output, and the other results are still written. Exit status 1 when any script failed.
"""

import argparse
import datetime
import os
import pathlib
import platform
import shutil
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent

# script -> (its result file, extra arguments, time limit in seconds, whether run_all may rewrite the file)
BENCHMARKS = {
    # Another engineer's benchmark: its committed result file (with its notes) is left as it is;
    # this run updates a temporary copy of it and RESULTS.md gets that copy.
    "bench_resnet_spp.py": ("results_resnet_spp.md", ["--out", "{out}"], 240, False),
    "bench_trainer_overhead.py": ("results_trainer_overhead.md", ["--out", "{out}"], 180, True),
    "bench_case_analysis.py": ("results_case_analysis.md", ["--out", "{out}"], 180, True),
    "bench_memory.py": ("results_memory.md", ["--out", "{out}"], 180, True),
    "bench_kill_resume.py": ("results_kill_resume.md", ["--out", "{out}"], 600, True),
    "bench_liang_global.py": ("results_liang_global.md", ["--out", "{out}", "--case", "breast1", "--rounds", "2"],
                              1200, True),
    "bench_inference_layout.py": ("results_inference_layout.md", ["--out", "{out}"], 900, True),
    # OpenMP wait policy / thread count, quiet and under a competing load (issue 15).
    "bench_threads.py": ("results_threads.md", ["--out", "{out}"], 600, True),
    # Sample cache (issue 15): a second evaluation from the cache vs reading the images again, and
    # peak memory of training against the number of cases (samples in memory vs on disk).
    "bench_cache.py": ("results_cache.md", ["--out", "{out}"], 900, True),
    "bench_memory_cohort.py": ("results_memory_cohort.md", ["--out", "{out}"], 1800, True),
    # samples/s per family, fit against a bare loop, FLOPs against the matmul limit (issue 15).
    "bench_training_throughput.py": ("results_training_throughput.md", ["--out", "{out}"], 900, True),
    # Liang 2018's phase registration: residual misalignment on real CT with known deformations.
    "bench_liang_registration.py": ("results_liang_registration.md", ["--out", "{out}"], 900, True),
}


def run_one(script, result_name, arguments, limit, quick, owned=True, scratch=None):
    out = HERE / result_name
    if not owned:
        copy = pathlib.Path(scratch) / result_name
        if out.is_file():
            shutil.copyfile(out, copy)
        out = copy
    command = [sys.executable, str(HERE / script)] + [a.format(out=out) for a in arguments]
    if quick and '"--quick"' in (HERE / script).read_text():  # only scripts that have the option
        command.append("--quick")
    started = time.perf_counter()
    try:
        proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=limit)
        status, tail = ("ok" if proc.returncode == 0 else f"failed (exit {proc.returncode})"), proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as err:
        status = f"over its {limit} s limit"
        tail = "".join(part.decode(errors="replace") if isinstance(part, bytes) else (part or "")
                       for part in (err.stdout, err.stderr))
    seconds = time.perf_counter() - started
    print(f"{script}: {status} in {seconds:.0f} s", flush=True)
    text = out.read_text() if out.is_file() else None
    return {"script": script, "out": out, "status": status, "seconds": seconds, "tail": tail[-3000:], "text": text,
            "name": result_name}


def write_results(runs, path, started):
    lines = ["# Benchmark results", "",
             f"Written by `benchmarks/run_all.py` on {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} "
             f"UTC ({time.perf_counter() - started:.0f} s in all; Python {platform.python_version()}, "
             f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}). Each section below is one script's "
             "result file, copied as it stands. The machine is shared with other engineers' test runs: "
             "absolute times are indicative; ratios measured side by side in one run are the results.", "",
             "| script | status | wall time (s) | result file |", "|---|---|---:|---|"]
    for run in runs:
        lines.append(f"| `{run['script']}` | {run['status']} | {run['seconds']:.0f} | `{run['name']}` |")
    lines.append("")
    for run in runs:
        if run["status"] != "ok":
            lines += [f"## {run['script']}: {run['status']}", "", "```", run["tail"].rstrip(), "```", ""]
        if run["text"] is not None:
            text = run["text"].rstrip()
            if not text.lstrip().startswith("#"):
                text = f"## {run['script']}\n\n{text}"
            note = "" if run["status"] == "ok" else "\n\n_(result file from an earlier run: this run did not finish)_"
            lines += [text + note, ""]
    path.write_text("\n".join(lines))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="pass --quick to every script (smoke test)")
    parser.add_argument("--only", nargs="*", help="script names to run (default: all)")
    parser.add_argument("--results", type=pathlib.Path, default=HERE / "RESULTS.md")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    runs = []
    with tempfile.TemporaryDirectory(prefix="run_all_") as scratch:
        for script, (result_name, arguments, limit, owned) in BENCHMARKS.items():
            if args.only and script not in args.only:
                continue
            runs.append(run_one(script, result_name, arguments, limit, args.quick, owned, scratch))
    write_results(runs, args.results, started)
    print(f"wrote {args.results}")
    return 0 if all(run["status"] == "ok" for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
