"""Statistics as the papers report them: DeLong, Clopper-Pearson, McNemar, kappa, per-fold metrics.

`HCCAnalysisLib.stats` keeps the names of the tests (stats/tests.py) for console users."""

from HCCAnalysisLib.stats.tests import *  # noqa: F401,F403
from HCCAnalysisLib.stats.tests import __all__  # noqa: F401
