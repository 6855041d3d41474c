"""The Meng 2019 sampler: a microscopy image cut into tiles, each mean-stretched, one sample per tile.

Section 2.3: each image is cut into tiles of the net's tile size (512 in the paper) and
every tile is mean-stretched (its mean subtracted, per colour channel for RGB). Every tile
carries the image's class. All tiles of one image share `lesion_id = "image"` and
`kind = "image"`, so `infer.aggregate` gives one row per whole image: the mean of its
tiles' probabilities.

The tile size is the net's (`task.net_kwargs["tile_size"]`), so the sampler and the model
can never disagree. Task options (`task.sampler_kwargs`): `edge` ("pad", "drop" or
"error"; what happens to an image that is not a whole number of tiles) and `per_channel`
(mean per colour channel, default True).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Sequence

from HCCAnalysisLib.errors import HCCInputError
from HCCAnalysisLib.data.samples import Placement, Sample
from HCCAnalysisLib.methods.meng2019.tiles import tile_samples

if TYPE_CHECKING:
    import numpy as np

    from HCCAnalysisLib.data.microscopy_case import MicroscopyCase
    from HCCAnalysisLib.methods.task import Task

IMAGE_ID = "image"
IMAGE_KIND = "image"


def tile_options(task: Task) -> dict[str, Any]:
    options = task.sampler_kwargs
    return {"tile_size": int(task.net_kwargs.get("tile_size", 512)), "edge": options.get("edge", "pad"),
            "per_channel": bool(options.get("per_channel", True))}


def meng2019_sampler(case: MicroscopyCase, task: Task, phases: Sequence[str], target_of: Callable[[str], int],
                     rng: np.random.Generator, training: bool) -> list[Sample]:
    """Tiles of the case's microscopy image (training and prediction alike)."""
    image = getattr(case, "image", None)
    if image is None:
        raise HCCInputError(f"is not a microscopy case; task {task.name} reads one microscopy image per case",
                            case.source, "the task's loader must be 'microscopy'")
    channels = int(task.net_kwargs.get("in_channels", 3))
    if image.shape[2] != channels:
        raise HCCInputError(f"image has {image.shape[2]} channel(s), task {task.name} takes {channels}",
                            case.source, "use RGB images for the RGB tasks (or a task built for grey images)")
    inputs, grid = tile_samples(image, **tile_options(task))
    target = target_of(IMAGE_KIND)
    name = f"whole image ({len(inputs)} tiles)"
    size = grid.tile_size  # each tile's place on the image (one slice): saliency maps paste back there
    return [Sample(tile, target, case.case_id, case.patient_id, IMAGE_ID, name, IMAGE_KIND,
                   placement=Placement.of(0, (row, row + size, col, col + size)))
            for tile, (row, col) in zip(inputs, grid.origins)]
