"""The markdown result file of `bench_case_analysis.py` (tables, notes, versions)."""

import datetime
import os
import platform
from collections import defaultdict

import numpy as np
import torch

from HCCAnalysisLib.tasks import TASKS

# Shared with the benchmark, which imports them from here.
TARGET_SECONDS = 3.0
STAGES = ("read", "grid", "normalise", "background ROIs", "crop+resize", "sample other", "network", "aggregate",
          "table")


def versions_line():
    import monai
    import SimpleITK as sitk
    import vtk

    return (f"Run {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC on a shared, loaded machine "
            f"({os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; other engineers' tests were running): "
            f"absolute times are indicative only (an idle machine is faster), ratios between variants are "
            f"measured side by side. {torch.get_num_threads()} torch threads, OMP_WAIT_POLICY="
            f"{os.environ.get('OMP_WAIT_POLICY', 'unset')}; Python {platform.python_version()}, torch "
            f"{torch.__version__}, MONAI {monai.__version__}, NumPy {np.__version__}, SimpleITK "
            f"{sitk.Version_VersionString()}, VTK {vtk.vtkVersion.GetVTKVersion()} (slicer-core); "
            f"{platform.machine()}.")


def ms(seconds):
    return f"{seconds * 1000:.0f}"


def markdown(res):
    lines = ["## Whole-case analysis: phases + mask -> every applicable task -> MRML table", "", versions_line(), ""]
    tasks = sorted({t for ts in res["applicable"].values() for t in ts})
    lines.append(f"Tasks in `TASKS` at run time: {', '.join(TASKS)}. Applicable to the demo cases (one phase, "
                 f"`image`; chosen by `panel_model.applicable_tasks`): **{', '.join(tasks) or 'none'}**. "
                 f"Model packages trained once at start with `workflows.train_model(..., epochs=1)` "
                 f"({res['train_seconds']:.0f} s for all).")
    if res["filled"]:
        lines.append(f"Placeholder labels (timing only) were filled into the missing cases.csv column(s) "
                     f"{', '.join(res['filled'])}.")
    reasons = defaultdict(list)
    for name, why in res["skipped"].items():
        reasons[why].append(name)
    for why, names in reasons.items():
        lines.append(f"Not applicable / skipped ({len(names)}): {', '.join(names)}: {why}.")
    lines += ["", f"Median of {res['rounds']} rounds per case (cases interleaved, order alternating); milliseconds. "
              "`whole` is the library path end to end (`load_case` + `predict_case` per task + "
              "`prediction_to_table`), timed separately from the staged run; `sum` is the staged run's total.", ""]
    header = "| case | grid (x,y,z) | lesions | samples per task | " + " | ".join(STAGES) + \
        " | sum | whole | target | verdict |"
    lines += [header, "|" + "---|" * 4 + "---:|" * (len(STAGES) + 3) + "---|"]
    for cid, _ in res["cases"]:
        st, info = res["stages"][cid], res["info"][cid]
        total, whole = sum(st.values()), res["whole"][cid]
        verdict = "meets" if whole <= TARGET_SECONDS else "MISSES"
        samples = ", ".join(str(v) for v in info["samples"].values())
        lines.append(f"| {cid} | {info['size']} | {info['lesions']} | {samples} | "
                     + " | ".join(ms(st[s]) for s in STAGES)
                     + f" | {ms(total)} | **{ms(whole)}** | <= {TARGET_SECONDS * 1000:.0f} | {verdict} |")
    slowest = max(res["whole"].values())
    lines += ["", f"Slowest case: {slowest:.2f} s against the {TARGET_SECONDS:.0f} s target "
              f"({'met' if slowest <= TARGET_SECONDS else 'MISSED'}).", "",
              "One-off costs, not per case: "
              f"library import {res['import_seconds']:.1f} s, `import slicer` {res['slicer_seconds']:.1f} s, "
              "model load (`models.load_model`, SHA-256 checked) "
              + ", ".join(f"{t} {s * 1000:.0f} ms" for t, s in res["load_seconds"].items()) + ".", ""]
    lines += ["### Candidate speed-up still open (monkeypatched here, not applied to the library)", "",
              f"All {len(res['cases'])} cases through the library path per variant; {res['variant_rounds']} rounds; "
              "within a round every variant runs each case back to back (order rotated per case and round); "
              "speed-up = median over rounds of baseline time / variant time. Probabilities are checked against "
              "the baseline's.", "",
              "| variant | median time, all cases (ms) | speed-up vs baseline | max abs. probability difference |",
              "|---|---:|---:|---:|"]
    for name, v in res["variants"].items():
        lines.append(f"| {name} | {ms(v['median'])} | {v['ratio']:.3f}x | {res['variant_diff'][name]:.1e} |")
    lines += ["", "What the variant changes: B, `samples.fused_volumes`: keep the normalised volumes in the "
              "case's cache (`case._grid_cache`, keyed by the phase tuple) so a second jia2019 task on the same "
              "case reuses them; each task normalises every phase again today. Identical output. (Variants A, "
              "C/E and D measured earlier are in the library now: see benchmarks/case_analysis_variants.py.)", ""]
    total, by_self, by_cum = res["profile"]
    lines += ["", "### Profile (cProfile, all cases once through the library path, after warm-up)", "",
              f"Total {total:.2f} s (with cProfile's own overhead).", "",
              "Top functions by own time:", "", "| own s | cumulative s | calls | function |", "|---:|---:|---:|---|"]
    for tt, ct, nc, name in by_self:
        lines.append(f"| {tt:.3f} | {ct:.3f} | {nc} | `{name}` |")
    lines += ["", "Top library functions by cumulative time:", "", "| cumulative s | own s | calls | function |",
              "|---:|---:|---:|---|"]
    library = [r for r in by_cum if r[3].startswith(("HCCAnalysisLib", "benchmarks"))][:15]
    for tt, ct, nc, name in library:
        lines.append(f"| {ct:.3f} | {tt:.3f} | {nc} | `{name}` |")
    return "\n".join(lines) + "\n"


THREADS = 2
