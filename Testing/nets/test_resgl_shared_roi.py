"""Liang's global pathway once per distinct ROI (shared inputs) equals the per-patch computation.

Small ResGL-BDLSTM (width 4, 1 block per stage, 16/32-pixel inputs); batch-norm statistics
and affine parameters are randomised so that folding and weighting are exercised for real.
"""

import copy
import pickle

import numpy as np
import pytest
import torch

from HCCAnalysisLib.data.samples import Sample
from HCCAnalysisLib.engine.batches import stack_inputs
from HCCAnalysisLib.engine.shared_inputs import SharedInput
from HCCAnalysisLib.errors import HCCInputError
from HCCAnalysisLib.losses import build_loss
from HCCAnalysisLib.nets.resgl_lstm import build_resgl_bdlstm
from helpers.nets import randomise_batchnorm

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _net(variant="full"):
    torch.manual_seed(0)
    return randomise_batchnorm(build_resgl_bdlstm(variant=variant, width=4, blocks=1, phase_features=16,
                                                  lstm_hidden=8))


def _samples(rng, counts=(5, 3, 4)):
    """Patches of three lesion slices; the patches of a slice share one ROI."""
    out = []
    for lesion, n in enumerate(counts):
        roi = SharedInput(rng.random((3, 1, 32, 32), dtype=np.float32), ("case", str(lesion), 0))
        out += [Sample({"local": rng.random((3, 1, 16, 16), dtype=np.float32), "global_roi": roi}, lesion % 4,
                       "case", "p", str(lesion), f"lesion {lesion}", "lesion") for _ in range(n)]
    order = rng.permutation(len(out))  # patches of the slices interleaved, as a shuffled batch is
    return [out[i] for i in order]


def _per_patch(inputs):
    """The same batch with each patch carrying its own ROI copy (the layout before this change)."""
    return {"local": inputs["local"], "global_roi": inputs["global_roi"][inputs["global_roi_index"]]}


def test_stacking_gives_distinct_rois_and_an_index():
    samples = _samples(np.random.default_rng(0))
    inputs = stack_inputs(samples)
    assert inputs["global_roi"].shape == (3, 3, 1, 32, 32) and inputs["global_roi_index"].dtype == torch.int64
    for sample, at in zip(samples, inputs["global_roi_index"].tolist()):
        np.testing.assert_array_equal(inputs["global_roi"][at].numpy(), sample.inputs["global_roi"].array)
    # array-like: code that stacks a shared input as a plain array still gets the ROI
    assert np.asarray(samples[0].inputs["global_roi"]).shape == samples[0].inputs["global_roi"].shape == (3, 1, 32, 32)
    clash = [samples[0], Sample({"local": samples[1].inputs["local"], "global_roi": SharedInput(
        np.zeros((3, 1, 32, 32), np.float32), samples[0].inputs["global_roi"].key)}, 0, "c", "p", "x", "x", "lesion")]
    with pytest.raises(ValueError, match="share the key"):
        stack_inputs(clash)


def test_a_pickled_case_holds_each_roi_once():
    samples = _samples(np.random.default_rng(1), counts=(40,))
    one_roi = samples[0].inputs["global_roi"].array.nbytes
    size = len(pickle.dumps(samples))
    assert size < one_roi + 40 * (samples[0].inputs["local"].nbytes + 1500)
    again = pickle.loads(pickle.dumps(samples))
    assert stack_inputs(again)["global_roi"].shape[0] == 1  # the key survives pickling


@pytest.mark.parametrize("variant", ["full", "no_lstm"])
def test_eval_outputs_equal_the_per_patch_computation(variant):
    net = _net(variant).eval()
    inputs = stack_inputs(_samples(np.random.default_rng(2)))
    with torch.inference_mode():
        shared, per_patch = net(**inputs), net(**_per_patch(inputs))
        embedded = net.embed(**inputs)
    for name in per_patch:
        torch.testing.assert_close(shared[name], per_patch[name], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(torch.softmax(shared["logits"], 1), torch.softmax(per_patch["logits"], 1),
                               atol=1e-6, rtol=0)
    torch.testing.assert_close(embedded, per_patch["features"], atol=1e-6, rtol=1e-5)


def _step(net, inputs, target, dtype):
    net = copy.deepcopy(net).train().to(dtype)
    inputs = {k: v.to(dtype) if v.is_floating_point() else v for k, v in inputs.items()}
    loss = build_loss("resgl_inter_centre", lam=0.1, alpha=0.2)(net(**inputs), target)
    loss.backward()
    return loss, [p.grad for p in net.parameters()], list(net.buffers())


def test_training_step_equals_the_per_patch_step():
    """Same loss, gradients and batch-norm running statistics: in float64 to rounding of the maths,
    in float32 within float32 rounding (batch norms weight each distinct ROI by its patch count)."""
    net = _net()
    samples = _samples(np.random.default_rng(3))
    inputs = stack_inputs(samples)
    target = torch.tensor([s.target for s in samples])
    for dtype, tolerance in ((torch.float64, 1e-10), (torch.float32, 2e-4)):
        loss, grads, buffers = _step(net, inputs, target, dtype)
        loss_ref, grads_ref, buffers_ref = _step(net, _per_patch(inputs), target, dtype)
        torch.testing.assert_close(loss, loss_ref, atol=tolerance, rtol=0)
        for grad, grad_ref in zip(grads, grads_ref):
            torch.testing.assert_close(grad, grad_ref, atol=tolerance, rtol=0)
        for buffer, buffer_ref in zip(buffers, buffers_ref):
            torch.testing.assert_close(buffer, buffer_ref, atol=tolerance, rtol=0)
    assert any(b.dtype == torch.int64 and b.item() == 1 for b in buffers)  # num_batches_tracked stepped


def test_bad_roi_index_is_refused():
    net = _net().eval()
    inputs = stack_inputs(_samples(np.random.default_rng(4)))
    with pytest.raises(HCCInputError, match="global_roi_index"):
        net(local=inputs["local"], global_roi=inputs["global_roi"], global_roi_index=inputs["global_roi_index"][:-1])
    with pytest.raises(HCCInputError, match="'local' has"):
        net(local=inputs["local"], global_roi=inputs["global_roi"])
