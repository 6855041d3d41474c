"""Crash safety at benchmark scale: the kill/resume test with 20 SIGKILLs instead of CI's 5.

Runs Testing/end_to_end/test_batch_kill_resume.py with HCC_KILLS (default 20) and writes its outcome,
the seed (to replay it) and the time into a markdown result file.
Usage: .venv/bin/python benchmarks/bench_kill_resume.py --out benchmarks/results_kill_resume.md
"""

import argparse
import datetime
import os
import pathlib
import random
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results_kill_resume.md"))
    parser.add_argument("--kills", type=int, default=20)
    args = parser.parse_args()
    seed = random.SystemRandom().randrange(10**6)
    env = dict(os.environ, HCC_KILLS=str(args.kills), HCC_KILL_SEED=str(seed))
    started = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "Testing/end_to_end/test_batch_kill_resume.py"], cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.monotonic() - started
    verdict = "passed" if run.returncode == 0 else f"FAILED (exit {run.returncode})"
    summary = (run.stdout.strip().splitlines() or ["(no output)"])[-1]
    text = f"""## Crash-safe batches: {args.kills} SIGKILLs, then resume

Run {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC: `Testing/end_to_end/test_batch_kill_resume.py` with
HCC_KILLS={args.kills}, HCC_KILL_SEED={seed} (set both to replay it). A 17-case cohort (16 real cases and
one broken) is run by `hcc batch` in a subprocess, killed with SIGKILL at random moments ({args.kills} kills:
every fourth run in start-up, the others while cases are written), resumed each time, and finished;
the final `results.tsv` must be byte-identical to an uninterrupted run's, with every case exactly once
and no finished case lost between kills.

| kills | outcome | pytest summary | wall time (s) |
|---:|---|---|---:|
| {args.kills} | {verdict} | {summary} | {seconds:.0f} |
"""
    pathlib.Path(args.out).write_text(text)
    print(text)
    if run.returncode != 0:
        print(run.stdout[-4000:], run.stderr[-2000:])
    return run.returncode


if __name__ == "__main__":
    sys.exit(main())
