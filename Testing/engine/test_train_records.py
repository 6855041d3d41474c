"""Per-epoch records (TSV, TensorBoard, validation share), precision choices and channels-last layout."""

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from HCCAnalysisLib.data.cohort import CaseRecord
from HCCAnalysisLib.engine.epoch_log import TensorBoardLog, tsv_text
from HCCAnalysisLib.engine.precision import autocast, make_scaler, resolve_precision
from HCCAnalysisLib.engine.train import build_task_net, fit, set_seed
from HCCAnalysisLib.engine.validation import patient_split
from HCCAnalysisLib.errors import HCCInputError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_train_loader import tiny_samples, tiny_task  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")
CPU = torch.device("cpu")


def test_validation_share_is_recorded_per_epoch_in_tsv_and_tensorboard(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    task, samples = tiny_task(augment=False, epochs=2), tiny_samples(10)
    net, history = fit(task, samples, CPU, seed=1, log=lambda *a: None, val_samples=tiny_samples(6, seed=5),
                       checkpoint_dir=tmp_path)
    records = history["records"]
    assert [sorted(r) for r in records] == [sorted(["epoch", "loss", "train_accuracy", "val_loss", "val_accuracy",
                                                    "val_auc", "lr", "seconds"])] * 2
    # the recorded validation figures are the returned net's (eval mode, last epoch)
    inputs = torch.from_numpy(np.stack([s.inputs["image"] for s in tiny_samples(6, seed=5)]))
    with torch.no_grad():
        logits = net(image=inputs)
    targets = torch.tensor([s.target for s in tiny_samples(6, seed=5)])
    assert records[-1]["val_loss"] == pytest.approx(float(torch.nn.functional.cross_entropy(logits, targets)),
                                                    rel=1e-5)
    assert records[-1]["val_accuracy"] == pytest.approx(float((logits.argmax(1) == targets).float().mean()))
    lines = (tmp_path / "training_log.tsv").read_text().splitlines()
    assert lines[0].split("\t") == ["epoch", "loss", "train_accuracy", "val_loss", "val_accuracy", "val_auc", "lr",
                                    "seconds"]
    assert len(lines) == 3 and float(lines[2].split("\t")[1]) == pytest.approx(records[-1]["loss"], rel=1e-5)
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert {"training/loss", "training/accuracy", "validation/auc", "validation/loss"} <= set(events.Tags()["scalars"])
    assert [e.step for e in events.Scalars("training/loss")] == [1, 2]


def test_without_tensorboard_the_log_is_skipped_with_one_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import now raises ImportError
    lines = []
    board = TensorBoardLog(tmp_path / "tb", log=lines.append)
    board.add({"epoch": 1, "loss": 0.5})
    board.close()
    assert len(lines) == 1 and "TensorBoard is not installed" in lines[0] and not (tmp_path / "tb").exists()
    assert tsv_text([{"epoch": 1, "loss": 0.5, "seconds": 1.0}]) == "epoch\tloss\tseconds\n1\t0.5\t1\n"


def test_patient_split_is_seeded_and_keeps_patients_whole():
    records = [CaseRecord(f"c{i}", f"p{i // 2}", Path("."), {}) for i in range(10)]  # 5 patients, 2 cases each
    train, held = patient_split(records, 0.4, seed=3)
    assert {r.patient_id for r in train}.isdisjoint({r.patient_id for r in held})
    assert len({r.patient_id for r in held}) == 2 and len(train) + len(held) == 10
    assert patient_split(records, 0.4, seed=3) == (train, held)
    assert len({tuple(r.case_id for r in patient_split(records, 0.4, seed)[1]) for seed in range(8)}) > 2
    for share in (0.0, 1.0, 0.05):
        with pytest.raises(HCCInputError):
            patient_split(records, share, seed=3)


def test_precision_choices():
    assert resolve_precision("auto", CPU) == "fp32" and resolve_precision(None, CPU) == "fp32"
    assert resolve_precision("bf16", CPU) == "bf16"
    with pytest.raises(HCCInputError, match="fp16 training needs a CUDA device"):
        resolve_precision("fp16", CPU)
    with pytest.raises(HCCInputError, match="unknown precision"):
        resolve_precision("fp8", CPU)
    assert make_scaler("fp32", CPU) is None and make_scaler("bf16", CPU) is None
    with autocast("bf16", CPU):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16


def test_fp32_on_the_cpu_is_the_default_and_bf16_trains_differently():
    task, samples = tiny_task(augment=False, epochs=1), tiny_samples(8)
    auto, history = fit(task, samples, CPU, seed=1, log=lambda *a: None)
    fp32, _ = fit(task, samples, CPU, seed=1, log=lambda *a: None, precision="fp32")
    bf16, bf16_history = fit(task, samples, CPU, seed=1, log=lambda *a: None, precision="bf16")
    assert history["precision"] == "fp32" and bf16_history["precision"] == "bf16"
    assert all(torch.equal(v, fp32.state_dict()[k]) for k, v in auto.state_dict().items())
    assert np.isfinite(bf16_history["loss"]).all()
    assert not torch.equal(bf16.state_dict()["conv1.weight"], fp32.state_dict()["conv1.weight"])


def test_channels_last_gives_the_same_training_step_up_to_float32_rounding():
    """NHWC convolutions sum in another order: measured on torch 2.14.1 / this CPU, one step's
    logits differ by 1.5e-6 relative and the gradients by 7e-6 (relative L2), so the CPU default
    stays NCHW (exactly the earlier results); the check is that the layout changes nothing else."""
    task = dataclasses.replace(tiny_task(augment=False), training=dict(tiny_task().training, optimiser="sgd"))
    images = torch.randn(6, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    targets = torch.tensor([0, 1, 0, 1, 1, 0])
    results = []
    for channels_last in (False, True):
        set_seed(0)
        net = build_task_net(task).train()
        x = images
        if channels_last:
            net.to(memory_format=torch.channels_last)
            x = images.contiguous(memory_format=torch.channels_last)
        optimiser = torch.optim.SGD(net.parameters(), lr=0.1)
        logits = net(image=x)
        torch.nn.functional.cross_entropy(logits, targets).backward()
        optimiser.step()
        results.append((logits.detach(), {k: v.detach().contiguous() for k, v in net.state_dict().items()}))
    (logits_a, state_a), (logits_b, state_b) = results
    assert float((logits_a - logits_b).norm() / logits_a.norm()) < 1e-5
    assert max(float((state_a[k].double() - state_b[k].double()).abs().max()) for k in state_a
               if state_a[k].is_floating_point()) < 1e-5
    # fit's own switch: the layout is applied to the net and its inputs, and the weights agree
    samples = tiny_samples(8)
    plain, history = fit(task, samples, CPU, seed=1, epochs=1, log=lambda *a: None)
    nhwc, nhwc_history = fit(task, samples, CPU, seed=1, epochs=1, log=lambda *a: None, channels_last=True)
    assert not history["channels_last"] and nhwc_history["channels_last"]
    assert max(float((v - nhwc.state_dict()[k]).abs().max()) for k, v in plain.state_dict().items()
               if v.is_floating_point()) < 1e-4
