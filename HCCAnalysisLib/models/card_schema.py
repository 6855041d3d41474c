"""The model card's schema: the JSON type of every field, checked before any field is used.

A card edited by hand or written by another tool can hold `null`, a number where text is
expected or a list of the wrong items; each such field is named in one refusal instead of a
traceback deep in the loader. A card is small (a few kB): a file above MAX_CARD_BYTES is
refused from its size, before it is read into memory.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable

from HCCAnalysisLib.errors import HCCInputError

MAX_CARD_BYTES = 1 << 20  # 1 MiB: a hundred times the largest card the library writes

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _text(value: Any) -> bool:
    return isinstance(value, str) and value.strip() != ""


def _texts(value: Any) -> bool:
    return isinstance(value, list) and len(value) > 0 and all(_text(v) for v in value)


def _object(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) for k in value)


def _size(value: Any) -> bool:
    if _is_int(value):
        return value > 0
    return isinstance(value, list) and len(value) > 0 and all(_is_int(v) and v > 0 for v in value)


# field -> (test, what is expected, required)
CARD_SCHEMA: dict[str, tuple[Callable[[Any], bool], str, bool]] = {
    "format": (_is_int, "a whole number", True),
    "task": (_text, "text (a task name)", True),
    "classes": (_texts, "a non-empty list of text", True),
    "phases": (_texts, "a non-empty list of text", True),
    "net": (_text, "text (a network name)", True),
    "net_kwargs": (_object, "an object of named arguments", True),
    "sampler_kwargs": (_object, "an object of sampler options", False),
    "input_size": (_size, "a positive whole number (or a list of them)", True),
    "weights": (_text, "text (a file name)", True),
    "weights_sha256": (lambda v: isinstance(v, str) and bool(_SHA256.match(v)), "64 lower-case hex digits", True),
    "version": (lambda v: _text(v) or _is_int(v), "text or a whole number", False),
    "seed": (_is_int, "a whole number", False),
    "description": (lambda v: isinstance(v, str), "text", False),
    "training": (_object, "an object", False),
    "metrics": (_object, "an object", False),
    "versions": (_object, "an object", False),
    # per phase the training cases' intensity percentiles and modality (data/intensity_profile.py);
    # absent from cards made before the input check: those predict unchecked
    "input_profile": (lambda v: _object(v) and _object(v.get("phases")), "an object with 'phases'", False),
}


def _shown(value: Any) -> str:
    text = "null" if value is None else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_card_size(card_path: str | Path) -> None:
    """Refuse a card file above MAX_CARD_BYTES from its size alone."""
    size = Path(card_path).stat().st_size
    if size > MAX_CARD_BYTES:
        raise HCCInputError(f"is {size / 1024**2:.1f} MiB; a model card is at most {MAX_CARD_BYTES // 1024} KiB",
                            card_path, "this is not a model card written by HCCAnalysis: re-export the package")


def check_card_types(card: Any, card_path: str | Path) -> None:
    """Refuse a card that is not a JSON object or whose fields have the wrong JSON type."""
    if not isinstance(card, dict):
        raise HCCInputError(f"holds a JSON {type(card).__name__}, not an object of fields", card_path)
    missing = [name for name, (_, _, required) in CARD_SCHEMA.items() if required and name not in card]
    if missing:
        raise HCCInputError(f"lacks the field(s) {missing}", card_path, "re-export the model package")
    wrong = [f"'{name}' is {_shown(card[name])}, expected {what}"
             for name, (test, what, _) in CARD_SCHEMA.items() if name in card and not test(card[name])]
    if wrong:
        raise HCCInputError(f"has field(s) of the wrong type: {'; '.join(wrong)}", card_path,
                            "re-export the model package")
