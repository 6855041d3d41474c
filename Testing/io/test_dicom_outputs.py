"""`--dicom` (issue 13, outputs a lab can share): a DICOM SR (TID 1500) of the results and DICOM
SEGs of saliency and label-map volumes, on a real CT series (TotalSegmentator's 20-slice example)
with TotalSegmentator's map on it (liver = 5; a lesion painted into the liver), read back with
pydicom and highdicom.

The example series was anonymised with its Study/Series/SOP Instance UIDs blanked (the SOP
Instance UIDs survive in the file meta): the fixture restores them as a PACS export has them,
and the blanked original is refused (no UID is made up for it).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.uid import generate_uid

from HCCAnalysisLib.cli import main
from HCCAnalysisLib.data.prediction import read_tsv
from HCCAnalysisLib.errors import HCCInputError
from HCCAnalysisLib.io.dicom_seg_write import label_map_segmentation
from HCCAnalysisLib.io.dicom_source import read_source_series, write_dataset
from HCCAnalysisLib.models.package import read_card
from HCCAnalysisLib.models.registry import untrained_package

ROOT = Path(__file__).resolve().parents[2]
TASK = "jia2019-hcc-vs-background"
LESION = 200
READING = ["--liver-label", "5", "--lesion-label", str(LESION), "--phase", "CT=image", "--device", "cpu"]


def _restored_series(source: Path, folder: Path) -> None:
    """The series with the UIDs its anonymisation blanked put back (SOP from the file meta)."""
    folder.mkdir(parents=True)
    study, series = generate_uid(entropy_srcs=["test study"]), generate_uid(entropy_srcs=["test series"])
    for path in sorted(source.iterdir()):
        ds = pydicom.dcmread(path)  # pixel data stays encapsulated (JPEG 2000): not decoded
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.PatientID = study, series, "HCC-TEST-1"
        ds.save_as(folder / path.name)


def _painted_map(path: Path) -> sitk.Image:
    """TotalSegmentator's map (on its own, y-flipped grid) with a 6 x 16 x 16 lesion in the liver."""
    labels = sitk.ReadImage(str(path))
    array = sitk.GetArrayFromImage(labels)
    z, y, x = np.argwhere(array == 5).mean(axis=0).astype(int)
    array[z - 3:z + 3, y - 8:y + 8, x - 8:x + 8] = LESION
    painted = sitk.GetImageFromArray(array)
    painted.CopyInformation(labels)
    return painted


@pytest.fixture(scope="module")
def setup(tmp_path_factory, shared_data):
    totalseg = shared_data / "abdomen" / "totalsegmentator"
    root = tmp_path_factory.mktemp("dicom_outputs")
    case = root / "case"
    _restored_series(totalseg / "example_ct_dicom", case / "CT")
    painted = _painted_map(totalseg / "example_seg_dicom.nii.gz")
    sitk.WriteImage(painted, str(case / "seg.nii"))  # uncompressed: quicker
    model = untrained_package(root / "model", TASK, ["image"], seed=0)
    return {"root": root, "case": case, "model": Path(model), "original": totalseg / "example_ct_dicom"}


def _walk(items):
    for item in items:
        yield item
        yield from _walk(getattr(item, "ContentSequence", []))


def test_predict_dicom_writes_a_tid1500_sr_of_the_results_table(setup):
    out = setup["root"] / "predict"
    command = [sys.executable, "-m", "HCCAnalysisLib.cli", "predict", "--model", str(setup["model"]),
               "--case", str(setup["case"]), "--out", str(out), "--dicom", *READING]
    run = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert run.returncode == 0, run.stderr
    rows = read_tsv(out / "results.tsv")
    assert {r["kind"] for r in rows} == {"lesion", "background"}
    path = out / "results_sr.dcm"
    raw = pydicom.dcmread(path)  # a Part 10 file pydicom reads
    assert raw.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR Storage
    sr = hd.sr.srread(path)
    assert isinstance(sr, hd.sr.Comprehensive3DSR)
    groups = sr.content.get_image_measurement_groups()  # no lesion SEG here: groups without an image region
    assert len(groups) == len(rows)
    card = read_card(setup["model"])
    for group, row in zip(groups, rows):
        assert group.tracking_identifier == f"{row['lesion_name']} ({row['lesion_id']})"
        values = {m.name.meaning: m for m in group.get_measurements()}
        assert sorted(values) == [f"Probability of {c}" for c in ("HCC", "background")]
        for cls in ("background", "HCC"):
            measurement = values[f"Probability of {cls}"]
            assert measurement.value == pytest.approx(float(row[f"prob_{cls}"]), rel=1e-12, abs=1e-300)
            assert measurement.unit.value == "1" and measurement.unit.scheme_designator == "UCUM"
        (evaluation,) = group.get_qualitative_evaluations()
        assert evaluation.value.meaning == row["predicted_class"] and evaluation.value.scheme_designator == "99HCC"
    texts = [str(getattr(item, "TextValue", "")) for item in _walk(raw.ContentSequence)]
    assert f"weights_sha256={card['weights_sha256']}" in texts and "HCCAnalysis" in texts
    source = read_source_series(setup["case"] / "CT")
    evidence = raw.CurrentRequestedProcedureEvidenceSequence[0]
    referenced = {str(i.ReferencedSOPInstanceUID) for s in evidence.ReferencedSeriesSequence
                  for i in s.ReferencedSOPSequence}
    assert referenced == set(source.sop_instance_uids()) and len(referenced) == 20
    assert evidence.StudyInstanceUID == raw.StudyInstanceUID == source.datasets[0].StudyInstanceUID
    assert raw.PatientID == "HCC-TEST-1"


def _seg_as_image(seg) -> sitk.Image:
    """A decoded SEG (highdicom Volume) as a SimpleITK image in its own geometry."""
    volume = seg.get_volume(combine_segments=False)
    affine = np.asarray(volume.affine, dtype=float)
    columns = affine[:3, [2, 1, 0]]  # array (slice, row, column) -> ITK index (column, row, slice)
    spacing = np.linalg.norm(columns, axis=0)
    image = sitk.GetImageFromArray(np.asarray(volume.array, dtype=np.float32)[..., 0])
    image.SetSpacing(spacing.tolist())
    image.SetOrigin(affine[:3, 3].tolist())
    image.SetDirection((columns / spacing).flatten().tolist())
    return image


def test_saliency_dicom_seg_equals_the_saliency_volume_on_the_source_frames(setup, one_torch_thread):
    out = setup["root"] / "saliency"
    assert main(["saliency", "--model", str(setup["model"]), "--case", str(setup["case"]), "--out", str(out),
                 "--dicom", *READING]) == 0
    seg = hd.seg.segread(out / "saliency_seg.dcm")
    assert (seg.SegmentationType, seg.SegmentationFractionalType) == ("FRACTIONAL", "PROBABILITY")
    source = read_source_series(setup["case"] / "CT")
    frames = seg.PerFrameFunctionalGroupsSequence
    assert len(frames) == len(source.datasets) == 20  # every source frame, also the all-zero ones
    by_position = {tuple(round(float(v), 3) for v in ds.ImagePositionPatient): str(ds.SOPInstanceUID)
                   for ds in source.datasets}
    for frame in frames:
        position = tuple(round(float(v), 3) for v in frame.PlanePositionSequence[0].ImagePositionPatient)
        derived = frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        assert by_position[position] == derived
    saliency = sitk.ReadImage(str(out / "saliency.nrrd"))  # on the segmentation's (y-flipped) grid
    decoded = _seg_as_image(seg)
    expected = sitk.GetArrayFromImage(sitk.Resample(saliency, decoded, sitk.Transform(), sitk.sitkNearestNeighbor))
    got = sitk.GetArrayFromImage(decoded)
    assert expected.max() > 0.5 and np.abs(got - expected).max() <= 1 / 255 + 1e-6


def test_label_map_seg_has_one_binary_segment_per_class_present(setup):
    source = read_source_series(setup["case"] / "CT")
    grid = sitk.ReadImage(str(setup["case"] / "seg.nii"))  # the y-flipped grid: resampled onto the series
    array = np.zeros(grid.GetSize()[::-1], dtype=np.uint8)
    array[5:9, 200:230, 150:170] = 1  # class 0 (cyst)
    array[10:12, 240:250, 180:200] = 3  # class 2 (HCC); FNH and hemangioma absent
    label_map = sitk.GetImageFromArray(array)
    label_map.CopyInformation(grid)
    card = read_card(setup["model"])
    seg = label_map_segmentation(label_map, ["cyst", "FNH", "HCC", "hemangioma"], source, card)
    path = setup["root"] / "label_map_seg.dcm"
    write_dataset(path, seg)
    back = hd.seg.segread(path)
    assert back.SegmentationType == "BINARY" and [int(n) for n in back.segment_numbers] == [1, 2]
    items = back.SegmentSequence
    assert [i.SegmentLabel for i in items] == ["cyst", "HCC"]
    assert items[0].SegmentedPropertyTypeCodeSequence[0].CodeValue == "367643001"  # SNOMED CT cyst
    assert items[1].SegmentedPropertyTypeCodeSequence[0].CodingSchemeDesignator == "99HCC"
    volume = back.get_volume(combine_segments=True, relabel=False, allow_missing_positions=True)
    decoded = sitk.GetImageFromArray(np.asarray(volume.array).astype(np.uint8))
    affine = np.asarray(volume.affine, dtype=float)
    columns = affine[:3, [2, 1, 0]]
    decoded.SetSpacing(np.linalg.norm(columns, axis=0).tolist())
    decoded.SetOrigin(affine[:3, 3].tolist())
    decoded.SetDirection((columns / np.linalg.norm(columns, axis=0)).flatten().tolist())
    expected = sitk.GetArrayFromImage(sitk.Resample(label_map, decoded, sitk.Transform(), sitk.sitkNearestNeighbor))
    got = sitk.GetArrayFromImage(decoded)
    np.testing.assert_array_equal(got, np.where(expected == 3, 2, expected))  # segment numbers 1..n
    away = sitk.Image(label_map)
    away.SetOrigin([v + 5000.0 for v in label_map.GetOrigin()])  # not inside the series at all
    with pytest.raises(HCCInputError, match="does not lie inside the DICOM series"):
        label_map_segmentation(away, ["cyst", "FNH", "HCC", "hemangioma"], source, card)


def test_a_case_without_dicom_phases_is_refused_before_any_work(setup, tmp_path, capsys):
    case = tmp_path / "nifti_case"
    case.mkdir()
    # the phase as NIfTI (its pixels are never read: the refusal comes first)
    sitk.WriteImage(sitk.Image([8, 8, 4], sitk.sitkInt16), str(case / "CT.nii"))
    os.symlink(setup["case"] / "seg.nii", case / "seg.nii")
    for command in ("predict", "saliency"):
        out = tmp_path / f"out_{command}"
        status = main([command, "--model", str(setup["model"]), "--case", str(case), "--out", str(out), "--dicom",
                       *READING])
        assert status == 2 and not out.exists()
        error = capsys.readouterr().err
        assert "none of the model's phases is a DICOM series folder (phases: image (CT.nii))" in error
        assert "DICOM series folders" in error
    assert main(["predict", "--model", str(setup["model"]), "--case", str(setup["case"]),
                 "--out-file", str(tmp_path / "r.tsv"), "--dicom", *READING]) == 2
    assert "give --out DIR instead of --out-file" in capsys.readouterr().err and not (tmp_path / "r.tsv").exists()


def test_a_series_whose_uids_were_blanked_is_refused_not_given_made_up_uids(setup, tmp_path, capsys):
    case = tmp_path / "blanked"
    case.mkdir()
    os.symlink(setup["original"], case / "CT")
    os.symlink(setup["case"] / "seg.nii", case / "seg.nii")
    out = tmp_path / "out"
    assert main(["predict", "--model", str(setup["model"]), "--case", str(case), "--out", str(out), "--dicom",
                 *READING]) == 2
    error = capsys.readouterr().err
    assert "has no (or an empty) SOPInstanceUID, SOPClassUID, StudyInstanceUID, SeriesInstanceUID" in error
    assert not out.exists()


def test_a_lesion_that_is_a_dicom_seg_segment_is_referenced_by_its_group(setup, tmp_path, one_torch_thread):
    source = read_source_series(setup["case"] / "CT")
    labels = sitk.ReadImage(str(setup["case"] / "seg.nii"))
    canonical = sitk.GetArrayFromImage(labels)
    canonical = np.where(canonical == LESION, 2, np.where(canonical == 5, 1, 0)).astype(np.uint8)
    label_map = sitk.GetImageFromArray(canonical)
    label_map.CopyInformation(labels)
    lesion_seg = label_map_segmentation(label_map, ["liver", "lesion"], source, read_card(setup["model"]),
                                        title="lesions")  # the case's segmentation as a DICOM SEG of the series
    case = tmp_path / "seg_case"
    case.mkdir()
    os.symlink(setup["case"] / "CT", case / "CT")
    write_dataset(case / "lesions.dcm", lesion_seg)
    out = tmp_path / "out"
    assert main(["predict", "--model", str(setup["model"]), "--case", str(case), "--out", str(out), "--dicom",
                 "--liver-label", "liver", "--lesion-label", "lesion", "--phase", "CT=image", "--device", "cpu"]) == 0
    rows = read_tsv(out / "results.tsv")
    assert [r["kind"] for r in rows] == ["lesion", "background"] and rows[0]["lesion_id"] == "2"  # the segment
    sr = hd.sr.srread(out / "results_sr.dcm")
    (volumetric,) = sr.content.get_volumetric_roi_measurement_groups()  # the lesion: segment 2 of the SEG
    assert volumetric.tracking_identifier == f"{rows[0]['lesion_name']} (2)"
    segment = volumetric.referenced_segment
    assert list(segment.referenced_segment_numbers) == [2]
    assert segment.referenced_sop_instance_uid == lesion_seg.SOPInstanceUID
    values = [m.value for m in volumetric.get_measurements()]
    assert values == pytest.approx([float(rows[0]["prob_background"]), float(rows[0]["prob_HCC"])], rel=1e-12)
    (background,) = sr.content.get_image_measurement_groups()  # no segment: a group without an image region
    assert background.tracking_identifier == f"{rows[1]['lesion_name']} ({rows[1]['lesion_id']})"
    evidence = {str(i.ReferencedSOPInstanceUID) for study in sr.CurrentRequestedProcedureEvidenceSequence
                for series in study.ReferencedSeriesSequence for i in series.ReferencedSOPSequence}
    assert evidence == set(source.sop_instance_uids()) | {lesion_seg.SOPInstanceUID}
