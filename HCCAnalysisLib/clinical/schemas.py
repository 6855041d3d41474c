"""Per-task clinical schemas: validate a raw clinical record and encode it as a float vector.

A record is a mapping column -> raw string (a cases.csv row's clinical columns, or the
cells of a Slicer table node). `schema.encode(record)` checks every field (type, unit,
plausible range, allowed categories), reports all problems at once as one
`HCCInputError`, and returns the encoded vector (float32, `schema.feature_names()`).

- `ZHEN2020_SCHEMA`: the clinical items listed by Zhen et al. 2020 (age, gender,
  cirrhosis-related history, other cancers, AFP, CEA, CA-125, CA19-9, PSA, ferritin,
  albumin, total bilirubin, prolonged prothrombin time, hepatic encephalopathy, ascites),
  one-hot encoded. The paper's coding table (its Table S3) is not in the published text,
  so the bins below are ours: the usual upper reference limits of each marker.
- `WANG2020_SCHEMA`: the 9-element binary vector of Wang et al. 2020, section II.A:
  [age>=60, size>=5 cm, portal vein invasion, N/L>=2.8, TB>=20.5 umol/L, AFP>=9 ug/L,
  BCLC C, BCLC B, BCLC A] (BCLC 0 -> 000, A -> 001, B -> 010, C -> 100).

`wang2020_vector_from_asaur` maps a row of the real asaur `hepatoCellular` table
(Li et al. 2014) onto Wang's vector, bit by bit, as far as that table allows.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from dataclasses import dataclass

import math

import numpy as np

from HCCAnalysisLib.errors import HCCInputError
from HCCAnalysisLib.clinical.schema_fields import CategoryField, FieldError, NumberField, yes_no


@dataclass(frozen=True)
class ClinicalSchema:
    """A named, ordered list of fields; encodes records into fixed-length vectors."""

    name: str
    paper: str
    fields: tuple[CategoryField | NumberField, ...]
    note: str = ""

    def feature_names(self) -> list[str]:
        """Column names of the encoded vector, in order."""
        return [c for f in self.fields for c in f.column_names()]

    @property
    def dim(self) -> int:
        return len(self.feature_names())

    def field_names(self) -> list[str]:
        return [f.name for f in self.fields]

    def _lookup(self, record, fld):
        # Column names are matched without regard to case and surrounding spaces.
        wanted = {fld.name.lower(), *(a.lower() for a in fld.column_aliases)}
        found = [(str(key).strip(), value) for key, value in record.items() if str(key).strip().lower() in wanted]
        if not found:
            return False, None
        distinct = {str(value).strip() for _, value in found}
        if len(distinct) > 1:  # a field and its alias that disagree: refuse rather than guess
            raise FieldError(f"given twice ({', '.join(k for k, _ in found)}) with different values")
        return True, found[0][1]

    def encode(self, record: Mapping[str, Any], source: str | None = None) -> np.ndarray:
        """Validate `record` (column -> raw value) and return the float32 vector.

        Every field is checked before anything is returned; all problems are listed in one
        HCCInputError naming the field, the value and what is allowed.
        """
        if not hasattr(record, "items"):
            raise HCCInputError(f"clinical record must be a mapping column -> value, got "
                                f"{type(record).__name__}", source=source)
        values, problems, absent = [], [], []
        for fld in self.fields:
            try:
                present, raw = self._lookup(record, fld)
            except FieldError as exc:
                problems.append(f"{fld.name}: {exc}")
                continue
            if not present and fld.missing == "error":
                absent.append(fld.name)
                continue
            try:
                values.extend(fld.encode(raw))
            except FieldError as exc:
                problems.append(f"{fld.name}: {exc}")
        if absent:
            problems.insert(0, f"missing column(s) {', '.join(absent)}")
        if problems:
            raise HCCInputError(
                f"clinical data for schema '{self.name}' is invalid: " + "; ".join(problems),
                source=source,
                hint=f"columns of '{self.name}': " + ", ".join(
                    f"{f.name} ({f.allowed()})" for f in self.fields))
        return np.asarray(values, dtype=np.float32)

    def encode_many(self, records: Sequence[Mapping[str, Any]], sources: Sequence[str] | None = None) -> np.ndarray:
        """Encode a sequence of records into an N x dim float32 matrix."""
        rows = []
        for i, record in enumerate(records):
            source = sources[i] if sources is not None else f"clinical record {i + 1}"
            rows.append(self.encode(record, source=source))
        return np.stack(rows) if rows else np.zeros((0, self.dim), np.float32)

    def describe(self) -> list[str]:
        """One line per field: name, allowed values, columns (for docs and the GUI)."""
        return [f"{f.name}: {f.description}; {f.allowed()} -> {', '.join(f.column_names())}"
                for f in self.fields]


def _grade(name, description, grades, aliases):
    return CategoryField(name, description, grades, aliases)


ZHEN2020_SCHEMA = ClinicalSchema(
    name="zhen2020",
    paper="Zhen et al., Front. Oncol. 2020 (001_03fb0786ebdd9b1f)",
    note="Bins are ours (reference-range limits): the paper's coding table S3 is not published "
         "in the text. Malignant cases with complete clinical data only, so nothing is imputed "
         "except PSA, which is not measured in women (all-zero code).",
    fields=(
        NumberField("age", "age at MRI", "years", 0, 120, (40, 60), ("<40", "40-59", ">=60")),
        # The paper's own example: male [0, 1], female [1, 0].
        CategoryField("gender", "sex", ("female", "male"),
                      {"f": "female", "m": "male", "woman": "female", "man": "male"},
                      column_aliases=("sex",)),
        yes_no("cirrhosis_history", "cirrhosis-related history (hepatitis B/C, cirrhosis)"),
        yes_no("other_cancer", "history of another (extrahepatic) cancer"),
        NumberField("afp", "alpha-fetoprotein", "ng/mL", 0, 1e7, (20, 400),
                    ("<20", "20-399", ">=400"), {"ug/L": 1.0}),
        NumberField("cea", "carcinoembryonic antigen", "ng/mL", 0, 1e6, (5,),
                    ("<5", ">=5"), {"ug/L": 1.0}),
        NumberField("ca125", "CA-125", "U/mL", 0, 1e6, (35,), ("<35", ">=35"), {"kU/L": 1.0}),
        NumberField("ca199", "CA19-9", "U/mL", 0, 1e6, (37,), ("<37", ">=37"), {"kU/L": 1.0}),
        NumberField("psa", "prostate-specific antigen (men)", "ng/mL", 0, 1e5, (4,),
                    ("<4", ">=4"), {"ug/L": 1.0}, missing="zeros"),
        NumberField("ferritin", "serum ferritin", "ng/mL", 0, 1e6, (300,), ("<300", ">=300"),
                    {"ug/L": 1.0}),
        NumberField("albumin", "serum albumin", "g/L", 5, 70, (35,), ("<35", ">=35"),
                    {"g/dL": 10.0}),
        NumberField("total_bilirubin", "total bilirubin", "umol/L", 0, 1000, (20.5,),
                    ("<20.5", ">=20.5"), {"mg/dL": 17.1}, column_aliases=("tb",)),
        yes_no("prolonged_pt", "prolonged prothrombin time"),
        _grade("hepatic_encephalopathy", "hepatic encephalopathy (Child-Pugh grades)",
               ("none", "grade1-2", "grade3-4"),
               {"no": "none", "0": "none", "mild": "grade1-2", "1": "grade1-2", "2": "grade1-2",
                "severe": "grade3-4", "3": "grade3-4", "4": "grade3-4"}),
        _grade("ascites", "ascites (Child-Pugh grades)", ("none", "mild", "moderate-severe"),
               {"no": "none", "absent": "none", "slight": "mild", "moderate": "moderate-severe",
                "severe": "moderate-severe"}),
    ),
)


def _bit(name, description, unit, low, high, cut, alt_units=None, aliases=()):
    """A number coded as one bit: 1 when value >= cut (Wang's dichotomised factors)."""
    return NumberField(name, description, unit, low, high, (cut,), (f"<{cut:g}", f">={cut:g}"),
                       alt_units or {}, codes=((0.0,), (1.0,)), columns=(name,),
                       column_aliases=aliases)


WANG2020_SCHEMA = ClinicalSchema(
    name="wang2020",
    paper="Wang et al., IEEE Access 2020 (002_d040149e55051ba9), section II.A",
    note="N/L ratio cut 2.8 as in the vector definition (the text also says 2.81). "
         "TB in umol/L (the text's 'U/L' is a typo; 20.5 umol/L is the usual upper limit).",
    fields=(
        _bit("age", "age", "years", 0, 120, 60),
        _bit("tumour_size", "largest tumour diameter", "cm", 0, 40, 5, {"mm": 0.1},
             ("tumor_size",)),
        yes_no("portal_vein_invasion", "portal vein invasion", one_hot=False),
        _bit("nl_ratio", "neutrophil/lymphocyte ratio", "", 0, 200, 2.8, aliases=("nlr",)),
        _bit("total_bilirubin", "total bilirubin", "umol/L", 0, 1000, 20.5, {"mg/dL": 17.1},
             ("tb",)),
        _bit("afp", "alpha-fetoprotein", "ug/L", 0, 1e7, 9, {"ng/mL": 1.0}),
        CategoryField("bclc_stage", "BCLC stage", ("0", "A", "B", "C"),
                      {"bclc0": "0", "bclca": "A", "bclcb": "B", "bclcc": "C"},
                      codes={"0": (0.0, 0.0, 0.0), "A": (0.0, 0.0, 1.0),
                             "B": (0.0, 1.0, 0.0), "C": (1.0, 0.0, 0.0)},
                      columns=("bclc_C", "bclc_B", "bclc_A"), column_aliases=("bclc",)),
    ),
)

SCHEMAS = {s.name: s for s in (ZHEN2020_SCHEMA, WANG2020_SCHEMA)}


def get_schema(name: str) -> ClinicalSchema:
    """The schema called `name` ('zhen2020' or 'wang2020')."""
    try:
        return SCHEMAS[name]
    except KeyError:
        raise HCCInputError(f"unknown clinical schema '{name}'",
                            hint=f"known: {', '.join(sorted(SCHEMAS))}") from None


def encode(record: Mapping[str, Any], schema: str | ClinicalSchema = "wang2020", source: str | None = None
           ) -> np.ndarray:
    """Encode one record (column -> raw string) with the schema named `schema`."""
    schema_obj = schema if isinstance(schema, ClinicalSchema) else get_schema(schema)
    return schema_obj.encode(record, source=source)


# --- the real asaur hepatoCellular table (Li et al. 2014, PLoS ONE; CC0 via Dryad) -------
# Its clinical columns are two-level codes whose cut-offs the table and the R help page do
# not document (ALT, AST, AFP, Tumorsize, BCLC, TNM are coded 1/2). What each Wang bit
# gets from it; NaN where the table has nothing, never a guessed value:
ASAUR_WANG2020_BITS = (
    ("age", "exact", "Age (years) >= 60"),
    ("tumour_size", "proxy", "Tumorsize == 2: the table's larger-size level; its cut-off is "
                             "not documented in the table, so not guaranteed to be 5 cm"),
    ("portal_vein_invasion", "proxy", "Vascularinvasion == 1: any vascular invasion, not only "
                                      "the portal vein"),
    ("nl_ratio", "missing", "no neutrophil or lymphocyte count in the table"),
    ("total_bilirubin", "missing", "no bilirubin in the table"),
    ("afp", "proxy", "AFP == 2: the table's elevated-AFP level; its cut-off is undocumented "
                     "and not the paper's 9 ug/L"),
    ("bclc_C", "missing", "BCLC has only two levels in the table: 0/A/B/C cannot be told apart"),
    ("bclc_B", "missing", "as bclc_C"),
    ("bclc_A", "missing", "as bclc_C"),
)

# column -> allowed codes, checked before any bit is derived
_ASAUR_CODES = {"Tumorsize": (1, 2), "Vascularinvasion": (0, 1), "AFP": (1, 2)}


def _asaur_number(row, column, source):
    if column not in row:
        raise HCCInputError(f"asaur row has no column '{column}'", source=source)
    try:
        value = float(row[column])
    except (TypeError, ValueError):
        raise HCCInputError(f"asaur column '{column}' holds '{row[column]}', not a number",
                            source=source) from None
    if not math.isfinite(value):
        raise HCCInputError(f"asaur column '{column}' is missing", source=source)
    return value


def wang2020_vector_from_asaur(row: Mapping[str, Any], source: str | None = None) -> np.ndarray:
    """Wang's 9-element vector from one asaur row (mapping column -> value).

    Bits the table cannot give are NaN (see `ASAUR_WANG2020_BITS`); callers keep only the
    columns that are finite for every row (`asaur_derivable_columns()`).
    """
    age = _asaur_number(row, "Age", source)
    if not 0 <= age <= 120:
        raise HCCInputError(f"asaur Age {age:g} is outside 0-120 years", source=source)
    codes = {}
    for column, allowed in _ASAUR_CODES.items():
        value = _asaur_number(row, column, source)
        if value not in allowed:
            raise HCCInputError(f"asaur column '{column}' holds {value:g}; expected one of "
                                f"{allowed}", source=source)
        codes[column] = value
    nan = float("nan")
    vector = [float(age >= 60), float(codes["Tumorsize"] == 2),
              float(codes["Vascularinvasion"] == 1), nan, nan, float(codes["AFP"] == 2),
              nan, nan, nan]
    return np.asarray(vector, dtype=np.float32)


def asaur_derivable_columns() -> list[int]:
    """Indices of Wang's bits that the asaur table gives (exactly or as a proxy)."""
    return [i for i, (_, kind, _) in enumerate(ASAUR_WANG2020_BITS) if kind != "missing"]


def asaur_early_recurrence(row: Mapping[str, Any], months: float = 12, source: str | None = None) -> int | None:
    """1 = recurrence within `months` of resection (Wang's 'early recurrence'), 0 = none
    within that time; None when follow-up ended before `months` without recurrence."""
    rfs = _asaur_number(row, "RFS", source)
    recurred = _asaur_number(row, "Recurrence", source)
    if recurred not in (0, 1) or rfs < 0:
        raise HCCInputError(f"asaur RFS={rfs:g}, Recurrence={recurred:g} are not valid",
                            source=source)
    if recurred == 1 and rfs <= months:
        return 1
    if rfs > months:
        return 0
    return None
