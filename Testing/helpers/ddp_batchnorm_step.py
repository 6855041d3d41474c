"""One training step of CrossRankBatchNorm2d on this process's share vs BatchNorm2d on the whole batch.

Run under `torchrun --nproc_per_node N`; each process prints one line `rank=R <name>=<max abs error> ...`.
The batch is small (7 samples of 3 x 3, uneven shares) so a biased variance, a wrong momentum or a
per-process sample count shows up far above float32 rounding.
"""

import sys
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from HCCAnalysisLib.engine import distributed  # noqa: E402


def main() -> None:
    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(0)
    scale = torch.tensor([1e-2, 1.0, 3.0, 0.1]).view(1, 4, 1, 1)
    offset = torch.tensor([2.0, -1.0, 0.0, 5.0]).view(1, 4, 1, 1)
    x = torch.randn(7, 4, 3, 3, generator=generator) * scale + offset
    upstream = torch.randn(x.shape, generator=generator)
    reference = torch.nn.BatchNorm2d(4, momentum=0.3)
    with torch.no_grad():
        reference.weight.uniform_(0.5, 1.5, generator=generator)
        reference.bias.uniform_(-1.0, 1.0, generator=generator)
        reference.running_mean.uniform_(-1.0, 1.0, generator=generator)
        reference.running_var.uniform_(0.5, 2.0, generator=generator)
    start = {k: v.clone() for k, v in reference.state_dict().items()}
    whole = x.clone().requires_grad_()
    expected = reference(whole)
    (expected * upstream).sum().backward()

    rank, size = distributed.init_if_needed(torch.device("cpu"))
    layer = distributed.CrossRankBatchNorm2d(4, momentum=0.3)
    layer.load_state_dict(start)
    mine = distributed.shard(torch.arange(len(x)), rank, size)
    part = x[mine].clone().requires_grad_()
    out = layer(part)
    (out * upstream[mine]).sum().backward()
    dist.all_reduce(layer.weight.grad)
    dist.all_reduce(layer.bias.grad)

    def err(a: torch.Tensor, b: torch.Tensor) -> float:
        return (a - b).abs().max().item()

    errors = {"output": err(out, expected[mine]), "input_grad": err(part.grad, whole.grad[mine]),
              "weight_grad": err(layer.weight.grad, reference.weight.grad),
              "bias_grad": err(layer.bias.grad, reference.bias.grad),
              "running_mean": err(layer.running_mean, reference.running_mean),
              "running_var": err(layer.running_var, reference.running_var),
              "batches": float(layer.num_batches_tracked != reference.num_batches_tracked)}
    print(f"rank={rank} " + " ".join(f"{k}={v:.3e}" for k, v in errors.items()), flush=True)
    distributed.shutdown()


if __name__ == "__main__":
    main()
