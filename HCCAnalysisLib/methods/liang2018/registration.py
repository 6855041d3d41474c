"""Liang 2018's phase registration (sec. 2.1, "Global Pathway"): the phases of a multi-phase CT are
registered to the reference phase before patches are taken, so that a patch samples the same
tissue in every phase ("a non-rigid registration technique in order to localize a reference
lesion in other phases", their ref. 15).

Ours, with SimpleITK (the paper's own method, Dong et al. 2015, adds an anatomical constraint
we do not have): a rigid Euler transform (geometry-centred start, Mattes mutual information,
three resolution levels), optionally followed by a cubic B-spline over a 3 x 3 x 3 control grid
(L-BFGS-B, full resolution), both on a fixed random 20 % sample of voxels (seeded: the same
result every run), restricted to a dilated liver mask when the case has one. The segmentation
is taken to be drawn on the reference phase (the Case's segmentation grid). Every moving phase
is resampled (linear) onto the reference phase's grid through the found transform.

The task option `registration` chooses: "none" (our default for now), "rigid" or "bspline"
(rigid, then B-spline: the paper's non-rigid kind). Measured (`benchmarks/bench_liang_registration.py`,
results_liang_registration.md: real CT with known rigid + smooth deformations): the rigid stage takes
the residual from 5-9 mm to about 1 mm (below the 3 mm voxel); the B-spline stage did not lower it
further and costs 10-20 times the time. It stays opt-in because on the thin bundled test volumes
(7 slices of 5 mm) the rigid stage diverged (31 degrees and 24 mm found for a 1.5 mm shift): it
needs a validation on real multi-phase liver CT, which this project does not have, before it
becomes the default.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from dataclasses import dataclass, replace

import numpy as np
import SimpleITK as sitk

from HCCAnalysisLib.errors import HCCInputError

if TYPE_CHECKING:
    from HCCAnalysisLib.data.case import Case

SAMPLING = 0.2
SEED = 1
BSPLINE_MESH = (3, 3, 3)


@dataclass(frozen=True)
class RegistrationResult:
    phase: str
    transform: sitk.Transform
    metric_before: float  # Mattes mutual information (lower is better), identity transform
    metric_after: float


MIN_VOXELS = 8  # along each axis of the registered region: ITK's smoothing needs at least 4 per level


def _levels(image: sitk.Image) -> tuple[list[int], list[float]]:
    """Shrink factors and smoothing sigmas (voxels) that keep every level at least 4 voxels thick."""
    thinnest = min(image.GetSize())
    shrinks = [f for f in (4, 2) if thinnest // f >= 4] + [1]
    return shrinks, [float(f // 2) for f in shrinks]


def _method(mask: sitk.Image | None, iterations: int, image: sitk.Image | None = None) -> sitk.ImageRegistrationMethod:
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=50)
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(SAMPLING, SEED)
    method.SetInterpolator(sitk.sitkLinear)
    if mask is not None:
        method.SetMetricFixedMask(mask)
    shrinks, sigmas = _levels(image) if image is not None else ([4, 2, 1], [2.0, 1.0, 0.0])
    method.SetShrinkFactorsPerLevel(shrinks)
    method.SetSmoothingSigmasPerLevel(sigmas)
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
    return method


def _metric(fixed: sitk.Image, moving: sitk.Image, transform: sitk.Transform, mask: sitk.Image | None) -> float:
    method = _method(mask, 1)
    method.SetShrinkFactorsPerLevel([1])
    method.SetSmoothingSigmasPerLevel([0])
    method.SetInitialTransform(transform, inPlace=False)
    return float(method.MetricEvaluate(fixed, moving))


def register(fixed: sitk.Image, moving: sitk.Image, mask: sitk.Image | None = None, bspline: bool = True,
             rigid_iterations: int = 100, bspline_iterations: int = 50) -> sitk.Transform:
    """The transform T with fixed(x) ~ moving(T(x)): rigid, then (if `bspline`) B-spline on top."""
    fixed = sitk.Cast(fixed, sitk.sitkFloat32)
    moving = sitk.Cast(moving, sitk.sitkFloat32)
    rigid = sitk.CenteredTransformInitializer(fixed, moving, sitk.Euler3DTransform(),
                                              sitk.CenteredTransformInitializerFilter.GEOMETRY)
    method = _method(mask, rigid_iterations, fixed)
    method.SetOptimizerAsRegularStepGradientDescent(learningRate=2.0, minStep=1e-3,
                                                    numberOfIterations=rigid_iterations, relaxationFactor=0.5)
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetInitialTransform(rigid, inPlace=True)
    method.Execute(fixed, moving)
    if not bspline:
        return sitk.CompositeTransform([rigid])
    deformable = sitk.BSplineTransformInitializer(fixed, list(BSPLINE_MESH), order=3)
    method = _method(mask, bspline_iterations)
    method.SetShrinkFactorsPerLevel([1])  # measured: a coarse level first moved liver points further off
    method.SetSmoothingSigmasPerLevel([0])
    method.SetOptimizerAsLBFGSB(gradientConvergenceTolerance=1e-5, numberOfIterations=bspline_iterations,
                                maximumNumberOfCorrections=5, maximumNumberOfFunctionEvaluations=4 * bspline_iterations)
    method.SetMovingInitialTransform(rigid)
    method.SetInitialTransform(deformable, inPlace=True)
    method.Execute(fixed, moving)
    return sitk.CompositeTransform([rigid, deformable])


def liver_region(case: Case, dilate_mm: float = 10.0) -> sitk.Image | None:
    """The liver mask dilated by `dilate_mm` (the registration's region), or None without a liver."""
    if case.liver_mask is None:
        return None
    spacing = case.liver_mask.GetSpacing()
    radius = [max(1, int(round(dilate_mm / s))) for s in spacing]
    return sitk.BinaryDilate(sitk.Cast(case.liver_mask > 0, sitk.sitkUInt8), radius)


def _region(case: Case, fixed: sitk.Image, margin_mm: float = 20.0) -> tuple[sitk.Image, sitk.Image | None]:
    """The part of the reference phase that is registered: the box of the liver (else of the lesions)
    plus `margin_mm`, and the dilated liver mask on it (None without a liver). Only this region
    matters for the patches, and it keeps a registration to about a second on a CPU."""
    mask = liver_region(case)
    if mask is not None:
        mask = sitk.Resample(mask, fixed, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
        if not np.any(sitk.GetArrayViewFromImage(mask)):
            mask = None
    focus = mask
    if focus is None and case.lesions:
        union = sum(sitk.Cast(lesion.mask > 0, sitk.sitkUInt8) for lesion in case.lesions) > 0
        focus = sitk.Resample(sitk.Cast(union, sitk.sitkUInt8), fixed, sitk.Transform(), sitk.sitkNearestNeighbor, 0,
                              sitk.sitkUInt8)
    if focus is None or not np.any(sitk.GetArrayViewFromImage(focus)):
        return fixed, mask
    shape = sitk.LabelShapeStatisticsImageFilter()
    shape.Execute(focus)
    box = shape.GetBoundingBox(1)  # x, y, z start, then sizes
    pad = [int(np.ceil(margin_mm / s)) for s in fixed.GetSpacing()]
    lo = [max(0, box[i] - pad[i]) for i in range(3)]
    hi = [min(fixed.GetSize()[i], box[i] + box[i + 3] + pad[i]) for i in range(3)]
    for i in range(3):  # at least MIN_VOXELS thick where the image allows it
        short = MIN_VOXELS - (hi[i] - lo[i])
        if short > 0:
            lo[i] = max(0, lo[i] - (short + 1) // 2)
            hi[i] = min(fixed.GetSize()[i], lo[i] + MIN_VOXELS)
    size = [h - l for l, h in zip(lo, hi)]
    crop = sitk.RegionOfInterest(fixed, size, lo)
    return crop, None if mask is None else sitk.RegionOfInterest(mask, size, lo)


def register_phases(case: Case, phases: Sequence[str], reference: str | None = None, bspline: bool = True
                    ) -> tuple[Case, list[RegistrationResult]]:
    """The case with every phase but `reference` (default: the last, Liang's portal venous phase)
    registered to it and resampled onto its grid; plus one result per moving phase."""
    phases = list(phases)
    reference = reference or phases[-1]
    if reference not in case.images:
        raise HCCInputError(f"has no reference phase '{reference}' to register the others to", case.source)
    fixed_full = sitk.Cast(case.images[reference], sitk.sitkFloat32)
    fixed, mask = _region(case, fixed_full)
    images, results = dict(case.images), []
    for phase in phases:
        if phase == reference:
            continue
        moving = sitk.Cast(case.images[phase], sitk.sitkFloat32)
        before = _metric(fixed, moving, sitk.Euler3DTransform(), mask)
        try:
            transform = register(fixed, moving, mask, bspline)
        except RuntimeError as err:  # ITK: e.g. too few samples in the mask, images that do not overlap
            raise HCCInputError(f"phase '{phase}' could not be registered to '{reference}': {err}", case.source,
                                "check that the phases show the same region, or turn registration off") from None
        after = _metric(fixed, moving, transform, mask)
        images[phase] = sitk.Resample(case.images[phase], fixed_full, transform, sitk.sitkLinear,
                                      float(np.min(sitk.GetArrayViewFromImage(case.images[phase]))),
                                      case.images[phase].GetPixelID())
        results.append(RegistrationResult(phase, transform, before, after))
    return replace(case, images=images, _grid_cache={}), results


def displacement_error(estimated: sitk.Transform, truth: sitk.Transform, points_mm: np.ndarray) -> np.ndarray:
    """|truth(estimated(x)) - x| in mm at each point: the residual when `moving(x) = fixed(truth(x))`
    was registered back to `fixed` by `estimated` (zero for a perfect registration)."""
    return np.array([np.linalg.norm(np.array(truth.TransformPoint(estimated.TransformPoint(tuple(p)))) - p)
                     for p in points_mm])


def mask_points(mask: sitk.Image, count: int = 500, seed: int = 0) -> np.ndarray:
    """Up to `count` random physical points (mm) inside a mask (seeded)."""
    index = np.argwhere(sitk.GetArrayViewFromImage(mask) > 0)
    if len(index) == 0:
        raise HCCInputError("the mask is empty: no point to measure the registration on")
    chosen = index[np.random.default_rng(seed).choice(len(index), min(count, len(index)), replace=False)]
    return np.array([mask.TransformIndexToPhysicalPoint([int(v) for v in i[::-1]]) for i in chosen])


REGISTRATION_CHOICES = ("rigid", "bspline", "none")


def registered_case(case: Case, phases: Sequence[str], choice: str | None) -> Case:
    """The case as Liang's sampler reads it: its phases registered as the task's `registration`
    option says (rigid, bspline = rigid then B-spline, none). A one-phase case is returned as it is."""
    choice = "none" if choice in (None, False) else str(choice)
    if choice not in REGISTRATION_CHOICES:
        raise HCCInputError(f"registration '{choice}' is not one of {', '.join(REGISTRATION_CHOICES)}",
                            hint="--sampler-option registration=rigid|bspline|none")
    if choice == "none" or len(set(phases)) < 2:
        return case
    if min(case.images[phases[-1]].GetSize()) < MIN_VOXELS:
        import logging

        logging.getLogger(__name__).warning(
            "%s: phases not registered: the reference phase has fewer than %d voxels along an axis", case.source,
            MIN_VOXELS)
        return case
    return register_phases(case, phases, bspline=choice == "bspline")[0]
