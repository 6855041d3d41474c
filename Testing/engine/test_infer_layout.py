"""Inference layout (batch norm folded, channels-last) per net family, and `run_net`'s one forward
for probabilities and embeddings, with the net's own inference batch size.

Each family's net at a small input size; batch-norm statistics and affine parameters are
randomised so that folding changes the weights for real.
"""

import copy

import numpy as np
import pytest
import torch

from HCCAnalysisLib.data.samples import Sample
from HCCAnalysisLib.engine.inference_layout import PREPARED, channels_last_inputs, prepare_for_inference
from HCCAnalysisLib.engine.infer import run_net
from HCCAnalysisLib.engine.shared_inputs import SharedInput
from HCCAnalysisLib.nets import build_net
from helpers.nets import randomise_batchnorm


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _randomise(net):
    torch.manual_seed(1)
    return randomise_batchnorm(net).eval()


def _liang_inputs(rng, n=6):
    roi = SharedInput(rng.random((3, 1, 32, 32), dtype=np.float32), ("c", "1", 0))
    return [{"local": rng.random((3, 1, 16, 16), dtype=np.float32), "global_roi": roi} for _ in range(n)]


# family -> (net name, builder kwargs, per-sample inputs, batch norms the walk must fold)
FAMILIES = {
    "jia2019": ("resnet20_spp", {"num_classes": 2, "in_channels": 3},
                lambda rng: [{"image": rng.random((3, 32, 32), dtype=np.float32)} for _ in range(4)], 0),
    "liang2018": ("resgl_bdlstm", {"num_classes": 4, "n_phases": 3, "width": 4, "blocks": 1, "phase_features": 16,
                                   "lstm_hidden": 8}, _liang_inputs, 42),
    "meng2019": ("meng_microscopy", {"num_classes": 2, "tile_size": 64, "fc_hidden": 16},
                 lambda rng: [{"image": rng.random((3, 64, 64), dtype=np.float32)} for _ in range(3)], 0),
    "wang2020": ("wang_fusion", {"variant": "d", "clinical_dim": 9, "num_classes": 2},
                 lambda rng: [{"image": rng.random((3, 32, 32), dtype=np.float32),
                               "clinical": rng.random(9, dtype=np.float32)} for _ in range(2)], 53),
    "zhen2020": ("zhen_inception_resnet_v2", {"in_channels": 6, "num_classes": 7},
                 lambda rng: [{"image": rng.random((6, 96, 96), dtype=np.float32)}], 204),
}


def _samples(inputs):
    return [Sample(x, 0, "c", "p", "1", "lesion 1", "lesion") for x in inputs]


@pytest.mark.parametrize("family", FAMILIES)
def test_prepared_net_gives_the_same_outputs(family):
    name, kwargs, make_inputs, folds = FAMILIES[family]
    net = _randomise(build_net(name, **kwargs))
    batch_norms = sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    samples = _samples(make_inputs(np.random.default_rng(0)))
    probs, embedded = run_net(net, samples, "cpu", with_embeddings=True)
    prepared = prepare_for_inference(net)  # in place (no copy of the big nets: test time)
    left = sum(isinstance(m, torch.nn.BatchNorm2d) for m in prepared.modules())
    assert batch_norms - left == folds
    if family == "jia2019":  # folds its own batch norms in eval mode: its modules stay
        assert left == batch_norms
    assert getattr(prepared, PREPARED)
    conv = next(m for m in prepared.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) or conv.weight.shape[1:] == (1, 1, 1)
    probs2, embedded2 = run_net(prepared, samples, "cpu", with_embeddings=True)
    np.testing.assert_allclose(probs2, probs, atol=1e-5, rtol=0)
    np.testing.assert_allclose(embedded2, embedded, atol=1e-5, rtol=1e-4)
    # the embeddings of the single forward are the net's embed()
    from HCCAnalysisLib.engine.batches import stack_inputs

    with torch.inference_mode():
        inputs = channels_last_inputs(stack_inputs(samples))
        np.testing.assert_allclose(embedded2, prepared.embed(**inputs).numpy(), atol=1e-6, rtol=1e-6)


def test_one_forward_per_batch_at_the_nets_batch_size():
    name, kwargs, make_inputs, _ = FAMILIES["liang2018"]
    net = _randomise(build_net(name, **kwargs))
    samples = _samples(make_inputs(np.random.default_rng(1), n=2 * net.inference_batch_size + 3))
    calls = []
    net.register_forward_hook(lambda module, args, kwargs, out: calls.append(kwargs["local"].shape[0]),
                              with_kwargs=True)
    probs, embedded = run_net(net, samples, "cpu", with_embeddings=True)
    assert calls == [net.inference_batch_size, net.inference_batch_size, 3]  # no second pass for embeddings
    assert probs.shape == (len(samples), 4) and embedded.shape == (len(samples), net.feature_dim)
    calls.clear()
    run_net(net, samples, "cpu", batch_size=len(samples))
    assert calls == [len(samples)]


def test_prepare_is_done_once_and_leaves_training_nets_alone():
    name, kwargs, _, _ = FAMILIES["liang2018"]
    net = _randomise(build_net(name, **kwargs))
    keys = set(net.state_dict())
    trained_copy = copy.deepcopy(net)
    run_net(trained_copy, _samples(_liang_inputs(np.random.default_rng(2))), "cpu")
    assert set(trained_copy.state_dict()) == keys  # run_net alone never folds (a net may be saved after)
    prepared = prepare_for_inference(net)
    folded_keys = set(prepared.state_dict())
    assert folded_keys != keys and prepare_for_inference(prepared) is prepared
    assert set(prepared.state_dict()) == folded_keys
