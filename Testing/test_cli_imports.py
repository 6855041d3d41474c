"""Start-up of `hcc` (issues 13 and 15): `hcc --help` and `hcc tasks` load no torch, and `hcc predict`
loads no MONAI, scikit-learn, scipy.stats or matplotlib; the thread policy is set before torch loads.
Each command runs in a fresh interpreter, and the modules it loaded are read from sys.modules."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import bad_inputs as bad

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("monai", "sklearn", "scipy.stats", "matplotlib", "statsmodels", "pandas", "timm")

# Runs `hcc ARGV` through cli.main and prints what it loaded, after its own output.
_PROBE = """
import json, os, sys
from HCCAnalysisLib.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as stop:
    code = stop.code
print("@@" + json.dumps({"code": code, "modules": sorted(m for m in sys.modules if "." not in m or m == "scipy.stats"),
                         "torch_threads": sys.modules["torch"].get_num_threads() if "torch" in sys.modules else None,
                         "env": {k: os.environ.get(k) for k in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}}))
"""


def _run(argv, **env):
    environ = {k: v for k, v in os.environ.items()
               if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "HCC_THREAD_POLICY")}
    environ.update(PYTHONPATH=str(ROOT), **env)
    proc = subprocess.run([sys.executable, "-c", _PROBE, *map(str, argv)], cwd=ROOT, env=environ,
                          capture_output=True, text=True, timeout=240)
    head, _, probe = proc.stdout.rpartition("@@")
    assert probe, proc.stdout + proc.stderr
    return json.loads(probe), head, proc.stderr


def test_help_and_tasks_load_no_torch():
    for argv in (["--help"], ["tasks"], ["tasks", "wang2020-fusion-d", "--json"]):
        report, out, err = _run(argv)
        assert report["code"] == 0, err
        loaded = set(report["modules"])
        assert not loaded & {"torch", *HEAVY}, (argv, sorted(loaded & {"torch", *HEAVY}))


def test_predict_loads_only_what_it_uses_and_sets_the_thread_policy(tmp_path):
    package = bad.build_package(tmp_path / "pkg")
    report, out, err = _run(["predict", "--model", package, "--case", bad.SMALL_CASE, "--out", tmp_path / "o",
                             "--device", "cpu", "--threads", "1"])
    assert report["code"] == 0, err
    loaded = set(report["modules"])
    assert "torch" in loaded and not loaded & set(HEAVY), sorted(loaded & set(HEAVY))
    # Results alone on stdout: one line per row of the table written to OUT/results.tsv.
    rows = (tmp_path / "o" / "results.tsv").read_text().splitlines()[1:]
    assert len(out.strip().splitlines()) == len(rows) >= 1
    # The policy reached OpenMP before torch loaded: torch runs the thread count asked for.
    assert report["env"] == {"OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1"} and report["torch_threads"] == 1


@pytest.mark.parametrize("user_env, expected", [({"OMP_WAIT_POLICY": "ACTIVE"}, "ACTIVE"), ({}, "PASSIVE")])
def test_the_users_wait_policy_wins(user_env, expected):
    report, _, err = _run(["tasks"], **user_env)
    assert report["code"] == 0 and report["env"]["OMP_WAIT_POLICY"] == expected, err
