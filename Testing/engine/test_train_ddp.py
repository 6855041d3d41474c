"""Training under torchrun (DistributedDataParallel, gloo on CPU) gives the one-process result.

The cross-process batch norm is checked exactly on one step (`test_cross_rank_batchnorm_step_matches_
batchnorm`): output, gradients and running statistics agree with BatchNorm2d to float32 rounding, so
a biased variance, a wrong momentum or a per-process count fails there. End-to-end trainings cannot
see such bugs (the n/(n-1) factor is 1 + 2e-4 at this size) and are the same computation only up to
rounding, which fine-tuning amplifies: measured on torch 2.14.1, a one-process run whose pretrained
weights are scaled by (1 + 1e-7 noise) already ends 2.1e-3 away in the parameters and 4.6e-3 in the
running statistics (max abs), about as far as the two-process run (1.9e-3, 6.8e-3; relative L2 1.2e-3
and 3.5e-3). A run whose batch norm does not span the processes is off by 2.6e-2 / 9.2e-2 (relative
L2 1.7e-2 / 4.9e-2) and by 0.10 in the second epoch's loss (rounding: 2e-3). The tolerances below
sit about 4x from each side. Adam divides each step by the gradient's running RMS, which turns
rounding noise on near-zero gradients into full-size steps, so with Adam the check is the predictions.
"""

import re
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

HELPER = Path(__file__).resolve().parents[1] / "helpers" / "ddp_fit.py"
BN_STEP = Path(__file__).resolve().parents[1] / "helpers" / "ddp_batchnorm_step.py"


def relative_differences(one: dict, two: dict) -> dict:
    """Relative L2 distance of two state dicts, for parameters and running statistics separately.

    Aggregated over all tensors, so one near-constant channel's rounding does not decide the check.
    """
    floats = [k for k in one if one[k].is_floating_point()]
    groups = {"stats": [k for k in floats if "running_" in k]}
    groups["params"] = [k for k in floats if k not in groups["stats"]]
    flat = lambda state, keys: torch.cat([state[k].flatten().double() for k in keys])  # noqa: E731
    return {name: float((flat(one, keys) - flat(two, keys)).norm() / flat(one, keys).norm())
            for name, keys in groups.items()}


def test_cross_rank_batchnorm_step_matches_batchnorm():
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29516",
               str(BN_STEP)]
    run = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    # the two ranks print at once: their lines can run together on the shared stdout
    lines = [m for m in re.split(r"(?=rank=\d+ )", run.stdout) if m.startswith("rank=")]
    lines = [" ".join(m.split()) for m in lines]
    assert len(lines) == 2, run.stdout
    for line in lines:
        errors = {k: float(v) for k, v in (item.split("=") for item in line.split()[1:])}
        assert errors["batches"] == 0, line
        assert errors["running_mean"] < 1e-6 and errors["running_var"] < 1e-6, line
        # float32 rounding, amplified by 1/std = 100 on the channel with std 1e-2
        assert max(errors[k] for k in ("output", "input_grad", "weight_grad", "bias_grad")) < 1e-4, line


def _train(tmp_path, processes, optimiser, port):
    out = tmp_path / f"{optimiser}-{processes}.safetensors"
    command = [sys.executable, str(HELPER), str(out), optimiser]
    if processes > 1:
        command[1:1] = ["-m", "torch.distributed.run", "--nproc_per_node", str(processes), "--master_port", str(port)]
    run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    line = next(line for line in run.stdout.splitlines() if line.startswith("processes="))
    assert line.startswith(f"processes={processes} ")
    losses = [float(v) for v in line.split("loss=[")[1].rstrip("]").split(",")]
    return load_file(out), losses


def _net(state):
    from HCCAnalysisLib.tasks import get_task
    from HCCAnalysisLib.engine.train import build_task_net

    net = build_task_net(get_task("jia2019-hcc-vs-background"))
    net.load_state_dict(state)
    return net.eval()


def test_two_processes_train_the_same_weights_as_one(tmp_path):
    (one, loss_one), (two, loss_two) = _train(tmp_path, 1, "sgd", 29517), _train(tmp_path, 2, "sgd", 29518)
    assert one.keys() == two.keys()
    assert max(abs(a - b) for a, b in zip(loss_one, loss_two)) < 2e-2, (loss_one, loss_two)
    differences = relative_differences(one, two)
    assert differences["params"] < 5e-3 and differences["stats"] < 1.5e-2, differences
    # Meaningful only if training moved the weights away from the seeded start.
    from HCCAnalysisLib.tasks import get_task
    from HCCAnalysisLib.engine.train import build_task_net, set_seed

    from HCCAnalysisLib.models.pretrained import resolve_pretrained

    set_seed(3)
    start = build_task_net(get_task("jia2019-hcc-vs-background"), resolve_pretrained("jia2019-cifar")[1]).state_dict()
    moved = [k for k in one if one[k].is_floating_point() and not torch.allclose(one[k], start[k], atol=1e-3)]
    assert len(moved) > 20


def test_two_processes_with_adam_make_the_same_predictions(tmp_path, sample_data):
    one, two = _net(_train(tmp_path, 1, "adam", 29519)[0]), _net(_train(tmp_path, 2, "adam", 29520)[0])
    from HCCAnalysisLib.data.cohort import load_cohort
    from HCCAnalysisLib.engine.evaluate import load_samples
    from HCCAnalysisLib.tasks import get_task
    from HCCAnalysisLib.engine.infer import run_net

    task = get_task("jia2019-hcc-vs-background")
    samples = [s for group in load_samples(task, load_cohort(sample_data / "demo-cohort"), ["image"], 3,
                                           log=lambda *a: None).values() for s in group]
    p1, p2 = run_net(one, samples, torch.device("cpu")), run_net(two, samples, torch.device("cpu"))
    assert (p1.argmax(1) == p2.argmax(1)).mean() >= 0.95
    assert abs(p1[:, 1] - p2[:, 1]).mean() < 0.05
