"""Bad model packages, pretrained weights and prediction inputs (GitHub issue 7); table in
test_bad_inputs_cases.py.

Packages are written by models.save_model from a freshly built (untrained) net: the checks
are about the files, not the weights' quality. Third-party `.pkl` files are only ever loaded
weights-only: a pickle whose unpickling would create a marker folder proves it.
"""

import shutil

import numpy as np
import pytest
import torch

from helpers import bad_inputs as bad
from HCCAnalysisLib.models import pretrained
from HCCAnalysisLib.data.case import load_case
from HCCAnalysisLib.engine.infer import predict_case
from HCCAnalysisLib.models.package import load_model, sha256_of
from HCCAnalysisLib.nets.jia2019_weights import from_jia2019, load_jia2019_file
from HCCAnalysisLib.models.pretrained import KNOWN_SOURCES, resolve_pretrained

BUNDLED_PKL = bad.ROOT / "HCCAnalysisLib" / "methods" / "jia2019" / "weights" / "cifar_resnet_32_dict_withSPP.pkl"


refused = bad.refused  # expect HCCInputError naming every part, nothing changed


@pytest.fixture
def package(tmp_path):
    return bad.build_package(tmp_path / "model")


def test_fresh_package_loads_and_predicts(package):
    """Control: the package the bad cases start from is good."""
    model = load_model(package)
    rows = predict_case(model, load_case(bad.SMALL_CASE)).rows
    assert {r.kind for r in rows} == {"lesion", "background"}


# ---------------------------------------------------------------- model packages --------------------

def test_changed_weight_file(package, tmp_path, capsys):
    weights = package / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-7] ^= 0x01
    weights.write_bytes(bytes(data))
    refused(lambda: load_model(package), f"{weights}:", "SHA-256", "does not match the card's",
            "altered or swapped", inputs=[package])
    out = tmp_path / "results.tsv"
    with bad.Unchanged(package, absent=[out]):
        code, err = bad.run_cli(["predict", "--model", package, "--case", bad.SMALL_CASE, "--out-file", out], capsys)
    assert code == 2
    bad.assert_message(err, "hcc predict: error:", str(weights), "does not match")


@pytest.mark.parametrize("edit, parts", [
    (lambda p: bad.edit_card(p, lambda c: c.pop("net_kwargs")), ["model.json:", "lacks the field(s) ['net_kwargs']"]),
    (lambda p: (p / "model.json").write_text("{task: jia2019"), ["model.json:", "is not valid JSON"]),
    (lambda p: bad.edit_card(p, lambda c: c.update(classes=["a", "b"])),
     ["model.json:", "classes ['a', 'b'] differ from task jia2019-hcc-vs-background's"]),
    (lambda p: (p / "model.json").unlink(), ["is not a model package (no model.json)"]),
    (lambda p: (p / "model.safetensors").unlink(), ["model.safetensors:", "weights file is missing"]),
    (bad.wrong_shape_weights, ["model.safetensors:", "weights do not fit network 'resnet20_spp'",
                               "size mismatch for embedding.weight"]),
    (lambda p: ((p / "model.safetensors").write_bytes(b"not safetensors at all"),
                bad.edit_card(p, lambda c: c.update(weights_sha256=sha256_of(p / "model.safetensors")))),
     ["model.safetensors:", "could not be read as safetensors"]),
], ids=["card-field-missing", "card-not-json", "card-classes-differ", "no-card", "weights-missing",
        "wrong-shapes-right-hash", "not-safetensors-right-hash"])
def test_bad_model_package(package, edit, parts):
    edit(package)
    error = refused(lambda: load_model(package), *parts, inputs=[package])
    assert str(package) in str(error)


def test_model_of_another_task(package):
    refused(lambda: load_model(package, expected_task=bad.DIFF_TASK), f"{package}:",
            f"is a model for task '{bad.TASK}', not '{bad.DIFF_TASK}'", inputs=[package])


@pytest.mark.parametrize("field, value, problem", [("task", "nope", "unknown task 'nope'"),
                                                   ("net", "nonet", "unknown network 'nonet'")])
def test_card_names_an_unknown_task_or_network(package, field, value, problem):
    bad.edit_card(package, lambda c: c.update({field: value}))
    refused(lambda: load_model(package), "model.json:", problem, inputs=[package])


def test_card_with_unknown_net_arguments(package):
    bad.edit_card(package, lambda c: c["net_kwargs"].update(bogus=1))
    refused(lambda: load_model(package), "model.json:", "bogus", inputs=[package])


def test_card_with_two_phases_for_a_three_channel_task(tmp_path):
    package = bad.build_package(tmp_path / "model", phases=("arterial", "portal"))
    refused(lambda: load_model(package), "model.json:", "takes 1 or 3 phases, got 2", inputs=[package])


def test_load_model_on_cuda_where_none_exists(package):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    refused(lambda: load_model(package, device="cuda"), "CUDA was requested but no CUDA GPU is usable",
            inputs=[package])


# ---------------------------------------------------------------- prediction inputs -----------------

def test_two_phases_for_a_three_channel_task(tmp_path):
    from HCCAnalysisLib.engine.infer import make_samples
    from HCCAnalysisLib.tasks import get_task

    case_dir = bad.copy_case(tmp_path / "case", image_name="arterial.nrrd")
    shutil.copy(case_dir / "arterial.nrrd", case_dir / "portal.nrrd")
    case = load_case(case_dir)
    refused(lambda: make_samples(get_task(bad.TASK), case, ["arterial", "portal"]), f"{case_dir}:",
            f"task {bad.TASK} takes 1 or 3 phases, got 2", inputs=[case_dir])


def test_phases_differ_from_the_model(package):
    model, case = load_model(package), load_case(bad.SMALL_CASE)
    refused(lambda: predict_case(model, case, phases=["T2"]), f"{package}:",
            "phases ['T2'] differ from the ['image'] the model was trained on", inputs=[package])


def test_constant_image(package, tmp_path):
    case_dir = bad.copy_case(tmp_path / "case")
    bad.constant_copy(case_dir / "image.nrrd", case_dir / "image.nrrd")
    model, case = load_model(package), load_case(case_dir)
    refused(lambda: predict_case(model, case), f"{case_dir}: phase 'image':", "is constant", inputs=[case_dir, package])


def test_no_liver_label_for_a_task_with_background_rois(package, tmp_path):
    case_dir = bad.copy_case(tmp_path / "case")
    bad.edit_labels(case_dir, lambda a: np.where(a == 1, 0, a))
    model, case = load_model(package), load_case(case_dir)
    refused(lambda: predict_case(model, case), f"{case_dir}:", "has no liver label",
            "this task samples background liver ROIs", inputs=[case_dir, package])


# ---------------------------------------------------------------- third-party .pkl ------------------

def test_malicious_pickle_is_never_executed(tmp_path):
    """The same payload loaded unsafely creates its marker (the control); the library refuses it."""
    control, marker = tmp_path / "control-marker", tmp_path / "marker"
    bad.malicious_pickle(tmp_path / "control.pkl", control)
    torch.load(tmp_path / "control.pkl", weights_only=False)  # what a free unpickling would do
    assert control.is_dir()
    evil = bad.malicious_pickle(tmp_path / "evil.pkl", marker)
    for load in (load_jia2019_file, lambda p: resolve_pretrained(str(p))):
        refused(lambda: load(evil), f"{evil}:", "not a plain PyTorch state dict",
                "refused by the weights-only loader", "never executed", inputs=[evil], absent=[marker])


def test_malicious_pickle_through_cli_train(tmp_path, capsys):
    cohort = bad.cohort_copy(tmp_path / "cohort", ["breast1,p1,MR", "lung1,p2,CT"])
    marker, out = tmp_path / "marker", tmp_path / "model"
    evil = bad.malicious_pickle(tmp_path / "evil.pkl", marker)
    with bad.Unchanged(cohort, evil, absent=[marker, out]):
        code, err = bad.run_cli(["train", "--task", bad.TASK, "--cohort", cohort, "--phases", "image",
                                 "--pretrained", evil, "--epochs", "1", "--out", out], capsys)
    assert code == 2
    bad.assert_message(err, "hcc train: error:", str(evil), "not a plain PyTorch state dict")


@pytest.mark.parametrize("build, parts", [
    (lambda p: bad.plain_pickle(p, {"conv1": [1, 2, 3]}), ["not a plain PyTorch state dict"]),
    (lambda p: torch.save([torch.zeros(2)], p), ["expected a state dict (mapping of names to tensors), got list"]),
    (lambda p: torch.save({"conv.weight": torch.zeros(2)}, p), ["not a Jia 2019 ResNet20 state dict: missing"]),
    (lambda p: bad.truncated_copy(BUNDLED_PKL, p), ["not a plain PyTorch state dict", "unexpected EOF"]),
], ids=["plain-python-objects", "list-of-tensors", "other-keys", "truncated"])
@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_bad_third_party_pkl(tmp_path, build, parts):
    path = tmp_path / "weights.pkl"
    build(path)
    refused(lambda: resolve_pretrained(str(path)), f"{path}:", *parts, inputs=[tmp_path])


def test_text_file_named_pkl(tmp_path):
    path = tmp_path / "weights.pkl"
    path.write_text("hello, these are not weights")
    refused(lambda: load_jia2019_file(path), f"{path}:", "not a plain PyTorch state dict", inputs=[tmp_path])


@pytest.mark.parametrize("source", ["imagenet", "missing.pkl"])
def test_unknown_pretrained_source(source):
    refused(lambda: resolve_pretrained(source), f"{source}:", "pretrained weights file does not exist",
            ", ".join(sorted(KNOWN_SOURCES)) + ", none")


def test_bundled_weights_altered(tmp_path, monkeypatch):
    relative = pretrained.KNOWN_SOURCES["jia2019-cifar"][0]
    copy = tmp_path / relative
    copy.parent.mkdir(parents=True)
    data = bytearray(BUNDLED_PKL.read_bytes())
    data[len(data) // 2] ^= 0x01
    copy.write_bytes(bytes(data))
    monkeypatch.setattr(pretrained, "ROOT", tmp_path)
    refused(lambda: resolve_pretrained("jia2019-cifar"), f"{copy}:", "SHA-256", "differs from the recorded",
            "restore them", inputs=[tmp_path])


def test_jia_state_dict_of_wrong_shapes(tmp_path):
    state = dict(load_jia2019_file(BUNDLED_PKL))
    state["embedding_net.layer1.0.conv1.weight"] = torch.zeros(3, 3)
    path = tmp_path / "wrong.pkl"
    torch.save(state, path)
    refused(lambda: from_jia2019(load_jia2019_file(path), source=path), f"{path}:", "layer1.0.conv1.weight",
            inputs=[tmp_path])
