"""The Liang 2018 (ResGL-BDLSTM) sampler: every lesion patch is one sample with its lesion's class.

Training uses the pace rule of eq. 1 (a grid of step floor(sqrt(w h / epsilon)) over the
lesion's box); prediction uses pace 1, i.e. every lesion pixel of the sampled slice is a
patch centre, as the paper does for its test set. Each sample holds
`{"local": P x 1 x s x s, "global_roi": P x 1 x g x g}` (P phases in task order); the
patches of one slice share their global ROI: one `engine.shared_inputs.SharedInput`, which
batches as the distinct ROIs + an index, so the net's global pathway runs once per ROI. `infer.aggregate` averages the patch
probabilities per lesion (one row per lesion). Each sample's `placement` is its patch's box on the
segmentation grid, where `engine.saliency` pastes the map of the local input's gradient.

`lesion_patch_sets` is the one place that decides the patches of a lesion: the sampler
and `label_map_output` (label map of the patch votes) both call it, so the label map is
drawn from exactly the patches the prediction was made from.

Task options (`task.sampler_kwargs`, all optional, paper values by default): `epsilon`
(128), `patch_size` (7), `local_size` (64), `global_size` (128), `window` ((-160, 240) HU
or None), `slices` ("largest" or "all"), `registration` ("bspline", the default: rigid then B-spline,
the paper's non-rigid kind; "rigid"; "none": the phases registered to the last one before patches
are taken, guarded, `registration.py`; what was kept is each sample's `registration` extra).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Sequence

from HCCAnalysisLib.errors import HCCInputError
from HCCAnalysisLib.methods.liang2018.patches import CT_WINDOW, EPSILON, GLOBAL_SIZE, LOCAL_SIZE, PATCH_SIZE, sample_lesion_patches
from HCCAnalysisLib.data.samples import Sample
from HCCAnalysisLib.methods.liang2018.registration import DEFAULT_CHOICE, registration_of

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


def lesion_patch_sets(case: Case, task: Task, phases: Sequence[str], training: bool,
                      notes: list[str] | None = None) -> list[tuple[Lesion, LesionPatches]]:
    """[(lesion, patches.LesionPatches)] for every lesion of the case, phases in the given order;
    the registration's note (what was kept, why a stage was refused) is appended to `notes`."""
    if not case.lesions:
        raise HCCInputError("has no lesion to sample patches from", case.source)
    options = patch_options(task)
    case, note = registration_of(case, phases, task.sampler_kwargs.get("registration", DEFAULT_CHOICE),
                                 options["window"])
    if notes is not None:
        notes.append(note)
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
    """One Sample per patch of one lesion, all with the lesion's class, placed at the patch's box."""
    inputs = patches.samples(key=("liang2018", case.case_id, lesion.lesion_id))
    return [Sample(one, target, case.case_id, case.patient_id, lesion.lesion_id, lesion.name, LESION_KIND,
                   placement=placement) for one, placement in zip(inputs, patches.placements())]


def liang2018_sampler(case: Case, task: Task, phases: Sequence[str], target_of: Callable[[str], int],
                      rng: np.random.Generator, training: bool) -> list[Sample]:
    """Liang 2018 section 2.1: patches (pace rule when training, pace 1 otherwise) + global ROIs."""
    target = target_of(LESION_KIND)
    samples, notes = [], []
    for lesion, patches in lesion_patch_sets(case, task, phases, training, notes):
        samples += samples_of_lesion(case, lesion, patches, target)
    for sample in samples if notes[0] else []:  # a column of the prediction table
        sample.extras["registration"] = notes[0]
    return samples
