"""The one exception type the library raises for bad input.

Every message names the problem, the file or node, and (where useful) what to do,
so that the Slicer panel, the console and the CLI can show it unchanged.
"""

from __future__ import annotations


class HCCInputError(ValueError):
    """Input that the library refuses: bad image, mask, clinical value, model package, ..."""

    def __init__(self, problem: str, source: object = None, hint: str | None = None) -> None:
        self.problem = problem
        self.source = None if source is None else str(source)
        self.hint = hint
        parts = [problem]
        if self.source:
            parts.insert(0, f"{self.source}:")
        if hint:
            parts.append(f"({hint})")
        super().__init__(" ".join(parts))
