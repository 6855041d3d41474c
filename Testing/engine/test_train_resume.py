"""Checkpoints: an interrupted training continues bit for bit; unfinished and finished work is kept.

The end-to-end case kills `hcc train` with SIGKILL (no clean-up runs) right after its first
epoch's checkpoint appears, resumes it with `--resume`, and compares the package's weights
with those of an uninterrupted run: they must be equal to the bit.
"""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from HCCAnalysisLib.cli import main
from HCCAnalysisLib.engine.checkpoint import CHECKPOINT_NAME, load_checkpoint
from HCCAnalysisLib.engine.train import fit
from HCCAnalysisLib.engine.train_resume import checkpoint_folder
from HCCAnalysisLib.errors import HCCInputError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_train_loader import tiny_samples, tiny_task  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")
ROOT = Path(__file__).resolve().parents[2]


class Interrupted(Exception):
    pass


def _stop_after(epochs_done):
    def progress(fraction, message):
        if message.startswith(f"epoch {epochs_done}/"):
            raise Interrupted()
    return progress


def _no_log(*args, **kwargs):
    pass


def test_fit_resumes_bit_for_bit_with_schedule_augmentation_and_records(tmp_path):
    # StepLR every epoch and random rotations: the schedule and both generators must be restored
    task, samples = tiny_task(epochs=3, lr_step=1, lr_gamma=0.5, optimiser="sgd"), tiny_samples()
    whole, history = fit(task, samples, torch.device("cpu"), seed=2, log=_no_log, checkpoint_dir=tmp_path / "a")
    with pytest.raises(Interrupted):
        fit(task, samples, torch.device("cpu"), seed=2, log=_no_log, checkpoint_dir=tmp_path / "b",
            progress=_stop_after(1))
    state = torch.load(tmp_path / "b" / CHECKPOINT_NAME, weights_only=True)
    assert state["epoch"] == 1
    resumed, resumed_history = fit(task, samples, torch.device("cpu"), seed=2, log=_no_log,
                                   checkpoint_dir=tmp_path / "b", resume=True)
    for key, value in whole.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key
    assert resumed_history["loss"] == history["loss"]
    assert [r["lr"] for r in resumed_history["records"]] == [0.001, 0.0005, 0.00025]
    assert (tmp_path / "b" / "training_log.tsv").read_text().splitlines()[0].split("\t")[:3] == [
        "epoch", "loss", "train_accuracy"]
    # a checkpoint of another run is refused, naming what differs
    with pytest.raises(HCCInputError, match=r"other settings \(seed: 2 then, 3 now"):
        fit(task, samples, torch.device("cpu"), seed=3, log=_no_log, checkpoint_dir=tmp_path / "b", resume=True)
    with pytest.raises(HCCInputError, match="other settings"):
        load_checkpoint(tmp_path / "b" / CHECKPOINT_NAME, {"samples": 99})


def _one_case_cohort(folder):
    """The demo cohort's lung1 alone (lesion and background samples: both classes of the task)."""
    shutil.copytree(ROOT / "HCCAnalysisLib" / "sample_data" / "demo-cohort" / "lung1", folder / "lung1")
    (folder / "cases.csv").write_text("case_id,patient_id,modality\nlung1,patient-lung1,CT\n")
    return folder


def _train_args(out, cache, *extra):
    return ["train", "--task", "jia2019-hcc-vs-background", "--cohort", str(cache.parent / "cohort"),
            "--phases", "image", "--pretrained", "none", "--epochs", "2", "--seed", "5", "--cache", str(cache),
            "--workers", "0", "--out", str(out), *extra]


def test_hcc_train_killed_after_an_epoch_resumes_to_the_uninterrupted_weights(tmp_path):
    cache = tmp_path / "cache"
    _one_case_cohort(tmp_path / "cohort")
    assert main(_train_args(tmp_path / "whole", cache)) == 0
    killed = tmp_path / "killed"
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    process = subprocess.Popen([sys.executable, "-m", "HCCAnalysisLib.cli", *_train_args(killed, cache)],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    checkpoint = checkpoint_folder(killed) / CHECKPOINT_NAME
    deadline = time.time() + 240
    while not checkpoint.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    stderr = process.communicate()[1].decode(errors="replace")
    assert checkpoint.exists(), stderr[-2000:]
    assert not (killed / "model.json").exists()  # it really was stopped mid-run
    assert torch.load(checkpoint, weights_only=True)["epoch"] == 1
    # rerunning without --resume would start afresh over someone's unfinished training: refused
    assert main(_train_args(killed, cache)) == 2
    assert main(_train_args(killed, cache, "--resume")) == 0
    whole, resumed = load_file(tmp_path / "whole" / "model.safetensors"), load_file(killed / "model.safetensors")
    assert whole.keys() == resumed.keys()
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)
    assert not checkpoint_folder(killed).exists()  # the checkpoint goes once the package is written
    logs = [[line.split("\t")[:3] for line in (folder / "training_log.tsv").read_text().splitlines()]
            for folder in (tmp_path / "whole", killed)]
    assert [row[0] for row in logs[1]] == ["epoch", "1", "2"]
    assert logs[0] == logs[1]  # epoch, loss, training accuracy: the same record
    # a finished package stays refused, --resume or not, unless --overwrite
    assert main(_train_args(killed, cache, "--resume")) == 2


def test_an_unfinished_training_is_kept_unless_resumed_or_overwritten(tmp_path):
    from HCCAnalysisLib.engine.train_resume import prepare_checkpoint_folder

    out = tmp_path / "model"
    folder = checkpoint_folder(out)
    assert folder == tmp_path / "model.partial" and prepare_checkpoint_folder(out, False, False) == folder
    folder.mkdir()
    (folder / CHECKPOINT_NAME).write_bytes(b"someone's epoch 7")
    with pytest.raises(HCCInputError, match="unfinished training.*--resume.*--overwrite"):
        prepare_checkpoint_folder(out, resume=False, overwrite=False)
    assert prepare_checkpoint_folder(out, resume=True, overwrite=False) == folder
    assert (folder / CHECKPOINT_NAME).exists()
    with pytest.raises(HCCInputError, match="not a readable training checkpoint"):
        load_checkpoint(folder / CHECKPOINT_NAME, {})
    prepare_checkpoint_folder(out, resume=False, overwrite=True)
    assert not folder.exists()
