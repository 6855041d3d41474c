"""`--pretrained` reaches each network family's own loader: Jia 2019 state dicts for
ResNet20+SPP, local timm backbone files for the fusion nets (never stored in the card)."""

import pytest
import torch

from HCCAnalysisLib.errors import HCCInputError
from HCCAnalysisLib.models.pretrained import resolve_pretrained
from HCCAnalysisLib.tasks import get_task
from HCCAnalysisLib.engine.train import build_task_net


def test_fusion_task_takes_a_local_resnet50_file(tmp_path):
    timm = pytest.importorskip("timm")
    from safetensors.torch import save_file

    torch.manual_seed(11)
    reference = timm.create_model("resnet50", pretrained=False)
    path = tmp_path / "resnet50.safetensors"
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, path)
    task = get_task("wang2020-fusion-d")
    source = resolve_pretrained(str(path), task)
    assert source == (path, path)
    net = build_task_net(task, source[1])
    torch.testing.assert_close(net.backbone.conv1.weight, reference.conv1.weight)
    torch.testing.assert_close(net.backbone.layer4[2].conv3.weight, reference.layer4[2].conv3.weight)
    assert "pretrained_path" not in task.net_kwargs  # the card keeps the task's kwargs only


def test_jia_source_is_refused_for_a_fusion_task():
    with pytest.raises(HCCInputError, match="'jia2019-cifar' is for ResNet20\\+SPP, not for task wang2020-image"):
        resolve_pretrained("jia2019-cifar", get_task("wang2020-image"))


def test_jia_task_gets_the_state_dict():
    path, state = resolve_pretrained("jia2019-cifar", get_task("jia2019-differentiation"))
    assert path.name == "cifar_resnet_32_dict_withSPP.pkl" and "linear.weight" in state
    net = build_task_net(get_task("jia2019-differentiation"), state)
    torch.testing.assert_close(net.conv1.weight, state["embedding_net.conv1.weight"])


def test_named_sources_follow_the_task_family_not_its_name():
    # Every Jia source fits the Jia tasks (pretraining_family "jia2019-resnet20"), none fits a fusion task.
    for name in ("jia2019-cifar", "jia2019-mnist"):
        path, state = resolve_pretrained(name, get_task("jia2019-hcc-vs-background"))
        assert path.parent.name == "weights" and "embedding_net.conv1.weight" in state
        with pytest.raises(HCCInputError, match=f"'{name}' is for ResNet20\\+SPP, not for task zhen2020"):
            resolve_pretrained(name, get_task("zhen2020-model-a"))
