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

    @classmethod
    def of(cls, z: int, box: Sequence[int]) -> Placement:
        """From a slice index and a (y0, y1, x0, x1) box as the samplers compute them."""
        return cls(int(z), *(int(v) for v in box))


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
