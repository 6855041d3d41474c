"""Inference per net family with and without the inference layout (batch norm folded, channels-last).

    .venv/bin/python benchmarks/bench_inference_layout.py [--quick] [--device cpu|cuda] [--out FILE]

Every family's net at the paper's input size and its inference batch, seeded random weights
with randomised batch-norm statistics (so folding changes the weights), under
`torch.inference_mode`: the plain eval net vs `engine.inference_layout.prepare_for_inference`
(inputs channels-last as `run_net` gives them). Interleaved rounds, order alternating; the
speed-up is the median of the per-round ratios of the fastest call per round; the largest
probability difference is checked (<= 1e-5) before anything is timed. With `--device cuda`
the same runs on the GPU (synchronised timing).
"""

import argparse
import copy
import datetime
import os
import pathlib
import platform
import statistics
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import numpy as np  # noqa: E402
import torch  # noqa: E402

DEFAULT_OUT = ROOT / "benchmarks" / "results_inference_layout.md"
NOTE = ("Jia's ResNet20+SPP already folds its own batch norms and runs channels-last in eval mode "
        "(`results_resnet_spp.md`), so its row shows ~1x by design. Liang's row is the once-per-ROI net at a "
        "batch of 16 patches sharing one ROI (its `inference_batch_size` is 64; the batch effect is in "
        "`results_liang_global.md`).")

# family -> (net name, kwargs, inputs of one batch (B = the batch `run_net` uses, capped for the CPU))
FAMILIES = {
    "Jia 2019 ResNet20+SPP": ("resnet20_spp", {"num_classes": 2, "in_channels": 3},
                              lambda b: {"image": torch.rand(b, 3, 32, 32)}, 64),
    "Liang 2018 ResGL-BDLSTM": ("resgl_bdlstm", {"num_classes": 4, "n_phases": 3},
                                lambda b: {"local": torch.rand(b, 3, 1, 64, 64),
                                           "global_roi": torch.rand(1, 3, 1, 128, 128),
                                           "global_roi_index": torch.zeros(b, dtype=torch.int64)}, 16),
    "Meng 2019 CNN": ("meng_microscopy", {"num_classes": 2, "tile_size": 512},
                      lambda b: {"image": torch.rand(b, 3, 512, 512)}, 4),
    "Wang 2020 ResNet-50 fusion": ("wang_fusion", {"variant": "d", "clinical_dim": 9, "num_classes": 2},
                                   lambda b: {"image": torch.rand(b, 3, 224, 224), "clinical": torch.rand(b, 9)}, 8),
    "Zhen 2020 Inception-ResNet-V2": ("zhen_inception_resnet_v2", {"in_channels": 6, "num_classes": 7},
                                      lambda b: {"image": torch.rand(b, 6, 299, 299)}, 4),
}


def randomised(net):
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.3, 0.3)
                module.running_var.uniform_(0.5, 2.0)
    return net.eval()


def logits(out):
    return out["logits"] if isinstance(out, dict) else out


def fastest(net, inputs, calls, device):
    best = float("inf")
    for _ in range(calls):
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        net(**inputs)
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - started)
    return best


def measure(name, kwargs, make_inputs, batch, device, rounds, calls):
    from HCCAnalysisLib.engine.inference_layout import channels_last_inputs, prepare_for_inference
    from HCCAnalysisLib.nets import build_net

    torch.manual_seed(0)
    plain = randomised(build_net(name, **kwargs)).to(device)
    prepared = prepare_for_inference(copy.deepcopy(plain))
    inputs = {k: v.to(device) for k, v in make_inputs(batch).items()}
    fast_inputs = channels_last_inputs(inputs)
    with torch.inference_mode():
        diff = (torch.softmax(logits(plain(**inputs)).float(), 1)
                - torch.softmax(logits(prepared(**fast_inputs)).float(), 1)).abs().max().item()
        if diff > 1e-5:
            raise AssertionError(f"{name}: probabilities differ by {diff}")
        ratios, plain_best, fast_best = [], float("inf"), float("inf")
        for r in range(rounds):
            if r % 2 == 0:
                t_plain, t_fast = fastest(plain, inputs, calls, device), fastest(prepared, fast_inputs, calls, device)
            else:
                t_fast, t_plain = fastest(prepared, fast_inputs, calls, device), fastest(plain, inputs, calls, device)
            ratios.append(t_plain / t_fast)
            plain_best, fast_best = min(plain_best, t_plain), min(fast_best, t_fast)
    return {"batch": batch, "plain": plain_best, "fast": fast_best, "ratio": statistics.median(ratios),
            "low": min(ratios), "high": max(ratios), "diff": diff}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=pathlib.Path, default=DEFAULT_OUT)
    parser.add_argument("--append", action="store_true", help="add this device's table to an existing file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rounds, calls = (2, 1) if args.quick else (args.rounds, 3 if device.type == "cpu" else 10)
    started = time.perf_counter()
    rows = []
    for family, (name, kwargs, make_inputs, batch) in FAMILIES.items():
        rows.append((family, measure(name, kwargs, make_inputs, batch, device, rounds, calls)))
        print(family, rows[-1][1], flush=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    where = (torch.cuda.get_device_name(device) if device.type == "cuda" else
             f"CPU, {args.threads} torch thread(s), {platform.machine()}, {os.cpu_count()} cores, load average "
             f"{os.getloadavg()[0]:.2f}")
    lines = [] if args.append else [
        "# Inference layout per net family: batch norm folded + channels-last vs the plain eval net", "",
        "`benchmarks/bench_inference_layout.py`: each family's net at the paper's input size, seeded random weights "
        "with randomised batch-norm statistics, `torch.inference_mode`; plain eval net vs "
        "`engine.inference_layout.prepare_for_inference` (what `predict_case` and evaluation's test side use). "
        "Interleaved rounds; fastest call per round; speed-up = median of the per-round ratios (range). The "
        "probabilities of both are compared first (must agree within 1e-5).", "", NOTE, ""]
    lines += [f"## {where}", "", f"Run {now:%Y-%m-%d %H:%M} UTC; torch {torch.__version__}; {rounds} rounds x "
              f"{calls} calls.", "",
              "| family | batch | plain (ms/batch) | layout (ms/batch) | speed-up: median (range) | max abs. prob. diff. |",
              "|---|---:|---:|---:|---:|---:|"]
    for family, m in rows:
        lines.append(f"| {family} | {m['batch']} | {1000 * m['plain']:.1f} | {1000 * m['fast']:.1f} | "
                     f"{m['ratio']:.2f}x ({m['low']:.2f}-{m['high']:.2f}) | {m['diff']:.1e} |")
    lines += ["", f"_Benchmark wall time {time.perf_counter() - started:.0f} s._", ""]
    text = "\n".join(lines)
    if args.append and args.out.is_file():
        text = args.out.read_text().rstrip() + "\n\n" + text
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
