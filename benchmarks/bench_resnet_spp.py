"""Inference throughput of our ResNet20+SPP against a straightforward reference version.

The reference is written here the way the seed authors' code does it: batch norm as
separate modules, option-A shortcuts as a lambda module, and an SPP layer that builds
nn.MaxPool2d modules on every call and grows the output with torch.cat in a loop.
Both nets hold the same weights (the bundled CIFAR-10 pretrained file when present)
and the logits are asserted equal before anything is timed.

    .venv/bin/python benchmarks/bench_resnet_spp.py [--quick] [--out benchmarks/results_resnet_spp.md]

Timing: 2 intra-op threads, batches of 1/16/64 images of 3x32x32. Each configuration
runs in paired rounds (reference and ours back to back, alternating which goes first),
each timing the fastest of repeated calls; the speed-up is the median of the per-round
ratios (with their range), so that load from other processes hits both alike.
"""

import argparse
import datetime
import math
import os
import pathlib
import platform
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from HCCAnalysisLib.nets.jia2019_weights import from_jia2019, load_jia2019_file  # noqa: E402
from HCCAnalysisLib.nets.resnet_spp import build_resnet20  # noqa: E402

WEIGHTS = ROOT / "HCCAnalysisLib" / "methods" / "jia2019" / "weights" / "cifar_resnet_32_dict_withSPP.pkl"


# ---------------- reference: the straightforward version ----------------
class LambdaModule(nn.Module):
    def __init__(self, function):
        super().__init__()
        self.function = function

    def forward(self, x):
        return self.function(x)


class RefBlock(nn.Module):
    def __init__(self, in_planes, planes, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = LambdaModule(
                lambda x: F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, planes // 4, planes // 4), "constant", 0))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += self.shortcut(x)
        return F.relu(out)


class RefSPP(nn.Module):
    """Builds a pooling module per level on every call; concatenates as it goes."""

    def __init__(self, levels):
        super().__init__()
        self.levels = levels

    def forward(self, x):
        batch, _, height, width = x.size()
        spp = None
        for level in self.levels:
            kh, kw = math.ceil(height / level), math.ceil(width / level)
            pool = nn.MaxPool2d((kh, kw), stride=(kh, kw), padding=((kh * level - height + 1) // 2,
                                                                    (kw * level - width + 1) // 2))
            out = pool(x).reshape(batch, -1)  # the authors use .view, which channels_last inputs reject
            spp = out if spp is None else torch.cat((spp, out), 1)
        return spp


class RefResNet20SPP(nn.Module):
    def __init__(self, in_channels, embedding_dim, num_classes, levels):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        in_planes, layers = 16, []
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            blocks = []
            for index in range(3):
                blocks.append(RefBlock(in_planes, planes, stride if index == 0 else 1))
                in_planes = planes
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = layers
        self.spp = RefSPP(levels)
        self.embedding = nn.Linear(64 * sum(level * level for level in levels), embedding_dim)
        self.classifier = nn.Linear(embedding_dim, num_classes, bias=False)

    def forward(self, image):
        out = F.relu(self.bn1(self.conv1(image)))
        out = self.layer3(self.layer2(self.layer1(out)))
        return self.classifier(self.embedding(self.spp(out)))


# ---------------- timing ----------------
def load_nets():
    """Our net and the reference with identical weights (pretrained when available)."""
    if WEIGHTS.is_file():
        ours = from_jia2019(load_jia2019_file(WEIGHTS))
        weights = f"`{WEIGHTS.relative_to(ROOT)}`"
    else:  # fresh clone without the sample data: random weights with non-trivial batch-norm statistics
        torch.manual_seed(0)
        ours = build_resnet20(num_classes=10, classifier_bias=False)
        for module in ours.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
        weights = "random (seed 0)"
    ref = RefResNet20SPP(ours.in_channels, ours.embedding.out_features, ours.classifier.out_features, ours.pyramid)
    ref.load_state_dict(ours.state_dict(), strict=True)
    return ours.eval(), ref.eval(), weights


def context(mode):
    return torch.inference_mode() if mode == "inference_mode" else torch.no_grad()


def time_call(function, x, mode, min_seconds):
    """Fastest single call (seconds) among calls repeated for `min_seconds` (at least 3).

    The minimum, not the mean: on a shared machine other processes only ever add time.
    """
    best = math.inf
    with context(mode):
        function(x)  # warm-up (also fills our folded-weight cache)
        calls, start = 0, time.perf_counter()
        while calls < 3 or time.perf_counter() - start < min_seconds:
            begin = time.perf_counter()
            function(x)
            best = min(best, time.perf_counter() - begin)
            calls += 1
    return best


def paired_rounds(functions, x, mode, rounds, min_seconds):
    """Time each function in every round, back to back, alternating who goes first.

    Returns {name: [fastest call (s) per round]}. Ratios taken within one round compare
    calls that ran under the same outside load.
    """
    times = {name: [] for name in functions}
    names = list(functions)
    for index in range(rounds):
        for name in (names if index % 2 == 0 else names[::-1]):
            times[name].append(time_call(functions[name], x, mode, min_seconds))
    return times


def ratio_summary(ref_times, our_times):
    """Median and range of the per-round speed-ups."""
    ratios = sorted(r / o for r, o in zip(ref_times, our_times))
    return statistics.median(ratios), ratios[0], ratios[-1]


def bench(ours, ref, batch, mode, layout, rounds, min_seconds):
    """Reference against ours on one batch."""
    torch.manual_seed(batch)
    x = torch.randn(batch, 3, 32, 32)
    if layout == "channels_last":  # both nets get the channels_last input
        x = x.contiguous(memory_format=torch.channels_last)
    with context(mode):
        torch.testing.assert_close(ours(image=x), ref(x), atol=1e-4, rtol=1e-4)  # identical logits
    times = paired_rounds({"ref": ref, "ours": lambda t: ours(image=t)}, x, mode, rounds, min_seconds)
    median, low, high = ratio_summary(times["ref"], times["ours"])
    return {"batch": batch, "mode": mode, "layout": layout, "ref_ips": batch / min(times["ref"]),
            "ours_ips": batch / min(times["ours"]), "ratio": median, "low": low, "high": high}


def stage_functions(ours, ref):
    """The optimisation steps one at a time (for the change log), each a callable on a batch.

    Step numbers as in results_resnet_spp.md: 1 functional SPP, 2 folded batch norm and
    in-place add, 3 cheap cache check, 4 channels_last. `folded_contiguous` re-runs our
    folded path with default-layout weights (copied once), i.e. the state before step 4;
    the other steps call the library as it is.
    """
    def unfolded(x):  # functional SPP, batch norm still as separate modules
        return ours.classifier(ours.embedding(ours._pool(ours._backbone(x))))

    contiguous = [(weight.contiguous(), bias) for weight, bias in ours._folded_weights()]

    def folded_contiguous(x):
        ours._folded_weights()  # the cache check ours pays on every call
        weights = iter(contiguous)
        weight, bias = next(weights)
        out = F.relu_(F.conv2d(x, weight, bias, 1, 1))
        for block in ours.blocks():
            weight, bias = next(weights)
            hidden = F.relu_(F.conv2d(out, weight, bias, block.stride, 1))
            weight, bias = next(weights)
            hidden = F.conv2d(hidden, weight, bias, 1, 1)
            if block.downsample:
                start = (hidden.shape[1] - out.shape[1]) // 2
                hidden[:, start:start + out.shape[1]] += out[:, :, ::2, ::2]
            else:
                hidden += out
            out = F.relu_(hidden)
        return ours.classifier(ours.embedding(ours._pool(out)))

    return {"reference": ref, "step 1": unfolded, "steps 1-3 (NCHW)": folded_contiguous,
            "steps 1-4 (= ours)": lambda x: ours(image=x)}


def bench_stages(ours, ref, batch, rounds, min_seconds):
    """Per step of stage_functions: fastest ms per batch and median per-round speed-up."""
    torch.manual_seed(batch)
    x = torch.randn(batch, 3, 32, 32)
    functions = stage_functions(ours, ref)
    with torch.no_grad():
        expected = ref(x)
        for name, function in functions.items():
            torch.testing.assert_close(function(x), expected, atol=1e-4, rtol=1e-4, msg=name)
    times = paired_rounds(functions, x, "no_grad", rounds, min_seconds)
    return {"batch": batch, "ms": {name: 1e3 * min(t) for name, t in times.items()},
            "ratio": {name: ratio_summary(times["reference"], t)[0] for name, t in times.items()}}


def markdown(rows, stage_rows, weights, threads):
    lines = [f"Run {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; torch {torch.__version__}; "
             f"{threads} threads; {platform.machine()}, {os.cpu_count()} cores; load average at the end "
             f"{os.getloadavg()[0]:.2f}; weights {weights}.", "",
             "| batch | grad mode | input layout | reference (img/s) | ours (img/s) | speed-up: median (range) |",
             "|---:|---|---|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| {row['batch']} | {row['mode']} | {row['layout']} | {row['ref_ips']:.0f} | "
                     f"{row['ours_ips']:.0f} | {row['ratio']:.2f}x ({row['low']:.2f}-{row['high']:.2f}) |")
    names = list(stage_rows[0]["ms"])
    lines += ["", "Step by step (no_grad, contiguous input): fastest ms per batch (median speed-up over the "
              "reference).", "",
              "| batch | " + " | ".join(names) + " |", "|---:|" + "---:|" * len(names)]
    for row in stage_rows:
        lines.append(f"| {row['batch']} | " + " | ".join(
            f"{row['ms'][name]:.2f} ({row['ratio'][name]:.2f}x)" for name in names) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer and shorter rounds (smoke test)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=pathlib.Path, default=None,
                        help="write the tables into this markdown file, between the BENCH markers")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    ours, ref, weights = load_nets()
    rounds, min_seconds = (2, 0.03) if args.quick else (7, 0.2)
    rows = []
    for batch in (1, 16, 64):
        for mode, layout in (("no_grad", "contiguous"), ("inference_mode", "contiguous"),
                             ("inference_mode", "channels_last")):
            rows.append(bench(ours, ref, batch, mode, layout, rounds, min_seconds))
            print(f"batch {batch:3d} {mode:15s} {layout:13s} ratio {rows[-1]['ratio']:.2f}x", flush=True)
    stage_rows = [bench_stages(ours, ref, batch, rounds, min_seconds) for batch in (1, 16, 64)]
    table = markdown(rows, stage_rows, weights, args.threads)
    print(table)
    if args.out:
        write_between_markers(args.out, table)
    return rows, stage_rows


def write_between_markers(path, table):
    """Replace the text between <!-- BENCH START --> and <!-- BENCH END --> (keeps the notes)."""
    start, end = "<!-- BENCH START -->", "<!-- BENCH END -->"
    text = path.read_text() if path.is_file() else f"{start}\n{end}\n"
    if start not in text or end not in text:
        text += f"\n{start}\n{end}\n"
    before, rest = text.split(start, 1)
    after = rest.split(end, 1)[1]
    path.write_text(f"{before}{start}\n{table}{end}{after}")


if __name__ == "__main__":
    main()
