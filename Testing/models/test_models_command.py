"""`hcc models list | install | remove | entry` against a local registry with checksums (file:// and
relative URLs in a temporary Models.json), and the bundled demo model installed offline and run."""

import json
import re
import zipfile
from pathlib import Path

import pytest

from HCCAnalysisLib import cli
from HCCAnalysisLib.models import registry as reg

ROOT = Path(__file__).resolve().parents[2]
TASK = "jia2019-hcc-vs-background"
BUNDLED = ROOT / "HCCAnalysisLib" / "models" / "bundled"
DEMO_ZIP = BUNDLED / "jia2019-hcc-vs-background-0.2.0-demo.zip"


@pytest.fixture
def models(tmp_path, monkeypatch):
    folder = tmp_path / "models"
    monkeypatch.setenv(reg.ENV_MODELS_DIR, str(folder))
    return folder


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A package folder as `hcc train` leaves it (version "local"): the demo model's files."""
    folder = tmp_path_factory.mktemp("trained") / "model"
    folder.mkdir()
    with zipfile.ZipFile(DEMO_ZIP) as zf:
        for name in zf.namelist():
            (folder / Path(name).name).write_bytes(zf.read(name))
    card = json.loads((folder / "model.json").read_text())
    cleared = dict(card, version="local", title="", intended_use="", license="", training_data="")
    (folder / "model.json").write_text(json.dumps(cleared))
    return folder


def hcc(capsys, *args):
    status = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return status, out, err


def lab_registry(capsys, trained, folder):
    """What a lab does: `hcc models entry` for a trained package, the entry pasted into its Models.json."""
    folder.mkdir()
    status, out, err = hcc(capsys, "models", "entry", trained, "--url", "lab-1.0.0.zip", "--version", "1.0.0",
                           "--zip-dir", folder, "--id", "lab-hcc", "--license", "CC-BY-4.0", "--title", "Lab model",
                           "--intended-use", "research")
    assert status == 0, err
    entry = json.loads(out)
    produced = folder / f"{TASK}-1.0.0.zip"
    produced.rename(folder / "lab-1.0.0.zip")
    assert entry["sha256"] == reg.sha256_file(folder / "lab-1.0.0.zip")
    assert entry["size_bytes"] == (folder / "lab-1.0.0.zip").stat().st_size and "4 cases" in entry["training_data"]
    absolute = dict(entry, id="lab-hcc-abs", version="1.0.0-abs", url=(folder / "lab-1.0.0.zip").as_uri())
    corrupt = dict(entry, id="lab-hcc-bad", version="2.0.0", sha256="0" * 64)
    (folder / "Models.json").write_text(json.dumps({"schema_version": 1, "models": [entry, absolute, corrupt]}))
    return folder / "Models.json"


def test_lab_round_trip_list_install_overwrite_remove(models, trained, tmp_path, capsys):
    registry = lab_registry(capsys, trained, tmp_path / "lab")
    status, out, _ = hcc(capsys, "models", "list", "--registry", registry, "--json")
    listing = json.loads(out)
    assert status == 0 and listing["installed"] == []
    assert [(e["id"], e["installed"]) for e in listing["available"]] == [
        ("lab-hcc", False), ("lab-hcc-abs", False), ("lab-hcc-bad", False)]
    by_url = json.loads(hcc(capsys, "models", "list", "--registry", registry.as_uri(), "--json")[1])
    assert by_url["available"] == listing["available"]  # a registry URL: relative entries resolve the same way
    assert listing["available"][0]["url"] == (registry.parent / "lab-1.0.0.zip").as_uri()

    status, out, err = hcc(capsys, "models", "install", "lab-hcc", "--registry", registry)
    assert status == 0, err
    assert (models / TASK / "1.0.0" / "model.json").is_file()
    assert json.loads((models / TASK / "1.0.0" / "model.json").read_text())["version"] == "1.0.0"
    status, _, err = hcc(capsys, "models", "install", "lab-hcc", "--registry", registry)
    assert status == 2 and "already installed" in err and "--overwrite" in err
    status, _, err = hcc(capsys, "models", "install", "lab-hcc", "--registry", registry, "--overwrite")
    assert status == 0, err

    status, out, _ = hcc(capsys, "models", "list", "--registry", registry)
    assert re.search(r"installed\s+1\.0\.0\s+Lab model", out) and "[installed, CC-BY-4.0]" in out
    assert "No public HCC model exists" in out

    status, _, err = hcc(capsys, "models", "remove", TASK, "1.0.0")
    assert status == 0, err
    assert reg.installed_models() == [] and not (models / TASK).exists()
    status, _, err = hcc(capsys, "models", "remove", TASK, "1.0.0")
    assert status == 2 and "is not installed" in err


def test_checksum_mismatch_installs_nothing(models, trained, tmp_path, capsys):
    registry = lab_registry(capsys, trained, tmp_path / "lab")
    status, _, err = hcc(capsys, "models", "install", "lab-hcc-bad", "--registry", registry)
    assert status == 2 and "SHA-256 mismatch" in err
    assert reg.installed_models() == [] and not (models / TASK).exists()
    assert list((models / ".downloads").iterdir()) == [] and not list(models.glob(".import-*"))


def test_install_from_zip_folder_and_url_and_remove_by_id(models, trained, tmp_path, capsys):
    registry = lab_registry(capsys, trained, tmp_path / "lab")
    zip_path = tmp_path / "lab" / "lab-1.0.0.zip"
    assert hcc(capsys, "models", "install", zip_path)[0] == 0           # offline import of an archive
    assert hcc(capsys, "models", "install", trained)[0] == 0            # ... of a folder (version "local")
    status, _, err = hcc(capsys, "models", "install", (tmp_path / "lab" / "lab-1.0.0.zip").as_uri(),
                         "--registry", registry)                          # a listed URL: checksum from the entry
    assert status == 2 and "already installed" in err
    assert sorted(m.version for m in reg.installed_models()) == ["1.0.0", "local"]
    assert hcc(capsys, "models", "remove", "lab-hcc", "--registry", registry)[0] == 0
    status, _, err = hcc(capsys, "models", "install", zip_path.as_uri())  # unlisted URL: says what protects it
    assert status == 0 and "no checksum protects the archive" in err
    status, _, err = hcc(capsys, "models", "install", "no-such-model", "--registry", registry)
    assert status == 2 and "lab-hcc, lab-hcc-abs" in err


def test_entry_zip_is_reproducible_and_refuses_a_bad_version(trained, tmp_path, capsys):
    first = reg.zip_package(trained, tmp_path / "a.zip", {"version": "1.0.0"})
    second = reg.zip_package(trained, tmp_path / "b.zip", {"version": "1.0.0"})
    assert reg.sha256_file(first) == reg.sha256_file(second)
    status, _, err = hcc(capsys, "models", "entry", trained, "--url", "x.zip", "--version", "../1")
    assert status == 2 and "not a plain folder name" in err
    status, _, err = hcc(capsys, "models", "entry", trained, "--url", "x.zip", "--zip-dir", tmp_path)
    assert status == 2 and "needs ['license', 'title', 'intended_use']" in err


def test_bundled_demo_entry_is_honest_and_matches_its_provenance():
    (entry,) = reg.downloadable_models(TASK)
    assert entry.url == DEMO_ZIP.as_uri() and entry.size_bytes == DEMO_ZIP.stat().st_size < 5_000_000
    assert entry.sha256 == reg.sha256_file(DEMO_ZIP)
    assert entry.title.startswith("PIPELINE DEMONSTRATION ONLY") and "not a clinical model" in entry.title
    assert "non-liver" in entry.title and entry.intended_use.startswith("testing the pipeline")
    provenance = json.loads((BUNDLED / "PROVENANCE.json").read_text())
    assert provenance["sha256"] == entry.sha256 and provenance["seed"] == 0
    assert "tools/build_demo_model.py" in provenance["built_with"] and provenance["versions"]["torch"]


def test_bundled_demo_model_installs_offline_and_predicts(models, capsys, one_torch_thread):
    from HCCAnalysisLib.data.case_loading import load_for_task
    from HCCAnalysisLib.engine.infer import predict_case
    from HCCAnalysisLib.models.package import load_model

    status, out, err = hcc(capsys, "models", "install", TASK)  # the task name: its newest listed model
    assert status == 0, err
    model = load_model(reg.find_model("latest", task=TASK), expected_task=TASK)
    assert model.card["title"].startswith("PIPELINE DEMONSTRATION ONLY")
    case = load_for_task(ROOT / "HCCAnalysisLib" / "sample_data" / "demo-cohort" / "lung1", model.task, ["image"], case_id="lung1")
    records = predict_case(model, case).records()
    by_kind = {r["kind"]: r["predicted_class"] for r in records}
    assert by_kind == {"lesion": "HCC", "background": "background"}  # a training case: learnt (accuracy 1.0)
