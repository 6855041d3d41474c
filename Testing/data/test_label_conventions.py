"""Segmentations as users have them (issue 13), on real files: a TotalSegmentator map read by label
names from its own label table, phases under other names (`--phase CT=image`), per-case columns
in cases.csv, a lesion outside the liver named in the output row."""

from __future__ import annotations

import gzip
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from HCCAnalysisLib.data.case import load_case
from HCCAnalysisLib.data.cohort import load_cohort
from HCCAnalysisLib.data.reading_options import CaseReading
from HCCAnalysisLib.data.segments import OUTSIDE_LIVER
from HCCAnalysisLib.errors import HCCInputError
from HCCAnalysisLib.io.label_table import read_label_table

FILES = Path(__file__).resolve().parent / "files"
TOTALSEG = FILES / "totalseg"  # CT.nii.gz + totalseg.nii.gz: real TotalSegmentator crop
CT_AS_IMAGE = (("CT", "image"),)


@pytest.fixture
def ts_case(tmp_path):
    case = tmp_path / "cohort" / "ts1"
    shutil.copytree(TOTALSEG, case)
    return case


def paint_lesion(case: Path, value: int = 200) -> np.ndarray:
    """A small 'lesion' of label `value` drawn inside the real liver (5), into the NIfTI's voxel
    bytes so that its label table stays; saved as lesion_seg.nii.gz. Returns the lesion mask."""
    path = case / "totalseg.nii.gz"
    raw = bytearray(gzip.decompress(path.read_bytes()))
    offset = int(struct.unpack("<f", raw[108:112])[0])
    shape = sitk.ReadImage(str(path)).GetSize()[::-1]
    labels = np.frombuffer(bytes(raw[offset:]), dtype=np.uint8).reshape(shape).copy()
    lesion = np.zeros(shape, dtype=bool)
    lesion[7:10, 8:12, 26:30] = True
    assert np.all(labels[lesion] == 5)
    labels[lesion] = value
    raw[offset:] = labels.tobytes()
    (case / "lesion_seg.nii.gz").write_bytes(gzip.compress(bytes(raw)))
    path.unlink()
    return lesion


def test_totalsegmentator_label_table_names_liver_5():
    table = read_label_table(TOTALSEG / "totalseg.nii.gz")
    assert table[5] == "liver" and table[4] == "gallbladder" and table[7] == "pancreas"
    assert read_label_table(TOTALSEG / "CT.nii.gz") == {}


def test_liver_by_name_lesion_by_number_and_ct_mapped_to_image(ts_case):
    lesion = paint_lesion(ts_case)  # the map is now lesion_seg.nii.gz: found by its name
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(ts_case / "lesion_seg.nii.gz")))
    case = load_case(ts_case, phases=["image"], reading=CaseReading(("liver",), ("200",), phase_map=CT_AS_IMAGE))
    assert case.phases == ["image"] and len(case.lesions) == 1
    np.testing.assert_array_equal(case.lesion_array(case.lesions[0]).astype(bool), lesion)
    np.testing.assert_array_equal(case.liver_array().astype(bool), (labels == 5) | lesion)
    assert case.lesions[0].warnings == []
    expected_ct = sitk.GetArrayFromImage(sitk.ReadImage(str(ts_case / "CT.nii.gz")))
    np.testing.assert_allclose(case.phase_on_grid("image"), expected_ct)


def test_defaults_on_a_totalsegmentator_map_say_which_option_to_use(ts_case):
    with pytest.raises(HCCInputError, match=r"label table names liver = 5: pass --liver-label liver"):
        load_case(ts_case, reading=CaseReading(phase_map=CT_AS_IMAGE))


def test_missing_phase_suggests_the_mapping(ts_case):
    with pytest.raises(HCCInputError, match=r"has no phase \['image'\].*--phase CT=image"):
        load_case(ts_case, phases=["image"], reading=CaseReading(("liver",), ("gallbladder",)))


def test_unknown_label_name_lists_the_table(ts_case):
    with pytest.raises(HCCInputError, match=r"has no label named 'tumour' in its label table \(1=spleen"):
        load_case(ts_case, reading=CaseReading(("liver",), ("tumour",), phase_map=CT_AS_IMAGE))


def test_per_case_columns_override_the_command_line(ts_case):
    cohort = ts_case.parent
    shutil.copytree(ts_case, cohort / "ts2")
    (cohort / "cases.csv").write_text("case_id,patient_id,liver_label,lesion_label,phase_map\n"
                                      "ts1,p1,,,\n"
                                      "ts2,p2,5,pancreas,CT=image\n")
    records = load_cohort(cohort, reading=CaseReading(("liver",), ("gallbladder",), phase_map=CT_AS_IMAGE)).records
    first, second = (r.load(["image"]) for r in records)
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(ts_case / "totalseg.nii.gz")))
    np.testing.assert_array_equal(first.lesion_array(first.lesions[0]).astype(bool), labels == 4)
    np.testing.assert_array_equal(second.lesion_array(second.lesions[0]).astype(bool), labels == 7)
    assert first.lesions[0].warnings == [] and second.lesions[0].warnings == [OUTSIDE_LIVER]


def test_bad_per_case_column_is_refused_with_its_line(ts_case):
    (ts_case.parent / "cases.csv").write_text("case_id,patient_id,phase_map\nts1,p1,CT\n")
    with pytest.raises(HCCInputError, match=r"line 2: phase_map 'CT' is not NAME=PHASE"):
        load_cohort(ts_case.parent)


def test_lesion_outside_the_liver_is_in_the_output_row(ts_case, tmp_path, one_torch_thread):
    from helpers.bad_inputs import build_package

    from HCCAnalysisLib.data.prediction import read_tsv
    from HCCAnalysisLib.engine.infer import predict_case
    from HCCAnalysisLib.models.package import load_model

    model = load_model(build_package(tmp_path / "pkg"))
    case = load_case(ts_case, phases=["image"], reading=CaseReading(("liver",), ("pancreas",), phase_map=CT_AS_IMAGE))
    prediction = predict_case(model, case)
    prediction.write_tsv(tmp_path / "results.tsv")
    rows = read_tsv(tmp_path / "results.tsv")
    lesion_rows = [r for r in rows if r["kind"] == "lesion"]
    assert lesion_rows and all(r["warnings"] == OUTSIDE_LIVER for r in lesion_rows)
    assert all(r["warnings"] == "" for r in rows if r["kind"] != "lesion")
