"""DICOM SEG input (issue 13) on a real SEG: dcmqi's liver segmentation of 3 CT slices."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from HCCAnalysisLib.data.case import find_case_files, load_case
from HCCAnalysisLib.data.reading_options import CaseReading
from HCCAnalysisLib.errors import HCCInputError

pytest.importorskip("highdicom")

DCMQI = Path(__file__).resolve().parent / "files" / "dcmqi"  # liver.dcm (unchanged) + ct.nrrd (cropped CT)


@pytest.fixture(scope="module")
def seg_file():
    from HCCAnalysisLib.io.dicom_seg import read_dicom_seg

    return read_dicom_seg(DCMQI / "liver.dcm")


def test_segments_are_named_by_label_description_and_number(seg_file):
    assert [(s.number, s.name) for s in seg_file.segments] == [(1, "Liver")]
    segment = seg_file.segments[0]
    assert segment.answers_to("liver") and segment.answers_to("1") and not segment.answers_to("lesion")


def test_same_mask_on_the_same_grid_as_dcmqis_nrrd(seg_file, shared_data):
    reference = sitk.ReadImage(str(shared_data / "abdomen" / "dcmqi-liver" / "liver_seg.nrrd"))
    grid = seg_file.grid
    assert grid.GetSize() == reference.GetSize()
    np.testing.assert_allclose(grid.GetSpacing(), reference.GetSpacing(), atol=1e-4)
    np.testing.assert_allclose(grid.GetOrigin(), reference.GetOrigin(), atol=1e-3)
    np.testing.assert_allclose(grid.GetDirection(), reference.GetDirection(), atol=1e-6)
    np.testing.assert_array_equal(seg_file.segments[0].mask, sitk.GetArrayFromImage(reference) > 0)


@pytest.fixture
def seg_case(tmp_path):
    case = tmp_path / "case"
    shutil.copytree(DCMQI, case)
    return case


@pytest.mark.parametrize("lesion_label", ["Liver", "1"])
def test_case_with_a_dicom_seg_reads_the_segment_by_name_or_number(seg_case, seg_file, lesion_label):
    phases, segmentation = find_case_files(seg_case)
    assert list(phases) == ["ct"] and segmentation.name == "liver.dcm"  # the SEG is never a phase
    case = load_case(seg_case, reading=CaseReading(lesion_labels=(lesion_label,)))
    assert [(l.lesion_id, l.name) for l in case.lesions] == [("1", "Liver")]
    np.testing.assert_array_equal(case.lesion_array(case.lesions[0]).astype(bool), seg_file.segments[0].mask)
    assert case.phase_on_grid("ct").shape == (3, 512, 512)


def test_a_seg_without_the_named_segment_lists_its_segments(seg_case):
    with pytest.raises(HCCInputError, match=r"has no lesion segment 'tumour' \(segments: 1=Liver\)"):
        load_case(seg_case, reading=CaseReading(lesion_labels=("tumour",)))
    with pytest.raises(HCCInputError, match=r"has no lesion segment.*name one with --lesion-label"):
        load_case(seg_case)  # its only segment is the liver


def test_seg_in_its_own_folder_next_to_the_ct_series(tmp_path, shared_data):
    source = shared_data / "abdomen" / "dcmqi-liver"
    case = tmp_path / "case"
    (case / "CT").mkdir(parents=True)
    (case / "SEG").mkdir()
    for name in ("01.dcm", "02.dcm", "03.dcm"):
        shutil.copy(source / name, case / "CT" / name)
    shutil.copy(source / "liver.dcm", case / "SEG" / "liver.dcm")
    loaded = load_case(case, phases=["image"], reading=CaseReading(lesion_labels=("liver",),
                                                                    phase_map=(("CT", "image"),)))
    assert loaded.phases == ["image"] and loaded.images["image"].GetSize() == (512, 512, 3)
    ct = sitk.GetArrayFromImage(sitk.DICOMOrient(loaded.images["image"], "LPS"))
    np.testing.assert_allclose(loaded.phase_on_grid("image"), ct, atol=1e-3)  # same grid: no resampling
