"""`hcc run-job --job JOB_DIR`: the child process the Slicer panel starts for Apply and Run all.

It reads the jobs the panel stored (`job_files`), runs each (model, prediction, saliency
volume, Liang label map) and writes the results under `JOB_DIR/results/job<i>/`, reporting
progress and result file paths as protocol lines (`job_protocol`). One failing job is an
"error" line and the next job still runs. Exit status: 0 all done, 3 some job failed,
2 the job folder itself is unreadable. The panel kills this process to cancel: every result
file is written atomically, so a kill never leaves half a file that the panel would read.
"""

from __future__ import annotations

from typing import Any, Callable

import argparse
import functools
import json
import math
from dataclasses import asdict
from pathlib import Path

from HCCAnalysisLib.atomic import atomic_path, write_text_atomic
from HCCAnalysisLib.errors import HCCInputError
from HCCAnalysisLib.panel.job_protocol import EVENTS_FILE, EventWriter

RESULTS = "results"


def add_job_parser(subparsers: argparse._SubParsersAction) -> None:
    job = subparsers.add_parser("run-job", help="run a job folder written by the Slicer panel (its child process)")
    job.add_argument("--job", required=True, help="the job folder (job.json and the case arrays)")
    job.set_defaults(func=_run_job_command)


def _run_job_command(args: argparse.Namespace) -> int:
    return run_job_folder(args.job)


def _write_nrrd(image: Any, path: Path) -> None:
    import SimpleITK as sitk

    with atomic_path(path) as tmp:  # the temporary name has no .nrrd suffix: name the writer
        sitk.WriteImage(image, tmp, True, imageIO="NrrdImageIO")


def _jsonable(value: Any) -> Any:
    """Prediction values as strict JSON: NaN / inf become strings that `float()` reads back."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) or hasattr(value, "dtype"):
        number = float(value)
        return number if math.isfinite(number) else repr(number)
    return value


def _progress(writer: EventWriter, index: int, fraction: float, message: str) -> None:
    writer.write("progress", index=index, fraction=fraction, message=message)


def run_one(job: Any, out_dir: Path, progress: Callable[[float, str], None]) -> dict[str, str]:
    """Run one panel Job; returns its result files (table, prediction, saliency, labelmap)."""
    from HCCAnalysisLib.panel.jobs import load_cached_model, run_job
    from HCCAnalysisLib.tasks import get_task

    from HCCAnalysisLib.models.package import checked_weights
    from HCCAnalysisLib.models.registry import read_card

    progress(0.05, "checking the model package")
    checked_weights(job.model_dir, read_card(job.model_dir))  # a damaged package fails before torch loads
    progress(0.1, "loading the model")
    model, device = load_cached_model(job.model_dir, job.device)
    progress(0.3, f"predicting on {device}")
    prediction = run_job(job)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"table": str(out_dir / "prediction.tsv"), "prediction": str(out_dir / "prediction.json")}
    prediction.write_tsv(files["table"])
    write_text_atomic(files["prediction"], json.dumps(_jsonable(asdict(prediction))))
    if job.saliency_image is not None:
        files["saliency"] = str(out_dir / "saliency.nrrd")
        _write_nrrd(job.saliency_image, Path(files["saliency"]))
    if get_task(job.task).label_map:
        from HCCAnalysisLib.methods.liang2018.label_map_output import label_map_image, lesion_votes

        progress(0.8, "drawing the patch-vote label map")
        files["labelmap"] = str(out_dir / "labelmap.nrrd")
        _write_nrrd(label_map_image(job.case, lesion_votes(model, job.case, device=device)), Path(files["labelmap"]))
    return files


def run_job_folder(folder: str | Path, stream: Any = None) -> int:
    """Run every job of a job folder, writing protocol lines to `stream` (stdout) and events.jsonl."""
    from HCCAnalysisLib.panel.job_files import read_job_folder

    folder = Path(folder)
    writer = EventWriter(folder / EVENTS_FILE, stream)
    try:
        jobs = read_job_folder(folder)
    except HCCInputError as err:
        writer.write("error", index=-1, message=str(err))
        writer.write("finished", done=0, failed=1)
        return 2
    done = 0
    for index, job in enumerate(jobs):
        writer.write("started", index=index, label=job.task, total=len(jobs))

        try:
            files = run_one(job, folder / RESULTS / f"job{index}", functools.partial(_progress, writer, index))
        except HCCInputError as err:
            writer.write("error", index=index, label=job.task, message=str(err))
            continue
        except Exception as err:  # noqa: BLE001 (one job's failure must not lose the others' results)
            writer.write("error", index=index, label=job.task, message=f"{type(err).__name__}: {err}")
            continue
        done += 1
        writer.write("result", index=index, label=job.task, files=files)
    writer.write("finished", done=done, failed=len(jobs) - done)
    return 0 if done == len(jobs) else 3
