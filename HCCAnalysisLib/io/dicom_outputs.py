"""`--dicom` of `hcc predict` and `hcc saliency`: the results as DICOM objects beside the usual files.

`plan_dicom_outputs` runs before any work: it refuses a case whose phases are not DICOM series
folders (a SEG or SR must refer to source instances that exist; none are made up), a series
without the UIDs to refer to, a non-radiology task, and outputs that exist without --overwrite.
Its `DicomOutputs` then writes into the --out folder:

- `hcc predict`: `results_sr.dcm` (TID 1500 SR of the results table, dicom_results_sr.py), and
  for a Liang 2018 task `label_map_seg.dcm` (BINARY SEG of the patch-vote label map);
- `hcc saliency`: `saliency_seg.dcm` (FRACTIONAL SEG of the saliency volume).

The source series is the first of the model's phases that is a DICOM series folder.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from HCCAnalysisLib.errors import HCCInputError

if TYPE_CHECKING:
    import SimpleITK as sitk

    from HCCAnalysisLib.data.case import Case
    from HCCAnalysisLib.data.prediction import Prediction
    from HCCAnalysisLib.data.reading_options import CaseReading
    from HCCAnalysisLib.io.dicom_source import SourceSeries
    from HCCAnalysisLib.models.package import LoadedModel

SR_NAME = "results_sr.dcm"
LABEL_MAP_NAME = "label_map_seg.dcm"
SALIENCY_NAME = "saliency_seg.dcm"
_LOG = logging.getLogger(__name__)


@dataclass
class DicomOutputs:
    """Where a command's DICOM outputs go and what they refer to (see `plan_dicom_outputs`)."""

    paths: dict[str, Path]  # output name -> file in the --out folder
    source: SourceSeries
    segmentation: Path  # the case's segmentation file (a DICOM SEG there is referenced by the SR)
    card: dict[str, Any]
    written: list[Path] = field(default_factory=list)

    def _lesion_seg(self) -> Any | None:
        """The case's segmentation as a highdicom Segmentation when it is a DICOM SEG."""
        from HCCAnalysisLib.io.dicom_seg import is_dicom_seg

        path = self.segmentation
        if path.is_dir():  # a folder holding one DICOM SEG file
            files = [f for f in sorted(path.iterdir()) if f.is_file() and not f.name.startswith(".")]
            path = files[0] if len(files) == 1 else path
        if not is_dicom_seg(path):
            return None
        import highdicom

        return highdicom.seg.segread(str(path))

    def _write(self, datasets: dict[str, Any]) -> None:
        from HCCAnalysisLib.io.dicom_source import write_dataset

        for name, dataset in datasets.items():  # all made before any is written: a failure leaves none
            write_dataset(self.paths[name], dataset)
            self.written.append(self.paths[name])
            _LOG.info("DICOM %s written to %s", "SR" if name == SR_NAME else "SEG", self.paths[name])

    def write_prediction(self, model: LoadedModel, case: Case, prediction: Prediction) -> None:
        """The SR of `prediction`, and for a label-map task (Liang 2018) the label map's SEG."""
        from HCCAnalysisLib.io.dicom_results_sr import results_sr

        datasets = {SR_NAME: results_sr(prediction, self.source, model.card, self._lesion_seg())}
        if LABEL_MAP_NAME in self.paths:
            from HCCAnalysisLib.io.dicom_seg_write import label_map_segmentation
            from HCCAnalysisLib.methods.liang2018.label_map_output import label_map_image, lesion_votes

            # the patch centres are not kept by predict_case: one more (inference-only) pass over them
            device = str(next(model.net.parameters()).device)
            votes = lesion_votes(model, case, device=device)
            image = label_map_image(case, votes)
            datasets[LABEL_MAP_NAME] = label_map_segmentation(image, list(model.card["classes"]), self.source,
                                                              model.card)
        self._write(datasets)

    def write_saliency(self, image: sitk.Image) -> None:
        """The FRACTIONAL SEG of a saliency volume on the case's segmentation grid."""
        from HCCAnalysisLib.io.dicom_seg_write import saliency_segmentation

        self._write({SALIENCY_NAME: saliency_segmentation(image, self.source, self.card)})


def _source_folder(case_dir: Path, phases: list[str], reading: CaseReading, fields: dict[str, Any] | None
                   ) -> tuple[Path, Path]:
    from HCCAnalysisLib.data.case_files import find_case_files
    from HCCAnalysisLib.io.dicom_source import DICOM_HINT

    available, segmentation = find_case_files(case_dir, reading.for_case(fields))
    folders = [available[p] for p in phases if p in available and available[p].is_dir()]
    if not folders:
        found = ", ".join(f"{p} ({available[p].name})" for p in phases if p in available) or "none present"
        raise HCCInputError(f"--dicom: none of the model's phases is a DICOM series folder (phases: {found})",
                            case_dir, DICOM_HINT)
    return folders[0], segmentation


def plan_dicom_outputs(command: str, model_dir: str | Path, case_dir: str | Path, out: str | None,
                       out_file: str | None, overwrite: bool, reading: CaseReading | None = None,
                       fields: dict[str, Any] | None = None) -> DicomOutputs:
    """Check, before any work, that `hcc COMMAND --dicom` can write its DICOM outputs (module docstring)."""
    from HCCAnalysisLib.data.reading_options import CaseReading
    from HCCAnalysisLib.io.dicom_source import import_highdicom, read_source_series
    from HCCAnalysisLib.models.package import read_card
    from HCCAnalysisLib.runtime.console import output_file
    from HCCAnalysisLib.tasks import get_task

    if out is None:
        raise HCCInputError(f"hcc {command} --dicom writes its DICOM files into the --out folder; "
                            "give --out DIR instead of --out-file")
    import_highdicom()
    card = read_card(model_dir)
    task = get_task(card["task"])
    if getattr(task, "loader", "volumes") != "volumes":
        raise HCCInputError(f"--dicom: task {task.name} reads {task.loader} images, not DICOM radiology series")
    names = [SALIENCY_NAME] if command == "saliency" else [SR_NAME] + ([LABEL_MAP_NAME] if task.label_map else [])
    paths = {name: output_file(out, None, name, overwrite) for name in names}
    folder, segmentation = _source_folder(Path(case_dir), list(card["phases"]), reading or CaseReading(), fields)
    return DicomOutputs(paths, read_source_series(folder), segmentation, card)
