"""Jia 2019's experiment grid (Tables 4-7): SPP vs global pooling, embeddings 2/16/32/64, pretraining
on or off, through `--net-option` and the released pretraining variants."""

import pytest
import torch

from HCCAnalysisLib import HCCInputError
from HCCAnalysisLib.engine.train import build_task_net
from HCCAnalysisLib.models.pretrained import KNOWN_SOURCES, known_source_path, release_for, resolve_pretrained
from HCCAnalysisLib.nets.jia2019_weights import from_jia2019
from HCCAnalysisLib.tasks import get_task

TASK = "jia2019-hcc-vs-background"


@pytest.mark.parametrize("options, cifar, mnist", [
    ([], "jia2019-cifar", "jia2019-mnist"),
    (["embedding_dim=16"], "jia2019-cifar-emb16", "jia2019-mnist"),
    (["embedding_dim=2"], "jia2019-cifar-emb2", "jia2019-mnist"),
    (["embedding_dim=64"], "jia2019-cifar", "jia2019-mnist"),  # none released: same pooling, fresh embedding
    (["pyramid=none", "embedding_dim=2"], "jia2019-cifar-gap-emb2", "jia2019-mnist-gap"),
])
def test_each_grid_cell_starts_from_the_release_that_holds_its_net(options, cifar, mnist):
    task = get_task(TASK).with_net_options(options)
    assert release_for("jia2019-cifar", task.net_kwargs) == cifar
    assert release_for("jia2019-mnist", task.net_kwargs) == mnist
    assert resolve_pretrained(None, task, 3).name == cifar
    assert resolve_pretrained(None, task, 1).name == mnist
    assert resolve_pretrained("none", task, 3) is None  # pretraining off


@pytest.mark.parametrize("name", sorted(KNOWN_SOURCES))
def test_every_released_variant_is_the_net_it_claims(name):
    entry = KNOWN_SOURCES[name]
    state = torch.load(known_source_path(name), map_location="cpu", weights_only=True)
    net = from_jia2019(state)
    assert net.embedding.out_features == entry.embedding_dim
    assert (None if net.pyramid is None else tuple(net.pyramid)) == entry.pyramid


def test_a_grid_net_takes_every_pretrained_weight_that_fits():
    task = get_task(TASK).with_net_options(["embedding_dim=2"])
    source = resolve_pretrained(None, task, 3)
    net = build_task_net(task, source[1])
    state = source[1]
    assert torch.equal(net.embedding.weight, state["embedding_net.linear.weight"])
    assert torch.equal(net.conv1.weight, state["embedding_net.conv1.weight"])
    gap = get_task(TASK).with_net_options(["pyramid=none", "embedding_dim=2"])
    assert build_task_net(gap, None).pyramid is None


def test_net_options_are_checked_and_read_as_values():
    task = get_task(TASK)
    changed = task.with_net_options({"pyramid": "1,2,4", "embedding_dim": "64"})
    assert changed.net_kwargs["pyramid"] == (1, 2, 4) and changed.net_kwargs["embedding_dim"] == 64
    assert task.net_kwargs["embedding_dim"] == 32  # the registered task is unchanged
    with pytest.raises(HCCInputError, match="takes no such option"):
        task.with_net_options(["depth=56"])
    with pytest.raises(HCCInputError, match="is not KEY=VALUE"):
        task.with_net_options(["embedding_dim"])
    with pytest.raises(HCCInputError, match="must hold integers"):
        task.with_net_options(["pyramid=1,b"])
