"""Train jia2019-hcc-vs-background briefly on the demo cohort and save the weights.

Run plainly (one process) or under `torchrun --nproc_per_node N`; the test compares both.
Usage: ddp_fit.py OUT.safetensors sgd|adam
"""

import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from HCCAnalysisLib.engine import distributed  # noqa: E402
from HCCAnalysisLib.data.cohort import load_cohort  # noqa: E402
from HCCAnalysisLib.engine.evaluate import load_samples, training_set  # noqa: E402
from HCCAnalysisLib.models.pretrained import resolve_pretrained  # noqa: E402
from HCCAnalysisLib.tasks import get_task  # noqa: E402
from HCCAnalysisLib.engine.train import fit  # noqa: E402


def train_small(seed=3, optimiser="sgd"):
    torch.set_num_threads(1)  # two processes on two cores
    task = get_task("jia2019-hcc-vs-background")
    cohort = load_cohort(ROOT / "HCCAnalysisLib" / "sample_data" / "demo-cohort")
    samples = load_samples(task, cohort, ["image"], seed, log=lambda *a: None)
    train = training_set(task, cohort.records[:2], samples)
    _, pretrained = resolve_pretrained("jia2019-cifar")  # fine-tuning, as the pipeline trains
    net, history = fit(task, train, torch.device("cpu"), seed=seed, epochs=2, batch_size=10, log=lambda *a: None,
                       optimiser=optimiser, pretrained_state=pretrained)
    return net, history


if __name__ == "__main__":
    net, history = train_small(optimiser=sys.argv[2])
    rank, size = distributed.world()
    if rank == 0:
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, sys.argv[1])
        print(f"processes={size} loss={history['loss']}")
    distributed.shutdown()
