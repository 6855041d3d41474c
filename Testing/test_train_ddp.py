"""Training under torchrun (DistributedDataParallel, gloo on CPU) gives the one-process result.

The two runs are the same computation up to floating-point rounding (batch statistics are
summed in another order). Fine-tuning on real crops is ill-conditioned enough (nearly constant
channels give tiny batch variances) that rounding grows to about 1e-3 in the weights after
two epochs with SGD; a run whose batch norm does not span the processes is off by 3e-2 in the
weights and 0.2 in the loss, so the tolerances below tell the two apart. Adam divides each
step by the gradient's running RMS, which turns rounding noise on near-zero gradients into
full-size steps, so with Adam (the default optimiser) the check is the predictions.
"""

import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

HELPER = Path(__file__).parent / "helpers" / "ddp_fit.py"


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
    assert max(abs(a - b) for a, b in zip(loss_one, loss_two)) < 5e-3, (loss_one, loss_two)
    for key in one:
        if one[key].is_floating_point():
            torch.testing.assert_close(one[key], two[key], rtol=1e-2, atol=5e-3, msg=key)
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
