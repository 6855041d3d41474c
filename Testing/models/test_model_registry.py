"""Models.json, the models folder, checksum-verified downloads, offline imports, and device choice."""

import json
import shutil
import zipfile

import pytest

from pathlib import Path

from HCCAnalysisLib.models import registry as reg
from HCCAnalysisLib.engine.device import select_device
from HCCAnalysisLib.errors import HCCInputError

ROOT = Path(__file__).resolve().parents[2]
TASK = "jia2019-hcc-vs-background"
BUNDLED_WEIGHTS = ROOT / "HCCAnalysisLib" / "methods" / "jia2019" / "weights" / "cifar_resnet_32_dict_withSPP.pkl"
REGISTRY = ROOT / "HCCAnalysisLib" / "models" / "Models.json"
DEMO_ZIP = ROOT / "HCCAnalysisLib" / "models" / "bundled" / "jia2019-hcc-vs-background-0.2.0-demo.zip"


def make_model(folder, version="0.0.1"):
    """A real model package (the bundled demo model) under another version: the card changes, the
    weights and their SHA-256 do not. No torch needed."""
    folder.mkdir(parents=True)
    with zipfile.ZipFile(DEMO_ZIP) as zf:
        for name in zf.namelist():
            (folder / Path(name).name).write_bytes(zf.read(name))
    card = json.loads((folder / "model.json").read_text())
    (folder / "model.json").write_text(json.dumps(dict(card, version=version)))
    return folder


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
        assert entry.url.startswith(("https://", "file:")) and entry.license and entry.training_data
    assert reg.default_registry_path() == REGISTRY


def test_registry_errors_name_the_entry(tmp_path):
    good = next(m for m in json.loads(REGISTRY.read_text())["models"] if m["kind"] == "pretrained-weights")
    package = dict(good, kind="model-package", title="t", intended_use="u", id="p", url="https://x/p.zip")
    cases = {
        "sha256 is not 64": dict(good, sha256="abc"),
        "not a plain file name": dict(good, file_name="../evil.pkl"),
        "unknown kind": dict(good, kind="other"),
        "lacks": {k: v for k, v in good.items() if k != "license"},
        r"lacks \['intended_use'\]": {k: v for k, v in package.items() if k != "intended_use"},
        r"unknown field\(s\) \['licence'\]": dict(good, licence="MIT"),
        "size_bytes '12' is not a positive": dict(good, size_bytes="12"),
        "size_bytes 0 is not a positive": dict(good, size_bytes=0),
        r"field\(s\) \['title'\] must be text": dict(good, title=3),
        "neither http": dict(good, url="../elsewhere/w.pkl"),
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
    path.write_text(json.dumps({"schema_version": 1, "models": [package, dict(package, id="q")]}))
    with pytest.raises(HCCInputError, match="repeats .* version"):
        reg.load_registry(path)
    path.write_text(json.dumps({"schema_version": 1, "models": [], "model": []}))
    with pytest.raises(HCCInputError, match="unknown top-level"):
        reg.load_registry(path)


def test_relative_urls_resolve_against_the_registry_and_newest_comes_first(tmp_path):
    base = {"task": TASK, "kind": "model-package", "sha256": "a" * 64, "size_bytes": 1, "license": "x",
            "training_data": "y", "title": "t", "intended_use": "u"}
    items = [dict(base, id=f"m{v}", version=v, url=f"sub dir/m{v}.zip", file_name=f"m{v}.zip")
             for v in ("1.2.0", "1.10.0", "1.9")]
    items.append(dict(base, id="w", kind="pretrained-weights", version="9", url="https://h/w.pkl", file_name="w.pkl"))
    (tmp_path / "Models.json").write_text(json.dumps({"schema_version": 1, "models": items}))
    offered = reg.downloadable_models(TASK, tmp_path / "Models.json")
    assert [e.version for e in offered] == ["1.10.0", "1.9", "1.2.0"]  # no pretrained weights among them
    assert offered[0].url == (tmp_path / "sub dir" / "m1.10.0.zip").as_uri()
    assert reg.downloadable_models("no-such-task", tmp_path / "Models.json") == []
    from HCCAnalysisLib.models.catalog import resolve_url

    assert resolve_url("m.zip", "https://lab.example/models/Models.json") == "https://lab.example/models/m.zip"


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
    other = make_model(tmp_path / "v2", version="1.10.0")
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
                              training_data="none", size_bytes=archive.stat().st_size)
    calls = []

    http_entry = reg.RegistryEntry(**dict(entry.__dict__, url="http://lab.example/pkg.zip"))

    def serving_download(url, folder, name, checksum=None):  # stands in for the network: serves the file
        calls.append(checksum)  # SampleData's downloadFile receives the checksum in this form
        return reg.urllib_download(archive.as_uri(), folder, name)

    assert reg.download(http_entry, serving_download) == root / TASK / "1.2.0"
    assert calls == [f"SHA256:{entry.sha256}"] and not (root / ".downloads" / "pkg.zip").exists()
    with pytest.raises(HCCInputError, match="already installed"):  # refused before downloading
        reg.download(entry)
    for wrong, message in ((dict(version="2", sha256="1" * 64), "SHA-256 mismatch"),
                           (dict(version="3", size_bytes=5), "has .* bytes, the registry says 5"),
                           (dict(version="4"), "holds .* 1.2.0, not .* 4")):
        with pytest.raises(HCCInputError, match=message):
            reg.download(reg.RegistryEntry(**dict(entry.__dict__, **wrong)))
        assert not (root / ".downloads" / "pkg.zip").exists()
    assert [m.version for m in reg.installed_models()] == ["1.2.0"]
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


def test_registry_and_demo_model_ship_as_package_data_for_pip_and_slicer():
    import fnmatch
    import re
    import tomllib

    lib = ROOT / "HCCAnalysisLib"
    files = [REGISTRY, *(lib / "models" / "bundled").iterdir()]
    shipped = sorted(p.relative_to(lib / "models").as_posix() for p in files)
    text = (lib / "CMakeLists.txt").read_text()
    block = re.search(r"set\(MODULE_PYTHON_RESOURCES\s+(.*?)\)", text, re.S).group(1)
    listed = [line.strip() for line in block.splitlines() if line.strip() and not line.strip().startswith("#")]
    assert [item for item in listed if not (lib / item).is_file()] == []
    assert all(f"models/{name}" in listed for name in shipped), "list them in MODULE_PYTHON_RESOURCES"
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert all(any(fnmatch.fnmatch(name, g) for g in globs["HCCAnalysisLib.models"]) for name in shipped)
