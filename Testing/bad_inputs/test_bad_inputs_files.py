"""Files whose content does not match what they claim (issue 14): refused before use.

case                                         -> entry point     -> expected message
.nii.gz cut at 90 % / 50 %                   -> read_image      -> "compressed data stream is truncated"
gzip .nrrd cut at 95 %                       -> read_image      -> "corrupt or truncated"
NRRD header: uchar over int16 data           -> read_image      -> "holds more voxel data than its header (type unsigned char"
NRRD header: float over int16 data           -> read_image      -> "corrupt or truncated"
NRRD header: 5 slices over 7 slices' data    -> read_image      -> "more voxel data than its header"
NIfTI header: float32 over int16 data (.gz)  -> read_image      -> "where its header (32 bits per voxel ...) announces"
NIfTI header: 5 slices over 7 (.nii.gz/.nii) -> read_image      -> "more voxel data than its header"
.nhdr whose .raw lost a slice                -> read_image      -> "image.raw: holds ... bytes of voxel data where"
zero-length slice axis / parallel axes       -> read_image      -> "singular direction matrix"
symlink loop / dangling link                 -> read_image      -> "symlink loop" / "symbolic link to ... does not exist"
DICOM slice of another size in the series    -> read_image      -> "DICOM slices differ in size: 24x24 in 5 slice(s), 20x24"
truncated .nii.gz phase in a case            -> hcc predict     -> exit 2, "compressed data stream is truncated"
weights float64 / float16, right hash        -> load_model      -> "weights have the wrong dtype"
weights with NaN / inf, right hash           -> load_model      -> "weights hold NaN or infinite values"
card fields of the wrong JSON type (9)       -> load_model      -> "has field(s) of the wrong type: 'task' is null ..."
card that is a JSON list                     -> load_model      -> "holds a JSON list, not an object"
card of 2 MiB                                -> load_model      -> "is 2.0 MiB; a model card is at most 1024 KiB"
card with a wrong type                       -> hcc predict     -> exit 2, "has field(s) of the wrong type"
empty TIFF / PNG                             -> load_microscopy_case -> "is empty (0 bytes)"
TIFF cut after its header                    -> load_microscopy_case -> "cannot be read as a TIFF image"
PNG claiming 100000 x 100000 pixels          -> load_microscopy_case -> "decompression bomb"
PNG above our own pixel limit                -> load_microscopy_case -> "more than the 0 MP limit"
text file named .png                         -> load_microscopy_case -> "cannot be read as a PNG image"
"""

import pytest
import torch

from helpers import bad_files as files
from helpers import bad_inputs as bad
from HCCAnalysisLib.data.microscopy_case import load_microscopy_case
from HCCAnalysisLib.io.images import read_image
from HCCAnalysisLib.models.package import load_model

refused = bad.refused


# ---------------------------------------------------------------- images ---------------------------

@pytest.mark.parametrize("name, build, parts", [
    ("cut90.nii.gz", lambda p: files.truncated_gz(p, 0.9), ["compressed data stream is truncated"]),
    ("cut50.nii.gz", lambda p: files.truncated_gz(p, 0.5), ["compressed data stream is truncated"]),
    ("cut95.nrrd", lambda p: files.truncated_gz(p, 0.95), ["corrupt or truncated"]),
    ("uchar.nrrd", lambda p: files.nrrd_header_edit(p, rb"type: short", b"type: unsigned char"),
     ["holds more voxel data than its header (type unsigned char, sizes 45 102 7)"]),
    ("float.nrrd", lambda p: files.nrrd_header_edit(p, rb"type: short", b"type: float"), ["corrupt or truncated"]),
    ("sizes.nrrd", lambda p: files.nrrd_header_edit(p, rb"sizes: 45 102 7", b"sizes: 45 102 5"),
     ["holds more voxel data than its header (type short, sizes 45 102 5)"]),
    ("float.nii.gz", lambda p: files.nifti_header_edit(p, lambda raw: files.nifti_type(raw, 16, 32)),
     ["where its header (32 bits per voxel, sizes 45 102 7) announces 128520"]),
    ("slices.nii.gz", lambda p: files.nifti_header_edit(p, files.nifti_fewer_slices),
     ["holds more voxel data than its header (16 bits per voxel, sizes 45 102 5)"]),
    ("slices.nii", lambda p: files.nifti_header_edit(p, files.nifti_fewer_slices), ["more voxel data than its header"]),
    ("zero-axis.nrrd", lambda p: files.nrrd_header_edit(p, rb"space directions: [^\n]*",
                                                        b"space directions: (0.66,0,0) (0,0.66,0) (0,0,0)"),
     ["singular direction matrix"]),
    ("parallel.nrrd", lambda p: files.nrrd_header_edit(p, rb"space directions: [^\n]*",
                                                       b"space directions: (0.66,0,0) (0.66,0,0) (0,0,2.1)"),
     ["singular direction matrix", "no orientation"]),
], ids=["nii-gz-cut-90", "nii-gz-cut-50", "nrrd-gz-cut-95", "nrrd-uchar-over-short", "nrrd-float-over-short",
        "nrrd-fewer-slices", "nifti-float-over-short", "nifti-gz-fewer-slices", "nifti-fewer-slices",
        "zero-length-axis", "parallel-axes"])
def test_image_data_not_matching_its_header(tmp_path, name, build, parts):
    path = build(tmp_path / name)
    refused(lambda: read_image(path), f"{path}:", *parts, inputs=[tmp_path])


def test_good_files_of_each_format_still_read(tmp_path):
    """Control: the real image as .nii.gz, .nii, gzip .nrrd, raw .nrrd and .nhdr + .raw reads unchanged."""
    import numpy as np
    import SimpleITK as sitk

    reference = sitk.GetArrayFromImage(files.real_image())
    for name, compress in [("a.nii.gz", True), ("b.nii", False), ("c.nrrd", True), ("d.nrrd", False),
                           ("e.nhdr", False)]:
        path = files.saved(tmp_path / name, compress)
        assert np.array_equal(sitk.GetArrayFromImage(read_image(path)), reference), name


def test_detached_header_whose_data_file_is_short(tmp_path):
    header = files.short_detached_nrrd(tmp_path)
    refused(lambda: read_image(header), f"{tmp_path / 'image.raw'}:", "bytes of voxel data where its header",
            inputs=[tmp_path])


def test_symlink_loop_is_named_as_such(tmp_path):
    link = files.symlink_loop(tmp_path)
    before = sorted(tmp_path.iterdir())
    error = refused(lambda: read_image(link), f"{link}:", "is a symlink loop")
    assert "does not exist" not in str(error) and sorted(tmp_path.iterdir()) == before


def test_dangling_link_names_its_target(tmp_path):
    link = tmp_path / "image.nrrd"
    link.symlink_to(tmp_path / "moved-away.nrrd")
    refused(lambda: read_image(link), f"{link}:", f"is a symbolic link to {tmp_path / 'moved-away.nrrd'}",
            "which does not exist")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["image.nrrd"]


def test_dicom_slices_of_different_sizes(tmp_path):
    folder = files.odd_size_dicom_folder(tmp_path / "T2")
    refused(lambda: read_image(folder), f"{folder}:", "DICOM slices differ in size: 24x24 in 5 slice(s)",
            "20x24 in slice002.dcm", inputs=[tmp_path])


def test_truncated_nifti_phase_through_cli_predict(tmp_path, capsys):
    case = bad.copy_case(tmp_path / "case")
    (case / "image.nrrd").unlink()
    files.truncated_gz(case / "image.nii.gz", 0.9)
    package = bad.build_package(tmp_path / "model")
    out = tmp_path / "results.tsv"
    with bad.Unchanged(case, package, absent=[out]):
        code, err = bad.run_cli(["predict", "--model", package, "--case", case, "--out-file", out, "--device", "cpu"],
                                capsys)
    assert code == 2
    bad.assert_message(err, "hcc predict: error:", str(case / "image.nii.gz"), "compressed data stream is truncated")


# ---------------------------------------------------------------- weights --------------------------

@pytest.fixture
def package(tmp_path):
    return bad.build_package(tmp_path / "model")


@pytest.mark.parametrize("change, parts", [
    (files.as_dtype(torch.float64), ["weights have the wrong dtype", "torch.float64, the network's is torch.float32"]),
    (files.as_dtype(torch.float16), ["weights have the wrong dtype", "torch.float16"]),
    (files.with_value(float("nan")), ["weights hold NaN or infinite values in 1 tensor(s)", "(3)"]),
    (files.with_value(float("inf")), ["weights hold NaN or infinite values"]),
], ids=["float64", "float16", "nan", "inf"])
def test_weights_with_the_right_hash_but_unusable_values(package, change, parts):
    weights = files.rewrite_weights(package, change)
    refused(lambda: load_model(package), f"{weights}:", *parts, inputs=[package])


# ---------------------------------------------------------------- model cards ----------------------

@pytest.mark.parametrize("field, value, expected", [
    ("task", None, "'task' is null, expected text"),
    ("task", 7, "'task' is 7, expected text"),
    ("classes", [0, 1], "'classes' is [0, 1], expected a non-empty list of text"),
    ("phases", "image", "'phases' is 'image', expected a non-empty list of text"),
    ("net_kwargs", [3], "'net_kwargs' is [3], expected an object"),
    ("input_size", "32", "'input_size' is '32', expected a positive whole number"),
    ("weights_sha256", None, "'weights_sha256' is null, expected 64 lower-case hex digits"),
    ("version", None, "'version' is null, expected text or a whole number"),
    ("format", "1", "'format' is '1', expected a whole number"),
], ids=["task-null", "task-number", "classes-numbers", "phases-text", "net-kwargs-list", "input-size-text",
        "sha-null", "version-null", "format-text"])
def test_card_field_of_the_wrong_type(package, field, value, expected):
    card = bad.edit_card(package, lambda c: c.update({field: value}))
    refused(lambda: load_model(package), f"{card}:", "has field(s) of the wrong type", expected, inputs=[package])


def test_card_that_is_not_an_object(package):
    card = package / "model.json"
    card.write_text("[1, 2, 3]\n")
    refused(lambda: load_model(package), f"{card}:", "holds a JSON list, not an object", inputs=[package])


def test_card_above_the_size_limit_is_not_read(package, monkeypatch):
    card = files.oversized_card(package)
    read = []
    monkeypatch.setattr(type(card), "read_text", lambda self, *a, **k: read.append(self) or "")
    refused(lambda: load_model(package), f"{card}:", "is 2.0 MiB; a model card is at most 1024 KiB", inputs=[package])
    assert read == []  # refused from its size, never read into memory


def test_card_of_the_wrong_type_through_cli_predict(package, tmp_path, capsys):
    bad.edit_card(package, lambda c: c.update(classes=None))
    out = tmp_path / "results.tsv"
    with bad.Unchanged(package, absent=[out]):
        code, err = bad.run_cli(["predict", "--model", package, "--case", bad.SMALL_CASE, "--out-file", out,
                                 "--device", "cpu"], capsys)
    assert code == 2
    bad.assert_message(err, "hcc predict: error:", "model.json:", "'classes' is null")


# ---------------------------------------------------------------- microscopy -----------------------

def _case(tmp_path, name):
    folder = tmp_path / "case"
    folder.mkdir()
    return folder, folder / name


@pytest.mark.parametrize("name, build, parts", [
    ("slide.tif", lambda p: p.write_bytes(b""), ["is empty (0 bytes)"]),
    ("slide.png", lambda p: p.write_bytes(b""), ["is empty (0 bytes)"]),
    ("slide.tif", lambda p: files.truncated_tiff(p, 16), ["cannot be read as a TIFF image"]),
    ("slide.png", files.bomb_png, ["decompression bomb"]),
    ("slide.png", lambda p: p.write_text("not a picture\n"), ["cannot be read as a PNG image"]),
], ids=["empty-tiff", "empty-png", "tiff-cut-after-header", "png-bomb", "text-as-png"])
def test_bad_microscopy_file(tmp_path, name, build, parts):
    folder, path = _case(tmp_path, name)
    build(path)
    refused(lambda: load_microscopy_case(folder), f"{path}:", *parts, inputs=[folder])


def test_microscopy_image_above_our_pixel_limit(tmp_path, monkeypatch):
    from PIL import Image

    folder, path = _case(tmp_path, "slide.png")
    Image.fromarray(files.real_rgb()).save(path)
    monkeypatch.setenv("HCCANALYSIS_MAX_MICROSCOPY_MPIXELS", "0.001")
    refused(lambda: load_microscopy_case(folder), f"{path}:", "is 45 x 64 pixels", "more than the 0 MP limit",
            "HCCANALYSIS_MAX_MICROSCOPY_MPIXELS", inputs=[folder])
