"""Models.json, the models folder, checksum-verified downloads, offline imports, and device choice."""

import json
import shutil
import zipfile

import pytest

from HCCAnalysisLib.models import registry as reg
from HCCAnalysisLib.engine.device import select_device
from HCCAnalysisLib.errors import HCCInputError
from test_batch import ROOT, TASK, make_model

BUNDLED_WEIGHTS = ROOT / "HCCAnalysisLib" / "methods" / "jia2019" / "weights" / "cifar_resnet_32_dict_withSPP.pkl"


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    return make_model(tmp_path_factory.mktemp("pkg") / "package", version="1.2.0")


@pytest.fixture
def root(tmp_path, monkeypatch):
    folder = tmp_path / "models"
    monkeypatch.setenv(reg.ENV_MODELS_DIR, str(folder))
    return folder


def _zip(folder, archive, inner="pkg"):
    with zipfile.ZipFile(archive, "w") as zf:
        for path in folder.iterdir():
            zf.write(path, f"{inner}/{path.name}")
    return archive


def test_bundled_registry_is_valid_and_its_hash_matches_the_bundled_file():
    entries = reg.load_registry()
    assert entries and len({e.id for e in entries}) == len(entries)
    by_file = {e.file_name: e for e in entries}
    assert by_file[BUNDLED_WEIGHTS.name].sha256 == reg.sha256_file(BUNDLED_WEIGHTS)
    for entry in entries:
        assert entry.url.startswith("https://") and entry.license and entry.training_data


def test_registry_errors_name_the_entry(tmp_path):
    good = json.loads((ROOT / "HCCAnalysis" / "Resources" / "Models.json").read_text())["models"][0]
    cases = {
        "sha256 is not 64": dict(good, sha256="abc"),
        "not a plain file name": dict(good, file_name="../evil.pkl"),
        "unknown kind": dict(good, kind="other"),
        "lacks": {k: v for k, v in good.items() if k != "license"},
    }
    for message, item in cases.items():
        path = tmp_path / "Models.json"
        path.write_text(json.dumps({"schema_version": 1, "models": [item]}))
        with pytest.raises(HCCInputError, match=message) as info:
            reg.load_registry(path)
        assert "models[0]" in str(info.value)
    path.write_text(json.dumps({"schema_version": 1, "models": [good, good]}))
    with pytest.raises(HCCInputError, match="repeats the id"):
        reg.load_registry(path)


def test_models_dir_honours_the_environment_variable(root):
    assert reg.models_dir() == root and not root.exists()
    assert reg.models_dir(create=True).is_dir()


def test_import_folder_and_zip_list_find_and_refuse_duplicates(root, package, tmp_path):
    installed = reg.import_package(package)
    assert installed.path == root / TASK / "1.2.0" and installed.label == f"{TASK} 1.2.0"
    assert [m.label for m in reg.installed_models()] == [installed.label]
    assert reg.find_model("1.2.0", task=TASK) == installed.path == reg.find_model("latest", task=TASK)
    with pytest.raises(HCCInputError, match="already installed"):
        reg.import_package(package)
    other = make_model(tmp_path / "v2", seed=3, version="1.10.0")
    archive = _zip(other, tmp_path / "v2.zip")
    from_zip = reg.import_package(archive, sha256=reg.sha256_file(archive))
    assert from_zip.path == root / TASK / "1.10.0"
    assert reg.find_model("latest", task=TASK) == from_zip.path  # 1.10 sorts after 1.2
    with pytest.raises(HCCInputError, match="neither a package folder nor an installed version"):
        reg.find_model("9.9", task=TASK)


def test_tampered_or_unsafe_packages_are_refused_and_leave_nothing(root, package, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(package, bad)
    weights = bad / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(HCCInputError, match="does not match the card"):
        reg.import_package(bad)
    archive = _zip(package, tmp_path / "p.zip")
    with pytest.raises(HCCInputError, match="SHA-256 mismatch"):
        reg.import_package(archive, sha256="0" * 64)
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("../outside/model.json", "{}")
    with pytest.raises(HCCInputError, match="unsafe path"):
        reg.import_package(evil)
    assert not (tmp_path / "outside").exists()
    assert reg.installed_models() == [] and [p.name for p in root.iterdir()] == []


def test_download_checks_the_hash_itself_and_deletes_a_bad_file(root, package, tmp_path):
    archive = _zip(package, tmp_path / "pkg.zip")
    entry = reg.RegistryEntry(id="t", task=TASK, version="1.2.0", kind="model-package", url=archive.as_uri(),
                              sha256=reg.sha256_file(archive), file_name="pkg.zip", license="test",
                              training_data="none")
    calls = []

    def recording_download(url, folder, name, checksum=None):
        calls.append(checksum)  # SampleData's downloadFile receives the checksum in this form
        return reg.urllib_download(url, folder, name)

    assert reg.download(entry, recording_download) == root / TASK / "1.2.0"
    assert calls == [f"SHA256:{entry.sha256}"] and not (root / ".downloads" / "pkg.zip").exists()
    wrong = reg.RegistryEntry(**dict(entry.__dict__, version="2", sha256="1" * 64))
    with pytest.raises(HCCInputError, match="SHA-256 mismatch"):
        reg.download(wrong)
    assert not (root / ".downloads" / "pkg.zip").exists()
    weights = next(e for e in reg.load_registry() if e.file_name == BUNDLED_WEIGHTS.name)
    local = reg.RegistryEntry(**dict(weights.__dict__, url=BUNDLED_WEIGHTS.as_uri()))
    target = reg.download(local)
    assert target == root / "pretrained" / BUNDLED_WEIGHTS.name
    assert target.read_bytes() == BUNDLED_WEIGHTS.read_bytes()


def test_clear_removes_only_what_the_registry_made(root, package):
    reg.import_package(package)
    (root / "pretrained").mkdir()
    (root / "pretrained" / "w.pkl").write_bytes(b"x")
    (root / "notes.txt").write_text("user file")
    assert reg.clear_models_dir() == 2
    assert sorted(p.name for p in root.iterdir()) == ["notes.txt"]


def test_device_selection():
    import torch

    assert select_device("cpu").device == "cpu"
    with pytest.raises(HCCInputError, match="unknown device"):
        select_device("gpu")
    if torch.cuda.is_available():
        assert select_device("auto").device == "cuda:0" and select_device("cuda").device == "cuda:0"
        assert "GiB" in select_device("cuda").description
    else:
        auto = select_device("auto")
        assert auto.device == "cpu" and "no CUDA GPU found" in auto.description
        with pytest.raises(HCCInputError, match="no CUDA GPU is usable"):
            select_device("cuda")
    with pytest.raises(HCCInputError, match="does not exist|no CUDA GPU"):
        select_device("cuda:99")
