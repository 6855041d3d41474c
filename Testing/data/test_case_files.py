"""Never a mask as a phase (issue 13): segmentations named the users' way are found, label maps
under any name are told apart by content, and a folder that cannot be told apart is refused
with its files listed and the option that resolves it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import SimpleITK as sitk

from HCCAnalysisLib.data.case import find_case_files, load_case
from HCCAnalysisLib.data.reading_options import CaseReading
from HCCAnalysisLib.errors import HCCInputError

BREAST = Path(__file__).resolve().parents[2] / "HCCAnalysisLib" / "sample_data" / "demo-cohort" / "breast1"


def make_case(folder: Path, *label_names: str, image_name: str = "image.nrrd") -> Path:
    """breast1's real MR and its lesion mask (uint8) under the given file names."""
    folder.mkdir(parents=True)
    shutil.copy(BREAST / "image.nrrd", folder / image_name)
    labels = sitk.Cast(sitk.ReadImage(str(BREAST / "labels.nrrd")), sitk.sitkUInt8)
    for name in label_names:
        sitk.WriteImage(labels, str(folder / name), True)
    return folder


@pytest.mark.parametrize("name", ["mask.nii.gz", "case001_seg.nii.gz", "Lesion-Labels.nrrd", "roi.nrrd"])
def test_segmentation_under_the_users_name_is_not_a_phase(tmp_path, name):
    case = make_case(tmp_path / "case", name)
    phases, segmentation = find_case_files(case)
    assert list(phases) == ["image"] and segmentation.name == name
    assert len(load_case(case).lesions) == 1


def test_two_label_maps_that_cannot_be_told_apart_are_refused_with_the_option(tmp_path):
    case = make_case(tmp_path / "case", "roi.nrrd", "other.nrrd")
    with pytest.raises(HCCInputError) as info:
        find_case_files(case)
    message = str(info.value)
    for part in ("2 files look like label maps (other.nrrd, roi.nrrd)", "image.nrrd", "--segmentation PATTERN"):
        assert part in message


def test_pattern_names_the_segmentation_and_other_masks_stay_out_of_the_phases(tmp_path):
    case = make_case(tmp_path / "case", "lesion_mask.nii.gz", "liver_mask.nii.gz")
    with pytest.raises(HCCInputError, match=r"several segmentations.*--segmentation PATTERN"):
        find_case_files(case)
    phases, segmentation = find_case_files(case, CaseReading(segmentation="lesion_*"))
    assert list(phases) == ["image"] and segmentation.name == "lesion_mask.nii.gz"


def test_pattern_matching_nothing_lists_the_folder(tmp_path):
    case = make_case(tmp_path / "case", "labels.nrrd")
    with pytest.raises(HCCInputError, match=r"0 files matching --segmentation '\*_seg\.nii\.gz'.*labels\.nrrd"):
        find_case_files(case, CaseReading(segmentation="*_seg.nii.gz"))


def test_a_phase_map_that_makes_two_files_one_phase_is_refused(tmp_path):
    case = make_case(tmp_path / "case", "labels.nrrd")
    shutil.copy(BREAST / "image.nrrd", case / "CT.nrrd")
    with pytest.raises(HCCInputError, match=r"two files for the phase 'image': CT\.nrrd and image\.nrrd"):
        find_case_files(case, CaseReading(phase_map=(("CT", "image"),)))


def test_a_dicom_series_folder_mapped_to_the_model_phase(tmp_path, shared_data):
    case = tmp_path / "case"
    shutil.copytree(shared_data / "abdomen" / "totalsegmentator" / "example_ct_dicom", case / "CT")
    shutil.copy(shared_data / "abdomen" / "totalsegmentator" / "example_seg_dicom.nii.gz", case / "seg.nii.gz")
    phases, segmentation = find_case_files(case, CaseReading(phase_map=(("CT", "image"),)))
    assert phases == {"image": case / "CT"} and segmentation == case / "seg.nii.gz"
