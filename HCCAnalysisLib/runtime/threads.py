"""The thread policy: threads that do not fight each other or the rest of the machine.

Unless the user chose (an environment variable already set, or `hcc --threads N`):

- `OMP_WAIT_POLICY=PASSIVE`: an OpenMP thread that runs out of work sleeps at once instead of
  spinning for a while (libgomp's default busy wait). On a quiet machine the difference is lost in
  the noise; on a loaded one, spinning threads steal the cores the working threads need, and one
  training fold was measured 2.6-3.8x slower (benchmarks/results_threads.md).
- torch's intra-op threads = the physical cores this process may use (CPU affinity, cgroup quota
  and hyper-threading siblings counted), less one per DataLoader worker process; each worker
  itself runs one thread (`worker_init`), so workers and the main process never oversubscribe.

OpenMP reads its environment when the library is loaded, i.e. when torch is first imported: the
CLI calls `apply_policy` before anything imports torch. Both are set as environment variables
(not torch calls) so that `hcc tasks` and `hcc --help` do not pay for importing torch, and child
processes (torchrun, worker pools) start with the same policy. `HCC_THREAD_POLICY` records that
the values are ours, not the user's, so a process pool may divide them again.
"""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping
from pathlib import Path

WAIT_POLICY = "OMP_WAIT_POLICY"
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
MARK = "HCC_THREAD_POLICY"


def usable_cpus() -> list[int]:
    """The logical CPUs this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def _cgroup_limit() -> int | None:
    """The CPU quota of a container (cgroup v2 `cpu.max`, v1 `cfs_quota_us`), rounded up; None: none."""
    for quota_file, period_file in (("/sys/fs/cgroup/cpu.max", None),
                                    ("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "/sys/fs/cgroup/cpu/cpu.cfs_period_us")):
        try:
            text = Path(quota_file).read_text().split()
            if period_file is None:
                quota, period = text[0], text[1]
            else:
                quota, period = text[0], Path(period_file).read_text().strip()
            if quota in ("max", "-1"):
                return None
            return max(1, -(-int(quota) // int(period)))
        except (OSError, ValueError, IndexError):
            continue
    return None


def physical_cores() -> int:
    """Physical cores among the usable CPUs (hyper-threading siblings count once), capped by a
    container's CPU quota; at least 1."""
    cpus = usable_cpus()
    cores = set()
    for cpu in cpus:
        try:
            siblings = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list").read_text().strip()
        except OSError:  # not Linux, or no topology: every usable CPU counts as a core
            siblings = str(cpu)
        cores.add(siblings)
    count = len(cores) or 1
    limit = _cgroup_limit()
    return max(1, min(count, limit) if limit else count)


def main_process_threads(workers: int = 0, cores: int | None = None) -> int:
    """torch threads for the main process when `workers` DataLoader workers run beside it."""
    cores = physical_cores() if cores is None else cores
    return max(1, cores - max(0, workers))


def apply_policy(threads: int | None = None, workers: int = 0,
                 environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Set the wait policy and thread counts in `environ` (default os.environ) where the user
    has not; an explicit `threads` (hcc --threads) always wins. Returns the variables it set.
    Call before torch is imported. Where torch is already loaded (`cli.main` called from a
    program, a notebook, the tests) its thread count is left as that program chose, unless
    `threads` is explicit; the variables then reach only child processes."""
    environ = os.environ if environ is None else environ
    chosen: dict[str, str] = {}
    if not environ.get(WAIT_POLICY):
        chosen[WAIT_POLICY] = "PASSIVE"
    user_set = any(environ.get(name) for name in THREAD_VARIABLES) and not environ.get(MARK)
    if threads is not None or not user_set:
        count = str(threads if threads is not None else main_process_threads(workers))
        chosen.update({name: count for name in THREAD_VARIABLES})
        chosen[MARK] = "explicit" if threads is not None else "auto"
    environ.update(chosen)
    if threads is not None and "torch" in sys.modules and environ is os.environ:
        sys.modules["torch"].set_num_threads(int(chosen["OMP_NUM_THREADS"]))
    return chosen


def worker_init(worker_id: int) -> None:
    """`worker_init_fn` for a torch DataLoader: one thread per worker process (the main process
    keeps the rest, see `main_process_threads`)."""
    import torch

    torch.set_num_threads(1)
