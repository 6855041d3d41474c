"""Phase mapping in the panel, as a user meets it: volumes named the user's way ("CT", "venous",
"DCE_S2", "602: AX T2 FSE") and models reading `image` or T2, S0, S2. Selectors driven through
their own signals, the "Phase names" line (CT=image, parsed as the CLI's --phase), Apply and
Run all through the real out-of-process path, and the table saying which volume fed which phase.
"""

import pytest

from HCCAnalysisLib.errors import HCCInputError
from HCCAnalysisLib.models import registry as model_registry
from HCCAnalysisLib.slicer_io.files import load_case_into_scene
from test_module_widget import THREE_PHASE, _finish, _phase_selectors, _reasons

NAMES = ("venous", "DCE_S0", "DCE_S2", "DCE_S20", "602: AX T2 FSE")


def _user_scene(env, sample_data, names=NAMES):
    """lung1's real image as "CT", and copies of it under the user's other names."""
    volumes, segmentation = load_case_into_scene(env.scene, sample_data / "demo-cohort" / "lung1", ["image"])
    nodes = {"CT": volumes["image"]}
    nodes["CT"].SetName("CT")
    for name in names:
        node = env.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
        node.Copy(volumes["image"])
        node.SetName(name)
        node.SetAndObserveStorageNodeID(None)  # the copy shares no file: a saved scene need not read one
        nodes[name] = node
    return nodes, segmentation


def _demo_model():
    """The bundled pipeline-demo package (reads the phase `image`), installed as Download does."""
    [entry] = model_registry.downloadable_models(THREE_PHASE)
    return model_registry.download(entry)


def _choose_model(widget, path):
    combo = widget.ui.modelComboBox
    combo.currentIndex = [combo.itemData(i) for i in range(combo.count())].index(str(path))
    assert widget._parameterNode.model == str(path)


def test_selectors_guess_safely_and_keep_choices_per_phase(module_env, sample_data):
    """No silent wrong guess (S2 is not S20, CT is not `image`); any volume can be chosen for any
    phase; a changed model keeps the choices of phases with the same name; the choices and the
    Phase names line are in the parameter node and come back from a saved scene."""
    nodes, _ = _user_scene(module_env, sample_data)
    demo = _demo_model()
    three = model_registry.untrained_package(module_env.models_dir / THREE_PHASE / "0.0.1", THREE_PHASE,
                                             ["T2", "S0", "S2"])
    widget = module_env.make_widget()
    p = widget._parameterNode
    _choose_model(widget, three)
    selectors = _phase_selectors(module_env, widget)
    assert {ph: s.currentNode().GetName() for ph, s in selectors.items()} == {
        "T2": "602: AX T2 FSE", "S0": "DCE_S0", "S2": "DCE_S2"}  # whole words only: never DCE_S20
    selectors["S2"].setCurrentNode(nodes["DCE_S20"])  # the user knows better: any volume, any phase
    assert p.phaseVolumes["S2"] is nodes["DCE_S20"]

    _choose_model(widget, demo)
    [image] = _phase_selectors(module_env, widget).values()
    assert image.currentNode() is None and "choose the image volume" in _reasons(widget)  # CT is no `image`
    image.setCurrentNode(nodes["CT"])
    assert p.phaseVolumes["image"] is nodes["CT"] and _reasons(widget) == ""
    _choose_model(widget, three)  # back: the hand-made S2 choice, not a new guess
    assert _phase_selectors(module_env, widget)["S2"].currentNode() is nodes["DCE_S20"]
    _choose_model(widget, demo)
    assert _phase_selectors(module_env, widget)["image"].currentNode() is nodes["CT"]

    widget.ui.phaseNamesLineEdit.text = "venous=image"  # the line sets the selector of the phase it names
    assert p.phaseNames == "venous=image" and p.phaseVolumes["image"] is nodes["venous"]
    assert _phase_selectors(module_env, widget)["image"].currentNode() is nodes["venous"]
    _phase_selectors(module_env, widget)["image"].setCurrentNode(nodes["CT"])  # a later choice by hand wins

    scene = module_env.scene  # File / Save, then load that scene: the mapping comes back
    scene.SetSaveToXMLString(1)
    scene.Commit()
    saved = scene.GetSceneXMLString()
    scene.Clear(0)
    scene.SetLoadFromXMLString(1)
    scene.SetSceneXMLString(saved)
    scene.Import()
    back = widget.logic.getParameterNode()
    assert back.phaseNames == "venous=image"
    assert {ph: n.GetName() for ph, n in back.phaseVolumes.items()} == {
        "T2": "602: AX T2 FSE", "S0": "DCE_S0", "S2": "DCE_S20", "image": "CT"}
    assert _phase_selectors(module_env, widget)["image"].currentNode().GetName() == "CT"  # shown, not remapped


@pytest.mark.parametrize("slicer_version", ["main-2026-08-21"], indirect=True)  # child runs: one framework
def test_apply_run_all_and_bad_phase_names(module_env, sample_data):
    """CT chosen for `image` by hand: Apply's table records image=CT. The Phase names line CT=image
    drives Run all for a phase left unchosen, and the status says which volume fed which phase. A
    bad line (unknown phase, a phase twice, no such volume) disables Apply and Run all refuses it
    before anything reaches the scene; a model whose phase has no volume is named, with the phase."""
    nodes, segmentation = _user_scene(module_env, sample_data, names=("venous",))
    demo = _demo_model()
    widget = module_env.make_widget()
    widget.ui.deviceComboBox.currentIndex = 1  # cpu
    p = widget._parameterNode
    assert p.model == str(demo)
    [image] = _phase_selectors(module_env, widget).values()
    assert image.currentNode() is None
    image.setCurrentNode(nodes["CT"])
    widget.ui.applyButton.click()
    assert "image=CT" in widget.ui.statusLabel.toolTip
    run = _finish(widget)
    assert not run.errors, run.errors
    table = p.outputTable
    sources = table.GetTable().GetColumnByName("phase_sources")
    assert [sources.GetValue(r) for r in range(table.GetNumberOfRows())] == ["image=CT"] * 2
    assert table.GetAttribute("HCCAnalysis.phase_sources") == f"{THREE_PHASE}: image=CT"
    assert widget.ui.statusLabel.text.startswith("Finished: 1 of 1") and "image=CT" in widget.ui.statusLabel.text

    image.setCurrentNode(None)
    widget.ui.phaseNamesLineEdit.text = "CT=image"
    [image] = _phase_selectors(module_env, widget).values()
    assert image.currentNode() is nodes["CT"]
    image.setCurrentNode(None)  # left unchosen: Run all takes the line's CT
    assert "image" not in p.phaseVolumes
    widget.ui.runAllButton.click()
    [job] = widget._run.jobs
    assert job.phase_sources == {"image": "CT"}
    assert f"{THREE_PHASE} 0.2.0-demo: image=CT" in widget.ui.statusLabel.toolTip
    widget.ui.cancelButton.click()

    count = module_env.scene.GetNumberOfNodes()
    image.setCurrentNode(nodes["venous"])
    for line, why in [("CT=imag", "no model reads the phase 'imag'"),
                      ("CT=image; venous=image", "two names are mapped to the phase 'image'"),
                      ("CT=image; CT=pv", "'CT' is mapped twice"),
                      ("CT2=image", "no volume is named 'CT2'"),
                      ("CT image", "is not NAME=PHASE")]:
        widget.ui.phaseNamesLineEdit.text = line
        assert not widget.ui.applyButton.enabled and why in widget.ui.applyButton.toolTip, line
        with pytest.raises(HCCInputError, match=why):
            widget.ui.runAllButton.click()
        assert widget._run is None and module_env.scene.GetNumberOfNodes() == count

    widget.ui.phaseNamesLineEdit.text = ""
    image.setCurrentNode(None)
    with pytest.raises(HCCInputError, match=f"{THREE_PHASE} 0.2.0-demo: no volume for the phase image"):
        widget.ui.runAllButton.click()
    assert widget._run is None and module_env.scene.GetNumberOfNodes() == count
