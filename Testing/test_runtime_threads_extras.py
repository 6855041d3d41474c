"""The thread policy (runtime/threads.py) and the pip extras (runtime/extras.py, pyproject.toml):
a missing optional package is an error naming the extra, simulated by blocking the module
(sys.modules[name] = None) in a fresh interpreter; and a real wheel of the package installed into a
fresh venv declares those extras."""

import importlib.metadata
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

try:
    import tomllib
except ImportError:  # Python < 3.11
    tomllib = pytest.importorskip("tomli")

from HCCAnalysisLib.runtime import threads
from HCCAnalysisLib.runtime.extras import EXTRAS, install_hint
from HCCAnalysisLib.tasks import TASKS

ROOT = Path(__file__).resolve().parents[1]
# import name -> distribution name, where they differ
DISTRIBUTIONS = {"radiomics": "pyradiomics"}


def test_policy_fills_in_only_what_the_user_left_unset():
    env = {}
    chosen = threads.apply_policy(environ=env)
    assert env["OMP_WAIT_POLICY"] == "PASSIVE" and env["OMP_NUM_THREADS"] == str(threads.physical_cores())
    assert env["MKL_NUM_THREADS"] == env["OMP_NUM_THREADS"] and chosen["HCC_THREAD_POLICY"] == "auto"
    user = {"OMP_WAIT_POLICY": "ACTIVE", "OMP_NUM_THREADS": "3"}
    assert threads.apply_policy(environ=user) == {} and user == {"OMP_WAIT_POLICY": "ACTIVE", "OMP_NUM_THREADS": "3"}
    explicit = {"OMP_NUM_THREADS": "3"}
    threads.apply_policy(threads=1, environ=explicit)  # hcc --threads 1 wins over the environment
    assert explicit["OMP_NUM_THREADS"] == "1" and explicit["HCC_THREAD_POLICY"] == "explicit"
    ours = dict(env)  # values we set earlier (a child process) are ours to set again
    threads.apply_policy(threads=2, environ=ours)
    assert ours["OMP_NUM_THREADS"] == "2"


def test_thread_counts():
    cores = threads.physical_cores()
    assert 1 <= cores <= len(threads.usable_cpus())
    assert threads.main_process_threads(workers=0, cores=8) == 8
    assert threads.main_process_threads(workers=3, cores=8) == 5  # one core per DataLoader worker
    assert threads.main_process_threads(workers=16, cores=8) == 1


def test_extras_match_pyproject():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for extra, modules in EXTRAS.items():
        names = {req.split(">")[0].split("=")[0].split("[")[0].strip() for req in declared[extra]}
        assert {DISTRIBUTIONS.get(m, m) for m in modules} <= names, extra
        assert f"HCCAnalysisLib[" in declared["all"][0] and extra in declared["all"][0]
    assert {e for task in TASKS.values() for e in task.extras} <= set(EXTRAS)
    assert {t.name for t in TASKS.values() if "fusion" in t.extras} >= {"zhen2020-model-a", "wang2020-fusion-d"}


# timm and tifffile blocked as an install without the extras looks to `import`; then `hcc train`
# of a Zhen task, building the Wang net, and reading a real TIFF microscopy image.
_BLOCKED = """
import sys
sys.modules["timm"] = sys.modules["tifffile"] = None
from HCCAnalysisLib.cli import main
from HCCAnalysisLib.errors import HCCInputError
print("train exit", main(sys.argv[2:]))
from HCCAnalysisLib.nets import build_net
from HCCAnalysisLib.methods.meng2019.tiles import read_microscopy_image
for build in (lambda: build_net("wang_fusion", num_classes=2), lambda: read_microscopy_image(sys.argv[1])):
    try:
        build()
    except HCCInputError as err:
        print(err)
"""


def test_missing_extra_is_named_at_the_point_of_use(tmp_path):
    tiff = ROOT / "HCCAnalysisLib" / "sample_data" / "histology" / "tumour1" / "image.tif"
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    argv = ["train", "--task", "zhen2020-model-a", "--cohort", tmp_path / "none", "--out", tmp_path / "m"]
    run = subprocess.run([sys.executable, "-c", _BLOCKED, str(tiff), *map(str, argv)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=240)
    assert "train exit 2" in run.stdout, run.stdout + run.stderr
    assert ("hcc train: error: task zhen2020-model-a needs the 'fusion' extra: "
            "pip install 'HCCAnalysisLib[fusion]'") in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "m").exists()
    assert "the Wang 2020 net (timm's ResNet-50) needs the 'fusion' extra" in run.stdout
    assert f"reading {tiff} (TIFF / SVS) needs the 'microscopy' extra: pip install " \
           "'HCCAnalysisLib[microscopy]'" in run.stdout
    assert install_hint("all") == "pip install 'HCCAnalysisLib[all]'"


def test_wheel_installed_into_a_fresh_venv_declares_the_extras(tmp_path):
    """A real install: a wheel built from the tree (no dependencies fetched: the machine is
    offline), installed into a new venv; its metadata lists every extra and the `hcc` script."""
    started = time.monotonic()
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "HCCAnalysisLib", source / "HCCAnalysisLib",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    build = subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w",
                            str(tmp_path / "wheel"), str(source)], capture_output=True, text=True, timeout=240)
    if build.returncode != 0 and "No module named" in build.stderr:
        pytest.skip(f"no build backend in this environment: {build.stderr.strip()[-200:]}")
    assert build.returncode == 0, build.stderr
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / ("Scripts" if os.name == "nt" else "bin") / "python"
    wheel = next((tmp_path / "wheel").glob("*.whl"))
    install = subprocess.run([*pip, "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)],
                             capture_output=True, text=True, timeout=240)
    assert install.returncode == 0, install.stderr
    probe = subprocess.run([str(python), "-c", "import importlib.metadata as m, json; d = m.distribution("
                            "'HCCAnalysisLib'); print(json.dumps([d.metadata.get_all('Provides-Extra'), d.requires,"
                            " [e.value for e in m.entry_points(group='console_scripts') if e.name == 'hcc']]))"],
                           capture_output=True, text=True, timeout=60, cwd=tmp_path)
    import json

    extras, requires, scripts = json.loads(probe.stdout)
    assert set(EXTRAS) | {"all"} <= set(extras) and scripts == ["HCCAnalysisLib.cli:main"]
    assert any(r.startswith("timm") and 'extra == "fusion"' in r for r in requires)
    assert any(r.startswith("tifffile") and 'extra == "microscopy"' in r for r in requires)
    installed = venv / "lib"
    assert list(installed.rglob("cifar_resnet_32_dict_withSPP.pkl")), "the pretraining weights are package data"
    # `hcc demo` reads its cases from the installed package (demo.SAMPLE_DATA), not from a clone
    installed_package = next(installed.rglob("HCCAnalysisLib/demo.py")).parent
    for case in ("demo-cohort/cases.csv", "demo-cohort/lung1/image.nrrd", "demo-heldout/brain2/labels.nrrd",
                 "LICENSES.md"):
        assert (installed_package / "sample_data" / case).is_file(), f"{case} is not package data"
    print(f"wheel built and installed into a fresh venv in {time.monotonic() - started:.1f} s")
    assert importlib.metadata.version("tqdm")  # a core dependency now (progress bars)
