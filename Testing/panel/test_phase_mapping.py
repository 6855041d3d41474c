"""Which volume feeds which phase (panel/phase_mapping.py) on real slicer-core nodes: the name guess,
the "Phase names" line (parsed by the CLI's own --phase parser), and "Run all"'s plan, whose jobs
take the panel's choices first, then the line, then the guess, and which names each model left
out with the phase it lacks."""

import pytest

from HCCAnalysisLib.data.reading_options import parse_phase_map
from HCCAnalysisLib.errors import HCCInputError
from HCCAnalysisLib.models import registry
from HCCAnalysisLib.panel import phase_mapping
from HCCAnalysisLib.panel.choices import match_volumes

JIA = "jia2019-hcc-vs-background"
LIANG = "liang2018-resgl-bdlstm-small"  # reads NC, ART, PV


def test_guess_takes_whole_words_and_leaves_doubtful_names():
    names = ["CT", "venous", "DCE_S2", "DCE_S20", "602: AX T2 FSE", "DCE_S0"]
    assert match_volumes(["T2", "S0", "S2"], names) == {"T2": "602: AX T2 FSE", "S0": "DCE_S0", "S2": "DCE_S2"}
    assert match_volumes(["S2"], ["DCE_S20", "S2.5", "s2b"]) == {}  # S20, S2.5 and s2b are not S2
    assert match_volumes(["T2"], ["T2* map"]) == {}  # T2-star is another sequence
    assert match_volumes(["T2"], ["T2", "T2 fat-sat"]) == {"T2": "T2"}  # the exact name wins
    assert match_volumes(["T2"], ["case_T2", "T2 fat-sat"]) == {}  # two candidates: the user chooses
    assert match_volumes(["T2", "S0"], ["T2 S0 map", "case_T2"]) == {}  # one name, two phases: neither
    assert match_volumes(["image"], ["CT", "venous"]) == {}  # CT is not guessed as `image`


@pytest.fixture
def user_scene(slicer_app, sample_data, tmp_path, monkeypatch):
    """lung1's real image named "CT" (+ "venous" and "DCE_S0" copies), its segmentation, and
    the bundled demo model (reads `image`) installed in a models folder of this test."""
    from HCCAnalysisLib.slicer_io.files import load_case_into_scene

    monkeypatch.setenv("HCCANALYSIS_MODELS_DIR", str(tmp_path / "models"))
    [entry] = registry.downloadable_models(JIA)
    registry.download(entry)
    volumes, segmentation = load_case_into_scene(slicer_app.scene, sample_data / "demo-cohort" / "lung1", ["image"])
    nodes = {"CT": volumes["image"]}
    nodes["CT"].SetName("CT")
    for name in ("venous", "DCE_S0"):
        nodes[name] = slicer_app.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
        nodes[name].Copy(volumes["image"])
        nodes[name].SetName(name)
    slicer_app.scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "CT labels")  # never an image
    return slicer_app.scene, nodes, segmentation


def test_phase_names_line_is_the_cli_syntax_and_bad_lines_are_refused(user_scene):
    scene, nodes, _ = user_scene
    volumes = phase_mapping.scene_volumes(scene)
    assert [n.GetName() for n in volumes] == ["CT", "venous", "DCE_S0"]
    line = "CT=image; venous=pv"
    assert phase_mapping.mapped_volumes(line, volumes, ["image", "pv"]) == {"image": nodes["CT"], "pv": nodes["venous"]}
    assert parse_phase_map(line.split(";")) == (("CT", "image"), ("venous", "pv"))  # what --phase gives
    assert phase_mapping.mapped_volumes("  ", volumes, []) == {}
    for bad, why in [("CT=imag", "no model reads the phase 'imag'"), ("CT=image; venous=image", "two names"),
                     ("CT=image; CT=pv", "'CT' is mapped twice"), ("CT", "is not NAME=PHASE"),
                     ("CT labels=image", "no volume is named 'CT labels'")]:
        with pytest.raises(HCCInputError, match=why):
            phase_mapping.mapped_volumes(bad, volumes, ["image", "pv"])
    scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "venous")
    with pytest.raises(HCCInputError, match="2 volumes are named 'venous'"):
        phase_mapping.mapped_volumes("venous=pv", phase_mapping.scene_volumes(scene), ["pv"])
    assert phase_mapping.phase_names_reasons("CT=image", scene, JIA, ["image"]) == []
    [why] = phase_mapping.phase_names_reasons("CT=S9", scene, JIA)
    assert "no model reads the phase 'S9'" in why and "T2, S0, S2, image" in why  # the task's and the installed


def test_run_all_takes_choices_then_the_line_then_the_guess(user_scene, tmp_path):
    scene, nodes, segmentation = user_scene
    with pytest.raises(HCCInputError, match=f"{JIA} 0.2.0-demo: no volume for the phase image"):
        phase_mapping.plan_run_all(scene, {}, "", segmentation)
    plan = phase_mapping.plan_run_all(scene, {}, "CT=image", segmentation, device="cpu")
    [job] = plan.jobs
    assert job.phase_sources == {"image": "CT"} and plan.text() == f"{JIA} 0.2.0-demo: image=CT"
    plan = phase_mapping.plan_run_all(scene, {"image": nodes["venous"], "T2": nodes["CT"]}, "CT=image", segmentation)
    assert plan.jobs[0].phase_sources == {"image": "venous"}  # the panel's choice wins over the line
    nodes["DCE_S0"].SetName("image")
    assert phase_mapping.plan_run_all(scene, {}, "", segmentation).jobs[0].phase_sources == {"image": "image"}

    registry.import_package(registry.untrained_package(tmp_path / "liang", LIANG, ["NC", "ART", "PV"]))
    plan = phase_mapping.plan_run_all(scene, {}, "venous=PV", segmentation)
    assert [j.task for j in plan.jobs] == [JIA]
    assert plan.text().splitlines()[1] == (f"left out {LIANG} 0.0.1: no volume for the phase NC, ART (choose it in a "
                                           f"{LIANG} selector, or map one in Phase names: NAME=NC)")
    count = scene.GetNumberOfNodes()
    with pytest.raises(HCCInputError, match="no volume is named 'arterial'"):
        phase_mapping.plan_run_all(scene, {}, "arterial=ART", segmentation)
    assert scene.GetNumberOfNodes() == count
