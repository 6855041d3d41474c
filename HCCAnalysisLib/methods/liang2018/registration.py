"""Liang 2018's phase registration (sec. 2.1, "Global Pathway"): the phases of a multi-phase CT are
registered to the reference phase before patches are taken, so that a patch samples the same
tissue in every phase ("a non-rigid registration technique in order to localize a reference
lesion in other phases", their ref. 15). On by default (task option `registration`, "bspline" =
rigid then B-spline, the paper's non-rigid kind; "rigid"; "none" turns it off).

Ours, with SimpleITK (the paper's own method, Dong et al. 2015, adds an anatomical constraint we
do not have). The fixed image is the reference phase cropped to the liver's box (else the
lesions') + 20 mm (`registration_region.py`); both images are clamped to the task's window
(-160..240 HU); the metric is Mattes mutual information on a seeded random sample of at most
MAX_SAMPLES voxels of the dilated liver mask (the same result every run, its cost independent of
the voxel size).
- Rigid: an Euler transform centred on the region, starting from identity (the phases of one study
  share the scanner's coordinates; the former geometric-centre start shifted a cropped region
  towards the centre of the whole moving image), optimizer scales from physical shift, our own
  coarse-to-fine pyramid (4, 2, 1) that shrinks only axes keeping 16 voxels. A volume of fewer
  than THIN_SLICES slices is registered in-plane (rotation about z, shift in x, y, z): a rotation
  about x or y is not determined through a few thick slices.
  Why the old stage diverged on the 7-slice bundled volumes (31 degrees, 24 mm found for a 1.5 mm
  shift), measured: over the full HU range of the lung CT the MI gradient pointed away from the
  optimum (a 3 mm shift was driven to +6 mm, while correlation went to -3 mm); on the soft-tissue
  window it points the right way. ITK's pyramid shrinks all axes alike, so the old stage had no
  coarse level on 7 slices, and 3-D rotations on 7 slices added to it.
- B-spline: cubic, one mesh cell per ~BSPLINE_NODE_MM of the region (1-4 per axis), L-BFGS-B with
  every coefficient bounded by MAX_BSPLINE_MM, on top of the rigid result.
- Guard (`guarded_registration`): a stage is kept only if it lowers the metric (below identity,
  resp. below the rigid result), the pair shares information (MI of at least MIN_MI nats: a noise
  phase does not), and the rigid motion is plausible between phases of one study (rotation <
  MAX_ROTATION_DEG, shift of the region's centre < MAX_SHIFT_MM: breathing and repositioning
  between phases move the liver by up to ~1-2 cm); otherwise the previous stage (or identity) is
  kept, the reason logged and written into every sample's `registration` extra (a column of the
  prediction table). ITK failures (samples leaving the image) count as refusals.
Every moving phase is resampled (linear) onto the reference phase's grid through the kept
transform. Measured in `benchmarks/results_liang_registration.md`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import logging
import re
from dataclasses import dataclass, replace

import numpy as np
import SimpleITK as sitk

from HCCAnalysisLib.errors import HCCInputError
from HCCAnalysisLib.methods.liang2018.registration_region import registration_region

if TYPE_CHECKING:
    from HCCAnalysisLib.data.case import Case

LOG = logging.getLogger(__name__)
SAMPLING = 0.2  # share of the region's voxels the metric samples ...
MAX_SAMPLES = 20000  # ... but no more than this many (Mattes MI is stable from ~10^4 samples)
SEED = 1
THIN_SLICES = 16  # fewer slices than this: in-plane rigid motion only
MIN_IN_PLANE = 16  # the reference phase needs this many voxels in x and y, and 2 slices, to be registered to
PYRAMID = (4, 2, 1)  # rigid stage: coarse to fine, each level shrunk by these factors ...
PYRAMID_MIN_VOXELS = 16  # ... along the axes that keep at least this many voxels
BSPLINE_NODE_MM = 100.0  # measured: 60 mm nodes fitted the metric's noise (residual 1.6 vs 1.2 mm on real CT)
MAX_BSPLINE_MM = 5.0  # what is left between phases after the rigid stage is a few mm
MAX_ROTATION_DEG = 10.0
MAX_SHIFT_MM = 20.0
MIN_MI = 0.25  # nats; measured: a noise phase reached 0.11 after registration, real CT pairs 0.7-2.2
DEFAULT_CHOICE = "bspline"
REGISTRATION_CHOICES = ("bspline", "rigid", "none")


@dataclass(frozen=True)
class RegistrationResult:
    phase: str
    transform: sitk.Transform  # the kept one (identity when the guard refused every stage)
    metric_before: float  # Mattes mutual information (negative; lower is better), identity transform
    metric_after: float  # ... with the kept transform
    kept: str  # "rigid+bspline", "rigid" or "identity"
    note: str  # what was found and why a stage was refused ("" when every stage was kept)
    warn: bool = False  # the refusal points at a problem (failure, implausible motion, no shared information),
    # not merely at phases that were aligned already


def is_thin(image: sitk.Image) -> bool:
    """True for a volume with too few slices to determine a 3-D rotation (in-plane registration)."""
    return image.GetSize()[2] < THIN_SLICES


def shrink_factors(image: sitk.Image, factor: int) -> list[int]:
    """Per-axis shrink of one pyramid level: `factor` along each axis that keeps PYRAMID_MIN_VOXELS
    voxels, else 1 (so the few slices of a thin volume are never merged)."""
    return [factor if n // factor >= PYRAMID_MIN_VOXELS else 1 for n in image.GetSize()]


def _level(image: sitk.Image, factors: Sequence[int], label: bool = False) -> sitk.Image:
    if all(f == 1 for f in factors):
        return image
    if label:  # a mask stays 0/1: a coarse voxel is in the mask when half its voxels are
        return sitk.Cast(sitk.BinShrink(sitk.Cast(image, sitk.sitkFloat32), list(factors)) >= 0.5, sitk.sitkUInt8)
    return sitk.BinShrink(image, list(factors))  # the mean of each block: smooths as it shrinks


def _method(fixed: sitk.Image, mask: sitk.Image | None) -> sitk.ImageRegistrationMethod:
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=50)
    voxels = float(np.count_nonzero(sitk.GetArrayViewFromImage(mask))) if mask is not None else float(
        np.prod(fixed.GetSize()))
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(min(SAMPLING, MAX_SAMPLES / max(voxels, 1.0)), SEED)
    method.SetInterpolator(sitk.sitkLinear)
    if mask is not None:
        method.SetMetricFixedMask(mask)
    method.SetShrinkFactorsPerLevel([1])
    method.SetSmoothingSigmasPerLevel([0.0])
    return method


def metric(fixed: sitk.Image, moving: sitk.Image, transform: sitk.Transform, mask: sitk.Image | None = None) -> float:
    """The registration metric (Mattes MI, lower is better) of `moving` through `transform`, on the
    same seeded samples the registration uses."""
    method = _method(fixed, mask)
    method.SetInitialTransform(transform, inPlace=False)
    return float(method.MetricEvaluate(sitk.Cast(fixed, sitk.sitkFloat32), sitk.Cast(moving, sitk.sitkFloat32)))


def _centre(image: sitk.Image) -> tuple[float, ...]:
    return image.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2.0 for s in image.GetSize()])


def rigid_stage(fixed: sitk.Image, moving: sitk.Image, mask: sitk.Image | None = None,
                iterations: int = 100) -> sitk.Euler3DTransform:
    """The rigid transform T with fixed(x) ~ moving(T(x)), centred on the fixed region, from identity,
    coarse to fine (our own per-axis pyramid: ITK's shrinks every axis alike, and would merge the
    slices of a thin volume)."""
    fixed, moving = sitk.Cast(fixed, sitk.sitkFloat32), sitk.Cast(moving, sitk.sitkFloat32)
    rigid = sitk.Euler3DTransform()
    rigid.SetCenter(_centre(fixed))
    for factor in PYRAMID:
        fixed_level = _level(fixed, shrink_factors(fixed, factor))
        mask_level = None if mask is None else _level(mask, shrink_factors(fixed, factor), label=True)
        method = _method(fixed_level, mask_level)
        method.SetOptimizerAsRegularStepGradientDescent(learningRate=1.0, minStep=1e-3,
                                                        numberOfIterations=iterations, relaxationFactor=0.5,
                                                        gradientMagnitudeTolerance=1e-8)
        method.SetOptimizerScalesFromPhysicalShift()
        if is_thin(fixed):
            method.SetOptimizerWeights([0.0, 0.0, 1.0, 1.0, 1.0, 1.0])  # rotations about x and y stay 0
        method.SetInitialTransform(rigid, inPlace=True)
        method.Execute(fixed_level, _level(moving, shrink_factors(moving, factor)))
    return rigid


def bspline_mesh(image: sitk.Image) -> list[int]:
    """Control-grid size per axis: one mesh cell per ~BSPLINE_NODE_MM of the region, 1 to 4."""
    extent = [n * s for n, s in zip(image.GetSize(), image.GetSpacing())]
    return [int(np.clip(round(e / BSPLINE_NODE_MM), 1, 4)) for e in extent]


def bspline_stage(fixed: sitk.Image, moving: sitk.Image, rigid: sitk.Transform, mask: sitk.Image | None = None,
                  iterations: int = 50) -> sitk.BSplineTransform:
    """The B-spline on top of `rigid` (fixed(x) ~ moving(rigid(B(x)))), coefficients within +-MAX_BSPLINE_MM."""
    deformable = sitk.BSplineTransformInitializer(fixed, bspline_mesh(fixed), order=3)
    method = _method(fixed, mask)  # one full-resolution level: measured, a coarse level first moved points further off
    method.SetOptimizerAsLBFGSB(gradientConvergenceTolerance=1e-5, numberOfIterations=iterations,
                                maximumNumberOfCorrections=5, maximumNumberOfFunctionEvaluations=4 * iterations,
                                lowerBound=-MAX_BSPLINE_MM, upperBound=MAX_BSPLINE_MM)
    method.SetMovingInitialTransform(rigid)
    method.SetInitialTransform(deformable, inPlace=True)
    method.Execute(sitk.Cast(fixed, sitk.sitkFloat32), sitk.Cast(moving, sitk.sitkFloat32))
    return deformable


def register(fixed: sitk.Image, moving: sitk.Image, mask: sitk.Image | None = None, bspline: bool = True
             ) -> sitk.Transform:
    """The transform T with fixed(x) ~ moving(T(x)): rigid, then (if `bspline`) B-spline on top. No guard."""
    rigid = rigid_stage(fixed, moving, mask)
    if not bspline:
        return sitk.CompositeTransform([rigid])
    return sitk.CompositeTransform([rigid, bspline_stage(fixed, moving, rigid, mask)])


def rigid_motion(transform: sitk.Euler3DTransform) -> tuple[float, float]:
    """(rotation angle in degrees, shift of the rotation centre in mm) of a rigid transform."""
    matrix = np.array(transform.GetMatrix()).reshape(3, 3)
    angle = np.degrees(np.arccos(np.clip((np.trace(matrix) - 1.0) / 2.0, -1.0, 1.0)))
    return float(angle), float(np.linalg.norm(transform.GetTranslation()))


def guarded_registration(fixed: sitk.Image, moving: sitk.Image, mask: sitk.Image | None = None, bspline: bool = True,
                         phase: str = "") -> RegistrationResult:
    """Rigid (then B-spline) registration, each stage kept only if the guard (module docstring) accepts it."""
    identity = sitk.Euler3DTransform()
    kept, transform = "identity", sitk.CompositeTransform([identity])
    try:
        best = before = metric(fixed, moving, identity, mask)
    except RuntimeError as err:  # ITK: e.g. the phases do not overlap at all
        return RegistrationResult(phase, transform, float("nan"), float("nan"), kept,
                                  f"rigid failed ({_first_line(err)})", True)
    try:
        rigid = rigid_stage(fixed, moving, mask)
        after = metric(fixed, moving, rigid, mask)
    except RuntimeError as err:  # ITK: e.g. too few samples in the mask, images that do not overlap
        return RegistrationResult(phase, transform, before, before, kept, f"rigid failed ({_first_line(err)})", True)
    angle, shift = rigid_motion(rigid)
    found = f"rigid {angle:.1f} deg, {shift:.1f} mm"
    if angle >= MAX_ROTATION_DEG or shift >= MAX_SHIFT_MM:
        why = f"implausible (limits {MAX_ROTATION_DEG:g} deg, {MAX_SHIFT_MM:g} mm)"
    elif after >= before:
        why = f"metric not improved ({after:.3f} >= {before:.3f})"
    elif -after < MIN_MI:
        why = f"the phases share no information (MI {-after:.3f} < {MIN_MI:g})"
    else:
        why, best, kept, transform = "", after, "rigid", sitk.CompositeTransform([rigid])
    if why or not bspline:
        return RegistrationResult(phase, transform, before, best, kept, f"{found}: refused, {why}" if why else "",
                                  bool(why) and "not improved" not in why)
    try:
        deformable = bspline_stage(fixed, moving, rigid, mask)
        composite = sitk.CompositeTransform([rigid, deformable])
        after = metric(fixed, moving, composite, mask)
    except RuntimeError as err:
        return RegistrationResult(phase, transform, before, best, kept, f"B-spline failed ({_first_line(err)})", True)
    if after >= best:
        return RegistrationResult(phase, transform, before, best, kept,
                                  f"B-spline refused: metric not improved ({after:.3f} >= {best:.3f})")
    return RegistrationResult(phase, composite, before, after, "rigid+bspline", "")


def _first_line(err: Exception) -> str:
    """ITK's reason, without its file and object address: the first sentence of its last line."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    text = re.sub(r"^ITK ERROR: [^:]*\): ", "", lines[-1]) if lines else type(err).__name__
    return text.split(". ")[0].rstrip(".")[:160]


def windowed(image: sitk.Image, window: Sequence[float] | None) -> sitk.Image:
    """The image as the registration sees it: float, clamped to the task's intensity window (measured:
    on the bundled lung CT, Mattes MI over the full HU range pointed its gradient the wrong way, the
    lung texture dominating; over the soft-tissue window it pointed the right way)."""
    image = sitk.Cast(image, sitk.sitkFloat32)
    return image if window is None else sitk.Clamp(image, sitk.sitkFloat32, float(window[0]), float(window[1]))


def register_phases(case: Case, phases: Sequence[str], reference: str | None = None, bspline: bool = True,
                    window: Sequence[float] | None = None) -> tuple[Case, list[RegistrationResult]]:
    """The case with every phase but `reference` (default: the last, Liang's portal venous phase)
    registered to it (guarded, on intensities clamped to `window`) and resampled onto its grid;
    plus one result per moving phase."""
    phases = list(phases)
    reference = reference or phases[-1]
    if reference not in case.images:
        raise HCCInputError(f"has no reference phase '{reference}' to register the others to", case.source)
    fixed_full = sitk.Cast(case.images[reference], sitk.sitkFloat32)
    fixed, mask = registration_region(case, windowed(fixed_full, window))
    images, results = dict(case.images), []
    for phase in phases:
        if phase == reference:
            continue
        result = guarded_registration(fixed, windowed(case.images[phase], window), mask, bspline, phase)
        results.append(result)
        if result.kept != "identity":  # an unregistered phase keeps its own grid (read through physical points)
            images[phase] = sitk.Resample(case.images[phase], fixed_full, result.transform, sitk.sitkLinear,
                                          float(np.min(sitk.GetArrayViewFromImage(case.images[phase]))),
                                          case.images[phase].GetPixelID())
    return replace(case, images=images, _grid_cache={}), results


def registration_note(reference: str, results: Sequence[RegistrationResult]) -> str:
    """One line for the output table: per moving phase, what was kept, and why a stage was refused."""
    parts = [f"{r.phase}: {r.kept}" + (f" ({r.note})" if r.note else "") for r in results]
    return f"to {reference}: " + "; ".join(parts)


def registration_of(case: Case, phases: Sequence[str], choice: object = DEFAULT_CHOICE,
                    window: Sequence[float] | None = None) -> tuple[Case, str]:
    """The case as Liang's sampler reads it, its phases registered as the task's `registration`
    option says (bspline = rigid then B-spline, rigid, none / None) on intensities clamped to the
    task's `window`, and the note for its samples ("" when off or the case has one phase)."""
    choice = "none" if choice in (None, False) else str(choice).replace("rigid+bspline", "bspline")
    if choice not in REGISTRATION_CHOICES:
        raise HCCInputError(f"registration '{choice}' is not one of {', '.join(REGISTRATION_CHOICES)}",
                            hint="--sampler-option registration=bspline|rigid|none")
    if choice == "none" or len(set(phases)) < 2:
        return case, ""
    reference = list(phases)[-1]
    size = case.images[reference].GetSize()
    if min(size[:2]) < MIN_IN_PLANE or size[2] < 2:
        note = f"not registered: the reference phase has fewer than {MIN_IN_PLANE} x {MIN_IN_PLANE} x 2 voxels"
        LOG.warning("%s: phases %s", case.source, note)
        return case, note
    registered, results = register_phases(case, phases, bspline=choice == "bspline", window=window)
    note = registration_note(reference, results)
    level = logging.WARNING if any(r.warn for r in results) else logging.INFO
    LOG.log(level, "%s: phases registered %s", case.source or case.case_id, note)
    return registered, note
