"""Apply's out-of-process path outside Slicer: the real `hcc run-job` in a real child process,
on a job folder written from real slicer-core nodes, its line protocol, and the results
loaded back as nodes (all or nothing). The case is the module's packaged self-test case."""

import json
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from HCCAnalysisLib.errors import HCCInputError
from HCCAnalysisLib.models import registry
from HCCAnalysisLib.panel import jobs as panel_jobs
from HCCAnalysisLib.panel.job_files import read_job_folder, write_job_folder
from HCCAnalysisLib.panel.job_protocol import EVENTS_FILE, LineReader, encode_event, parse_line
from HCCAnalysisLib.panel.process_run import ProcessRun, child_command, start_job_run
from HCCAnalysisLib.panel.results import jobs_table, load_run_results, tables_match
from HCCAnalysisLib.tasks import TASKS

ROOT = Path(__file__).resolve().parents[2]
CASE = ROOT / "HCCAnalysis" / "Resources" / "TestData" / "lung1-crop"
JIA = "jia2019-hcc-vs-background"
LIANG = "liang2018-resgl-bdlstm-small"  # the label-map task, at its small size


@pytest.fixture
def case_nodes(slicer_app):
    from HCCAnalysisLib.slicer_io.files import load_case_into_scene

    volumes, segmentation = load_case_into_scene(slicer_app.scene, CASE, ["image"])
    return slicer_app.scene, volumes["image"], segmentation


def _job(tmp_path, scene_nodes, task, phases, **options):
    _, image, segmentation = scene_nodes
    model = registry.untrained_package(tmp_path / task, task, phases)
    return panel_jobs.prepare_job(task, {p: image for p in phases}, segmentation, None, str(model), "cpu",
                                  case_id="lung1-crop", **options)


def _node_count(scene):
    return scene.GetNumberOfNodes()


def _gone(pid):
    """True when no process of the child's process group (its session) is left."""
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_line_protocol_takes_complete_lines_and_sets_garbage_aside(tmp_path):
    reader = LineReader(tmp_path / EVENTS_FILE)
    assert reader.read_new() == []  # the child has not written yet
    started, result = encode_event("started", index=0, label="t", total=1), encode_event("result", index=0, files={})
    assert reader.feed(started[:10].encode()) == []  # half a line waits for its end
    events = reader.feed(started[10:].encode() + b"not json\n[1, 2]\n" + b'{"event": "nope"}\n{"event": "error", '
                         b'"index": "x"}\n\n' + result.encode() + b'{"event": "finished"')
    assert [(e.kind, e.index, e.label) for e in events] == [("started", 0, "t"), ("result", 0, "")]
    assert reader.garbage == ["not json", "[1, 2]", '{"event": "nope"}', '{"event": "error", "index": "x"}']
    assert [e.kind for e in reader.feed(b"}\n")] == ["finished"]
    assert parse_line(encode_event("progress", index=1, fraction=0.5, message="m")).value == (0.5, "m")
    with pytest.raises(ValueError):
        encode_event("result", index=0, value=float("nan"))  # strict JSON only
    with pytest.raises(ValueError):
        encode_event("done")
    path = tmp_path / EVENTS_FILE  # the file as it grows
    path.write_bytes(started.encode() + result.encode()[:5])
    assert [e.kind for e in reader.read_new()] == ["started"]
    with open(path, "ab") as handle:
        handle.write(result.encode()[5:])
    assert [e.kind for e in reader.read_new()] == ["result"] and reader.read_new() == []
    run = ProcessRun(tmp_path, ["t"])  # not started: polls what the file holds
    assert [(e.kind, e.index) for e in run.poll()] == [("started", 0), ("result", 0)] and run.results == {0: {}}
    with open(path, "ab") as handle:  # a job the run does not have is set aside, not an IndexError in the GUI
        handle.write((encode_event("progress", index=3, fraction=0.5) + encode_event("error", index=-1, message="m")
                      + encode_event("finished", done=0, failed=1)).encode())
    assert [(e.kind, e.index) for e in run.poll()] == [("error", -1), ("finished", -1)] and run.finished
    assert run._reader.garbage[-1] == "progress for job 3 of 1" and run.errors == {-1: "m"}


def test_job_folder_gives_back_the_same_cases(case_nodes, tmp_path):
    from HCCAnalysisLib.data.microscopy_case import MicroscopyCase

    job = _job(tmp_path, case_nodes, JIA, ["image"])
    rgb = panel_jobs.Job("meng2019-metastasis", MicroscopyCase("m", "p", np.arange(24, dtype=np.uint8).reshape(2, 4, 3),
                                                               {"grade": "high"}, "node"), "/m", "cpu")
    [back, back_rgb] = read_job_folder(write_job_folder([job, rgb], tmp_path / "job"))
    a, b = job.case, back.case
    assert (b.case_id, b.patient_id, b.labels, b.clinical, b.source) == (a.case_id, a.patient_id, a.labels, a.clinical,
                                                                         a.source)
    pairs = [(a.images["image"], b.images["image"]), (a.segmentation, b.segmentation)]
    pairs += [(x.mask, y.mask) for x, y in zip(a.lesions, b.lesions)] + [(a.liver_mask, b.liver_mask)]
    assert [x.lesion_id for x in b.lesions] == [x.lesion_id for x in a.lesions]
    for x, y in pairs:
        assert np.array_equal(sitk.GetArrayFromImage(x), sitk.GetArrayFromImage(y))
        assert (x.GetOrigin(), x.GetSpacing(), x.GetDirection()) == (y.GetOrigin(), y.GetSpacing(), y.GetDirection())
        assert x.GetPixelID() == y.GetPixelID()
    assert np.array_equal(back_rgb.case.image, rgb.case.image) and back_rgb.case.fields == {"grade": "high"}
    with pytest.raises(HCCInputError, match="not a job folder"):
        read_job_folder(tmp_path)


def test_out_of_process_run_gives_the_in_process_table(case_nodes, tmp_path, one_torch_thread):
    """Run all's two jobs in one child: the same combined table as in this process, the Liang
    label map as a label map node; the protocol lines went to stdout and to the events file."""
    scene = case_nodes[0]
    jobs = [_job(tmp_path, case_nodes, JIA, ["image"]), _job(tmp_path, case_nodes, LIANG, ["NC", "ART", "PV"])]
    before = _node_count(scene)
    run = start_job_run(jobs, python=sys.executable)
    assert run.command[1:4] == ["-m", "HCCAnalysisLib.cli", "run-job"]
    events = run.wait(300)
    assert run.finished and not run.cancelled and run.errors == {}, (run.errors, run.stderr_tail())
    kinds = [e.kind for e in events]
    assert kinds[0] == "started" and kinds[-1] == "finished" and kinds.count("result") == 2 and "progress" in kinds
    assert run.progress_value() == 200 and run.summary() == "Finished: 2 of 2 step(s) done, 0 failed."
    assert (run.job_dir / "stdout.log").read_text() == (run.job_dir / EVENTS_FILE).read_text()
    assert Path(run.results[0]["table"]).read_text().startswith("case_id\t")
    assert _node_count(scene) == before  # nothing is added until the panel loads the results

    shown = load_run_results(run.results, jobs, scene)
    expected = jobs_table(jobs, [panel_jobs.run_job(job) for job in jobs], scene)  # the in-process table
    assert tables_match(shown.table, expected) and shown.table.GetNumberOfRows() == 3  # 2 Jia, 1 Liang
    sources = shown.table.GetTable().GetColumnByName("phase_sources")
    name = case_nodes[1].GetName()
    assert [sources.GetValue(r) for r in range(3)] == [f"image={name}"] * 2 + [f"NC={name}, ART={name}, PV={name}"]
    [labelmap] = shown.labelmaps
    assert labelmap.IsA("vtkMRMLLabelMapVolumeNode") and shown.saliency == []
    votes = labelmap.GetImageData().GetPointData().GetScalars()
    assert votes.GetRange()[1] >= 1  # patch centres drawn as class index + 1
    colours = scene.GetNodeByID(labelmap.GetDisplayNode().GetColorNodeID())
    assert colours.GetColorName(1) == TASKS[LIANG].classes[0]
    run.remove_folder()
    assert not run.job_dir.exists() and _gone(run.pid)


def test_results_load_all_or_nothing_with_a_saliency_volume(case_nodes, tmp_path):
    """A saliency file becomes a volume over the case; a missing file adds nothing at all."""
    from HCCAnalysisLib.data.prediction import PredictionRow
    from HCCAnalysisLib.panel.job_command import _jsonable, _write_nrrd

    scene = case_nodes[0]
    job = _job(tmp_path, case_nodes, JIA, ["image"])
    row = PredictionRow("c", "p", "1", "lesion 1", "lesion", "HCC", {"HCC": 0.75, "background": 0.25}, 3,
                        {"tsic": float("nan")})
    (tmp_path / "prediction.json").write_text(json.dumps(_jsonable(  # the layout the child writes (asdict)
        {"task": JIA, "model": "m", "classes": ["HCC", "background"], "rows": [row.__dict__]})))
    saliency = sitk.Cast(job.case.segmentation, sitk.sitkFloat32) / 2.0
    _write_nrrd(saliency, tmp_path / "saliency.nrrd")
    files = {"prediction": str(tmp_path / "prediction.json"), "saliency": str(tmp_path / "saliency.nrrd")}
    before = _node_count(scene)
    for broken in ({**files, "saliency": str(tmp_path / "absent.nrrd")}, {"saliency": files["saliency"]},
                   {**files, "prediction": str(tmp_path / "saliency.nrrd")}):
        with pytest.raises(HCCInputError):
            load_run_results({0: broken}, [job], scene)
        assert _node_count(scene) == before
    with pytest.raises(HCCInputError, match="no results"):
        load_run_results({}, [job], scene)
    shown = load_run_results({0: files}, [job], scene)
    [node] = shown.saliency
    from slicer.util import arrayFromVolume

    assert np.array_equal(arrayFromVolume(node), sitk.GetArrayFromImage(saliency))
    assert shown.table.GetNumberOfRows() == 1 and np.isnan(shown.table.GetTable().GetColumnByName("tsic").GetValue(0))


def test_cancel_kills_the_child_mid_run_and_adds_nothing(case_nodes, tmp_path):
    scene = case_nodes[0]
    job = _job(tmp_path, case_nodes, JIA, ["image"])
    before = _node_count(scene)
    run = start_job_run([job], python=sys.executable)
    deadline = time.monotonic() + 120
    while "started" not in [e.kind for e in run.poll()] and time.monotonic() < deadline:
        time.sleep(0.02)  # until the child has begun the job
    assert run.running(), run.stderr_tail()
    run.cancel()
    assert run.cancelled and run.finished and not run.running() and _gone(run.pid)
    assert run.results == {} and run.poll() == [] and _node_count(scene) == before
    assert run.summary().startswith("Cancelled")
    run.remove_folder()
    assert not run.job_dir.exists()


def test_failing_and_crashing_children_report_a_clear_message(case_nodes, tmp_path):
    """A damaged model package: the job's error line names it (found before torch loads); a
    child killed from outside: every unfinished job gets the exit status."""
    job = _job(tmp_path, case_nodes, JIA, ["image"])
    (Path(job.model_dir) / "model.safetensors").write_bytes(b"not a safetensors file")
    run = start_job_run([job], python=sys.executable)
    run.wait(120)
    assert run.finished and run.results == {} and "SHA-256" in run.errors[0]
    run.remove_folder()

    write_job_folder([job], tmp_path / "crash")
    run = ProcessRun(tmp_path / "crash", [job.task], python=sys.executable)
    run.command = [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"]
    run.start().wait(60)
    assert run.finished and not run.cancelled and f"status {-signal.SIGKILL}" in run.errors[0]
    assert child_command("J", "py") == ["py", "-m", "HCCAnalysisLib.cli", "run-job", "--job", "J"]
