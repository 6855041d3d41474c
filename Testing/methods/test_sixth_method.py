"""A sixth method needs one folder in methods/, a net file in nets/ and one word in PAPERS.

The throw-away method lives in a temporary folder added to the packages' search paths, so the
product tree is untouched: the registry merges it with the five papers, and the library's own
sampler/net resolution and inference run it, with no other file changed."""

import sys
import textwrap
from pathlib import Path

import pytest

import HCCAnalysisLib.methods as methods
import HCCAnalysisLib.nets as nets
from HCCAnalysisLib.data.case_loading import load_for_task
from HCCAnalysisLib.errors import HCCInputError

ROOT = Path(__file__).resolve().parents[2]

PAPER_INIT = '''"""Toy 2026: mean intensity of each lesion's largest slice (a throw-away sixth method)."""
SAMPLERS = {"toy2026": "HCCAnalysisLib.methods.toy2026.sampler:toy_sampler"}
NETS = {"toy_linear": "HCCAnalysisLib.nets.toy_linear:build_toy"}
'''
TASKS = '''from HCCAnalysisLib.methods.task import Task
TASKS = {"toy2026-lesion": Task(name="toy2026-lesion", paper="Toy 2026", description="toy", classes=("a", "b"),
         phases=("image",), phase_counts=(1,), net="toy_linear", net_kwargs={}, sampler="toy2026", input_size=1,
         kind_classes={"lesion": "a"})}
'''
SAMPLER = '''import numpy as np
from HCCAnalysisLib.data.samples import Sample
def toy_sampler(case, task, phases, target_of, rng, training):
    image = case.phase_on_grid(phases[0])
    return [Sample({"image": np.array([float(image[case.lesion_array(l) > 0].mean())], dtype=np.float32)},
                   target_of("lesion"), case.case_id, case.patient_id, l.lesion_id, l.name, "lesion")
            for l in case.lesions]
'''
NET = '''import torch
def build_toy(num_classes):
    class Toy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(1, num_classes)
        def forward(self, image):
            return self.fc(image)
    return Toy()
'''


@pytest.fixture
def sixth_method(tmp_path, monkeypatch):
    paper = tmp_path / "methods" / "toy2026"
    paper.mkdir(parents=True)
    (paper / "__init__.py").write_text(PAPER_INIT)
    (paper / "tasks.py").write_text(TASKS)
    (paper / "sampler.py").write_text(SAMPLER)
    (tmp_path / "nets").mkdir()
    (tmp_path / "nets" / "toy_linear.py").write_text(NET)
    monkeypatch.setattr(methods, "__path__", [*methods.__path__, str(tmp_path / "methods")])
    monkeypatch.setattr(nets, "__path__", [*nets.__path__, str(tmp_path / "nets")])
    registry = methods.load_registry(methods.PAPERS + ("toy2026",))  # the one word
    monkeypatch.setattr(methods, "_REGISTRY", registry)
    yield registry
    for name in [m for m in sys.modules if "toy2026" in m or "toy_linear" in m]:
        del sys.modules[name]


def test_a_sixth_method_is_a_folder_a_net_file_and_one_word(sixth_method):
    from HCCAnalysisLib.engine.infer import make_samples, run_net
    from HCCAnalysisLib.engine.train import build_task_net

    assert len(sixth_method.tasks) == len(methods.load_registry().tasks) + 1
    task = sixth_method.tasks["toy2026-lesion"]
    case = load_for_task(ROOT / "HCCAnalysisLib" / "sample_data" / "demo-cohort" / "lung1", task)
    samples = make_samples(task, case, ["image"])
    probabilities = run_net(build_task_net(task), samples, "cpu")
    assert probabilities.shape == (len(case.lesions), 2)


def test_a_listed_paper_that_is_missing_is_an_error_not_a_skip():
    with pytest.raises(ImportError, match="paper 'nosuch2030' listed in PAPERS cannot be imported"):
        methods.load_registry(methods.PAPERS + ("nosuch2030",))


def test_a_task_naming_an_undeclared_sampler_is_an_error(sixth_method, tmp_path):
    (tmp_path / "methods" / "toy2026" / "__init__.py").write_text(PAPER_INIT.replace('"toy2026":', '"other":'))
    for name in [m for m in sys.modules if "toy2026" in m]:
        del sys.modules[name]
    with pytest.raises(ValueError, match="names sampler 'toy2026', which no paper declares"):
        methods.load_registry(methods.PAPERS + ("toy2026",))


def test_unknown_names_are_refused_with_the_known_ones():
    with pytest.raises(HCCInputError, match="unknown network 'nonet'.*resnet20_spp"):
        methods.net_builder("nonet")
    with pytest.raises(HCCInputError, match="unknown sampler 'nosampler'.*jia2019"):
        methods.get_sampler("nosampler")
