"""Liang 2018 section 2.5 in use: which parts of a lesion voted for which class, and the SVM stage.

- `lesion_votes(model, case)`: the patch predictions of every lesion at test time (pace 1,
  the same patches as `hcc predict`, from `samplers_liang.lesion_patch_sets`), with their
  centres on the case's segmentation grid.
- `predict_with_votes(model, case)`: the `hcc predict` rows (mean patch probabilities,
  `predicted_class` = their argmax) plus `vote_<class>` extras: the eq. 7-8 proportions
  beta_ij of the lesion's label map, i.e. the share of its patches whose argmax is each
  class (the majority class is the largest vote).
- `label_map_array` / `label_map_image`: one (z, y, x) label map on the segmentation grid,
  0 where no patch was centred, k + 1 where a patch predicted class k.
- `label_map_to_node`: the same map as a Slicer label map volume node
  (`slicer_io.labelmap_to_volume_node`) with a colour table named after the classes.
- `label_map_svm_cross_validate`: the paper's lesion-level stage, evaluation time only.
  Per patient-level fold: the patch net is trained on the training patients minus a
  validation group of patients; label maps of the training and validation lesions give
  the SVM's features; its parameters are chosen on the validation lesions, it is refitted
  on training + validation (section 2.4); it then classifies the test fold's lesions.
  An SVM is not a tensor, so it is not part of the safetensors model package: the
  packaged model gives patch-vote proportions, this function gives the SVM stage.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Sequence

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from HCCAnalysisLib.errors import HCCInputError
from HCCAnalysisLib.engine.infer import aggregate, prepare_for_inference, run_net
from HCCAnalysisLib.methods.liang2018.label_map_svm import NO_PATCH, LabelMapSVM, class_proportions, label_map
from HCCAnalysisLib.data.prediction import Prediction
from HCCAnalysisLib.methods.liang2018.sampler import lesion_patch_sets, samples_of_lesion

if TYPE_CHECKING:
    import slicer

    from HCCAnalysisLib.data.case import Case
    from HCCAnalysisLib.data.cohort import Cohort
    from HCCAnalysisLib.methods.task import Task
    from HCCAnalysisLib.models.package import LoadedModel

VOTE_PREFIX = "vote_"


@dataclass
class LesionVotes:
    """The test-time patches of one lesion: centres (n x 3, z y x on the segmentation grid) and probabilities."""

    case_id: str
    patient_id: str
    lesion_id: str
    lesion_name: str
    centres: np.ndarray
    probabilities: np.ndarray  # n x K
    shape: tuple[int, int, int]  # the segmentation grid (z, y, x)

    @property
    def predicted(self) -> np.ndarray:
        return self.probabilities.argmax(axis=1)

    def label_map(self) -> np.ndarray:
        """Eq. 7's per-lesion label map: class index at each patch centre, NO_PATCH (-1) elsewhere."""
        return label_map(self.centres, self.predicted, self.shape)

    def proportions(self) -> np.ndarray:
        """Eq. 8: beta_j, the share of the label map's pixels predicted as class j."""
        return class_proportions(self.label_map(), self.probabilities.shape[1])


_LOG = logging.getLogger(__name__)


def _check_task(task):
    if not task.label_map:
        raise HCCInputError(f"task {task.name} does not classify lesion patches; label maps of patch votes are "
                            "made for the Liang 2018 tasks")


def votes_from_net(net: torch.nn.Module, task: Task, case: Case, phases: Sequence[str], device: str = "cpu",
                   samples_out: list | None = None) -> list[LesionVotes]:
    """LesionVotes of every lesion of `case`, from a net of `task` (test-time sampling, pace 1)."""
    _check_task(task)
    phases = task.check_phases(phases, case.source)
    shape = tuple(case.segmentation.GetSize()[::-1])
    out = []
    for lesion, patches in lesion_patch_sets(case, task, phases, training=False):
        samples = samples_of_lesion(case, lesion, patches, -1)
        probs = run_net(net, samples, torch.device(device))
        if samples_out is not None:
            samples_out.append((samples, probs))
        out.append(LesionVotes(case.case_id, case.patient_id, lesion.lesion_id, lesion.name,
                               np.asarray(patches.centres), probs, shape))
    return out


def lesion_votes(model: LoadedModel, case: Case, phases: Sequence[str] | None = None, device: str = "cpu"
                 ) -> list[LesionVotes]:
    """LesionVotes of every lesion of `case` from a loaded model package (models.load_model)."""
    net = prepare_for_inference(model.net.to(torch.device(device)))  # a loaded package never trains again
    return votes_from_net(net, model.task, case, phases or model.card["phases"], device)


def predict_with_votes(model: LoadedModel, case: Case, phases: Sequence[str] | None = None, device: str = "cpu"
                       ) -> tuple[Prediction, list[LesionVotes]]:
    """(Prediction, [LesionVotes]): the `hcc predict` rows plus `vote_<class>` proportions per lesion."""
    phases = list(phases or model.card["phases"])
    if phases != list(model.card["phases"]):
        raise HCCInputError(f"phases {phases} differ from the {model.card['phases']} the model was trained on",
                            model.directory)
    net = prepare_for_inference(model.net.to(torch.device(device)))  # a loaded package never trains again
    pairs = []
    votes = votes_from_net(net, model.task, case, phases, device, samples_out=pairs)
    classes = list(model.card["classes"])
    rows = []
    for lesion_votes_, (samples, probs) in zip(votes, pairs):
        row = aggregate(samples, probs, classes)[0]
        row.extras.update({f"{VOTE_PREFIX}{c}": float(v) for c, v in zip(classes, lesion_votes_.proportions())})
        rows.append(row)
    return Prediction(model.task.name, model.name, classes, rows), votes


def label_map_array(votes: Sequence[LesionVotes], shape: Sequence[int] | None = None) -> np.ndarray:
    """One (z, y, x) uint8 map of all lesions: 0 = no patch, k + 1 = a patch centre predicted as class k."""
    if not votes and shape is None:
        raise HCCInputError("no lesion votes to draw")
    shape = tuple(shape or votes[0].shape)
    out = np.zeros(shape, dtype=np.uint8)
    for lesion in votes:
        if tuple(lesion.shape) != shape:
            raise HCCInputError(f"lesion '{lesion.lesion_name}' was sampled on a grid of shape {lesion.shape}, "
                                f"not {shape}")
        lesion_map = lesion.label_map()
        drawn = lesion_map != NO_PATCH
        out[drawn] = lesion_map[drawn] + 1
    return out


def label_map_image(case: Case, votes: Sequence[LesionVotes]) -> sitk.Image:
    """The label map as a SimpleITK image with the geometry of the case's segmentation."""
    image = sitk.GetImageFromArray(label_map_array(votes, case.segmentation.GetSize()[::-1]))
    image.CopyInformation(case.segmentation)
    return image


# colours of the classes in the label map (value k + 1 for class k): distinct, readable on CT
CLASS_COLOURS = ((0.90, 0.80, 0.20), (0.20, 0.70, 0.30), (0.85, 0.20, 0.20), (0.25, 0.45, 0.90),
                 (0.70, 0.30, 0.80), (0.95, 0.55, 0.10))


def class_colour_node(scene: slicer.vtkMRMLScene, classes: Sequence[str], name: str = "Patch vote classes"
                      ) -> slicer.vtkMRMLColorTableNode:
    """A colour table node: 0 = no patch (transparent), k + 1 = class k, named after the classes."""
    import slicer

    node = slicer.vtkMRMLColorTableNode()
    node.SetTypeToUser()
    node.SetNumberOfColors(len(classes) + 1)
    node.SetNamesInitialised(True)
    node.SetColor(0, "no patch", 0.0, 0.0, 0.0, 0.0)
    for k, cls in enumerate(classes):
        r, g, b = CLASS_COLOURS[k % len(CLASS_COLOURS)]
        node.SetColor(k + 1, str(cls), r, g, b, 1.0)
    node.SetName(scene.GenerateUniqueName(name))
    scene.AddNode(node)
    return node


def label_map_to_node(case: Case, votes: Sequence[LesionVotes], classes: Sequence[str], scene: slicer.vtkMRMLScene,
                      reference: slicer.vtkMRMLVolumeNode | None = None, name: str = "patch votes"
                      ) -> slicer.vtkMRMLLabelMapVolumeNode:
    """A label map volume node of the patch votes on the case's segmentation grid.

    `reference` (optional) is a volume node on exactly that grid, whose parent transform the
    new node then shares; by default the segmentation's own geometry (world coordinates) is used.
    """
    from HCCAnalysisLib.slicer_io import nodes as slicer_io

    array = label_map_array(votes, case.segmentation.GetSize()[::-1])
    node = slicer_io.labelmap_to_volume_node(array, case.segmentation if reference is None else reference, scene,
                                             name, labelmap=True)
    colours = class_colour_node(scene, classes, f"{name} classes")
    node.GetDisplayNode().SetAndObserveColorNodeID(colours.GetID())
    return node


# ---- the SVM stage (evaluation time) ----------------------------------------------------------

def _lesion_features(net, task, records, phases, device):
    features, labels, groups, keys = [], [], [], []
    for record in records:
        case = record.load(phases, task)
        target = task.target_function(record.fields, case.source)("lesion")
        for votes in votes_from_net(net, task, case, phases, device):
            features.append(votes.proportions())
            labels.append(target)
            groups.append(record.patient_id)
            keys.append((record.case_id, record.patient_id, votes.lesion_id))
    return np.array(features), np.array(labels), np.array(groups), keys


def label_map_svm_cross_validate(task: Task, cohort: Cohort, phases: Sequence[str], out_dir: str | Path | None = None,
                                 folds: int = 5, seed: int = 0, epochs: int | None = None, validation_folds: int = 3,
                                 device: str = "cpu", log: Callable[[str], Any] = _LOG.info) -> dict[str, Any]:
    """Patient-level K-fold CV of the whole Liang pipeline: patch net -> label maps -> SVM per lesion.

    In each fold, one of `validation_folds` patient-level splits of the training patients is
    the validation group (SVM parameters chosen on it); the patch net is trained on the rest.
    Returns metrics.json's dict; with `out_dir`, writes `predictions.tsv` (with `vote_<class>`
    columns besides the SVM's `prob_<class>`) and `metrics.json` in the evaluation-folder format.
    """
    from HCCAnalysisLib.engine.evaluate import patient_folds
    from HCCAnalysisLib.engine.infer import make_samples
    from HCCAnalysisLib.stats.metrics import fold_metrics, summarise
    from HCCAnalysisLib.models.package import library_versions
    from HCCAnalysisLib.data.prediction import write_records_tsv
    from HCCAnalysisLib.engine.train import fit

    _check_task(task)
    phases = task.check_phases(phases)
    classes = list(task.classes)
    labels = cohort.column(task.label_column)
    rows, results = [], []
    for fold, (train, test) in enumerate(patient_folds(cohort.records, folds, seed, labels)):
        train_labels = [r.fields[task.label_column].strip() for r in train]
        k = min(validation_folds, len({r.patient_id for r in train}))
        fit_part, validation = patient_folds(train, k, seed, train_labels if len(set(train_labels)) > 1 else None)[0]
        log(f"fold {fold + 1}/{folds}: net on {[r.case_id for r in fit_part]}, SVM validation "
            f"{[r.case_id for r in validation]}, test {[r.case_id for r in test]}")
        samples = [s for r in fit_part
                   for s in make_samples(task, r.load(phases, task), phases, seed, True, r.fields)]
        net, _ = fit(task, samples, torch.device(device), seed=seed, epochs=epochs, log=log)
        net = prepare_for_inference(net.to(torch.device(device)))  # only votes from here on
        x_fit, y_fit, g_fit, _ = _lesion_features(net, task, fit_part, phases, device)
        x_val, y_val, g_val, _ = _lesion_features(net, task, validation, phases, device)
        x_test, y_test, _, keys = _lesion_features(net, task, test, phases, device)
        svm = LabelMapSVM(len(classes), seed=seed).fit(
            np.concatenate([x_fit, x_val]), np.concatenate([y_fit, y_val]), np.concatenate([g_fit, g_val]),
            validation=np.r_[np.zeros(len(x_fit), bool), np.ones(len(x_val), bool)])
        proba = svm.predict_proba(x_test)
        fold_rows = []
        for (case_id, patient_id, lesion_id), p, y, beta in zip(keys, proba, y_test, x_test):
            record = {"repeat": 0, "fold": fold, "case_id": case_id, "patient_id": patient_id,
                      "lesion_id": lesion_id, "kind": "lesion", "label": classes[y],
                      "predicted_class": classes[int(np.argmax(p))]}
            record.update({f"prob_{c}": float(v) for c, v in zip(classes, p)})
            record.update({f"{VOTE_PREFIX}{c}": float(v) for c, v in zip(classes, beta)})
            fold_rows.append(record)
        result = {"repeat": 0, "fold": fold, "n_test": len(fold_rows),
                  "test_patients": sorted({r.patient_id for r in test}),
                  "svm_training_patients": sorted(map(str, set(g_fit) | set(g_val))),
                  "svm_validation_patients": sorted(map(str, set(g_val))), "svm_params": svm.best_params}
        result.update(fold_metrics(y_test, proba, classes))
        results.append(result)
        rows += fold_rows
    metrics = {"task": task.name, "stage": "label-map SVM (Liang 2018 section 2.5)", "classes": classes,
               "phases": list(phases), "folds": results, "summary": summarise(results),
               "versions": library_versions(), "seed": seed,
               "config": {"folds": folds, "repeats": 1, "epochs": epochs or task.training.get("epochs"),
                          "validation_folds": validation_folds, "cohort": str(cohort.folder)}}
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        columns = ["repeat", "fold", "case_id", "patient_id", "lesion_id", "kind", "label", "predicted_class"] + \
            [f"prob_{c}" for c in classes] + [f"{VOTE_PREFIX}{c}" for c in classes]
        write_records_tsv(out_dir / "predictions.tsv", rows, columns)
        tmp = out_dir / ".metrics.json.tmp"
        tmp.write_text(json.dumps(metrics, indent=2, default=str) + "\n")
        tmp.replace(out_dir / "metrics.json")
    return metrics
