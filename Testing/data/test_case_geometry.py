"""A mask drawn on one phase is carried to phases of other geometry through physical space."""

import shutil

import numpy as np
import SimpleITK as sitk
import pytest

from HCCAnalysisLib.data.case import load_case
from HCCAnalysisLib.errors import HCCInputError


def _resampled(image, spacing, shift_mm=(0.0, 0.0, 0.0)):
    """The same anatomy on another grid: other spacing, shifted origin (a second 'phase')."""
    size = [int(round(sz * sp / ns)) for sz, sp, ns in zip(image.GetSize(), image.GetSpacing(), spacing)]
    origin = [o + s for o, s in zip(image.GetOrigin(), shift_mm)]
    return sitk.Resample(image, size, sitk.Transform(), sitk.sitkLinear, origin, spacing, image.GetDirection(),
                         0.0, sitk.sitkFloat32)


@pytest.fixture
def two_phase_case(sample_data, tmp_path):
    source = sample_data / "demo-cohort" / "lung2"
    folder = tmp_path / "lung2"
    folder.mkdir()
    shutil.copy(source / "image.nrrd", folder / "arterial.nrrd")
    shutil.copy(source / "labels.nrrd", folder / "labels.nrrd")
    image = sitk.ReadImage(str(source / "image.nrrd"), sitk.sitkFloat32)
    portal = _resampled(image, (1.1, 0.9, 2.5), shift_mm=(-3.3, 2.1, -1.7))
    sitk.WriteImage(portal, str(folder / "portal.nrrd"))
    return folder, image


def test_phase_of_other_spacing_is_carried_onto_the_mask_grid(two_phase_case):
    folder, original = two_phase_case
    case = load_case(folder, phases=["arterial", "portal"])
    arterial, portal = case.phase_on_grid("arterial"), case.phase_on_grid("portal")
    assert arterial.shape == portal.shape == sitk.GetArrayViewFromImage(case.segmentation).shape
    lesion = case.lesion_array(case.lesions[0]) > 0
    # The portal phase went through two linear resamplings: inside the lesion it must agree with
    # the original closely, far better than the same voxels shifted by one slice would.
    diff = np.abs(arterial[lesion] - portal[lesion]).mean()
    shifted = np.abs(arterial[1:][lesion[:-1]] - arterial[:-1][lesion[:-1]]).mean()
    assert diff < 0.35 * shifted
    assert np.corrcoef(arterial[lesion], portal[lesion])[0, 1] > 0.9


def test_mask_drawn_on_the_coarse_phase_is_carried_to_the_fine_one(two_phase_case, tmp_path):
    folder, original = two_phase_case
    labels = sitk.ReadImage(str(folder / "labels.nrrd"))
    portal = sitk.ReadImage(str(folder / "portal.nrrd"))
    coarse_labels = sitk.Resample(labels, portal, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    sitk.WriteImage(coarse_labels, str(folder / "labels.nrrd"))
    case = load_case(folder, phases=["arterial", "portal"])
    assert case.segmentation.GetSpacing() == portal.GetSpacing()
    arterial_on_coarse = case.phase_on_grid("arterial")
    lesion = case.lesion_array(case.lesions[0]) > 0
    expected = sitk.GetArrayFromImage(portal)
    assert np.corrcoef(arterial_on_coarse[lesion], expected[lesion])[0, 1] > 0.9


def test_phase_that_does_not_overlap_is_refused(two_phase_case):
    folder, original = two_phase_case
    far = sitk.Image(original)
    far.SetOrigin([o + 500.0 for o in original.GetOrigin()])
    sitk.WriteImage(far, str(folder / "portal.nrrd"))
    with pytest.raises(HCCInputError, match="portal.*does not overlap"):
        load_case(folder, phases=["arterial", "portal"])
