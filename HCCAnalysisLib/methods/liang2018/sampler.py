"""The Liang 2018 (ResGL-BDLSTM) sampler: every lesion patch is one sample with its lesion's class.

Training uses the pace rule of eq. 1 (a grid of step floor(sqrt(w h / epsilon)) over the
lesion's box); prediction uses pace 1, i.e. every lesion pixel of the sampled slice is a
patch centre, as the paper does for its test set. Each sample holds
`{"local": P x 1 x s x s, "global_roi": P x 1 x g x g}` (P phases in task order); the
patches of one slice share their global ROI: one `engine.shared_inputs.SharedInput`, which
batches as the distinct ROIs + an index, so the net's global pathway runs once per ROI. `infer.aggregate` averages the patch
probabilities per lesion (one row per lesion).

`lesion_patch_sets` is the one place that decides the patches of a lesion: the sampler
and `label_map_output` (label map of the patch votes) both call it, so the label map is
drawn from exactly the patches the prediction was made from.

Task options (`task.sampler_kwargs`, all optional, paper values by default): `epsilon`
(128), `patch_size` (7), `local_size` (64), `global_size` (128), `window` ((-160, 240) HU
or None), `slices` ("largest" or "all"), `registration` ("rigid", "bspline" or "none": the phases
registered to the last one before patches are taken, `registration.py`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Sequence

from HCCAnalysisLib.errors import HCCInputError
from HCCAnalysisLib.methods.liang2018.patches import CT_WINDOW, EPSILON, GLOBAL_SIZE, LOCAL_SIZE, PATCH_SIZE, sample_lesion_patches
from HCCAnalysisLib.data.samples import Sample
from HCCAnalysisLib.methods.liang2018.registration import registered_case

if TYPE_CHECKING:
    import numpy as np

    from HCCAnalysisLib.data.case import Case, Lesion
    from HCCAnalysisLib.methods.liang2018.patches import LesionPatches
    from HCCAnalysisLib.methods.task import Task

LESION_KIND = "lesion"


def patch_options(task: Task) -> dict[str, Any]:
    """The patch-sampling keyword arguments of a task, paper values where the task says nothing."""
    options = dict(task.sampler_kwargs)
    window = options.get("window", CT_WINDOW)
    return {"epsilon": options.get("epsilon", EPSILON), "patch_size": options.get("patch_size", PATCH_SIZE),
            "local_size": options.get("local_size", LOCAL_SIZE), "global_size": options.get("global_size", GLOBAL_SIZE),
            "window": None if window is None else tuple(window), "slices": options.get("slices", "largest")}


def lesion_patch_sets(case: Case, task: Task, phases: Sequence[str], training: bool
                      ) -> list[tuple[Lesion, LesionPatches]]:
    """[(lesion, patches.LesionPatches)] for every lesion of the case, phases in the given order."""
    if not case.lesions:
        raise HCCInputError("has no lesion to sample patches from", case.source)
    options = patch_options(task)
    case = registered_case(case, phases, task.sampler_kwargs.get("registration"))
    volumes = [case.phase_on_grid(p) for p in phases]
    out = []
    for lesion in case.lesions:
        try:
            patches = sample_lesion_patches(volumes, case.lesion_array(lesion), training, **options)
        except HCCInputError as err:
            raise HCCInputError(f"lesion '{lesion.name}': {err.problem}", case.source, err.hint) from None
        out.append((lesion, patches))
    return out


def samples_of_lesion(case: Case, lesion: Lesion, patches: LesionPatches, target: int) -> list[Sample]:
    """One Sample per patch of one lesion, all with the lesion's class."""
    return [Sample(inputs, target, case.case_id, case.patient_id, lesion.lesion_id, lesion.name, LESION_KIND)
            for inputs in patches.samples(key=("liang2018", case.case_id, lesion.lesion_id))]


def liang2018_sampler(case: Case, task: Task, phases: Sequence[str], target_of: Callable[[str], int],
                      rng: np.random.Generator, training: bool) -> list[Sample]:
    """Liang 2018 section 2.1: patches (pace rule when training, pace 1 otherwise) + global ROIs."""
    target = target_of(LESION_KIND)
    samples = []
    for lesion, patches in lesion_patch_sets(case, task, phases, training):
        samples += samples_of_lesion(case, lesion, patches, target)
    return samples
