"""The library's only door into MRML: nodes <-> Case, Prediction -> table, files <-> scene.

Importing this package does not import `slicer`; its modules do, when they are used.
`HCCAnalysisLib.slicer_io` keeps the names of slicer_io/nodes.py."""

from HCCAnalysisLib.slicer_io.nodes import *  # noqa: F401,F403
from HCCAnalysisLib.slicer_io.nodes import __all__  # noqa: F401
