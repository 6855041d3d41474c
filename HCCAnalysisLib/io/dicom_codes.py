"""Coded concepts of the DICOM outputs (SEG segments, SR measurements) of a model's classes.

DICOM wants every concept coded. Where a standard code says exactly what a class is (SNOMED CT
from pydicom's code dictionary: cyst, hemangioma, metastasis) it is used; the other classes
(HCC, 'background', 'ER', 'poorly', ... whose meaning depends on the task) and the concepts no
standard names ("predicted class", "probability of <class>", "saliency") get codes of the private
coding scheme 99HCC (designators starting with 99 are reserved for local schemes, PS3.16 8.2).
"""

from __future__ import annotations

from typing import Any

PRIVATE_SCHEME = "99HCC"
# task class name (lower case) -> SNOMED CT keyword in pydicom's dictionary
STANDARD_CLASSES = {"cyst": "Cyst", "hemangioma": "Hemangioma", "metastasis": "Metastasis"}


def private(value: str, meaning: str) -> Any:
    """A code of the private scheme (highdicom writes values over 16 characters as LongCodeValue)."""
    from highdicom.sr import CodedConcept

    return CodedConcept(value, PRIVATE_SCHEME, meaning)


def class_code(name: str) -> Any:
    """The code of a class: standard where one exists (see the module docstring), else private."""
    from highdicom.sr import CodedConcept
    from pydicom.sr.codedict import codes

    keyword = STANDARD_CLASSES.get(name.lower())
    if keyword is not None:
        code = getattr(codes.SCT, keyword)
        return CodedConcept(code.value, code.scheme_designator, code.meaning)
    return private(f"CLASS-{name}", name)


def probability_code(name: str) -> Any:
    """The concept of one class probability (a numeric measurement, unit '1')."""
    return private(f"PROB-{name}", f"Probability of {name}")


PREDICTED_CLASS = ("PREDICTED-CLASS", "Predicted class")
SALIENCY = ("SALIENCY", "Saliency")
BACKGROUND_ROI = ("BACKGROUND-ROI", "Background region of interest")


def no_unit() -> Any:
    """UCUM '1': a dimensionless quantity (a probability)."""
    from highdicom.sr import CodedConcept

    return CodedConcept("1", "UCUM", "no units")
