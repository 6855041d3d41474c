"""A panel job on disk: the Case read from MRML nodes, written to a job folder for the child process.

The panel reads the chosen nodes into a Case on the GUI thread (`jobs.prepare_job`), then
`write_job_folder` stores it, and `read_job_folder` gives the child (`hcc run-job`) the very
same Case back. Images are stored as their raw arrays (.npy) with the geometry in JSON
(origin, spacing, direction as exact float reprs), not through an image writer whose text
header may round the direction: the out-of-process result must equal the in-process one.

    job.json                  {"format": 1, "jobs": [{task, model_dir, device, saliency,
                              allow_unusual_input (absent in older files: false), case}]}
    job<i>/<name>.npy         the arrays of job i's case (phases, segmentation, lesions, liver)
    events.jsonl              the child's progress lines (job_protocol)
    results/job<i>/           what the child computed (job_command)
"""

from __future__ import annotations

from typing import Any

import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from HCCAnalysisLib.atomic import atomic_path, write_text_atomic
from HCCAnalysisLib.data.case import Case, Lesion
from HCCAnalysisLib.data.microscopy_case import MicroscopyCase
from HCCAnalysisLib.errors import HCCInputError
from HCCAnalysisLib.panel.jobs import Job

FORMAT = 1
JOB_FILE = "job.json"


def _save_array(array: np.ndarray, path: Path) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, np.ascontiguousarray(array), allow_pickle=False)


def _save_image(image: sitk.Image, folder: Path, name: str) -> dict[str, Any]:
    _save_array(sitk.GetArrayFromImage(image), folder / f"{name}.npy")
    return {"file": f"{name}.npy", "origin": list(image.GetOrigin()), "spacing": list(image.GetSpacing()),
            "direction": list(image.GetDirection()), "vector": image.GetNumberOfComponentsPerPixel() > 1}


def _load_image(folder: Path, info: dict[str, Any]) -> sitk.Image:
    image = sitk.GetImageFromArray(np.load(folder / info["file"], allow_pickle=False), isVector=info["vector"])
    image.SetOrigin(info["origin"])
    image.SetSpacing(info["spacing"])
    image.SetDirection(info["direction"])
    return image


def _case_to_dict(case: Case | MicroscopyCase, folder: Path) -> dict[str, Any]:
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(case, MicroscopyCase):
        _save_array(case.image, folder / "microscopy.npy")
        return {"kind": "microscopy", "case_id": case.case_id, "patient_id": case.patient_id,
                "fields": dict(case.fields), "source": case.source}
    phases = [[name, _save_image(image, folder, f"phase{k}")] for k, (name, image) in enumerate(case.images.items())]
    lesions = [{"lesion_id": x.lesion_id, "name": x.name, "mask": _save_image(x.mask, folder, f"lesion{k}")}
               for k, x in enumerate(case.lesions)]
    return {"kind": "case", "case_id": case.case_id, "patient_id": case.patient_id, "phases": phases,
            "segmentation": _save_image(case.segmentation, folder, "segmentation"), "lesions": lesions,
            "liver": None if case.liver_mask is None else _save_image(case.liver_mask, folder, "liver"),
            "labels": dict(case.labels), "clinical": dict(case.clinical), "source": case.source}


def _case_from_dict(data: dict[str, Any], folder: Path) -> Case | MicroscopyCase:
    if data["kind"] == "microscopy":
        image = np.load(folder / "microscopy.npy", allow_pickle=False)
        return MicroscopyCase(data["case_id"], data["patient_id"], image, dict(data["fields"]), data["source"])
    images = {name: _load_image(folder, info) for name, info in data["phases"]}
    lesions = [Lesion(x["lesion_id"], x["name"], _load_image(folder, x["mask"])) for x in data["lesions"]]
    liver = None if data["liver"] is None else _load_image(folder, data["liver"])
    return Case(data["case_id"], data["patient_id"], images, _load_image(folder, data["segmentation"]), lesions,
                liver, labels=dict(data["labels"]), clinical=dict(data["clinical"]), source=data["source"])


def write_job_folder(jobs: list[Job], folder: str | Path) -> Path:
    """Store `jobs` (their cases and options) in `folder` for `hcc run-job --job folder`."""
    folder = Path(folder)
    entries = []
    for index, job in enumerate(jobs):
        entries.append({"task": job.task, "model_dir": str(job.model_dir), "device": job.device,
                        "saliency": bool(job.saliency), "allow_unusual_input": bool(job.allow_unusual_input),
                        "case": _case_to_dict(job.case, folder / f"job{index}")})
    write_text_atomic(folder / JOB_FILE, json.dumps({"format": FORMAT, "jobs": entries}, indent=1))
    return folder


def read_job_folder(folder: str | Path) -> list[Job]:
    """The jobs stored by `write_job_folder`, with cases equal to the ones written."""
    folder = Path(folder)
    try:
        data = json.loads((folder / JOB_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise HCCInputError(f"is not a job folder ({err})", folder, "the panel writes it for `hcc run-job`") from err
    if data.get("format") != FORMAT:
        raise HCCInputError(f"has job format {data.get('format')!r}, this library reads {FORMAT}", folder)
    return [Job(e["task"], _case_from_dict(e["case"], folder / f"job{i}"), e["model_dir"], e["device"],
                saliency=bool(e["saliency"]), allow_unusual_input=bool(e.get("allow_unusual_input", False)))
            for i, e in enumerate(data["jobs"])]
