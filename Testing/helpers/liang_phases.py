"""Liang 2018 stand-in phases from one real image (the tests' and the benchmarks' cohort): the real
image is NC; ART and PV are copies resampled onto other grids (other spacings, origins shifted by a
fraction of a voxel), so a sampler that reads phases by voxel index gets misaligned channels."""

import SimpleITK as sitk


def resampled(image, factor, shift):
    """The image on another grid covering the same region (spacing x factor, origin shifted by `shift` voxels)."""
    size = [max(2, int(round(n / f))) for n, f in zip(image.GetSize(), factor)]
    reference = sitk.Image(size, sitk.sitkFloat32)
    reference.SetSpacing([s * f for s, f in zip(image.GetSpacing(), factor)])
    reference.SetDirection(image.GetDirection())
    reference.SetOrigin([o + d * s for o, d, s in zip(image.GetOrigin(), shift, image.GetSpacing())])
    low = float(sitk.GetArrayViewFromImage(image).min())
    return sitk.Resample(image, reference, sitk.Transform(), sitk.sitkLinear, low, sitk.sitkFloat32)


def write_phases(image, folder):
    """NC.nrrd (the image), ART.nrrd and PV.nrrd (resampled copies) in `folder`."""
    sitk.WriteImage(image, str(folder / "NC.nrrd"))
    sitk.WriteImage(resampled(image, (1.25, 1.25, 1.0), (0.5, 0.5, 0.0)), str(folder / "ART.nrrd"))
    sitk.WriteImage(resampled(image, (0.8, 0.8, 1.0), (-0.25, 0.25, 0.0)), str(folder / "PV.nrrd"))
