"""Liang 2018 (ResGL-BDLSTM, paper sizes): the global pathway once per ROI vs once per patch.

    .venv/bin/python benchmarks/bench_liang_global.py [--quick] [--out benchmarks/results_liang_global.md]

Data: the Liang stand-in cohort (benchmarks/liang_standin.py: each bundled case's real
image as NC, resampled copies as ART / PV). Net: task `liang2018-resgl-bdlstm` (64 x 64
patches, 128 x 128 ROIs, 19-conv pathways) with seeded random weights (a real model
package, `untrained_package`; weight values do not change the timing).

1. Prediction of one case (sampling + network + aggregation, i.e. `predict_case`'s work),
   variants side by side in interleaved rounds: the per-patch global pathway (each patch's
   sample holding its ROI array, as before), once per ROI (`SharedInput` + index), and once
   per ROI with the inference layout (batch norm folded, channels-last), each at batch 256
   (the old default) and at the net's `inference_batch_size`; plus the library's own
   `predict_case` (= the last variant). Probabilities are compared with the per-patch ones.
2. Inference batch-size sweep of the once-per-ROI + layout path.
3. Training: one step on patches of several lesions, per-patch vs shared ROI (same loss,
   gradients, batch-norm statistics), and the peak RSS of `train.fit` (fresh process each,
   `ru_maxrss`) for both at the given batch sizes.
"""

import argparse
import copy
import dataclasses
import datetime
import json
import os
import pathlib
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
import numpy as np  # noqa: E402
import torch  # noqa: E402

from liang_standin import make_cohort  # noqa: E402

TASK = "liang2018-resgl-bdlstm"
DEFAULT_OUT = ROOT / "benchmarks" / "results_liang_global.md"


def per_patch(samples):
    """Today's layout before this change: each sample holds its ROI as a plain array."""
    from HCCAnalysisLib.engine.shared_inputs import SharedInput

    return [dataclasses.replace(s, inputs={k: (v.array if isinstance(v, SharedInput) else v)
                                           for k, v in s.inputs.items()}) for s in samples]


def peak_rss_mib(reset=False):
    """This process's peak RSS (VmHWM); `reset` starts a new peak from the current RSS (Linux
    /proc/self/clear_refs), so that reading the cases does not hide what training adds."""
    if reset:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    with open("/proc/self/status") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith("VmHWM")) / 1024.0


# ---------------- child: training peak memory ----------------
def train_child(cohort, mode, batch, steps, threads):
    torch.set_num_threads(threads)
    from HCCAnalysisLib.data.cohort import load_cohort
    from HCCAnalysisLib.engine.evaluate import load_samples
    from HCCAnalysisLib.engine.train import fit
    from HCCAnalysisLib.tasks import get_task

    task = get_task(TASK)
    by_case = load_samples(task, load_cohort(cohort), task.phases, 0, log=lambda *a: None)
    samples = [s for case in by_case.values() for s in case]
    order = np.random.default_rng(0).permutation(len(samples))[:batch * steps]
    samples = [samples[i] for i in order]
    if mode == "per-patch":
        samples = per_patch(samples)
    unique = len({(s.case_id, s.lesion_id) for s in samples[:batch]})
    before = peak_rss_mib(reset=True)
    started = time.perf_counter()
    fit(task, samples, torch.device("cpu"), seed=0, epochs=1, batch_size=batch, log=lambda *a: None)
    seconds = time.perf_counter() - started
    print(json.dumps({"mode": mode, "batch": batch, "samples": len(samples), "before": before,
                      "peak": peak_rss_mib(), "seconds": seconds, "lesions": unique,
                      "ru_maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}))


def run_train_child(cohort, mode, batch, steps, threads):
    env = dict(os.environ, OMP_WAIT_POLICY=os.environ.get("OMP_WAIT_POLICY", "PASSIVE"))
    proc = subprocess.run([sys.executable, __file__, "--train-child", str(cohort), mode, str(batch), str(steps),
                           str(threads)], capture_output=True, text=True, env=env, timeout=1200)
    if proc.returncode != 0:
        raise RuntimeError(f"training child failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------- parent ----------------
def timed(function):
    started = time.perf_counter()
    value = function()
    return time.perf_counter() - started, value


def predict_variants(model, case, fresh_net, prepared_net, batch_sizes):
    """name -> callable giving the probabilities of `case` (sampling + network + aggregation)."""
    from HCCAnalysisLib.engine.infer import aggregate, make_samples, predict_case, run_net

    classes = list(model.card["classes"])

    def variant(net, batch, old_layout):
        def run():
            samples = make_samples(model.task, case, model.card["phases"], seed=0)
            if old_layout:
                samples = per_patch(samples)
            rows = aggregate(samples, run_net(net, samples, "cpu", batch_size=batch), classes, votes=True)
            return lesion_probabilities(rows, classes)
        return run

    out = {}
    for batch in batch_sizes:
        out[f"per-patch ROI, batch {batch}"] = variant(fresh_net, batch, True)
    for batch in batch_sizes:
        out[f"once per ROI, batch {batch}"] = variant(fresh_net, batch, False)
    for batch in batch_sizes:
        out[f"once per ROI + folded BN + channels-last, batch {batch}"] = variant(prepared_net, batch, False)

    def library():  # the library path as it stands (prepares model.net in place on its first call)
        return lesion_probabilities(predict_case(model, case).rows, classes)
    return out, library


def lesion_probabilities(rows, classes):
    """Lesions x classes: what `hcc predict` writes."""
    return np.array([[row.probabilities[c] for c in classes] for row in rows])


def training_step_check(task, samples):
    """One fit-like step, shared vs per-patch ROI, in float64 (differences = the maths) and float32
    (each path's rounding against the float64 per-patch step): max differences."""
    from HCCAnalysisLib.engine.batches import stack_inputs
    from HCCAnalysisLib.engine.train import build_task_net
    from HCCAnalysisLib.losses import build_loss

    torch.manual_seed(0)
    net = build_task_net(task)
    target = torch.tensor([s.target for s in samples])

    def step(batch, dtype):
        trial = copy.deepcopy(net).train().to(dtype)
        inputs = {k: v.to(dtype) if v.is_floating_point() else v for k, v in stack_inputs(batch).items()}
        loss = build_loss(task.loss, **task.loss_kwargs)(trial(**inputs), target)
        loss.backward()
        return (loss.item(), [p.grad.double() for p in trial.parameters()],
                [b.double() for b in trial.buffers()])

    def differences(one, two):
        return (abs(one[0] - two[0]), max((a - b).abs().max().item() for a, b in zip(one[1], two[1])),
                max((a - b).abs().max().item() for a, b in zip(one[2], two[2])))

    exact = step(per_patch(samples), torch.float64)
    return {"float64": differences(step(samples, torch.float64), exact),
            "float32 shared": differences(step(samples, torch.float32), exact),
            "float32 per-patch": differences(step(per_patch(samples), torch.float32), exact),
            "loss_value": exact[0], "grad_scale": max(a.abs().max().item() for a in exact[1])}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=pathlib.Path, default=DEFAULT_OUT)
    parser.add_argument("--case", default="breast1")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--slow-rounds", type=int, default=1, help="rounds of the (slow) per-patch variants")
    parser.add_argument("--train-batches", default="20,100:shared",
                        help="training batch sizes for peak RSS, comma-separated; B:shared or B:per-patch for one mode")
    parser.add_argument("--train-child", nargs=5, metavar=("COHORT", "MODE", "BATCH", "STEPS", "THREADS"))
    args = parser.parse_args(argv)
    if args.train_child:
        cohort, mode, batch, steps, threads = args.train_child
        return train_child(cohort, mode, int(batch), int(steps), int(threads))
    torch.set_num_threads(args.threads)
    from HCCAnalysisLib.data.cohort import load_cohort
    from HCCAnalysisLib.engine.inference_layout import prepare_for_inference
    from HCCAnalysisLib.engine.infer import make_samples
    from HCCAnalysisLib.models.package import load_model
    from HCCAnalysisLib.models.registry import untrained_package
    from HCCAnalysisLib.tasks import get_task

    started = time.perf_counter()
    rounds = 1 if args.quick else args.rounds
    task = get_task(TASK)
    with tempfile.TemporaryDirectory(prefix="bench_liang_") as scratch:
        scratch = pathlib.Path(scratch)
        cohort = make_cohort(scratch / "cohort", ("lung1", "lung2", "brain1", "breast1", args.case)
                             if args.case not in ("lung1", "lung2", "brain1", "breast1") else
                             ("lung1", "lung2", "brain1", "breast1"))
        records = {r.case_id: r for r in load_cohort(cohort).records}
        model = load_model(untrained_package(scratch / "pkg", TASK, list(task.phases)))
        case = records[args.case].load(task.phases, task)
        n_patches = len(make_samples(task, case, task.phases))
        fresh = copy.deepcopy(model.net).eval()
        prepared = prepare_for_inference(copy.deepcopy(model.net))
        own_batch = fresh.inference_batch_size
        variants, library = predict_variants(model, case, fresh, prepared, (256, own_batch))
        times = {name: [] for name in variants}
        times["library `predict_case`"] = []
        probs = {}
        slow = [n for n in variants if n.startswith("per-patch")]
        for r in range(rounds):
            names = list(variants) if r % 2 == 0 else list(variants)[::-1]
            for name in names:
                if name in slow and r >= args.slow_rounds:  # tens of seconds each: fewer rounds
                    continue
                seconds, probs[name] = timed(variants[name])
                times[name].append(seconds)
            seconds, probs["library `predict_case`"] = timed(library)
            times["library `predict_case`"].append(seconds)
        reference = probs[slow[0]]
        base = statistics.median(times[slow[0]])
        predict_rows = [(name, statistics.median(t), base / statistics.median(t),
                         float(np.abs(probs[name] - reference).max()), len(t)) for name, t in times.items()]

        sweep = []
        samples = make_samples(task, case, task.phases)
        from HCCAnalysisLib.engine.infer import run_net
        for batch in (8, 16, 32, 64, 256):
            best = min(timed(lambda: run_net(prepared, samples, "cpu", batch_size=batch))[0] for _ in range(rounds))
            sweep.append((batch, best))

        lesions = load_samples_for_check(task, records)
        check = training_step_check(task, lesions)
        memory = []
        for entry in [b for b in args.train_batches.split(",") if b]:
            batch, _, only = entry.partition(":")
            for mode in ((only,) if only else ("per-patch", "shared")):
                memory.append(run_train_child(cohort, mode, int(batch), 2, args.threads))
    write_report(args, task, n_patches, predict_rows, sweep, check, memory, own_batch, time.perf_counter() - started)


def load_samples_for_check(task, records):
    """8 training patches of each of two lesions (of two cases), for the training-step check."""
    from HCCAnalysisLib.engine.infer import make_samples

    out = []
    for case_id in ("lung1", "breast1"):
        record = records[case_id]
        out += make_samples(task, record.load(task.phases, task), task.phases, training=True, fields=record.fields)[:8]
    return out


def write_report(args, task, n_patches, predict_rows, sweep, check, memory, own_batch, seconds):
    now = datetime.datetime.now(datetime.timezone.utc)
    lines = [
        "# Liang 2018: global pathway once per ROI, inference layout, batch size", "",
        f"Run {now:%Y-%m-%d %H:%M} UTC; `benchmarks/bench_liang_global.py`; task `{TASK}` (paper sizes), seeded "
        f"random weights; {args.threads} torch thread(s); torch {torch.__version__}; {platform.machine()}, "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at the end. Ratios are measured side by "
        "side in one run (interleaved rounds); absolute times depend on the machine's load.", "",
        f"## Prediction of case `{args.case}` ({n_patches} patches, pace 1)", "",
        "Sampling + network + aggregation per variant; median over rounds; speed-up against the first row "
        "(the per-patch global pathway at the old default batch of 256); max abs. difference of the lesion "
        "probabilities (`hcc predict`'s output) against it.", "",
        "| variant | rounds | median time (s) | speed-up | max abs. prob. difference |", "|---|---:|---:|---:|---:|"]
    for name, t, ratio, diff, n in predict_rows:
        lines.append(f"| {name} | {n} | {t:.2f} | {ratio:.1f}x | {diff:.1e} |")
    lines += ["", f"The net's `inference_batch_size` is {own_batch} (what `run_net` uses by default).", "",
              "## Batch-size sweep (once per ROI + layout, network only, fastest of the rounds)", "",
              "| batch | time (s) | patches/s |", "|---:|---:|---:|"]
    lines += [f"| {b} | {t:.2f} | {n_patches / t:.0f} |" for b, t in sweep]
    lines += ["", "## Training", "",
              "One training step (the task's inter + centre loss, loss "
              f"{check['loss_value']:.4f}, largest gradient {check['grad_scale']:.2f}) on 16 patches of two "
              "lesions; max abs. differences against the per-patch step in float64:", "",
              "| step | loss | gradients | batch-norm buffers |", "|---|---:|---:|---:|"]
    for name in ("float64", "float32 shared", "float32 per-patch"):
        label = {"float64": "shared ROI, float64 (the maths)", "float32 shared": "shared ROI, float32",
                 "float32 per-patch": "per-patch ROI, float32 (as before)"}[name]
        lines.append(f"| {label} | " + " | ".join(f"{v:.1e}" for v in check[name]) + " |")
    lines += ["", "Peak RSS of `train.fit` (fresh process each; 1 epoch over 2 batches of the stand-in cohort's "
              "training patches, drawn at random over all lesions; the peak is reset after the cases are read, "
              "so 'fit added' is the training's own memory; the first batch holds patches of the number of "
              "lesions shown):", "",
              "| batch | global ROI | lesions in batch 1 | RSS before fit (MiB) | peak during fit (MiB) | "
              "fit added (MiB) | process max RSS (MiB) | time (s) |", "|---:|---|---:|---:|---:|---:|---:|---:|"]
    for m in memory:
        lines.append(f"| {m['batch']} | {m['mode']} | {m['lesions']} | {m['before']:.0f} | {m['peak']:.0f} | "
                     f"{m['peak'] - m['before']:.0f} | {m['ru_maxrss']:.0f} | {m['seconds']:.1f} |")
    lines += ["", f"_Benchmark wall time {seconds:.0f} s._", ""]
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
