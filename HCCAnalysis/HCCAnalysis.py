"""HCCAnalysis: deep-learning analysis of liver lesions and HCC in 3D Slicer. GUI and MRML glue only:
HCCAnalysisLib (installed beside this file) does the work, Apply and Run all in a child process
(panel/process_run.py); the panel's dynamic parts come from HCCAnalysisLib.panel.choices."""

import functools
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import qt
import vtk

import slicer
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode, vtkMRMLTableNode
from slicer.parameterNodeWrapper import Choice, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin

from HCCAnalysisLib.engine.device import DEVICE_CHOICES, describe_devices
from HCCAnalysisLib.models import registry as model_registry
from HCCAnalysisLib.panel import choices as panel_model
from HCCAnalysisLib.panel import jobs as panel_jobs
from HCCAnalysisLib.panel import phase_mapping, process_run
from HCCAnalysisLib.panel.dependencies import ensure_slicer_dependencies
from HCCAnalysisLib.panel.results import jobs_table, load_run_results, tables_match
from HCCAnalysisLib.tasks import TASKS

TASK_NAMES = tuple(TASKS)
POLL_MS = 200  # how often the GUI thread reads the child process's progress lines
# Parameters set by code (dynamic or list widgets), not bound through SlicerParameterName.
UNBOUND_PARAMETERS = ("model", "phaseVolumes", "lesionSegmentIds", "clinicalValues")
# Push buttons of the .ui: each <name>Button is connected to on<Name>Button.
BUTTONS = ("downloadModel", "importModel", "openModelsFolder", "clearModelsFolder", "apply", "runAll", "cancel")


class HCCAnalysis(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "HCC Analysis"
        self.parent.categories = ["Quantification"]
        self.parent.contributors = ["HCCAnalysis contributors"]
        self.parent.helpText = ("Deep-learning analysis of liver lesions and HCC, one table row per lesion (research use"
                                " only). Console: HCCAnalysisLogic().process(...); batch: Scripts/batch.py, hcc batch.")
        self.parent.acknowledgementText = ("Methods: Jia et al. 2019, Zhen et al. 2020, Wang et al. 2020, "
                                           "Liang et al. 2018, Meng et al. 2019 (see the documentation).")


@parameterNodeWrapper
class HCCAnalysisParameterNode:
    task: Annotated[str, Choice(TASK_NAMES)] = TASK_NAMES[0]
    segmentation: vtkMRMLSegmentationNode
    device: Annotated[str, Choice(DEVICE_CHOICES)] = "auto"
    outputTable: vtkMRMLTableNode
    saliency: bool = False
    allowUnusualInput: bool = False  # predict a case far outside the model card's input_profile, with a warning
    model: str = ""  # path of the chosen installed model package
    phaseVolumes: dict[str, vtkMRMLScalarVolumeNode]
    phaseNames: str = ""  # "CT=image; venous=pv": volume node name = model phase, as the CLI's --phase
    lesionSegmentIds: list[str]
    clinicalValues: dict[str, str]


class HCCAnalysisWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = self._parameterNode = self._parameterNodeGuiTag = self._run = None
        # The phases the chosen model reads (None: the task's defaults); the task the dynamic widgets show.
        self._phases = self._shownTask = None
        self._timer = qt.QTimer()
        self._timer.setInterval(POLL_MS)
        self._timer.timeout.connect(self._pollRun)

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/HCCAnalysis.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = HCCAnalysisLogic()
        self.ui.segmentsTableView.selectionMode = qt.QAbstractItemView.ExtendedSelection
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndImportEvent, self.onSceneEndClose)
        self.ui.segmentationSelector.connect("currentNodeChanged(vtkMRMLNode*)",
                                             self.ui.segmentsTableView.setSegmentationNode)
        self.ui.segmentsTableView.connect("selectionChanged(QItemSelection,QItemSelection)",
                                          self.onSegmentSelectionChanged)
        self.ui.modelComboBox.connect("currentIndexChanged(int)", self.onModelChanged)
        for name in BUTTONS:
            slot = getattr(self, f"on{name[0].upper()}{name[1:]}Button")
            getattr(self.ui, f"{name}Button").connect("clicked(bool)", slot)
        self.ui.deviceInfoLabel.text = self.logic.deviceDescription()
        self.initializeParameterNode()

    def cleanup(self):  # module unloaded: the poll timer must never call into this discarded widget again
        self._abandonRun()
        self._timer.timeout.disconnect(self._pollRun)
        self.setParameterNode(None)
        self.removeObservers()

    def enter(self):
        self.initializeParameterNode()

    def exit(self):  # a run going on still ends in the module's parameter node
        if self._parameterNodeGuiTag is not None:  # Slicer 5.8's connectGui gives no tag to disconnect
            self.setParameterNode(None)

    def onSceneStartClose(self, caller, event):
        self._abandonRun()  # its nodes and parameter node are about to go: never show its results
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event):  # also after a scene is loaded: show its choices, not remapped
        if self.parent.isEntered:
            self.initializeParameterNode()
            self._shownTask, self._shownNames = None, self._parameterNode.phaseNames
            self._checkCanApply()

    def initializeParameterNode(self):
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.segmentation:
            self._parameterNode.segmentation = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLSegmentationNode")

    def setParameterNode(self, inputParameterNode):
        if inputParameterNode and inputParameterNode.parameterNode is getattr(self._parameterNode, "parameterNode", 0):
            return  # already shown: connecting the GUI again would bind its widgets twice
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
            self._shownTask, self._shownNames = None, self._parameterNode.phaseNames
            self._checkCanApply()

    def onTaskChanged(self):
        """Rebuild the task's dynamic widgets (the task combo box is bound: the node is up to date)."""
        task = self._shownTask = self._parameterNode.task
        self.ui.taskDescriptionLabel.text = {c.name: c.description for c in panel_model.task_choices()}[task]
        self._buildClinicalForm(task)
        self._fillModels(task)  # rebuilds the phase selectors for the chosen model

    @staticmethod
    def _emptiedLayout(widget):
        layout = widget.layout()
        while layout.count():
            layout.takeAt(0).widget().deleteLater()
        return layout

    def _buildPhaseSelectors(self, task):  # a changed Phase names line wins over the choices of its phases
        remap, self._shownNames = self._shownNames != self._parameterNode.phaseNames, self._parameterNode.phaseNames
        layout = self._emptiedLayout(self.ui.phaseVolumesWidget)
        inputs = panel_model.phase_inputs(task, self._phases)
        suggested, named = phase_mapping.suggestions(slicer.mrmlScene, [p.phase for p in inputs],
                                                     self._parameterNode.phaseNames)
        for item in inputs:
            selector = slicer.qMRMLNodeComboBox()
            selector.nodeTypes = list(panel_model.volume_node_types(task))  # RGB images for microscopy
            selector.showChildNodeTypes = False  # label maps are not images
            selector.noneEnabled, selector.addEnabled, selector.removeEnabled = True, False, False
            selector.setMRMLScene(slicer.mrmlScene)
            selector.toolTip = f"The {item.phase} image of the case"
            chosen = self._parameterNode.phaseVolumes.get(item.phase)
            current = (named.get(item.phase) if remap else None) or chosen or suggested.get(item.phase)
            selector.setCurrentNode(current)
            selector.connect("currentNodeChanged(vtkMRMLNode*)", functools.partial(self._setPhaseVolume, item.phase))
            layout.addRow(item.label, selector)
            self._setPhaseVolume(item.phase, current)

    def _setPhaseVolume(self, phase, node):
        # Slicer's ObservedDict: get/pop take no default. No parameter node: the scene is closing.
        volumes = self._parameterNode.phaseVolumes if self._parameterNode else {}
        if node is not None:
            volumes[phase] = node
        elif phase in volumes:
            del volumes[phase]

    def _buildClinicalForm(self, task):
        layout = self._emptiedLayout(self.ui.clinicalFormWidget)
        fields = panel_model.clinical_form(task)
        self.ui.clinicalNoteLabel.visible = not fields
        values = self._parameterNode.clinicalValues
        for field in fields:
            if field.kind == "choice":
                widget = qt.QComboBox()
                widget.addItems(list(field.choices))
                widget.setCurrentText(values.get(field.name) or "")
                widget.connect("currentTextChanged(QString)", functools.partial(self._setClinical, field.name))
            else:
                widget = qt.QLineEdit(values.get(field.name) or "")
                widget.placeholderText = f"{field.unit} ({field.low:g} to {field.high:g})".strip()
                widget.connect("textChanged(QString)", functools.partial(self._setClinical, field.name))
            widget.toolTip = field.tooltip
            layout.addRow(field.label + ("" if field.required else " (optional)"), widget)

    def _setClinical(self, name, text):
        self._parameterNode.clinicalValues[name] = text

    def onSegmentSelectionChanged(self, *_):
        if self._parameterNode:  # none while the scene closes
            self._parameterNode.lesionSegmentIds = list(self.ui.segmentsTableView.selectedSegmentIDs())

    def _fillModels(self, task):
        models = model_registry.installed_models(task=task)
        self.ui.modelComboBox.blockSignals(True)
        self.ui.modelComboBox.clear()
        for model in models:
            self.ui.modelComboBox.addItem(model.label, str(model.path))
        self.ui.modelComboBox.currentIndex = panel_model.model_index([str(m.path) for m in models],
                                                                     self._parameterNode.model)
        self.ui.modelComboBox.blockSignals(False)
        enabled, why = panel_model.download_choice(model_registry.downloadable_models(task), task)
        self.ui.downloadModelButton.enabled, self.ui.downloadModelButton.toolTip = enabled, why
        self.onModelChanged()

    def onModelChanged(self, *_):
        path = self._parameterNode.model = self.ui.modelComboBox.currentData or ""
        card = model_registry.read_card(path) if path else {}
        self._phases = card.get("phases")
        self.ui.modelInfoLabel.text = panel_model.model_summary(card)
        self._buildPhaseSelectors(self._parameterNode.task)
        self._checkCanApply()

    def onDownloadModelButton(self):
        with slicer.util.tryWithErrorDisplay("Model download failed.", waitCursor=True):
            entries = model_registry.downloadable_models(self._parameterNode.task)
            labels = panel_model.download_labels(entries)
            dialog = qt.QInputDialog(slicer.util.mainWindow())  # an instance: the static getItem hides Cancel
            dialog.setWindowTitle("Download model")
            dialog.setLabelText("Model package:")
            dialog.setComboBoxItems(labels)
            if entries and dialog.exec() and dialog.textValue() in labels:
                path = self.logic.downloadModel(entries[labels.index(dialog.textValue())])
                slicer.util.showStatusMessage(f"Installed {path}", 5000)
                self._fillModels(self._parameterNode.task)

    def onImportModelButton(self):
        with slicer.util.tryWithErrorDisplay("Model import failed.", waitCursor=True):
            path = qt.QFileDialog.getOpenFileName(None, "Model package (.zip or model.json)", "",
                                                  "Model packages (*.zip model.json)")
            if path:
                installed = model_registry.import_package(os.path.dirname(path) if path.endswith(".json") else path)
                self._parameterNode.model = str(installed.path)
            self._fillModels(self._parameterNode.task)

    def onOpenModelsFolderButton(self):
        qt.QDesktopServices.openUrl(qt.QUrl.fromLocalFile(str(model_registry.models_dir(create=True))))

    def onClearModelsFolderButton(self):
        folder = model_registry.models_dir()
        if slicer.util.confirmOkCancelDisplay(f"Delete every installed model in {folder}?"):
            with slicer.util.tryWithErrorDisplay("Could not clear the models folder."):
                model_registry.clear_models_dir(folder)
                self._fillModels(self._parameterNode.task)

    def _checkCanApply(self, caller=None, event=None):
        if not self._parameterNode or slicer.mrmlScene.IsImporting():  # a scene being loaded: shown at its end
            return
        p = self._parameterNode
        if p.task != self._shownTask:
            self.onTaskChanged()
        if p.phaseNames != self._shownNames:  # a new Phase names line sets the selectors of the phases it names
            self._buildPhaseSelectors(p.task)
        reasons = panel_model.missing_inputs(p.task, {k: v is not None for k, v in p.phaseVolumes.items()},
                                             self._lesionIds(), p.model, dict(p.clinicalValues), self._phases)
        reasons += phase_mapping.phase_names_reasons(p.phaseNames, slicer.mrmlScene, p.task, self._phases)
        running = self._run is not None
        self.ui.applyButton.enabled = not reasons and not running
        self.ui.applyButton.toolTip = "Run the task on the inputs" if not reasons else "; ".join(reasons)
        self.ui.runAllButton.enabled = not running and bool(p.segmentation)

    def _lesionIds(self):
        return panel_jobs.lesion_ids(self._parameterNode.segmentation, list(self._parameterNode.lesionSegmentIds))

    def onApplyButton(self):
        with slicer.util.tryWithErrorDisplay("Failed to start the analysis.", waitCursor=True):
            p = self._parameterNode
            job = self.logic.prepareJob(p.task, dict(p.phaseVolumes), p.segmentation, self._lesionIds(), p.model,
                                        p.device, dict(p.clinicalValues), p.saliency, p.allowUnusualInput)
            self._startRun([job])

    def onRunAllButton(self):
        with slicer.util.tryWithErrorDisplay("Failed to start the analyses.", waitCursor=True):
            p = self._parameterNode
            plan = self.logic.prepareApplicableJobs(p.segmentation, self._lesionIds(), p.device, dict(p.clinicalValues),
                                                    dict(p.phaseVolumes), p.phaseNames, p.model, p.allowUnusualInput)
            self._startRun(plan.jobs, plan.text())

    def _startRun(self, jobs, sources=None):  # sources: which volume fed which phase, shown until the next run
        self._run = self.logic.startJobs(jobs)
        self.ui.progressBar.maximum, self.ui.progressBar.value = 100 * len(jobs), 0
        self.ui.progressBar.visible = self.ui.cancelButton.visible = True
        self.ui.statusLabel.toolTip = sources or phase_mapping.jobs_text(jobs)
        self.ui.statusLabel.text = f"Starting the analysis process...\n{self.ui.statusLabel.toolTip}"
        self._timer.start()
        self._checkCanApply()

    def _pollRun(self):  # the timer's slot: read the child's new lines; on its end, load the results
        run = self._run
        if run is None:
            self._timer.stop()
            return
        for event in run.poll():
            if event.kind == "started":
                self.ui.statusLabel.text = f"Running {event.label} ({event.index + 1} of {len(run.labels)})..."
            elif event.kind == "progress":
                self.ui.statusLabel.text = f"{run.labels[event.index]}: {event.value[1]}..."
        self.ui.progressBar.value = run.progress_value()
        if not run.finished:
            return
        self._abandonRun()
        p = self._parameterNode or self.logic.getParameterNode()
        try:  # a failed run must leave Apply and Run all usable for the retry
            self.ui.statusLabel.text = f"{run.summary()}\n{self.ui.statusLabel.toolTip}"
            if run.results and not run.cancelled:
                p.outputTable = self.logic.showResults(run, tableNode=p.outputTable)
            failed = "\n".join(f"{(run.labels + ['HCCAnalysis'])[i]}: {e}" for i, e in sorted(run.errors.items()))
            if failed:
                self.ui.statusLabel.text = f"{run.summary()}\n{failed}"
                slicer.util.errorDisplay(f"The analysis failed.\n\n{failed}")
        except Exception as err:  # noqa: BLE001 (a Qt timer slot must not raise: show it instead)
            slicer.util.errorDisplay(f"Could not show the results; nothing was added.\n\n{err}")
        finally:
            run.remove_folder()
            self._checkCanApply()

    def _abandonRun(self):  # stop polling and forget the current run (its process killed if alive); returns it
        self._timer.stop()
        run, self._run = self._run, None
        if run is not None and not run.finished:
            run.cancel()
            run.remove_folder()
        self.ui.progressBar.visible = self.ui.cancelButton.visible = False
        return run

    def onCancelButton(self):
        if self._run is not None:
            self._run.cancel()  # kills the process now: nothing of this run reaches the scene
            self._pollRun()


class HCCAnalysisLogic(ScriptedLoadableModuleLogic):
    """Runs the tasks on MRML nodes; usable without the widget. Blocking by default. In Slicer's console::

        logic = slicer.util.getModuleLogic("HCCAnalysis")
        table = logic.process("jia2019-hcc-vs-background", {"image": getNode("image")},
                              getNode("Segmentation"), model="latest")  # or a package folder
        print(slicer.util.dataframeFromTable(table))
    """

    def getParameterNode(self):
        return HCCAnalysisParameterNode(super().getParameterNode())

    def ensureDependencies(self):
        """Install what HCCAnalysisLib needs on first use (never at import): torch (at the floor monai
        needs) through the PyTorch extension, the rest from Resources/requirements.txt."""
        ensure_slicer_dependencies(os.path.join(os.path.dirname(__file__), "Resources", "requirements.txt"))

    def deviceDescription(self):  # torch's devices once loaded (importing takes seconds: never for the panel)
        return describe_devices() if sys.modules.get("torch") is not None else (
            "auto picks a CUDA GPU when there is one, else the CPU (checked at the first run).")

    def downloadModel(self, entry):  # size and SHA-256 checked; SampleData's downloader shows Slicer's progress
        if entry.url.startswith("file:"):  # a package bundled with the library (the pipeline demo): copied
            return model_registry.download(entry)
        import SampleData
        return model_registry.download(entry, SampleData.SampleDataLogic().downloadFile)

    def prepareJob(self, task, volumeNodes, segmentationNode, segmentIds=None, model="latest", device="auto",
                   clinical=None, saliency=False, allowUnusualInput=False):
        self.ensureDependencies()
        modelDir = str(model_registry.find_model(model, task=task)) if model else ""
        name = segmentationNode.GetName() if segmentationNode else "case"
        return panel_jobs.prepare_job(task, volumeNodes, segmentationNode, segmentIds, modelDir, device, clinical,
                                      case_id=name, saliency=saliency, allow_unusual_input=allowUnusualInput)

    def prepareApplicableJobs(self, segmentationNode, segmentIds=None, device="auto", clinical=None, chosen=None,
                              phaseNames="", model="", allowUnusualInput=False):
        """"Run all"'s plan (.jobs; .text(): per installed model, which volume fed which phase or which has none):
        volumes chosen (phase -> node), else named in phaseNames ("CT=image; venous=pv"), else by node name."""
        self.ensureDependencies()
        plan = phase_mapping.plan_run_all(slicer.mrmlScene, chosen, phaseNames, segmentationNode, segmentIds, device,
                                          clinical, segmentationNode.GetName() if segmentationNode else "case", model)
        return panel_jobs.allowing_unusual_input(plan, allowUnusualInput)

    def startJobs(self, jobs):  # a child process (PythonSlicer) runs them; poll the ProcessRun from a QTimer
        return process_run.start_job_run(jobs)

    def showResults(self, run, jobs=None, tableNode=None):  # all or nothing: table, saliency, Liang label map
        shown = load_run_results(run.results, jobs or run.jobs, slicer.mrmlScene, tableNode)
        for node in shown.saliency:
            slicer.util.setSliceViewerLayers(foreground=node, foregroundOpacity=0.4)
        for node in shown.labelmaps:
            slicer.util.setSliceViewerLayers(label=node)
        table = shown.table
        if slicer.app.layoutManager() is not None:
            slicer.app.layoutManager().setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutFourUpTableView)
            slicer.app.applicationLogic().GetSelectionNode().SetActiveTableID(table.GetID())
            slicer.app.applicationLogic().PropagateTableSelection()
        return table

    def process(self, task, volumeNodes, segmentationNode, segmentIds=None, model="latest", device="auto",
                clinical=None, tableNode=None, wait=True, allowUnusualInput=False):
        """Run one task on nodes. `volumeNodes`: phase -> scalar volume node; `model`: a package folder, an installed
        version or "latest"; allowUnusualInput: as the panel's box. Returns the table node (computed in this process:
        no GUI waits); wait=False: the started out-of-process ProcessRun (poll it, then showResults(run))."""
        job = self.prepareJob(task, volumeNodes, segmentationNode, segmentIds, model, device, clinical,
                              allowUnusualInput=allowUnusualInput)
        if not wait:
            return self.startJobs([job])
        return jobs_table([job], [panel_jobs.run_job(job)], slicer.mrmlScene, tableNode)


class HCCAnalysisTest(ScriptedLoadableModuleTest):
    """Checks (installs, when allowed) the dependencies, loads the small case packaged with the module (Resources/
    TestData/lung1-crop, see its SOURCE.md), runs Apply's real path (a job folder, PythonSlicer running `hcc run-job`,
    results back as nodes) with a seeded untrained model package; checks the table against the console call's."""

    def setUp(self):
        slicer.mrmlScene.Clear(0)

    def runTest(self):
        self.setUp()
        self.test_apply_out_of_process()

    def test_apply_out_of_process(self):
        from HCCAnalysisLib.slicer_io.files import load_case_into_scene

        logic = HCCAnalysisLogic()
        logic.ensureDependencies()  # before anything imports torch
        data = Path(__file__).resolve().parent / "Resources" / "TestData" / "lung1-crop"
        volumes, segmentation = load_case_into_scene(slicer.mrmlScene, data, ["image"])
        task = TASK_NAMES[0]
        model = str(model_registry.untrained_package(Path(tempfile.mkdtemp()) / "model", task, ["image"]))
        run = logic.process(task, volumes, segmentation, model=model, device="cpu", wait=False)
        run.wait(600)
        self.assertTrue(run.finished and not run.errors, run.errors)
        table = logic.showResults(run)
        run.remove_folder()
        expected = logic.process(task, volumes, segmentation, model=model, device="cpu")
        self.assertEqual(table.GetNumberOfRows(), 2)  # the lesion and its background region
        self.assertTrue(tables_match(table, expected))  # the same cells (numbers to 1e-5), NaN where NaN
        logging.info("HCCAnalysisTest passed")
        self.delayDisplay("Test passed")
