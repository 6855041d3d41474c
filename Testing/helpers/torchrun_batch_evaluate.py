"""`hcc batch` then `hcc evaluate` in one torchrun launch (one start-up for both commands).

    python -m torch.distributed.run --nproc_per_node 2 torchrun_batch_evaluate.py BATCH_ARGS... -- EVALUATE_ARGS...

Each command goes through the CLI's own `main`, as `-m HCCAnalysisLib.cli` would run it; the
process prints `rank=R statuses=B,E` (the two exit statuses) and exits 0, since torchrun turns
any non-zero exit (3: a batch case failed) into its own failure.
"""

import os
import sys

import torch

from HCCAnalysisLib.cli import main

if __name__ == "__main__":
    torch.set_num_threads(1)
    args = sys.argv[1:]
    split = args.index("--")
    statuses = main(args[:split]), main(args[split + 1:])
    print(f"rank={os.environ.get('RANK')} statuses={statuses[0]},{statuses[1]}", flush=True)
