"""Case + model -> Prediction: sample, run the net in batches, aggregate per lesion / ROI.

Inference speed: `predict_case` prepares the loaded net once for inference only
(`inference_layout.prepare_for_inference`: batch norm folded, channels-last); `run_net`
batches by the net's own `inference_batch_size` where it has one (measured per family) and
gets the embeddings from the same forward pass as the probabilities.
"""


from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch

from HCCAnalysisLib.errors import HCCInputError
from HCCAnalysisLib.data.prediction import Prediction, PredictionRow
from HCCAnalysisLib.methods import get_sampler
from HCCAnalysisLib.engine.batches import stack_inputs
from HCCAnalysisLib.engine.inference_layout import PREPARED, channels_last_inputs, prepare_for_inference

if TYPE_CHECKING:
    from HCCAnalysisLib.data.case import Case
    from HCCAnalysisLib.data.microscopy_case import MicroscopyCase
    from HCCAnalysisLib.data.samples import Sample
    from HCCAnalysisLib.methods.task import Task
    from HCCAnalysisLib.models.package import LoadedModel


def case_rng(case_id: str, seed: int = 0) -> np.random.Generator:
    """A generator fixed by the case id: a case gives the same ROIs in every run."""
    return np.random.default_rng([seed, *map(ord, case_id)])


def make_samples(task: Task, case: Case | MicroscopyCase, phases: Sequence[str] | None, seed: int = 0,
                 training: bool = False, fields: dict[str, Any] | None = None) -> list[Sample]:
    """The task's samples of one case; targets come from `fields` (cases.csv) when given."""
    phases = task.check_phases(phases, case.source)
    if fields is not None:
        target_of = task.target_function(fields, case.source)
    else:
        target_of = lambda kind: -1  # noqa: E731 - unknown at prediction time
    sampler = get_sampler(task.sampler)
    samples = sampler(case, task, phases, target_of, case_rng(case.case_id, seed), training)
    if not samples:
        raise HCCInputError(f"gave no sample for task {task.name}", case.source)
    return samples


DEFAULT_BATCH_SIZE = 256


class _ClassifierInput:
    """Records the input of `net.classifier` during one forward: the nets' `embed` output (every net
    here ends `classifier(embed(...))`; Testing/engine/test_infer_layout.py checks each family)."""

    def __init__(self, net: torch.nn.Module) -> None:
        head = getattr(net, "classifier", None)
        self.seen: list[torch.Tensor] = []
        self.handle = head.register_forward_pre_hook(self._record) if isinstance(head, torch.nn.Module) else None

    def _record(self, module: torch.nn.Module, args: tuple) -> None:
        self.seen.append(args[0])

    def take(self) -> torch.Tensor | None:
        seen, self.seen = self.seen, []
        return seen[0] if len(seen) == 1 else None

    def close(self) -> None:
        if self.handle is not None:
            self.handle.remove()


@torch.inference_mode()
def run_net(net: torch.nn.Module, samples: Sequence[Sample], device: str | torch.device,
            batch_size: int | None = None, with_embeddings: bool = False
            ) -> np.ndarray | tuple[np.ndarray, np.ndarray | None]:
    """Class probabilities (N x K) and optionally the embeddings (N x D) of samples.

    batch_size: default the net's `inference_batch_size` (e.g. Liang's 16), else 256.
    """
    net.eval()
    batch_size = batch_size or getattr(net, "inference_batch_size", DEFAULT_BATCH_SIZE)
    channels_last = getattr(net, PREPARED, False)
    capture = _ClassifierInput(net) if with_embeddings and hasattr(net, "embed") else None
    probs, embeddings = [], []
    try:
        for start in range(0, len(samples), batch_size):
            inputs = stack_inputs(samples[start:start + batch_size], device)
            if channels_last:
                inputs = channels_last_inputs(inputs)
            out = net(**inputs)
            logits = out["logits"] if isinstance(out, dict) else out
            probs.append(torch.softmax(logits.float(), dim=1).cpu().numpy())
            if capture is not None:
                embedded = capture.take()
                if embedded is None:  # no single classifier call to read it from: a second pass
                    embedded = net.embed(**inputs)
                embeddings.append(embedded.float().cpu().numpy())
    finally:
        if capture is not None:
            capture.close()
    probs = np.concatenate(probs)
    return (probs, np.concatenate(embeddings) if embeddings else None) if with_embeddings else probs


def aggregate(samples: Sequence[Sample], probs: np.ndarray, classes: Sequence[str], votes: bool = False
              ) -> list[PredictionRow]:
    """One row per (lesion or background ROI): the mean of its samples' probabilities.

    With `votes`, each row also gets `vote_<class>`: the share of its samples (patches, tiles)
    whose most probable class is that class (Liang 2018's label-map class proportions).
    """
    groups = {}
    for index, sample in enumerate(samples):
        groups.setdefault((sample.case_id, sample.lesion_id, sample.kind), []).append(index)
    rows = []
    for (case_id, lesion_id, kind), indices in groups.items():
        first = samples[indices[0]]
        mean = probs[indices].mean(axis=0)
        extras = dict(first.extras)
        if votes:
            winners = probs[indices].argmax(axis=1)
            extras.update({f"vote_{c}": float(np.mean(winners == k)) for k, c in enumerate(classes)})
        rows.append(PredictionRow(case_id, first.patient_id, lesion_id, first.lesion_name, kind,
                                  classes[int(np.argmax(mean))], dict(zip(classes, map(float, mean))),
                                  len(indices), extras))
    return rows


def predict_case(model: LoadedModel, case: Case | MicroscopyCase, phases: Sequence[str] | None = None,
                 device: str | torch.device = "cpu", allow_unusual_input: bool = False,
                 unusual_input_override: str | None = None) -> Prediction:
    """Run a loaded model package on one Case. A case far outside the intensities (or modality)
    the model was trained on is refused unless `allow_unusual_input` (data/intensity_profile.py);
    milder findings, and allowed refusals, go into the rows' `warnings` column. The refusal's
    hint names `unusual_input_override` (default: the CLI flag; the panel: its check box)."""
    from HCCAnalysisLib.data.intensity_profile import OVERRIDE_FLAG, add_input_warnings, check_case_input

    device = torch.device(device)
    phases = phases or model.card["phases"]
    if list(phases) != list(model.card["phases"]):
        raise HCCInputError(f"phases {list(phases)} differ from the {model.card['phases']} the model was trained on",
                            model.directory)
    samples = make_samples(model.task, case, phases, seed=model.card.get("seed", 0))
    # after sampling, whose refusals (a constant phase, no liver label) name the problem more exactly
    input_warnings = check_case_input(model.card, case, phases, allow_unusual_input, model.directory / "model.json",
                                      unusual_input_override or OVERRIDE_FLAG)
    net = prepare_for_inference(model.net.to(device))  # a loaded package never trains again
    probs = run_net(net, samples, device)
    classes = list(model.card["classes"])
    rows = aggregate(samples, probs, classes, votes=model.task.vote_extras)
    from HCCAnalysisLib.data.case import add_lesion_warnings

    add_lesion_warnings(rows, case)  # e.g. a lesion outside the liver: named in its row
    add_input_warnings(rows, input_warnings)  # e.g. an MR volume under a CT model's phase: in every row
    return Prediction(model.task.name, model.name, classes, rows)
