"""A model package whose card carries the `input_profile` that training records for real CT
cases, built in a second instead of trained: the task's net at a seeded random start
(models.registry.untrained_package), its card given `training_profile` of the CT cases of the
bundled demo cohort (lung1, lung2; modality CT in its cases.csv), as `hcc train` writes it.
Only the card changes, so the package's weights hash still checks."""

from pathlib import Path

from helpers.bad_inputs import COHORT, edit_card
from HCCAnalysisLib.data.cohort import load_cohort
from HCCAnalysisLib.data.intensity_profile import PROFILE_KEY, training_profile
from HCCAnalysisLib.models.registry import untrained_package
from HCCAnalysisLib.tasks import get_task

CT_CASES = ("lung1", "lung2")


def ct_profiled_package(folder, task, phase="image", cases=CT_CASES):
    """An installed-style package folder for `task` reading one phase, profiled on the real CT `cases`."""
    package = untrained_package(folder, task, [phase])
    records = [r for r in load_cohort(COHORT).records if r.case_id in cases]
    assert [r.case_id for r in records] == list(cases)
    profile = training_profile(get_task(task), records, [phase], log=lambda *a: None)
    edit_card(package, lambda card: card.update({PROFILE_KEY: profile}))
    return Path(package)
