"""The thread policy (HCCAnalysisLib/runtime/threads.py) on a quiet and on a loaded machine.

One small training fold (task jia2019-hcc-vs-background, the bundled demo cohort through
`load_samples` + `training_set`, `train.fit` for a few epochs) runs in a fresh process per
measurement, because OpenMP reads its wait policy only when torch loads. Two settings:

- default: what a process gets with nothing set (libgomp's busy-waiting threads, torch's own
  thread count);
- ours:    what `hcc` sets unless the user did (`apply_policy`: OMP_WAIT_POLICY=PASSIVE and the
  physical cores as the thread count);

each with and without a competing CPU load (one busy-looping process per usable CPU, started
before the fold and stopped after it). Rounds alternate the order of the two settings; the
result is the median over rounds of the per-round ratio default / ours.

    .venv/bin/python benchmarks/bench_threads.py [--quick] [--out benchmarks/results_threads.md]
"""

import argparse
import datetime
import json
import os
import pathlib
import platform
import resource
import signal
import statistics
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
TASK = "jia2019-hcc-vs-background"
COHORT = ROOT / "HCCAnalysisLib" / "sample_data" / "demo-cohort"
OUR_VARIABLES = ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "HCC_THREAD_POLICY")


def child(epochs, n_samples):
    """One timed fold in this process (its environment is the setting); prints a JSON line."""
    import torch

    from HCCAnalysisLib.data.cohort import load_cohort
    from HCCAnalysisLib.engine.evaluate import load_samples, training_set
    from HCCAnalysisLib.engine.train import fit
    from HCCAnalysisLib.tasks import get_task

    task = get_task(TASK)
    cohort = load_cohort(COHORT)
    samples = training_set(task, cohort.records, load_samples(task, cohort, ["image"], seed=0, log=lambda m: None))
    samples = samples[:n_samples]  # a small fold: the policy's effect per step is what is measured
    started, cpu = time.perf_counter(), time.process_time()
    fit(task, samples, torch.device("cpu"), seed=0, epochs=epochs, log=lambda m: None)
    print(json.dumps({"seconds": time.perf_counter() - started, "cpu": time.process_time() - cpu,
                      "threads": torch.get_num_threads(), "samples": len(samples),
                      "wait_policy": os.environ.get("OMP_WAIT_POLICY", "(unset)")}))


def environment(setting):
    from HCCAnalysisLib.runtime.threads import apply_policy

    env = {k: v for k, v in os.environ.items() if k not in OUR_VARIABLES}
    env["PYTHONPATH"] = str(ROOT)
    if setting == "ours":
        apply_policy(environ=env)
    return env


# A busy loop that ends by itself after 10 minutes, so that none outlives a killed benchmark.
LOAD = "import time\nend = time.time() + 600\nwhile time.time() < end:\n    pass\n"
CHILD_LIMIT = 120  # seconds; a fold over it is reported as "> limit" (the ratio is then a lower bound)


def start_load(n):
    return [subprocess.Popen([sys.executable, "-c", LOAD]) for _ in range(n)]


def stop_load(processes):
    for process in processes:
        process.kill()
    for process in processes:
        process.wait()


def measure(setting, loaded, epochs, n_samples, n_load):
    load = start_load(n_load) if loaded else []
    # CPU time of the whole child (imports included) from the OS, also for one killed at the limit:
    # a reaped child's time is added to RUSAGE_CHILDREN (the load processes are reaped after this).
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        time.sleep(0.3 if loaded else 0)  # let the load processes get going
        command = [sys.executable, __file__, "--child", "--epochs", str(epochs), "--samples", str(n_samples)]
        proc = subprocess.run(command, cwd=ROOT, env=environment(setting), capture_output=True, text=True,
                              timeout=CHILD_LIMIT)
    except subprocess.TimeoutExpired:
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        return {"seconds": float(CHILD_LIMIT), "cpu": float("nan"), "threads": "?", "samples": n_samples,
                "process_cpu": after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime,
                "wait_policy": environment(setting).get("OMP_WAIT_POLICY", "(unset)"), "timed_out": True}
    finally:
        stop_load(load)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"child ({setting}, loaded={loaded}) failed:\n{proc.stdout}\n{proc.stderr}")
    run = json.loads(proc.stdout.strip().splitlines()[-1])
    run["process_cpu"] = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return run


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--samples", type=int, default=64, help="training samples of the fold (2 batches of 32)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="one round, one epoch")
    parser.add_argument("--out", default=str(HERE / "results_threads.md"))
    args = parser.parse_args()
    if args.child:
        return child(args.epochs, args.samples)
    if args.quick:
        args.rounds, args.samples = 1, 64
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))  # run the finally blocks: stop the load
    from HCCAnalysisLib.runtime.threads import physical_cores, usable_cpus

    n_load = len(usable_cpus())
    began = time.perf_counter()
    results = {}
    for loaded in (False, True):
        for round_index in range(args.rounds):
            order = ("default", "ours") if round_index % 2 == 0 else ("ours", "default")
            for setting in order:
                run = measure(setting, loaded, args.epochs, args.samples, n_load)
                results.setdefault((loaded, setting), []).append(run)
                print(f"loaded={loaded} round {round_index + 1} {setting}: {run['seconds']:.2f} s "
                      f"({run['threads']} threads, {run['wait_policy']})", flush=True)
    write_report(args, results, n_load, physical_cores(), time.perf_counter() - began)


def write_report(args, results, n_load, cores, wall):
    ours_env = environment("ours")
    rows, ratios = [], {}
    for loaded in (False, True):
        default, ours = results[(loaded, "default")], results[(loaded, "ours")]
        per_round = [d["seconds"] / o["seconds"] for d, o in zip(default, ours)]
        ratios[loaded] = statistics.median(per_round)
        for name, runs in (("default", default), ("ours", ours)):
            over = "> " if any(r.get("timed_out") for r in runs) else ""
            threads = next((r["threads"] for r in runs if not r.get("timed_out")), "?")
            rows.append(f"| {'loaded' if loaded else 'quiet'} | {name} ({runs[0]['wait_policy']}, "
                        f"{threads} threads) | {over}{statistics.median(r['seconds'] for r in runs):.2f} | "
                        f"{over}{statistics.median(r['process_cpu'] for r in runs):.2f} |")
    bound = {loaded: ">= " if any(r.get("timed_out") for r in results[(loaded, "default")]) else ""
             for loaded in (False, True)}
    load_avg = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    spread = {k: f"{min(v):.2f} to {max(v):.2f}" for k, v in
              ((loaded, [d["seconds"] / o["seconds"] for d, o in zip(results[(loaded, "default")],
                                                                     results[(loaded, "ours")])])
               for loaded in (False, True))}
    text = f"""## Thread policy: OpenMP wait policy and thread count, quiet and loaded

Run {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC on a shared machine ({os.cpu_count()} logical CPUs, \
{cores} physical cores usable, load average {load_avg:.2f} at the end; other engineers' jobs were running): absolute times \
are indicative, the ratios measured side by side are the result. Python {platform.python_version()}.

One training fold of task {TASK} ({results[(False, 'ours')][0]['samples']} training samples of the bundled demo \
cohort, `train.fit`, {args.epochs} epoch(s)), each measurement in a fresh process; the time is the fit alone \
(imports and loading excluded). "default": no OpenMP variable set; "ours": what `hcc` sets \
(`runtime.threads.apply_policy`: {', '.join(f'{k}={ours_env[k]}' for k in OUR_VARIABLES if k in ours_env)}). \
"loaded": {n_load} busy-looping processes (one per usable CPU) compete with the fold. {args.rounds} round(s) per \
condition, order alternating; medians.

| machine | setting | fit time (s) | CPU time of the whole process, imports included (s) |
|---|---|---:|---:|
{chr(10).join(rows)}

| measure | default / ours (median of per-round ratios) | range |
|---|---:|---|
| quiet machine | {bound[False]}{ratios[False]:.2f} | {spread[False]} |
| loaded machine | {bound[True]}{ratios[True]:.2f} | {spread[True]} |

A ratio above 1 means our policy is faster; a fold over the {CHILD_LIMIT} s limit is counted as {CHILD_LIMIT} s (">"). The CPU column is the OS's count for the whole process
(imports and loading included; a run killed at the limit stops counting there), shown for scale.

_Benchmark wall time {wall:.0f} s._
"""
    from HCCAnalysisLib.atomic import write_text_atomic

    write_text_atomic(args.out, text)
    print(text)


if __name__ == "__main__":
    main()
