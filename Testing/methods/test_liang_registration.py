"""Liang 2018's phase registration on real CT (TotalSegmentator's example, liver label 5), misaligned
by a known rigid motion: the registration must bring the residual below one voxel."""

import numpy as np
import pytest
import SimpleITK as sitk

from HCCAnalysisLib import HCCInputError
from HCCAnalysisLib.data.case import Case, Lesion
from HCCAnalysisLib.methods.liang2018.registration import (displacement_error, mask_points, register,
                                                         register_phases)

LIVER = 5


@pytest.fixture(scope="module")
def liver_ct(shared_data):
    folder = shared_data / "abdomen" / "totalsegmentator"
    ct = sitk.ReadImage(str(folder / "example_ct_sm.nii.gz"), sitk.sitkFloat32)
    liver = sitk.Cast(sitk.ReadImage(str(folder / "example_seg.nii.gz")) == LIVER, sitk.sitkUInt8)
    box = sitk.LabelShapeStatisticsImageFilter()
    box.Execute(liver)
    x, y, z, sx, sy, sz = box.GetBoundingBox(1)
    lo = [max(0, v - 4) for v in (x, y, z)]
    size = [min(s + 8, full - l) for s, full, l in zip((sx, sy, sz), ct.GetSize(), lo)]
    return sitk.RegionOfInterest(ct, size, lo), sitk.RegionOfInterest(liver, size, lo)


def _known_motion(image):
    centre = image.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2.0 for s in image.GetSize()])
    return sitk.Euler3DTransform(centre, np.radians(2.0), np.radians(-1.5), np.radians(2.5), (4.0, -3.0, 2.5))


def test_rigid_registration_recovers_a_known_motion_below_a_voxel(liver_ct):
    ct, liver = liver_ct
    truth = _known_motion(ct)
    moving = sitk.Resample(ct, ct, truth, sitk.sitkLinear, -1024.0)
    points = mask_points(sitk.BinaryErode(liver, [2, 2, 2]), 200)
    before = displacement_error(sitk.Euler3DTransform(), truth, points)
    after = displacement_error(register(ct, moving, sitk.BinaryDilate(liver, [3, 3, 3]), bspline=False),
                               truth, points)
    assert before.mean() > 5.0  # the known misalignment, in mm
    assert after.mean() < 0.5 * ct.GetSpacing()[0] and np.percentile(after, 95) < ct.GetSpacing()[0]


def test_register_phases_aligns_the_moving_phase_on_the_reference_grid(liver_ct):
    ct, liver = liver_ct
    moving = sitk.Resample(ct, ct, _known_motion(ct), sitk.sitkLinear, -1024.0)
    lesion = sitk.BinaryErode(liver, [4, 4, 2])
    case = Case("ct", "p", {"NC": moving, "PV": ct}, liver, [Lesion("1", "lesion", lesion)], liver_mask=liver)
    registered, results = register_phases(case, ["NC", "PV"], bspline=False)
    assert [r.phase for r in results] == ["NC"] and results[0].metric_after < results[0].metric_before
    aligned = registered.images["NC"]
    assert aligned.GetSize() == ct.GetSize() and aligned.GetOrigin() == ct.GetOrigin()
    inside = sitk.GetArrayViewFromImage(liver) > 0
    error = [np.abs(sitk.GetArrayViewFromImage(img)[inside] - sitk.GetArrayViewFromImage(ct)[inside]).mean()
             for img in (moving, aligned)]
    assert error[1] < 0.5 * error[0]  # intensity differences in the liver fall by more than half
    assert case.images["NC"] is moving  # the input case is untouched
    with pytest.raises(HCCInputError, match="no reference phase 'ART'"):
        register_phases(case, ["NC", "PV"], reference="ART")
