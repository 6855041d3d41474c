"""Samples: what a task's sampler makes of a Case (inputs, target, ids, placement).

A sampler turns one Case into 2D network inputs: one or more per lesion (and per
background ROI where the task has them). It never sees a file or an MRML node.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from dataclasses import dataclass, field

if TYPE_CHECKING:
    import numpy as np



@dataclass(frozen=True)
class GridGeometry:
    """A voxel grid in physical space (SimpleITK order: x, y, z), hashable and picklable: the grid a
    sample was resampled onto when that is not the case's own (Zhen 2020's 0.7 x 0.7 x 7 mm grid)."""

    size: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[float, ...]

    @classmethod
    def of(cls, image: Any) -> GridGeometry:
        """The geometry of a SimpleITK image."""
        return cls(tuple(int(v) for v in image.GetSize()), tuple(float(v) for v in image.GetSpacing()),
                   tuple(float(v) for v in image.GetOrigin()), tuple(float(v) for v in image.GetDirection()))

    def empty_image(self) -> Any:
        """A float32 SimpleITK image of zeros on this grid."""
        import SimpleITK as sitk

        image = sitk.Image(list(self.size), sitk.sitkFloat32)
        image.SetSpacing(self.spacing)
        image.SetOrigin(self.origin)
        image.SetDirection(self.direction)
        return image


@dataclass(frozen=True)
class Placement:
    """Where a sample's 2D image input came from on the case's segmentation grid.

    `z` is the axial slice index (numpy (z, y, x) order) and (y0, y1, x0, x1) the crop box,
    end-exclusive; the box may reach outside the grid (`crop_2d` pads there). The sample's
    image is this box resized to the input size, so a per-pixel map of the input (a saliency
    map) can be resized back to the box and pasted onto the grid (`saliency.saliency_volume`).
    """

    z: int
    y0: int
    y1: int
    x0: int
    x1: int
    # None: the box lies on the case's own grid (segmentation grid, or the microscopy image);
    # else on this grid, which saliency.paste_maps resamples onto the case's grid.
    grid: "GridGeometry | None" = None

    @classmethod
    def of(cls, z: int, box: Sequence[int], grid: GridGeometry | None = None) -> Placement:
        """From a slice index and a (y0, y1, x0, x1) box as the samplers compute them."""
        return cls(int(z), *(int(v) for v in box), grid=grid)


@dataclass
class Sample:
    inputs: dict[str, np.ndarray]  # input name -> float32 array, e.g. {"image": C x H x W}
    target: int  # class index, or -1 when unknown (prediction)
    case_id: str
    patient_id: str
    lesion_id: str
    lesion_name: str
    kind: str  # "lesion" | "background"
    extras: dict[str, Any] = field(default_factory=dict)
    # Where the image input lies on the segmentation grid; None when it does not map onto
    # one axial box of it (resampled grids, tiles of a microscopy image, augmented views).
    placement: "Placement | None" = None  # quoted: Python 3.9 (Slicer 5.8) cannot evaluate `X | None`
