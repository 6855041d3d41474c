"""The house rules of docs/DESIGN.md that a reader of the tree relies on: the top level of the
library holds only its public faces and packages, and no code outside `methods/` decides by a
task's, sampler's or net's name (facts about tasks are fields of `Task`)."""

import ast
from pathlib import Path

from HCCAnalysisLib.methods import registry

ROOT = Path(__file__).resolve().parents[1]
LIB = ROOT / "HCCAnalysisLib"
PUBLIC_FACES = {"__init__", "cli", "errors", "atomic", "workflows", "demo", "batch", "tasks"}
PACKAGES = {"io", "data", "methods", "nets", "losses", "clinical", "engine", "models", "stats", "report",
            "slicer_io", "panel", "runtime"}


def test_top_level_holds_only_public_faces_and_packages():
    modules = {p.stem for p in LIB.glob("*.py")}
    packages = {p.name for p in LIB.iterdir() if (p / "__init__.py").is_file()}
    assert modules == PUBLIC_FACES and packages == PACKAGES


def _compared_strings(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            for operand in [node.left, *node.comparators]:
                for leaf in ast.walk(operand):
                    if isinstance(leaf, ast.Constant) and isinstance(leaf.value, str):
                        yield leaf.lineno, leaf.value


def test_no_code_outside_methods_compares_task_sampler_or_net_names():
    names = set(registry().tasks) | set(registry().samplers) | set(registry().nets)
    files = [p for p in LIB.rglob("*.py") if "methods" not in p.relative_to(LIB).parts]
    files += list((ROOT / "HCCAnalysis").rglob("*.py"))
    found = [f"{p.relative_to(ROOT)}:{line} '{value}'" for p in files
             for line, value in _compared_strings(ast.parse(p.read_text(encoding="utf-8")))
             if value in names or any(value.startswith(n.split("-")[0] + "-") for n in registry().tasks)]
    assert not found, found


def test_every_public_function_is_annotated():
    missing = []
    for path in LIB.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and (
                    not node.name.startswith("_") or node.name == "__init__"):
                args = [a for a in node.args.args + node.args.kwonlyargs if a.arg not in ("self", "cls")]
                if node.returns is None or any(a.annotation is None for a in args):
                    missing.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")
    assert not missing, missing
