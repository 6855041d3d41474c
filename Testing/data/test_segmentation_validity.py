"""Segmentations that are valid but unusual, or broken (issue 14): overlapping .seg.nrrd layers,
segments without a label value or pointing at a missing layer, label values above 255 / 65535,
thousands of tiny lesions, a lesion outside the liver."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from HCCAnalysisLib.data.case import load_case, read_seg_nrrd
from HCCAnalysisLib.data.reading_options import CaseReading
from HCCAnalysisLib.data.segments import MAX_LESIONS, OUTSIDE_LIVER
from HCCAnalysisLib.errors import HCCInputError

ROOT = Path(__file__).resolve().parents[2]
BREAST = ROOT / "HCCAnalysisLib" / "sample_data" / "demo-cohort" / "breast1"  # 45 x 102 x 7 MR, the smallest real case
IJK_TO_LPS = np.array([[2.0, 0, 0, 10], [0, 2.0, 0, 20], [0, 0, 3.0, 30], [0, 0, 0, 1]])


def layered_seg(path: Path, shape_ijk=(10, 12, 8)) -> tuple[np.ndarray, np.ndarray]:
    """A two-layer .seg.nrrd as Slicer saves overlapping segments: a lesion drawn inside the liver.
    Returns the liver and lesion masks in (z, y, x)."""
    import slicerio

    voxels = np.zeros((2,) + shape_ijk, dtype=np.uint8)
    voxels[0, 2:8, 2:10, 1:7] = 1
    voxels[1, 4:6, 4:7, 3:5] = 1
    segments = [{"id": "Segment_1", "name": "liver", "labelValue": 1, "layer": 0, "color": [1, 0, 0]},
                {"id": "Segment_2", "name": "tumour", "labelValue": 1, "layer": 1, "color": [0, 1, 0]}]
    slicerio.write_segmentation(str(path), {"voxels": voxels, "ijkToLPS": IJK_TO_LPS, "segments": segments})
    return voxels[0].transpose(2, 1, 0).astype(bool), voxels[1].transpose(2, 1, 0).astype(bool)


def edit_header(path: Path, old: bytes, new: bytes) -> None:
    raw = path.read_bytes()
    end = raw.index(b"\n\n")
    assert raw[:end].count(old) == 1
    path.write_bytes(raw[:end].replace(old, new) + raw[end:])


def test_overlapping_segments_in_layers_are_read_layer_first(tmp_path):
    liver, lesion = layered_seg(tmp_path / "case.seg.nrrd")
    segmentation, lesions, liver_mask = read_seg_nrrd(tmp_path / "case.seg.nrrd")
    assert [(l.lesion_id, l.name) for l in lesions] == [("Segment_2", "tumour")]
    np.testing.assert_array_equal(sitk.GetArrayFromImage(lesions[0].mask).astype(bool), lesion)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(liver_mask).astype(bool), liver | lesion)
    assert segmentation.GetSize() == (10, 12, 8) and segmentation.GetSpacing() == (2.0, 2.0, 3.0)
    assert lesions[0].warnings == []  # drawn inside the liver


@pytest.mark.parametrize("old, new, message", [
    (b"Segment1_LabelValue:=1\n", b"", "segment 'tumour' has no label value"),
    (b"Segment1_Layer:=1", b"Segment1_Layer:=3", "segment 'tumour' points at layer 3, but the file has 2 layer(s)"),
], ids=["no-label-value", "missing-layer"])
def test_inconsistent_segments_are_refused_by_name(tmp_path, old, new, message):
    path = tmp_path / "case.seg.nrrd"
    layered_seg(path)
    edit_header(path, old, new)
    with pytest.raises(HCCInputError, match=re.escape(message)):
        read_seg_nrrd(path)


def _case_with_labels(tmp_path, labels: np.ndarray, pixel=sitk.sitkInt32) -> Path:
    case = tmp_path / "case"
    case.mkdir()
    shutil.copy(BREAST / "image.nrrd", case / "image.nrrd")
    reference = sitk.ReadImage(str(BREAST / "labels.nrrd"))
    image = sitk.Cast(sitk.GetImageFromArray(labels), pixel)
    image.CopyInformation(reference)
    sitk.WriteImage(image, str(case / "labels.nrrd"), True)
    return case


def _breast_lesion_array():
    return sitk.GetArrayFromImage(sitk.ReadImage(str(BREAST / "labels.nrrd"))) > 0


@pytest.mark.parametrize("liver, lesion", [(300, 258), (70001, 65538)])
def test_label_values_above_255_and_65535_keep_their_value(tmp_path, liver, lesion):
    tumour = _breast_lesion_array()
    labels = np.where(tumour, lesion, 0).astype(np.int32)
    labels[:, :5, :5] = liver
    # a value that wraps onto the lesion label (lesion + 65536 or + 256) must not be read as lesion
    labels[-1, -3:, -3:] = lesion + 65536 if lesion < 65536 else lesion - 65536
    case = _case_with_labels(tmp_path, labels)
    loaded = load_case(case, reading=CaseReading((str(liver),), (str(lesion),)))
    assert len(loaded.lesions) == 1
    np.testing.assert_array_equal(loaded.lesion_array(loaded.lesions[0]).astype(bool), tumour)
    np.testing.assert_array_equal(loaded.liver_array().astype(bool), (labels == liver) | (labels == lesion))


def test_ten_thousand_tiny_lesions_are_refused_quickly_with_the_limit(tmp_path):
    z, y, x = np.indices((7, 102, 45))  # breast1's grid
    labels = np.where((z + y + x) % 2 == 0, 2, 0).astype(np.int32)  # a 3D checkerboard: no two lesion
    assert int(np.count_nonzero(labels)) > 10_000  # voxels share a face, so 16,065 one-voxel lesions
    case = _case_with_labels(tmp_path, labels)
    started = time.perf_counter()
    with pytest.raises(HCCInputError, match=rf"separate lesions .* more than the limit of {MAX_LESIONS} per case"):
        load_case(case)
    assert time.perf_counter() - started < 10.0


def test_many_lesions_under_the_limit_are_split_in_one_pass(tmp_path):
    labels = np.zeros((7, 102, 45), dtype=np.int32)
    labels[2:4, 2:100:6, 2:44:6] = 2  # 17 * 7 = 119 two-voxel lesions
    case = _case_with_labels(tmp_path, labels)
    started = time.perf_counter()
    loaded = load_case(case, phases=["image"])
    assert len(loaded.lesions) == 119
    assert all(int(np.count_nonzero(loaded.lesion_array(l))) == 2 for l in loaded.lesions)
    assert time.perf_counter() - started < 10.0


def test_lesion_outside_the_liver_is_flagged_not_silent(tmp_path):
    tumour = _breast_lesion_array()
    labels = np.where(tumour, 2, 0).astype(np.int32)
    labels[:, :4, :4] = 1  # a liver far from the lesion
    loaded = load_case(_case_with_labels(tmp_path, labels))
    assert loaded.lesions[0].warnings == [OUTSIDE_LIVER]
    labels[np.roll(tumour, 1, axis=2) & ~tumour] = 1  # now the liver touches the lesion
    shutil.rmtree(tmp_path / "case")
    assert load_case(_case_with_labels(tmp_path, labels)).lesions[0].warnings == []


def test_segment_outside_the_liver_segment_is_flagged(tmp_path):
    import slicerio

    voxels = np.zeros((10, 12, 8), dtype=np.uint8)
    voxels[2:8, 2:10, 1:5] = 1  # liver
    voxels[4:6, 4:7, 2:4] = 2  # inside it
    voxels[0:2, 0:2, 6:8] = 3  # far from it
    segments = [{"id": f"Segment_{v}", "name": n, "labelValue": v, "layer": 0, "color": [1, 0, 0]}
                for v, n in ((1, "Liver"), (2, "tumour"), (3, "satellite"))]
    slicerio.write_segmentation(str(tmp_path / "s.seg.nrrd"), {"voxels": voxels, "ijkToLPS": IJK_TO_LPS,
                                                               "segments": segments})
    _, lesions, _ = read_seg_nrrd(tmp_path / "s.seg.nrrd")
    assert [(l.name, l.warnings) for l in lesions] == [("tumour", []), ("satellite", [OUTSIDE_LIVER])]
