"""Clinical schemas: validation and encoding (Zhen 2020 one-hot, Wang 2020 9-bit vector),
and the mapping of the real asaur table onto Wang's vector."""

import csv
import math
from pathlib import Path

import numpy as np
import pytest

from HCCAnalysisLib.clinical import WANG2020_SCHEMA, ZHEN2020_SCHEMA, encode, get_schema
from HCCAnalysisLib.clinical.schemas import (ASAUR_WANG2020_BITS, asaur_derivable_columns,
                                             asaur_early_recurrence, wang2020_vector_from_asaur)
from HCCAnalysisLib.errors import HCCInputError

ASAUR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "clinical" / \
    "asaur_hepatoCellular.csv"

WANG_RECORD = {"age": "63", "tumour_size": "4.9", "portal_vein_invasion": "yes",
               "nl_ratio": "2.79", "total_bilirubin": "20.5", "afp": "9", "bclc_stage": "B"}

ZHEN_RECORD = {"age": "52", "gender": "male", "cirrhosis_history": "yes", "other_cancer": "no",
               "afp": "560", "cea": "3.1", "ca125": "40", "ca199": "12", "psa": "1.2",
               "ferritin": "250", "albumin": "41", "total_bilirubin": "18",
               "prolonged_pt": "no", "hepatic_encephalopathy": "none", "ascites": "mild"}


def test_wang_vector_follows_section_2a():
    # Cut-offs are ">=": 63 >= 60, 4.9 < 5, 2.79 < 2.8, 20.5 >= 20.5, 9 >= 9; BCLC B -> 010.
    vector = encode(WANG_RECORD, "wang2020")
    assert vector.dtype == np.float32 and vector.shape == (9,)
    assert vector.tolist() == [1, 0, 1, 0, 1, 1, 0, 1, 0]
    for stage, bits in {"0": [0, 0, 0], "A": [0, 0, 1], "B": [0, 1, 0], "c": [1, 0, 0]}.items():
        assert encode({**WANG_RECORD, "bclc_stage": stage}, "wang2020")[6:].tolist() == bits


def test_units_aliases_and_censored_values_are_converted():
    record = {**WANG_RECORD, "tumour_size": "52 mm", "TB": "1.3 mg/dL", "afp": ">1210 ng/mL",
              "portal_vein_invasion": "0", "nl_ratio": "3"}
    del record["total_bilirubin"]
    vector = encode(record, WANG2020_SCHEMA)
    # 52 mm = 5.2 cm >= 5; 1.3 mg/dL = 22.2 umol/L >= 20.5; ">1210" is above 9 whatever it is.
    assert vector[:6].tolist() == [1, 1, 0, 1, 1, 1]


@pytest.mark.parametrize("column, value, words", [
    ("age", "sixty", "not a number"),
    ("age", "160", "outside the plausible range"),
    ("tumour_size", "5,2", "decimal comma"),
    ("tumour_size", "5 inch", "unit 'inch' is not accepted"),
    ("afp", "<20", "either side of a cut-off"),
    ("bclc_stage", "D", "not an allowed value"),
    ("portal_vein_invasion", "maybe", "not an allowed value"),
    ("nl_ratio", "", "missing"),
])
def test_wang_rejects_nonsense_with_a_clear_message(column, value, words):
    with pytest.raises(HCCInputError) as info:
        encode({**WANG_RECORD, column: value}, "wang2020", source="cases.csv row 4")
    message = str(info.value)
    assert message.startswith("cases.csv row 4:") and column in message and words in message


def test_all_problems_are_reported_at_once():
    record = {"age": "abc", "bclc_stage": "E"}
    with pytest.raises(HCCInputError) as info:
        WANG2020_SCHEMA.encode(record)
    message = str(info.value)
    for text in ("missing column(s) tumour_size, portal_vein_invasion, nl_ratio, total_bilirubin",
                 "age: 'abc'", "bclc_stage: 'E'"):
        assert text in message


def test_zhen_one_hot_encoding():
    vector = ZHEN2020_SCHEMA.encode(ZHEN_RECORD)
    names = ZHEN2020_SCHEMA.feature_names()
    assert len(vector) == len(names) == ZHEN2020_SCHEMA.dim == 34
    hot = {n for n, v in zip(names, vector) if v == 1}
    assert hot == {"age=40-59", "gender=male", "cirrhosis_history=yes", "other_cancer=no",
                   "afp=>=400", "cea=<5", "ca125=>=35", "ca199=<37", "psa=<4",
                   "ferritin=<300", "albumin=>=35", "total_bilirubin=<20.5", "prolonged_pt=no",
                   "hepatic_encephalopathy=none", "ascites=mild"}
    # Every field is one-hot: exactly one 1 per field.
    assert vector.sum() == len(ZHEN2020_SCHEMA.fields)
    # The paper's example: male [0, 1], female [1, 0].
    female = ZHEN2020_SCHEMA.encode({**ZHEN_RECORD, "gender": "F"})
    assert female[names.index("gender=female")] == 1 and female[names.index("gender=male")] == 0


def test_zhen_imputes_only_psa():
    vector = ZHEN2020_SCHEMA.encode({**ZHEN_RECORD, "gender": "female", "psa": "NA"})
    names = ZHEN2020_SCHEMA.feature_names()
    assert vector[names.index("psa=<4")] == 0 and vector[names.index("psa=>=4")] == 0
    with pytest.raises(HCCInputError, match="ferritin: value is missing"):
        ZHEN2020_SCHEMA.encode({**ZHEN_RECORD, "ferritin": "?"})
    with pytest.raises(HCCInputError, match="albumin: 3.9 g/L is outside"):
        ZHEN2020_SCHEMA.encode({**ZHEN_RECORD, "albumin": "3.9"})  # g/dL given without unit
    assert ZHEN2020_SCHEMA.encode({**ZHEN_RECORD, "albumin": "3.9 g/dL"}).shape == (34,)


def test_get_schema_and_bad_records():
    assert get_schema("zhen2020") is ZHEN2020_SCHEMA
    with pytest.raises(HCCInputError, match="unknown clinical schema 'lee2021'"):
        get_schema("lee2021")
    with pytest.raises(HCCInputError, match="must be a mapping"):
        WANG2020_SCHEMA.encode(["63", "5"])
    matrix = WANG2020_SCHEMA.encode_many([WANG_RECORD, {**WANG_RECORD, "age": "40"}])
    assert matrix.shape == (2, 9) and matrix[:, 0].tolist() == [1, 0]


@pytest.fixture(scope="module")
def asaur_rows():
    if not ASAUR.is_file():
        pytest.skip(f"real clinical data not found at {ASAUR} (needs ../shared/data)")
    with open(ASAUR, newline="") as handle:
        return list(csv.DictReader(handle))


def test_asaur_mapping_on_real_rows(asaur_rows):
    vectors = np.stack([wang2020_vector_from_asaur(r) for r in asaur_rows])
    assert vectors.shape == (227, 9)
    derivable = asaur_derivable_columns()
    assert derivable == [0, 1, 2, 5]
    assert [ASAUR_WANG2020_BITS[i][1] for i in derivable] == ["exact", "proxy", "proxy", "proxy"]
    assert np.isfinite(vectors[:, derivable]).all()
    assert np.isnan(np.delete(vectors, derivable, axis=1)).all()  # never invented
    # Bits agree with the table itself, row by row.
    ages = np.array([float(r["Age"]) for r in asaur_rows])
    assert (vectors[:, 0] == (ages >= 60)).all() and vectors[:, 0].sum() == 49
    assert vectors[:, 2].tolist() == [float(r["Vascularinvasion"]) for r in asaur_rows]
    labels = [asaur_early_recurrence(r) for r in asaur_rows]
    assert None not in labels and sum(labels) == 91  # 91 recurrences within 12 months


def test_asaur_mapping_rejects_bad_codes(asaur_rows):
    row = dict(asaur_rows[0])
    with pytest.raises(HCCInputError, match="'Tumorsize' holds 3"):
        wang2020_vector_from_asaur({**row, "Tumorsize": "3"}, source="row 1")
    with pytest.raises(HCCInputError, match="'AFP' is missing"):
        wang2020_vector_from_asaur({**row, "AFP": "nan"})
    with pytest.raises(HCCInputError, match="no column 'Age'"):
        wang2020_vector_from_asaur({k: v for k, v in row.items() if k != "Age"})
    censored = {**row, "Recurrence": "0", "RFS": "8"}
    assert asaur_early_recurrence(censored) is None
    assert math.isnan(wang2020_vector_from_asaur(row)[3])
