"""Classical baselines: pyradiomics on a real lesion, LassoCV + random forest and the clinical
random forest under explicit patient-level folds, fusion D's clinical pathway alone; the
real-data recurrence experiment (asaur) behind docs/methods-fusion.md."""

import csv
import importlib.util
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import SimpleITK as sitk

from HCCAnalysisLib.methods.wang2020.baselines import (SampleTable, clinical_baseline, extract_radiomics,
                                      radiomics_baseline, radiomics_table)
from HCCAnalysisLib.methods.wang2020.baselines_folds import check_folds
from HCCAnalysisLib.errors import HCCInputError

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data"
ASAUR = DATA / "clinical" / "asaur_hepatoCellular.csv"
ROW_KEYS = ["repeat", "fold", "case_id", "patient_id", "lesion_id", "kind", "label",
            "predicted_class"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest: one torch thread


def _need(path):
    if not path.exists():
        pytest.skip(f"real data not found at {path} (needs ../shared/data)")


@pytest.fixture(scope="module")
def lung1():
    """The real lung1 CT and its tumour label, cropped to the tumour's neighbourhood."""
    _need(DATA / "lesions" / "lung1_image.nrrd")
    image = sitk.ReadImage(str(DATA / "lesions" / "lung1_image.nrrd"))
    label = sitk.ReadImage(str(DATA / "lesions" / "lung1_label.nrrd"))
    z, y, x = np.nonzero(sitk.GetArrayViewFromImage(label))
    lo = [max(0, int(v.min()) - 5) for v in (x, y, z)]
    hi = [int(v.max()) + 6 for v in (x, y, z)]
    size = [h - low for h, low in zip(hi, lo)]
    return sitk.RegionOfInterest(image, size, lo), sitk.RegionOfInterest(label, size, lo)


def test_radiomics_on_real_lesion(lung1):
    pytest.importorskip("radiomics", reason="pyradiomics==3.0.1 is not installed")
    image, label = lung1
    # A second "phase": the same CT on a coarser grid (another geometry, resampled back).
    coarse = sitk.Resample(image, [s // 2 for s in image.GetSize()], sitk.Transform(),
                           sitk.sitkLinear, image.GetOrigin(),
                           [2 * s for s in image.GetSpacing()], image.GetDirection())
    features = extract_radiomics({"ct": image, "coarse": coarse}, label, source="lung1")
    names = list(features)
    assert all(np.isfinite(v) for v in features.values())
    ct = [n for n in names if n.startswith("ct:")]
    other = [n for n in names if n.startswith("coarse:")]
    assert len(ct) >= 100 and "ct:original_glcm_Contrast" in ct
    assert not any("_shape_" in n for n in other)  # shape comes from the mask: once
    assert len(other) == len(ct) - sum("_shape_" in n for n in ct)
    # Independent references computed here with numpy.
    mask = sitk.GetArrayViewFromImage(label) == 1
    voxels = sitk.GetArrayViewFromImage(image)[mask].astype(np.float64)
    assert features["ct:original_firstorder_Mean"] == pytest.approx(voxels.mean(), rel=1e-6)
    assert features["ct:original_shape_VoxelVolume"] == pytest.approx(
        mask.sum() * np.prod(image.GetSpacing()), rel=1e-6)
    assert features["coarse:original_firstorder_Mean"] != features["ct:original_firstorder_Mean"]
    print(f"\nlung1: {len(names)} radiomics features, tumour mean {voxels.mean():.1f} HU")


def test_radiomics_input_errors(lung1):
    pytest.importorskip("radiomics", reason="pyradiomics==3.0.1 is not installed")
    image, label = lung1
    empty = sitk.Image(label.GetSize(), label.GetPixelID())
    empty.CopyInformation(label)
    with pytest.raises(HCCInputError, match="lung1: lesion mask has no voxel with label 1"):
        extract_radiomics({"ct": image}, empty, source="lung1")
    with pytest.raises(HCCInputError, match="no phase images"):
        extract_radiomics({}, label)
    with pytest.raises(HCCInputError, match="other radiomics features than sample 0"):
        radiomics_table([{"a": 1.0}, {"b": 2.0}], ["x", "y"], ["c1", "c2"], ["p1", "p2"])


def _table(features, labels, patients):
    return SampleTable(np.asarray(features, float), labels, [f"case-{i}" for i in range(len(labels))],
                       patients)


def test_folds_are_checked_at_patient_level():
    table = _table([[0], [1], [2], [3]], ["a", "b", "a", "b"], ["p1", "p1", "p2", "p3"])
    assert [list(te) for _, te in check_folds(table, [(["p2", "p3"], ["p1"])])] == [[0, 1]]
    records = [SimpleNamespace(case_id=c, patient_id=p) for c, p in (("c1", "p2"), ("c2", "p1"))]
    assert [list(te) for _, te in check_folds(table, [(records[:1], records[1:])])] == [[0, 1]]
    with pytest.raises(HCCInputError, match="p1 are in both training and test set"):
        check_folds(table, [(["p1", "p2"], ["p1", "p3"])])
    with pytest.raises(HCCInputError, match="already tested in an earlier fold"):
        check_folds(table, [(["p2"], ["p1"]), (["p2"], ["p1", "p3"])])
    with pytest.raises(HCCInputError, match="unknown patient id"):
        check_folds(table, [(["p2"], ["p9"])])
    with pytest.raises(HCCInputError, match="single class"):
        clinical_baseline(table, [(["p2"], ["p1", "p3"])], ["a", "b"], n_estimators=5)
    with pytest.raises(HCCInputError, match="NaN or infinite"):
        _table([[0], [np.nan]], ["a", "b"], ["p1", "p2"])
    with pytest.raises(HCCInputError, match="not among the classes"):
        clinical_baseline(table, [(["p2", "p3"], ["p1"])], ["a", "c"], n_estimators=5)


@pytest.fixture(scope="module")
def asaur_rows():
    _need(ASAUR)
    with open(ASAUR, newline="") as handle:
        return list(csv.DictReader(handle))


def test_lasso_rf_on_real_continuous_features(asaur_rows):
    """LassoCV + RF on a real continuous feature table: the 29 tissue immune markers of the
    asaur patients that have all of them (101 patients), early recurrence, 5 folds."""
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    from HCCAnalysisLib.clinical.schemas import asaur_early_recurrence

    columns = list(asaur_rows[0])[20:]
    rows = [r for r in asaur_rows if all(r[c] != "" for c in columns)]
    labels = ["ER" if asaur_early_recurrence(r) else "no_ER" for r in rows]
    ids = [r["Number"] for r in rows]
    table = SampleTable(np.asarray([[float(r[c]) for c in columns] for r in rows]), labels,
                        ids, ids, feature_names=columns)
    splits = StratifiedKFold(5, shuffle=True, random_state=0).split(table.features, labels)
    folds = [([ids[i] for i in tr], [ids[i] for i in te]) for tr, te in splits]
    result = radiomics_baseline(table, folds, ["no_ER", "ER"], n_estimators=100)
    assert len(result.rows) == len(rows) == 101
    assert sorted(r["patient_id"] for r in result.rows) == sorted(ids)
    assert list(result.rows[0])[:8] == ROW_KEYS and list(result.rows[0])[8:] == ["prob_no_ER",
                                                                                 "prob_ER"]
    for row in result.rows:
        assert row["prob_no_ER"] + row["prob_ER"] == pytest.approx(1.0)
        assert row["predicted_class"] == ("ER" if row["prob_ER"] > row["prob_no_ER"] else "no_ER") \
            or row["prob_ER"] == row["prob_no_ER"]
    for info in result.folds:
        assert info["lasso_alpha"] > 0
        assert info["selected"] == "all" or set(info["selected"]) <= set(columns)
    auc = roc_auc_score([r["label"] == "ER" for r in result.rows],
                        [r["prob_ER"] for r in result.rows])
    print(f"\nLassoCV+RF on asaur immune markers (101 patients): pooled AUC {auc:.3f}; "
          f"selected per fold: {[info['n_selected'] for info in result.folds]}")
    assert 0.0 <= auc <= 1.0


def _script():
    spec = importlib.util.spec_from_file_location(
        "clinical_recurrence_baseline", REPO / "training" / "clinical_recurrence_baseline.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_clinical_rf_and_fusion_d_pathway_on_real_recurrence(tmp_path):
    """Early recurrence from the asaur-derivable Wang bits, clinical RF and fusion D's clinical
    pathway alone, same 10 patient-level folds; AUCs printed."""
    _need(ASAUR)
    script = _script()
    result = script.run(ASAUR, n_folds=10, seed=0, n_estimators=100, epochs=20)
    table, folds = result["table"], result["folds"]
    assert table.features.shape == (227, 4)
    tested = [p for _, test in folds for p in test]
    assert sorted(tested) == sorted(table.patient_ids)  # every patient tested exactly once
    for model in ("rf", "pathway"):
        rows = result[model].rows
        assert [r["patient_id"] for r in rows] == [r["patient_id"] for r in result["rf"].rows]
        assert all(r["prob_ER"] + r["prob_no_ER"] == pytest.approx(1.0, abs=1e-6) for r in rows)
    for info in result["pathway"].folds:
        assert info["last_epoch_loss"] < info["first_epoch_loss"]  # the pathway learns
    summary = result["summary"]
    for name, s in summary.items():
        print(f"\n{name}: AUC {s['auc_mean']:.3f} +- {s['auc_sd']:.3f} (pooled {s['pooled_auc']:.3f})")
        assert s["pooled_auc"] > 0.5  # better than chance on held-out patients
    doc = tmp_path / "methods.md"
    doc.write_text("# intro\n\n" + script.BEGIN + "\nSTALE-RESULTS\n" + script.END + "\n\ntail\n")
    script.write_docs(script.markdown(result, 10, 0), doc)
    text = doc.read_text()
    assert "STALE-RESULTS" not in text and text.startswith("# intro") and text.rstrip().endswith("tail")
    assert f"{summary['clinical RF']['pooled_auc']:.3f}" in text
