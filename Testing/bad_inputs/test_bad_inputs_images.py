"""Bad images and masks (GitHub issue 7): read_image, load_case and `hcc predict` refuse them clearly.

Every case starts from the bundled real data (HCCAnalysisLib/sample_data/demo-cohort/breast1, a real MR
tumour) and changes one thing; the refusal must name the file or phase and the problem,
and leave every input byte-identical with no output written. The catalogue table is in
test_bad_inputs_cases.py.
"""

import shutil

import numpy as np
import pytest
import SimpleITK as sitk

from helpers import bad_inputs as bad
from helpers.dicom_series import crop_small, write_mixed_series, write_series, write_stray_slice_series
from HCCAnalysisLib.data.case import load_case
from HCCAnalysisLib.io.images import read_image

SRC = bad.SMALL_CASE / "image.nrrd"


refused = bad.refused  # expect HCCInputError naming every part, nothing changed


# ---------------------------------------------------------------- corrupt / wrong files -------------

@pytest.mark.parametrize("build, problem", [
    (lambda src, dst: bad.truncated_copy(src, dst, keep=0.5), "pixel data could not be read (corrupt or truncated?)"),
    (lambda src, dst: bad.truncated_copy(src, dst, keep=0.001), "could not be read as an image (corrupt or truncated?)"),
    (bad.garbage_header_copy, "could not be read as an image"),
], ids=["truncated-pixel-data", "truncated-header", "garbage-header"])
def test_corrupt_or_truncated_nrrd(tmp_path, build, problem):
    path = build(SRC, tmp_path / "arterial.nrrd")
    refused(lambda: read_image(path), "arterial.nrrd:", problem, inputs=[tmp_path])


def test_not_an_image_file(tmp_path):
    path = tmp_path / "arterial.txt"
    path.write_text("not an image")
    refused(lambda: read_image(path), "arterial.txt:", "is not a NRRD, NIfTI, MHA or DICOM-folder image",
            inputs=[tmp_path])


def test_missing_image_file(tmp_path):
    refused(lambda: read_image(tmp_path / "portal.nrrd"), "portal.nrrd:", "does not exist", inputs=[tmp_path],
            absent=[tmp_path / "portal.nrrd"])


def test_truncated_phase_through_cli_predict(tmp_path, capsys):
    """A truncated phase file in a case folder: `hcc predict` exits 2 naming the file; no TSV."""
    model = bad.build_package(tmp_path / "model")
    case = bad.copy_case(tmp_path / "case")
    bad.truncated_copy(SRC, case / "image.nrrd", keep=0.6)
    out = tmp_path / "results.tsv"
    with bad.Unchanged(case, model, absent=[out]):
        code, err = bad.run_cli(["predict", "--model", model, "--case", case, "--out-file", out], capsys)
    assert code == 2
    bad.assert_message(err, "hcc predict: error:", str(case / "image.nrrd"), "corrupt or truncated")


# ---------------------------------------------------------------- dimension / components / values ---

@pytest.mark.parametrize("build, parts", [
    (lambda dst: bad.four_d_copy(SRC, dst), ["is a 4D image (45x102x7x3)", "a 3D volume is needed"]),
    (lambda dst: bad.two_d_copy(SRC, dst), ["is a 2D image (45x102)", "a 3D volume is needed"]),
    (lambda dst: bad.rgb_copy(SRC, dst), ["has 3 components per voxel", "scalar (grey-value) volume is needed"]),
    (lambda dst: bad.with_bad_voxels(SRC, dst, np.nan), ["has 3 NaN or infinite voxels"]),
    (lambda dst: bad.with_bad_voxels(SRC, dst, np.inf, count=2), ["has 2 NaN or infinite voxels"]),
], ids=["4D", "2D", "vector-RGB", "NaN-voxels", "inf-voxels"])
def test_image_a_3d_scalar_finite_volume_is_needed(tmp_path, build, parts):
    path = build(tmp_path / "T2.nrrd")
    refused(lambda: read_image(path), "T2.nrrd:", *parts, inputs=[tmp_path])


def test_4d_phase_in_a_case_folder(tmp_path):
    case = bad.copy_case(tmp_path / "case", image_name="arterial.nrrd")
    bad.four_d_copy(SRC, case / "dynamic.nii.gz")
    refused(lambda: load_case(case, phases=["arterial", "dynamic"]), "dynamic.nii.gz:", "is a 4D image",
            inputs=[case])


# ---------------------------------------------------------------- too large for memory --------------

def test_huge_volume_refused_from_the_header_alone(tmp_path, monkeypatch):
    """MetaImage header announcing 512x512x400 voxels whose data file does not exist: refused by
    size, so nothing but the header was read (without the limit the same file fails on the data)."""
    header = bad.header_only_mhd(tmp_path / "big.mhd")
    assert not (tmp_path / "missing-data.raw").exists()
    monkeypatch.setenv("HCCANALYSIS_MAX_VOLUME_GB", "0.1")
    refused(lambda: read_image(header), "big.mhd:", "512x512x400 voxels", "0.4 GiB as float32",
            "more than the 0.1 GiB limit", "HCCANALYSIS_MAX_VOLUME_GB", inputs=[tmp_path])
    monkeypatch.setenv("HCCANALYSIS_MAX_VOLUME_GB", "4")
    refused(lambda: read_image(header), "big.mhd:", "pixel data could not be read", inputs=[tmp_path])


def test_huge_nrrd_refused_before_its_pixels_are_read(tmp_path, monkeypatch):
    """A NRRD header announcing 0.4 GiB over a 10-byte data file: the size refusal comes first."""
    (tmp_path / "tiny.raw").write_bytes(b"\0" * 10)
    header = bad.header_only_nrrd(tmp_path / "big.nrrd", data_file="tiny.raw")
    monkeypatch.setenv("HCCANALYSIS_MAX_VOLUME_GB", "0.1")
    refused(lambda: read_image(header), "big.nrrd:", "512x512x400 voxels", "more than the 0.1 GiB limit",
            inputs=[tmp_path])


def test_huge_header_only_nrrd_is_refused_by_size(tmp_path, monkeypatch):
    header = bad.header_only_nrrd(tmp_path / "big.nrrd")
    assert not (tmp_path / "missing-data.raw").exists()
    monkeypatch.setenv("HCCANALYSIS_MAX_VOLUME_GB", "0.1")
    refused(lambda: read_image(header), "big.nrrd:", "512x512x400 voxels", "more than the 0.1 GiB limit",
            inputs=[tmp_path])


# ---------------------------------------------------------------- DICOM series folders --------------

@pytest.fixture(scope="module")
def small_series_image():
    return crop_small(sitk.ReadImage(str(SRC)))


def test_dicom_helper_writes_a_readable_series(tmp_path, small_series_image):
    """Control: a clean series written by the helper reads back voxel for voxel."""
    write_series(small_series_image, tmp_path / "T2")
    image = read_image(tmp_path / "T2")
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(image), sitk.GetArrayViewFromImage(small_series_image))
    np.testing.assert_allclose(image.GetSpacing(), small_series_image.GetSpacing(), atol=1e-4)


def test_dicom_folder_with_two_series(tmp_path, small_series_image):
    folder = tmp_path / "T2"
    write_mixed_series(small_series_image, folder)
    refused(lambda: read_image(folder), "T2:", "holds 2 DICOM series", "one phase folder must hold one series",
            inputs=[folder])


def test_dicom_folder_with_a_stray_slice_far_away(tmp_path, small_series_image):
    folder = tmp_path / "T2"
    write_stray_slice_series(small_series_image, folder, stray_mm=250.0)
    refused(lambda: read_image(folder), "T2:", "DICOM slices are unevenly spaced", "typical gap 2.10 mm",
            "one gap 252.10 mm", inputs=[folder])


def test_mixed_dicom_phase_through_cli_predict(tmp_path, small_series_image, capsys):
    model = bad.build_package(tmp_path / "model", phases=("T2",))
    case = tmp_path / "case"
    write_mixed_series(small_series_image, case / "T2")
    shutil.copy(bad.SMALL_CASE / "labels.nrrd", case / "labels.nrrd")
    out = tmp_path / "results.tsv"
    with bad.Unchanged(case, model, absent=[out]):
        code, err = bad.run_cli(["predict", "--model", model, "--case", case, "--out-file", out], capsys)
    assert code == 2
    bad.assert_message(err, str(case / "T2"), "holds 2 DICOM series")


def test_empty_phase_folder(tmp_path):
    case = bad.copy_case(tmp_path / "case")
    (case / "portal").mkdir()
    refused(lambda: load_case(case, phases=["image", "portal"]), "portal:", "holds no DICOM series", inputs=[case])


# ---------------------------------------------------------------- masks and phases in space ---------

@pytest.mark.parametrize("edit, parts", [
    (lambda a: a * 0, ["has no voxel with the lesion label 2", "values present: [0]"]),
    (lambda a: np.where(a == 1, 3, a), ["has unexpected label values [3]", "expected 0, liver 1, lesion 2"]),
    (bad.one_voxel_lesion, ["lesion 'lesion 1' has only 1 voxel(s)", "too small"]),
    (lambda a: a.astype(np.float32) * 0.5, ["is not a label map", "non-integer"]),
], ids=["empty-mask", "unexpected-label-3", "one-voxel-lesion", "non-integer-labels"])
def test_bad_mask(tmp_path, edit, parts):
    case = bad.copy_case(tmp_path / "case")
    bad.edit_labels(case, edit)
    refused(lambda: load_case(case), str(case / "labels.nrrd") + ":", *parts, inputs=[case])


def test_mask_outside_the_image(tmp_path):
    case = bad.copy_case(tmp_path / "case")
    bad.shifted_copy(case / "labels.nrrd", case / "labels.nrrd", shift_mm=500.0)
    refused(lambda: load_case(case), "image.nrrd:", "phase 'image' does not overlap the lesion in physical space",
            inputs=[case])


@pytest.mark.parametrize("shift, problem", [
    ((500.0, 500.0, 500.0), "does not overlap the lesion in physical space"),
    ((0.0, 0.0, 6.0), "covers only part of the lesion's bounding box"),
], ids=["far-away", "partly"])
def test_phases_that_do_not_overlap(tmp_path, shift, problem):
    case = bad.copy_case(tmp_path / "case", image_name="arterial.nrrd")
    portal = sitk.ReadImage(str(SRC))
    portal.SetOrigin([o + s for o, s in zip(portal.GetOrigin(), shift)])
    sitk.WriteImage(portal, str(case / "portal.nrrd"))
    refused(lambda: load_case(case, phases=["arterial", "portal"]), "portal.nrrd:", f"phase 'portal' {problem}",
            inputs=[case])


def test_case_folder_without_segmentation(tmp_path):
    case = bad.copy_case(tmp_path / "case")
    (case / "labels.nrrd").unlink()
    refused(lambda: load_case(case), f"{case}:", "has no segmentation", inputs=[case])


def test_case_folder_with_two_segmentations(tmp_path):
    case = bad.copy_case(tmp_path / "case")
    shutil.copy(case / "labels.nrrd", case / "segmentation.nrrd")
    refused(lambda: load_case(case), f"{case}:", "has several segmentations", "labels.nrrd", "segmentation.nrrd",
            inputs=[case])


def test_requested_phase_missing(tmp_path):
    case = bad.copy_case(tmp_path / "case")
    refused(lambda: load_case(case, phases=["image", "portal"]), f"{case}:", "has no phase ['portal']",
            "phases present: image", inputs=[case])
