"""HCCAnalysisLib: five published deep-learning methods for liver tumours and HCC.

The library has no Qt and does not import `slicer` at import time; see
ARCHITECTURE in docs/DESIGN.md for the data flow.
"""

__version__ = "0.1.0"

from HCCAnalysisLib.errors import HCCInputError  # noqa: F401
