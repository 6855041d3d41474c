"""Clinical fields: how one raw value (a cases.csv cell, a table-node cell) is checked and coded.

A field turns one raw string into a fixed-length tuple of 0/1 floats. Two kinds:
`CategoryField` (named categories, with spelling aliases) and `NumberField` (a number in
a stated unit, checked against a plausible range, then put into a bin by cut-offs).
Each bin or category maps to a code; the default code is one-hot, and a schema can give
its own code table (Wang 2020 uses single threshold bits and a 3-bit BCLC code).
"""

from __future__ import annotations

from typing import Any

import math
import re
from dataclasses import dataclass, field

# Cell contents that mean "no value" (cases.csv exports from R, Excel, UCI use all of these).
MISSING_TOKENS = frozenset({"", "na", "n/a", "nan", "none", "null", "?", "-", ".", "missing", "unknown"})

_NUMBER = re.compile(r"^\s*([<>]?)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(.*?)\s*$")


class FieldError(Exception):
    """One field's problem; the schema gathers these into one HCCInputError."""


def is_missing(raw: Any) -> bool:
    """True when the cell holds no value (None, NaN or a missing-value token)."""
    if raw is None:
        return True
    if isinstance(raw, float) and math.isnan(raw):
        return True
    return str(raw).strip().lower() in MISSING_TOKENS


def _norm_unit(unit):
    # "µg/L", "μg/l" and "ug/L" are the same unit; spaces do not matter.
    return unit.strip().lower().replace("µ", "u").replace("μ", "u").replace(" ", "")


def _one_hot(n):
    return tuple(tuple(1.0 if i == j else 0.0 for j in range(n)) for i in range(n))


@dataclass(frozen=True)
class CategoryField:
    """A value from a fixed set of categories.

    `aliases` maps other spellings (lower case) to a category; `codes` gives the code per
    category (default one-hot in `categories` order); `missing="zeros"` encodes a missing
    value as all zeros ("not recorded") instead of raising.
    """

    name: str
    description: str
    categories: tuple[str, ...]
    aliases: dict[str, str] = field(default_factory=dict)
    codes: dict[str, tuple[float, ...]] | None = None
    columns: tuple[str, ...] | None = None
    missing: str = "error"
    column_aliases: tuple[str, ...] = ()

    def code_table(self) -> dict[str, tuple[float, ...]]:
        if self.codes is not None:
            return self.codes
        return dict(zip(self.categories, _one_hot(len(self.categories))))

    def column_names(self) -> tuple[str, ...]:
        if self.columns is not None:
            return self.columns
        return tuple(f"{self.name}={c}" for c in self.categories)

    def allowed(self) -> str:
        return ", ".join(self.categories)

    def category_of(self, raw: Any) -> str:
        """The category a raw cell names, or FieldError."""
        text = str(raw).strip()
        by_lower = {c.lower(): c for c in self.categories}
        key = text.lower()
        if key in by_lower:
            return by_lower[key]
        if key in self.aliases:
            return self.aliases[key]
        # Numeric cells such as "1.0" from spreadsheets: try the integer spelling.
        try:
            as_float = float(key)
        except ValueError:
            as_float = None
        if as_float is not None and as_float.is_integer():
            alt = str(int(as_float))
            if alt in by_lower:
                return by_lower[alt]
            if alt in self.aliases:
                return self.aliases[alt]
        raise FieldError(f"'{text}' is not an allowed value (allowed: {self.allowed()})")

    def _is_spelling(self, raw):
        key = str(raw).strip().lower()
        return key in self.aliases or key in {c.lower() for c in self.categories}

    def encode(self, raw: Any) -> tuple[float, ...]:
        if is_missing(raw) and not (raw is not None and self._is_spelling(raw)):
            if self.missing == "zeros":
                return tuple(0.0 for _ in self.column_names())
            raise FieldError("value is missing and this schema does not impute it")
        return tuple(self.code_table()[self.category_of(raw)])


@dataclass(frozen=True)
class NumberField:
    """A number in `unit`, within [`low`, `high`], coded by the bin its value falls in.

    Bin i holds values with cuts[i-1] <= value < cuts[i] (a value equal to a cut goes up,
    as in the papers' ">= 60 years"). `alt_units` maps other units to the factor that
    converts them to `unit` (e.g. bilirubin mg/dL -> umol/L: 17.1). A censored lab value
    such as ">1210" or "<2" is accepted when it falls in one bin whatever its true value.
    """

    name: str
    description: str
    unit: str
    low: float
    high: float
    cuts: tuple[float, ...]
    bin_names: tuple[str, ...]
    alt_units: dict[str, float] = field(default_factory=dict)
    codes: tuple[tuple[float, ...], ...] | None = None
    columns: tuple[str, ...] | None = None
    missing: str = "error"
    column_aliases: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if len(self.bin_names) != len(self.cuts) + 1:
            raise ValueError(f"{self.name}: need one bin name more than cut-offs")

    def code_table(self) -> tuple[tuple[float, ...], ...]:
        return self.codes if self.codes is not None else _one_hot(len(self.bin_names))

    def column_names(self) -> tuple[str, ...]:
        if self.columns is not None:
            return self.columns
        return tuple(f"{self.name}={b}" for b in self.bin_names)

    def allowed(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        return f"a number between {self.low:g} and {self.high:g}{unit}"

    def parse(self, raw: Any) -> tuple[str, float]:
        """(operator, value in `unit`) from a raw cell; operator is '', '<' or '>'."""
        text = str(raw).strip()
        if re.fullmatch(r"[<>]?\s*\d+,\d+.*", text):
            raise FieldError(f"'{text}' uses a decimal comma; write {text.replace(',', '.')}")
        match = _NUMBER.match(text)
        if not match:
            raise FieldError(f"'{text}' is not a number (expected {self.allowed()})")
        op, number, unit = match.groups()
        value = float(number)
        if unit:
            factors = {_norm_unit(self.unit): 1.0}
            factors.update({_norm_unit(u): f for u, f in self.alt_units.items()})
            if _norm_unit(unit) not in factors:
                known = ", ".join([self.unit, *self.alt_units])
                raise FieldError(f"unit '{unit}' is not accepted (use {known})")
            value *= factors[_norm_unit(unit)]
        if not math.isfinite(value) or not self.low <= value <= self.high:
            raise FieldError(f"{value:g} {self.unit} is outside the plausible range "
                             f"{self.low:g}-{self.high:g} {self.unit}")
        return op, value

    def bin_of(self, op: str, value: float) -> int:
        """Index of the bin holding the value; a censored value must not straddle a cut."""
        index = sum(1 for c in self.cuts if value >= c)
        straddles = (op == ">" and any(c > value for c in self.cuts)) or \
                    (op == "<" and any(c < value for c in self.cuts))
        if straddles:
            raise FieldError(f"censored value '{op}{value:g}' could lie on either side of a "
                             f"cut-off ({', '.join(f'{c:g}' for c in self.cuts)} {self.unit})")
        if op == "<" and value in self.cuts:
            index -= 1  # "<60" with a cut at 60 lies below it
        return index

    def encode(self, raw: Any) -> tuple[float, ...]:
        if is_missing(raw):
            if self.missing == "zeros":
                return tuple(0.0 for _ in self.column_names())
            raise FieldError("value is missing and this schema does not impute it")
        op, value = self.parse(raw)
        return tuple(self.code_table()[self.bin_of(op, value)])


YES_NO_ALIASES = {"y": "yes", "1": "yes", "true": "yes", "present": "yes", "positive": "yes",
                  "n": "no", "0": "no", "false": "no", "absent": "no", "negative": "no"}


def yes_no(name: str, description: str, one_hot: bool = True, **kwargs: Any) -> CategoryField:
    """A yes/no field: one-hot [no, yes] (Zhen) or a single 0/1 bit (Wang)."""
    if one_hot:
        return CategoryField(name, description, ("no", "yes"), YES_NO_ALIASES, **kwargs)
    return CategoryField(name, description, ("no", "yes"), YES_NO_ALIASES,
                         codes={"no": (0.0,), "yes": (1.0,)}, columns=(name,), **kwargs)
