"""Jia 2019's pretraining is the default (issue 12): `hcc train` without `--pretrained` logs and
uses the authors' CIFAR10 weights for three fused sequences and their MNIST weights for one
(Jia 2019 sec. 4.1), fine-tuning at half the learning rate (sec. 5.4); `--pretrained none` starts
from random weights and says so. Real 1-epoch runs on cases of the bundled demo cohort."""

import json
import shutil
from pathlib import Path

import pytest
import torch

from HCCAnalysisLib.cli import main
from HCCAnalysisLib.engine import train
from HCCAnalysisLib.models.package import CARD_NAME
from HCCAnalysisLib.models.pretrained import KNOWN_SOURCES, ROOT as PACKAGE_ROOT, resolve_pretrained
from HCCAnalysisLib.nets.jia2019_weights import load_jia2019_file
from HCCAnalysisLib.tasks import get_task

TASK = "jia2019-hcc-vs-background"
CASES = ("lung1", "brain1")  # two patients, one lesion each: the smallest real cohort that trains
BASE_LR = get_task(TASK).training["lr"]


def authors(name):
    return load_jia2019_file(PACKAGE_ROOT / KNOWN_SOURCES[name].file)


@pytest.fixture(scope="module")
def three_phase_cohort(tmp_path_factory, sample_data):
    """Demo cases whose one image stands for the task's three sequences T2, S0, S2."""
    root = tmp_path_factory.mktemp("cohort3")
    lines = ["case_id,patient_id"]
    for case in CASES:
        (root / case).mkdir()
        for phase in get_task(TASK).phases:
            shutil.copy(sample_data / "demo-cohort" / case / "image.nrrd", root / case / f"{phase}.nrrd")
        shutil.copy(sample_data / "demo-cohort" / case / "labels.nrrd", root / case / "labels.nrrd")
        lines.append(f"{case},patient-{case}")
    (root / "cases.csv").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def one_phase_cohort(tmp_path_factory, sample_data):
    root = tmp_path_factory.mktemp("cohort1")
    lines = ["case_id,patient_id"]
    for case in CASES:
        shutil.copytree(sample_data / "demo-cohort" / case, root / case)
        lines.append(f"{case},patient-{case}")
    (root / "cases.csv").write_text("\n".join(lines) + "\n")
    return root


def run_train(cohort, out, monkeypatch, capsys, *extra):
    """`hcc train` for one epoch; returns (card, log text, the net's state right after it was built)."""
    built = {}
    original = train.build_task_net

    def spy(task, pretrained_state=None, log=None):
        net = original(task, pretrained_state, log)
        built.update({k: v.detach().clone() for k, v in net.state_dict().items()})
        return net

    monkeypatch.setattr(train, "build_task_net", spy)
    main(["train", "--task", TASK, "--cohort", str(cohort), "--out", str(out), "--epochs", "1", *extra])
    card = json.loads((Path(out) / CARD_NAME).read_text())
    return card, capsys.readouterr().err, built  # messages go to stderr (logging); stdout holds results


def test_default_is_the_cifar_weights_at_half_the_learning_rate(three_phase_cohort, tmp_path, monkeypatch, capsys,
                                                                one_torch_thread):
    card, log, built = run_train(three_phase_cohort, tmp_path / "m", monkeypatch, capsys)
    cifar = authors("jia2019-cifar")
    assert "initial weights: jia2019-cifar" in log and "CIFAR10" in log
    assert "learning rate 0.0005 (0.001 x 0.5)" in log
    torch.testing.assert_close(built["conv1.weight"], cifar["embedding_net.conv1.weight"], rtol=0, atol=0)
    torch.testing.assert_close(built["embedding.weight"], cifar["embedding_net.linear.weight"], rtol=0, atol=0)
    assert card["training"]["lr"] == pytest.approx(BASE_LR * 0.5)
    assert card["training"]["pretrained"] == "jia2019-cifar"  # by name: no local path in a shared package


def test_pretrained_none_is_random_at_the_full_learning_rate(three_phase_cohort, tmp_path, monkeypatch, capsys,
                                                             one_torch_thread):
    card, log, built = run_train(three_phase_cohort, tmp_path / "m", monkeypatch, capsys, "--pretrained", "none")
    cifar = authors("jia2019-cifar")
    assert "initial weights: random initialisation (--pretrained none; the task's recipe starts from " \
           "jia2019-cifar)" in log
    assert not torch.equal(built["conv1.weight"], cifar["embedding_net.conv1.weight"])
    assert not torch.equal(built["layer1.0.conv1.weight"], cifar["embedding_net.layer1.0.conv1.weight"])
    assert card["training"]["lr"] == pytest.approx(BASE_LR) and card["training"]["pretrained"] is None


def test_one_phase_starts_from_the_mnist_weights(one_phase_cohort, tmp_path, monkeypatch, capsys, one_torch_thread):
    card, log, built = run_train(one_phase_cohort, tmp_path / "m", monkeypatch, capsys, "--phases", "image")
    mnist = authors("jia2019-mnist")
    assert "initial weights: jia2019-mnist" in log and "MNIST" in log
    assert "1-channel kernel spread over 3 replicated channels" in log
    # The grey image is in all three channels: w / 3 in each channel is exactly the MNIST kernel.
    grey = mnist["embedding_net.conv1.weight"]
    torch.testing.assert_close(built["conv1.weight"], grey.expand(-1, 3, -1, -1) / 3)
    torch.testing.assert_close(built["layer3.2.conv2.weight"], mnist["embedding_net.layer3.2.conv2.weight"],
                               rtol=0, atol=0)
    assert not torch.equal(built["layer3.2.conv2.weight"], authors("jia2019-cifar")["embedding_net.layer3.2.conv2.weight"])
    assert card["training"]["lr"] == pytest.approx(BASE_LR * 0.5)
    x = torch.rand(1, 1, 8, 8)
    torch.testing.assert_close(torch.nn.functional.conv2d(x.expand(-1, 3, -1, -1), built["conv1.weight"]),
                               torch.nn.functional.conv2d(x, grey), rtol=1e-5, atol=1e-6)


def test_defaults_are_task_data_and_named_sources_are_checked():
    jia = get_task(TASK)
    assert jia.default_pretrained(1) == "jia2019-mnist" and jia.default_pretrained(3) == "jia2019-cifar"
    assert resolve_pretrained(None, jia, 1).name == "jia2019-mnist"
    assert resolve_pretrained("", jia, 3).name == "jia2019-cifar"
    assert resolve_pretrained("none", jia, 3) is None and resolve_pretrained("None", jia, 1) is None
    wang = get_task("wang2020-image")
    assert wang.pretraining_family is None and resolve_pretrained(None, wang, 3) is None
    for name, entry in KNOWN_SOURCES.items():  # every named source is package data with its licence
        path = PACKAGE_ROOT / entry.file
        assert path.is_file() and (path.parent / "LICENSE").is_file()
        assert f"{entry.sha256}  {path.name}" in (path.parent / "SHA256SUMS").read_text()
