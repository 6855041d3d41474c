"""The import paths the README, the user guide and the module's console examples name keep
working after the move into packages, and `import HCCAnalysisLib` stays light (Slicer imports it
at start-up, before torch may be installed)."""

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PUBLIC = {
    "HCCAnalysisLib.tasks": ["TASKS", "get_task"],
    "HCCAnalysisLib.models": ["load_model", "save_model", "read_card", "sha256_of"],
    "HCCAnalysisLib.stats": ["clopper_pearson", "delong_ci", "delong_test", "mcnemar_exact", "cohen_kappa"],
    "HCCAnalysisLib.report": ["make_report"],
    "HCCAnalysisLib.slicer_io": ["case_from_nodes", "prediction_to_table"],
    "HCCAnalysisLib.batch": ["run_cohort"],
    "HCCAnalysisLib.clinical": ["select_factors", "get_schema", "encode"],
    "HCCAnalysisLib.nets": ["build_net"],
    "HCCAnalysisLib.losses": ["build_loss"],
    "HCCAnalysisLib.workflows": ["train_model", "evaluate_task", "predict_folder"],
    "HCCAnalysisLib.cli": ["main"],
    "HCCAnalysisLib.methods": ["PAPERS", "registry", "get_sampler"],
    "HCCAnalysisLib.methods.wang2020.baselines": [],
}


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_documented_path_imports_with_its_names(module):
    imported = importlib.import_module(module)
    missing = [name for name in PUBLIC[module] if not hasattr(imported, name)]
    assert not missing, f"{module} lacks {missing}"


def test_importing_the_package_imports_nothing_heavy():
    code = ("import sys, HCCAnalysisLib, HCCAnalysisLib.tasks\n"
            "heavy = [m for m in ('torch', 'numpy', 'SimpleITK', 'monai', 'timm', 'sklearn') if m in sys.modules]\n"
            "print(','.join(heavy))")
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == ""
