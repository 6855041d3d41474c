"""The HCCAnalysis panel and logic under Slicer's real parameter node wrapper (5.8.0 and main).

The widget's own methods run as Slicer calls them (setup, enter, signals of the bound
widgets, the poll timer), on a real MRML scene with the bundled sample cases. A `dict` field
of a parameterNodeWrapper reads back as Slicer's ObservedDict, whose get/pop take no
default: these tests are what catches code written for a plain dict.
"""

import os
import sys
import time
import types

import numpy as np
import pytest

from HCCAnalysisLib.models import registry as model_registry
from HCCAnalysisLib.slicer_io.files import load_case_into_scene
from HCCAnalysisLib.tasks import TASKS

THREE_PHASE = "jia2019-hcc-vs-background"  # reads T2, S0 and S2
CLINICAL = "wang2020-fusion-a"  # nc, art, pv + the wang2020 clinical schema
MICROSCOPY = "meng2019-metastasis"  # one RGB image, no segmentation


def _select_task(widget, task):
    """Choose `task` in the task combo box, as the user does."""
    combo = widget.ui.taskComboBox
    combo.currentIndex = [combo.itemText(i) for i in range(combo.count())].index(task)
    assert widget._parameterNode.task == task


def _phase_selectors(env, widget):
    """phase -> its volume selector, in the order the panel shows them."""
    layout = widget.ui.phaseVolumesWidget.layout()
    items = [layout._items[i].widget() for i in range(layout.count())]
    labels, selectors = items[0::2], items[1::2]
    assert all(isinstance(s, env.slicer.qMRMLNodeComboBox) for s in selectors)
    return {label.text.removesuffix(" volume:"): selector for label, selector in zip(labels, selectors)}


def _clinical_widgets(widget):
    layout = widget.ui.clinicalFormWidget.layout()
    return [layout._items[i].widget() for i in range(1, layout.count(), 2)]


def _three_volumes(env, sample_data):
    """lung1's real image as three nodes named after the three-phase task's phases."""
    volumes, segmentation = load_case_into_scene(env.scene, sample_data / "demo-cohort" / "lung1", ["image"])
    nodes = {"T2": volumes["image"]}
    nodes["T2"].SetName("case_T2")
    for phase in ("S0", "S2"):
        node = env.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", f"case_{phase}")
        node.Copy(volumes["image"])
        node.SetName(f"case_{phase}")
        nodes[phase] = node
    return nodes, segmentation


def _reasons(widget):
    return "" if widget.ui.applyButton.enabled else widget.ui.applyButton.toolTip


def test_opens_without_torch_and_binds_the_parameter_node(module_env, monkeypatch):
    """Setup and enter build the panel from the real .ui through the real wrapper; opening
    it never imports torch (seconds on the GUI thread)."""
    monkeypatch.setitem(sys.modules, "torch", None)  # torch not loaded yet; any `import torch` now fails
    monkeypatch.setattr(module_env.mod, "describe_devices", lambda: pytest.fail("the panel asked torch at opening"))
    widget = module_env.make_widget()
    p = widget._parameterNode
    combo = widget.ui.taskComboBox
    assert [combo.itemText(i) for i in range(combo.count())] == list(TASKS)
    assert combo.currentText == p.task == THREE_PHASE
    assert "first run" in widget.ui.deviceInfoLabel.text
    assert list(_phase_selectors(module_env, widget)) == ["T2", "S0", "S2"]
    assert widget.ui.clinicalNoteLabel.visible  # this task takes no clinical data
    assert not widget.ui.applyButton.enabled
    assert "choose the T2 volume" in widget.ui.applyButton.toolTip
    assert "download or import a model" in widget.ui.applyButton.toolTip
    widget.ui.deviceComboBox.currentIndex = 1  # bound through SlicerParameterName
    assert p.device == "cpu"
    widget.ui.saliencyCheckBox.checked = True
    assert p.saliency is True
    # The values live in the scene's parameter node: a new wrapper reads them back.
    assert widget.logic.getParameterNode().device == "cpu"


def test_phase_selectors_set_and_cleared(module_env, sample_data, monkeypatch):
    """Phases are matched by node name, then each selector writes (and a cleared one removes)
    its phase in the parameter node's ObservedDict."""
    nodes, segmentation = _three_volumes(module_env, sample_data)
    widget = module_env.make_widget()
    p = widget._parameterNode
    selectors = _phase_selectors(module_env, widget)
    assert {k: v.GetID() for k, v in p.phaseVolumes.items()} == {k: n.GetID() for k, n in nodes.items()}
    assert selectors["S0"].currentNode() is nodes["S0"]
    assert p.segmentation is segmentation  # the segmentation selector was bound and preset

    selectors["S0"].setCurrentNode(None)
    assert "S0" not in p.phaseVolumes and set(p.phaseVolumes) == {"T2", "S2"}
    assert "choose the S0 volume" in _reasons(widget)
    selectors["S0"].setCurrentNode(None)  # clearing an unset phase again is fine
    selectors["S0"].setCurrentNode(nodes["S2"])  # any image may be chosen by hand
    assert p.phaseVolumes["S0"] is nodes["S2"]
    assert "choose the S0 volume" not in _reasons(widget)

    module_env.scene.RemoveNode(nodes["T2"])  # a chosen volume deleted from the scene
    assert selectors["T2"].currentNode() is None
    assert "choose the T2 volume" in _reasons(widget)


def test_clinical_form_writes_the_parameter_node(module_env, sample_data):
    """Task change rebuilds the form from the task's schema; entries persist across a rebuild."""
    widget = module_env.make_widget()
    _select_task(widget, CLINICAL)
    assert list(_phase_selectors(module_env, widget)) == ["nc", "art", "pv"]
    assert not widget.ui.clinicalNoteLabel.visible
    fields = _clinical_widgets(widget)
    assert fields, "the wang2020 schema has fields"
    reasons = _reasons(widget)
    assert "enter the clinical field" in reasons
    qt = module_env.qt
    entered = {}
    for field in fields:
        if isinstance(field, qt.QComboBox):
            field.currentIndex = 1  # the first real category ("" = not given)
            entered[field] = field.currentText
        else:
            field.text = "55"
            entered[field] = "55"
    values = dict(widget._parameterNode.clinicalValues)
    assert sorted(values.values()) == sorted(entered.values())
    assert "enter the clinical field" not in _reasons(widget)

    _select_task(widget, THREE_PHASE)
    assert widget.ui.clinicalNoteLabel.visible and not _clinical_widgets(widget)
    _select_task(widget, CLINICAL)  # the form comes back filled from the parameter node
    shown = [f.currentText if isinstance(f, qt.QComboBox) else f.text for f in _clinical_widgets(widget)]
    assert sorted(shown) == sorted(entered.values())


def test_lesion_selection(module_env, sample_data):
    nodes, segmentation = _three_volumes(module_env, sample_data)
    seg = segmentation.GetSegmentation()
    names = {seg.GetNthSegmentID(i): seg.GetNthSegment(i).GetName() for i in range(seg.GetNumberOfSegments())}
    [first] = [sid for sid, name in names.items() if name.lower() != "liver"]  # lung1's lesion
    second = segmentation.GetSegmentation().AddEmptySegment("lesion2")
    liver = segmentation.GetSegmentation().AddEmptySegment("liver_id")
    segmentation.GetSegmentation().GetSegment(liver).SetName("Liver")
    widget = module_env.make_widget()
    assert widget._lesionIds() == [first, second]  # none selected: every segment not named liver
    widget.ui.segmentsTableView.setSelectedSegmentIDs([second])
    assert list(widget._parameterNode.lesionSegmentIds) == [second]
    assert widget._lesionIds() == [second]
    widget.ui.segmentsTableView.setSelectedSegmentIDs([])
    assert widget._lesionIds() == [first, second]


def _install_model(env, task, phases):
    return model_registry.untrained_package(env.models_dir / task / "0.0.1", task, phases)


def _finish(widget, timeout=300):
    """Deliver the poll timer's ticks, as Qt's event loop would, until the run has ended."""
    run = widget._run
    assert run is not None and widget._timer.isActive()
    deadline = time.monotonic() + timeout
    while widget._run is not None and time.monotonic() < deadline:
        time.sleep(0.05)
        widget._timer.fire()
    assert widget._run is None and not widget._timer.isActive()
    assert not run.running() and not run.job_dir.exists()  # the process ended, its folder removed
    return run


def _killed(run):
    try:
        os.killpg(run.pid, 0)
    except ProcessLookupError:
        return not run.job_dir.exists()
    return False


def test_failed_run_then_retry_while_away(module_env, sample_data, one_torch_thread, caplog):
    """A failing run (a damaged model package, reported by the child process) shows its error,
    adds nothing and leaves Apply and Run all enabled; the retry with Run all fills the table
    even though the user left the module meanwhile, equal to the console call's table."""
    from HCCAnalysisLib.panel.results import tables_match

    module_env.scene.Clear(0)
    volumes, segmentation = load_case_into_scene(module_env.scene, sample_data / "demo-cohort" / "lung1",
                                                 ["image"])
    model = _install_model(module_env, THREE_PHASE, ["image"])
    weights = model / "model.safetensors"
    good = weights.read_bytes()
    weights.write_bytes(b"not a safetensors file")
    widget = module_env.make_widget()
    assert widget._parameterNode.model == str(model)
    assert list(_phase_selectors(module_env, widget)) == ["image"]  # the phases the model reads
    assert widget.ui.applyButton.enabled, widget.ui.applyButton.toolTip
    widget.ui.deviceComboBox.currentIndex = 1  # cpu
    nodes = module_env.scene.GetNumberOfNodes()

    widget.ui.applyButton.click()
    assert not widget.ui.applyButton.enabled and not widget.ui.runAllButton.enabled  # while running
    assert widget.ui.progressBar.visible and widget.ui.cancelButton.visible
    run = _finish(widget)
    assert run.errors and not run.results and "SHA-256" in run.errors[0]
    assert "1 failed" in widget.ui.statusLabel.text and "SHA-256" in widget.ui.statusLabel.text
    assert any("The analysis failed" in r.getMessage() for r in caplog.records)
    assert widget.ui.applyButton.enabled and widget.ui.runAllButton.enabled
    assert module_env.scene.GetNumberOfNodes() == nodes and not widget.ui.progressBar.visible

    weights.write_bytes(good)
    widget.ui.runAllButton.click()
    widget.exit()  # the user opens another module while it runs
    run = _finish(widget)
    assert not run.errors, run.errors
    table = widget.logic.getParameterNode().outputTable
    assert table is not None and table.GetNumberOfRows() == 2  # lung1: its lesion and background
    console = widget.logic.process(THREE_PHASE, volumes, segmentation, model=str(model), device="cpu")
    assert tables_match(table, console)  # out of process == in process
    widget.enter()
    assert widget.ui.applyButton.enabled and widget.ui.statusLabel.text.startswith("Finished: 1 of 1")


def test_cancel_scene_close_and_cleanup_kill_the_run(module_env, sample_data, monkeypatch):
    """Cancel, closing the scene and unloading the module each kill the child at once and add
    nothing; the buttons come back; cleanup() leaves the timer nothing to call. Starting a run
    never imports torch into Slicer's own process (the GUI thread): only the child does."""
    module_env.scene.Clear(0)
    load_case_into_scene(module_env.scene, sample_data / "demo-cohort" / "lung1", ["image"])
    _install_model(module_env, THREE_PHASE, ["image"])
    monkeypatch.setitem(sys.modules, "torch", None)  # any `import torch` from here on fails
    widget = module_env.make_widget()
    nodes = module_env.scene.GetNumberOfNodes()
    widget.ui.applyButton.click()
    run = widget._run
    assert run.running()
    widget.ui.cancelButton.click()
    assert _killed(run) and run.cancelled and widget._run is None and not widget._timer.isActive()
    assert widget.ui.statusLabel.text.startswith("Cancelled")
    assert widget.ui.applyButton.enabled and widget.ui.runAllButton.enabled
    assert module_env.scene.GetNumberOfNodes() == nodes and widget._parameterNode.outputTable is None

    widget.ui.applyButton.click()
    run = widget._run
    module_env.scene.Clear(0)  # File / Close scene
    assert _killed(run) and widget._run is None and not widget._timer.isActive()
    widget._timer.fire()
    assert module_env.scene.GetFirstNodeByClass("vtkMRMLTableNode") is None
    assert widget._parameterNode is not None  # the module is entered: a new parameter node is shown
    assert not widget.ui.applyButton.enabled  # the new scene has no volumes

    volumes, _ = load_case_into_scene(module_env.scene, sample_data / "demo-cohort" / "lung1", ["image"])
    widget.exit()
    widget.enter()
    _phase_selectors(module_env, widget)["image"].setCurrentNode(volumes["image"])
    widget.ui.applyButton.click()
    run = widget._run
    assert run is not None and run.running(), widget.ui.applyButton.toolTip
    widget.cleanup()  # the module is unloaded mid-run
    assert _killed(run) and widget._run is None and not widget._timer.isActive()
    assert not widget._timer.timeout._slots  # nothing left for the timer to call
    widget._timer.start()
    widget._timer.fire()  # a stray tick reaches nothing


def test_microscopy_task_offers_rgb_images(module_env, sample_data):
    """The Meng task reads an RGB microscopy image: its selector offers vector volumes."""
    import tifffile

    rgb = tifffile.imread(sample_data / "histology" / "tumour1" / "image.tif")
    assert rgb.ndim == 3 and rgb.shape[-1] == 3
    slicer = module_env.slicer
    image = module_env.scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode", "tumour1")
    slicer.util.updateVolumeFromArray(image, np.ascontiguousarray(rgb[None]))
    module_env.scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "labels")
    widget = module_env.make_widget()
    _select_task(widget, MICROSCOPY)
    selector = _phase_selectors(module_env, widget)["image"]
    assert [n.GetName() for n in selector.nodes()] == ["tumour1"]  # no label map
    selector.setCurrentNode(image)
    assert widget._parameterNode.phaseVolumes["image"] is image
    reasons = _reasons(widget)
    assert "choose the image volume" not in reasons and "segmentation" not in reasons
    _select_task(widget, THREE_PHASE)  # CT/MR tasks offer grey-scale volumes only
    assert all(s.nodes() == [] for s in _phase_selectors(module_env, widget).values())


def test_download_offers_only_model_packages_and_cancel_downloads_nothing(module_env, monkeypatch):
    """Download lists the chosen task's model-package entries (the bundled pipeline demo for
    the Jia task), is disabled with a one-line reason for a task without one; Cancel in the
    chooser installs nothing, OK installs the package and selects it."""
    from HCCAnalysisLib.panel.choices import NO_MODEL_TEXT

    dialog = module_env.qt.QInputDialog
    monkeypatch.setattr(dialog, "shown", [])
    widget = module_env.make_widget()
    assert widget.ui.modelInfoLabel.text == NO_MODEL_TEXT and "No public HCC model exists" in NO_MODEL_TEXT
    assert "hcc train" in NO_MODEL_TEXT and "hcc models install" in NO_MODEL_TEXT
    button = widget.ui.downloadModelButton
    assert button.enabled and "1 model package" in button.toolTip
    _select_task(widget, CLINICAL)
    assert not button.enabled and "no model package for" in button.toolTip and "\n" not in button.toolTip
    _select_task(widget, THREE_PHASE)

    monkeypatch.setattr(dialog, "answer", (0, False))  # Cancel (Qt's textValue is still the first item)
    button.click()
    [labels] = dialog.shown
    assert len(labels) == 1 and "PIPELINE DEMONSTRATION ONLY" in labels[0]
    assert not any(module_env.models_dir.iterdir()) and widget.ui.modelComboBox.count() == 0

    monkeypatch.setattr(dialog, "answer", (0, True))
    button.click()
    installed = model_registry.installed_models(task=THREE_PHASE)
    assert [m.version for m in installed] == ["0.2.0-demo"]
    assert widget._parameterNode.model == str(installed[0].path) and widget.ui.modelComboBox.count() == 1
    assert widget.ui.modelInfoLabel.text != NO_MODEL_TEXT


def test_console_logic_and_self_test(module_env, sample_data, one_torch_thread):
    """The console call (logic.process, blocking, in process) and the module's self-test as
    Slicer's SelfTests runs it (registered by the real ScriptedLoadableModule): dependencies
    checked first, the packaged test case, Apply's out-of-process path end to end."""
    module_env.scene.Clear(0)
    volumes, segmentation = load_case_into_scene(module_env.scene, sample_data / "demo-cohort" / "lung1",
                                                 ["image"])
    model = _install_model(module_env, THREE_PHASE, ["image"])
    table = module_env.mod.HCCAnalysisLogic().process(THREE_PHASE, volumes, segmentation, model="latest",
                                                      device="cpu")
    assert table.GetNumberOfRows() == 2
    assert table.GetAttribute("HCCAnalysis.task") == THREE_PHASE
    with pytest.raises(Exception, match="neither a package folder nor an installed version"):
        module_env.mod.HCCAnalysisLogic().process(THREE_PHASE, volumes, segmentation, model="9.9.9")
    assert model.is_dir()
    module_env.mod.HCCAnalysis(types.SimpleNamespace(path=str(module_env.module_file)))
    assert "HCCAnalysis" in module_env.slicer.selfTests  # registered by this version's ScriptedLoadableModule
    if module_env.version == "v5.8.0":
        return  # the self-test's run is the same child process under either framework: once keeps CI short
    module_env.slicer.selfTests["HCCAnalysis"](msec=0)
    assert module_env.scene.GetFirstNodeByClass("vtkMRMLTableNode").GetNumberOfRows() == 2


def test_model_choice_and_summary():
    """The model combo box keeps the user's choice across a refill, else shows the newest."""
    from HCCAnalysisLib.panel.choices import NO_MODEL_TEXT, model_index, model_summary

    paths = ["/m/t/0.1", "/m/t/0.2"]
    assert model_index(paths, "/m/t/0.1") == 0
    assert model_index(paths, "/m/t/gone") == 1
    assert model_index([], "") == -1
    assert model_summary({}) == NO_MODEL_TEXT
    assert model_summary({"phases": ["nc", "art"], "classes": ["hcc", "other"]}) == "Reads nc, art; classes hcc, other"


def test_reentering_binds_each_widget_once(module_env):
    """Leaving and re-entering the module must not bind the widgets again: Slicer 5.8's
    connectGui returns no tag, so its bindings can never be disconnected."""
    widget = module_env.make_widget()
    bound = len(widget.ui.taskComboBox.currentIndexChanged._slots)
    assert bound == 1
    for _ in range(3):
        widget.exit()
        widget.enter()
    assert len(widget.ui.taskComboBox.currentIndexChanged._slots) == bound
    widget.ui.deviceComboBox.currentIndex = 2
    assert widget._parameterNode.device == "cuda"
