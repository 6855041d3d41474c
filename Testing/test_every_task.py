"""Every task of the registry, end to end on a tiny batch (as timm's tests run over its models):
its sampler, net and loss resolve; the sampler makes samples from a real bundled case; one
forward pass gives one logit row per sample; one training step moves the weights and gives a
finite loss; a model package written from the net loads back with identical predictions."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from HCCAnalysisLib.data.case_loading import load_for_task
from HCCAnalysisLib.engine.infer import make_samples, run_net
from HCCAnalysisLib.engine.batches import stack_inputs
from HCCAnalysisLib.engine.train import build_task_net
from HCCAnalysisLib.losses import build_loss
from HCCAnalysisLib.methods import get_sampler, loss_builder, net_builder
from HCCAnalysisLib.models.package import load_model, save_model
from HCCAnalysisLib.tasks import TASKS
from helpers.fusion_cohort import asaur_rows, wang_clinical, zhen_clinical

ROOT = Path(__file__).resolve().parents[1]
RADIOLOGY_CASE = ROOT / "HCCAnalysisLib" / "sample_data" / "demo-cohort" / "lung1"
MICROSCOPY_CASE = ROOT / "HCCAnalysisLib" / "sample_data" / "histology" / "tumour1"
MAX_SAMPLES = 2  # a tiny batch: the paper-sized nets (Inception-ResNet-V2 at 299 px) stay quick
# Inputs above this size are sampled at it here: the wiring under test (sampler -> net -> loss -> package)
# is the same at any size the nets accept (Inception-ResNet-V2 from 75 px), and the CI stays within its
# budget; the paper sizes run in Testing/nets/test_fusion_nets.py and Testing/methods/test_tasks_fusion.py.
WIRING_SIZE = 96


def _clinical(task):
    row = asaur_rows(1)[0]
    return {"zhen2020": lambda: zhen_clinical(row, 0), "wang2020": lambda: wang_clinical(row, 0, 30.0),
            None: dict}[task.clinical_schema]()


def _case(task):
    fields = dict(_clinical(task), **({task.label_column: task.classes[0]} if task.label_column else {}))
    if not task.needs_segmentation:
        return load_for_task(MICROSCOPY_CASE, task, phases=list(task.phases), fields=fields), fields
    case = load_for_task(RADIOLOGY_CASE, None, fields=fields)
    # the one real image stands in for every phase the task reads (one grid)
    return replace(case, images={p: case.images["image"] for p in task.phases}, _grid_cache={}), fields


def _loss(task):
    own = loss_builder(task.loss)
    return own(**task.loss_kwargs) if own else build_loss(task.loss, **task.loss_kwargs)


@pytest.mark.parametrize("name", sorted(TASKS))
def test_task_resolves_runs_trains_and_round_trips(name, tmp_path, one_torch_thread):
    task = TASKS[name]
    if task.input_size > WIRING_SIZE and task.needs_segmentation:
        task = replace(task, input_size=WIRING_SIZE)
    assert callable(get_sampler(task.sampler)) and callable(net_builder(task.net))
    case, fields = _case(task)
    samples = make_samples(task, case, list(task.phases), fields=fields, training=True)
    assert samples and all(0 <= s.target < len(task.classes) for s in samples)
    batch = samples[:MAX_SAMPLES]
    torch.manual_seed(0)
    net = build_task_net(task)
    net.eval()
    with torch.no_grad():
        out = net(**stack_inputs(batch))
    logits = out["logits"] if isinstance(out, dict) else out
    assert logits.shape == (len(batch), len(task.classes)) and torch.isfinite(logits).all()

    net.train()
    before = [p.detach().clone() for p in net.parameters()]
    optimiser = torch.optim.SGD(net.parameters(), lr=1e-3)
    loss = _loss(task)(net(**stack_inputs(batch)), torch.tensor([s.target for s in batch]))
    assert torch.isfinite(loss)
    loss.backward()
    optimiser.step()
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters()))

    card = {"task": task.name, "version": "test", "classes": list(task.classes), "phases": list(task.phases),
            "net": task.net, "net_kwargs": task.net_kwargs, "input_size": task.input_size}
    save_model(tmp_path / "model", net, card)
    loaded = load_model(tmp_path / "model", expected_task=task.name)
    np.testing.assert_allclose(run_net(loaded.net, batch, "cpu"), run_net(net, batch, "cpu"), rtol=1e-5, atol=1e-6)
