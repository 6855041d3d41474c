"""fit streams its batches through a DataLoader and gives exactly what the in-process trainer gave.

The reference is the trainer as it was before the DataLoader (a plain loop: one seeded
`randperm` per epoch, batches stacked in the main process, trailing single samples skipped,
augmentation drawn per global batch), written out here on tiny synthetic samples.
"""

import dataclasses

import numpy as np
import pytest
import torch

from HCCAnalysisLib.data.samples import Sample
from HCCAnalysisLib.data.sample_views import ConcatSamples
from HCCAnalysisLib.engine.augment import BatchAugmenter
from HCCAnalysisLib.engine.batches import stack_inputs
from HCCAnalysisLib.engine.loader import EpochBatches, global_batch_sizes, make_loader
from HCCAnalysisLib.engine.train import build_task_net, fit, make_optimiser, set_seed
from HCCAnalysisLib.errors import HCCInputError
from HCCAnalysisLib.losses import build_loss
from HCCAnalysisLib.tasks import get_task

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_task(augment=True, **training):
    task = get_task("jia2019-hcc-vs-background")
    settings = dict(task.training, **{"epochs": 2, "batch_size": 5, **training})
    if augment:
        settings["augment"] = {"rotate_deg": 30.0, "flip_prob": 0.5}
    return dataclasses.replace(task, training=settings)


def tiny_samples(n=11, size=16, seed=0):
    rng = np.random.default_rng(seed)
    return [Sample({"image": rng.normal(size=(3, size, size)).astype(np.float32)}, int(i % 2), f"c{i}", f"p{i}",
                   "1", "lesion", "lesion") for i in range(n)]


def reference_fit(task, samples, seed):
    """The trainer before the DataLoader, step for step (one process, fp32)."""
    settings = task.training
    set_seed(seed)
    net = build_task_net(task)
    loss_fn = build_loss(task.loss, **task.loss_kwargs)
    optimiser = make_optimiser(settings.get("optimiser", "adam"), net.parameters(), settings["lr"],
                               settings.get("weight_decay", 0.0))
    targets = torch.tensor([s.target for s in samples])
    order_rng = torch.Generator().manual_seed(seed)
    augmenter = BatchAugmenter(settings["augment"], seed) if settings.get("augment") else None
    losses = []
    for _ in range(settings["epochs"]):
        net.train()
        order, total = torch.randperm(len(samples), generator=order_rng), 0.0
        for start in range(0, len(samples), settings["batch_size"]):
            batch = order[start:start + settings["batch_size"]]
            if len(batch) < 2:
                continue
            inputs = stack_inputs([samples[i] for i in batch.tolist()])
            if augmenter is not None:
                inputs = augmenter.apply(inputs, augmenter.draw_batch(len(batch)), torch.arange(len(batch)))
            loss = loss_fn(net(**inputs), targets[batch])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            total += loss.item() * len(batch)
        losses.append(total / len(samples))
    return net.eval(), losses


def _fit(task, samples, **kwargs):
    return fit(task, samples, torch.device("cpu"), seed=4, log=lambda *a: None, **kwargs)


def _assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def test_fit_through_the_loader_equals_the_plain_trainer():
    task, samples = tiny_task(), tiny_samples()  # 11 samples, batches of 5: the trailing one is skipped
    expected, expected_losses = reference_fit(task, samples, seed=4)
    net, history = _fit(task, samples, workers=0, precision="fp32")
    _assert_same_weights(net, expected)
    # the mean is now over the samples trained on (10, the skipped one left out), not all 11
    assert np.allclose(np.array(history["loss"]) * 10 / 11, expected_losses, rtol=1e-12, atol=0)
    assert history["precision"] == "fp32" and not history["channels_last"]
    assert [r["epoch"] for r in history["records"]] == [1, 2]
    assert all(0.0 <= r["train_accuracy"] <= 1.0 for r in history["records"])


def test_worker_processes_and_lazy_sequences_change_nothing():
    task, samples = tiny_task(augment=False, epochs=1), tiny_samples()
    plain, _ = _fit(task, samples, workers=0)
    in_workers, _ = _fit(task, samples, workers=2)
    lazy, _ = _fit(task, ConcatSamples([samples[:4], samples[4:]]), workers=0)
    _assert_same_weights(in_workers, plain)
    _assert_same_weights(lazy, plain)


def test_batch_order_and_shares_are_the_trainer_order():
    assert global_batch_sizes(11, 5) == [5, 5]
    assert global_batch_sizes(12, 5, processes=2) == [5, 5, 2]
    assert global_batch_sizes(11, 5, processes=3) == [5, 5]
    ones = list(EpochBatches(12, 5, torch.Generator().manual_seed(9)))
    shares = [list(EpochBatches(12, 5, torch.Generator().manual_seed(9), rank=r, processes=2)) for r in (0, 1)]
    assert [len(b) for b in ones] == [5, 5, 2]
    assert shares == [[b[0::2] for b in ones], [b[1::2] for b in ones]]  # the same global order, interleaved
    generator = torch.Generator().manual_seed(9)
    batches = EpochBatches(12, 5, generator)
    assert list(batches) == ones and list(batches) != ones  # one new permutation per pass (epoch)
    loader = make_loader(tiny_samples(6), 3, torch.Generator().manual_seed(0), torch.device("cpu"), workers=0)
    inputs, targets = next(iter(loader))
    assert inputs["image"].shape == (3, 3, 16, 16) and targets.dtype == torch.long and not inputs["image"].is_pinned()


def test_bad_worker_count_and_too_few_samples_are_refused():
    with pytest.raises(HCCInputError, match="workers must be 0 or more"):
        _fit(tiny_task(), tiny_samples(), workers=-1)
    with pytest.raises(HCCInputError, match="at least 2 samples"):
        _fit(tiny_task(), tiny_samples(1))
