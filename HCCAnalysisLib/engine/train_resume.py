"""`hcc train`'s checkpoint folder beside the model package, its validation share and its logs.

While a training runs, `<out>.partial/` holds the last epoch's checkpoint, the running
training_log.tsv and the TensorBoard log (open it during training). `--resume` continues from
that checkpoint; without it an existing checkpoint is refused (it is someone's unfinished work)
unless `--overwrite`. When the package is written the logs move into it and the folder goes.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from HCCAnalysisLib.engine.checkpoint import CHECKPOINT_NAME
from HCCAnalysisLib.engine.epoch_log import LOG_NAME, TENSORBOARD_DIR, write_tsv
from HCCAnalysisLib.errors import HCCInputError

if TYPE_CHECKING:
    from HCCAnalysisLib.data.cohort import CaseRecord, Cohort
    from HCCAnalysisLib.data.samples import Sample


_LOG = logging.getLogger(__name__)


def checkpoint_folder(out_dir: str | Path) -> Path:
    out_dir = Path(out_dir)
    return out_dir.with_name(out_dir.name + ".partial")


def prepare_checkpoint_folder(out_dir: str | Path, resume: bool, overwrite: bool) -> Path:
    """The checkpoint folder for a training into `out_dir`, checked before any work."""
    folder = checkpoint_folder(out_dir)
    if folder.exists() and not folder.is_dir():
        raise HCCInputError("is a file, where the training's checkpoint folder goes", folder)
    if (folder / CHECKPOINT_NAME).is_file() and not resume:
        if not overwrite:
            raise HCCInputError("holds the checkpoint of an unfinished training", folder,
                                "add --resume to continue it, or --overwrite to start afresh")
        shutil.rmtree(folder, ignore_errors=True)  # under torchrun every process may get here
    return folder


def validation_share(records: Sequence[CaseRecord], share: float | None, seed: int,
                     log: Callable[[str], Any] = _LOG.info) -> tuple[list[CaseRecord], list[CaseRecord]]:
    """(training cases, validation cases): the whole cohort and none without a share. Checked
    from the cases table alone, before any image is read."""
    if not share:
        return list(records), []
    from HCCAnalysisLib.engine.validation import patient_split

    train, held = patient_split(records, share, seed)
    log(f"validation share: {len(held)} case(s) of {len({r.patient_id for r in held})} patient(s) held out "
        f"of training ({', '.join(r.case_id for r in held)})")
    return train, held


def validation_samples(held: Sequence[CaseRecord], samples_by_case: Mapping[str, Sequence[Sample]]
                       ) -> Sequence[Sample] | None:
    """The held-out cases' samples as one sequence (a view: cached samples stay on disk)."""
    if not held:
        return None
    from HCCAnalysisLib.data.sample_views import ConcatSamples

    return ConcatSamples([samples_by_case[r.case_id] for r in held])


def run_key(cohort: Cohort, phases: Sequence[str], source: Any, val_share: float | None) -> dict[str, Any]:
    """What, beyond fit's own settings, a resumed training must share with the interrupted one."""
    return {"cohort": str(Path(cohort.folder).resolve()), "cases": [r.case_id for r in cohort.records],
            "phases": list(phases), "pretrained_source": None if source is None else str(source[0]),
            "val_share": val_share}


def finish(out_dir: str | Path, folder: Path, records: Sequence[Mapping[str, Any]]) -> None:
    """Into the written package: training_log.tsv and the TensorBoard log; then the checkpoint goes."""
    out_dir = Path(out_dir)
    write_tsv(out_dir / LOG_NAME, records)
    board = folder / TENSORBOARD_DIR
    if board.is_dir():
        target = out_dir / TENSORBOARD_DIR
        if target.exists():  # an older package's log, carried over on --overwrite
            shutil.rmtree(target)
        os.replace(board, target)
    shutil.rmtree(folder, ignore_errors=True)
