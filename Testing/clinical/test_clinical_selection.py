"""Clinical factor selection (HCCAnalysisLib.clinical.selection) against seed 002 and statsmodels.

Seed 002 (Wang et al. 2020) Table 1 prints the counts and chi-squared p-values of 17
factors in 167 patients; rebuilding patients from those counts must give the printed
p-values (Pearson, no continuity correction) and the seven selected factors.
"""

import csv
from pathlib import Path

import numpy as np
import pytest
from statsmodels.stats.contingency_tables import Table

from HCCAnalysisLib import HCCInputError
from HCCAnalysisLib.clinical import SEED002_THRESHOLDS, select_factors

REFERENCE = Path(__file__).resolve().parents[1] / "reference"

# Seed 002 Table 1: factor -> {level: (NER count, ER count)}, printed p-value.
SEED002_TABLE1 = {
    "sex": ({"female": (17, 10), "male": (85, 55)}, 0.826),
    "age": ({"<60": (55, 47), ">=60": (47, 18)}, 0.018),
    "tumor_size": ({"<50": (74, 28), ">=50": (28, 37)}, 0.0005),  # printed "<0.001"
    "tumor_number": ({"single": (97, 58), "multiple": (5, 7)}, 0.152),
    "portal_vein_invasion": ({"no": (95, 48), "yes": (7, 17)}, 0.001),
    "cirrhosis": ({"no": (31, 21), "yes": (71, 44)}, 0.794),
    "hbv": ({"no": (25, 8), "yes": (77, 57)}, 0.054),
    "nl_ratio": ({"<2.8": (71, 35), ">=2.8": (31, 30)}, 0.039),
    "alt": ({"<40": (66, 38), ">=40": (36, 27)}, 0.417),
    "ast": ({"<50": (77, 46), ">=50": (25, 19)}, 0.500),
    "akp": ({"<125": (85, 46), ">=125": (17, 19)}, 0.054),
    "ggt": ({"<45": (46, 20), ">=45": (56, 45)}, 0.065),
    "alb": ({">=40": (100, 65), "<40": (2, 0)}, 0.256),
    "tb": ({"<20.5": (81, 41), ">=20.5": (21, 24)}, 0.020),
    "afp": ({"<9": (39, 11), ">=9": (63, 54)}, 0.003),
    "cp_level": ({"A": (89, 51), "B": (13, 14)}, 0.132),
    "bclc": ({"0": (17, 5), "A": (78, 39), "B": (1, 3), "C": (6, 18)}, 0.0005),  # "<0.001"
}


def _patients_from_table1():
    """167 patient rows whose marginal counts per factor are those of Table 1.

    Only the per-factor counts are published, so each factor's levels are laid out over
    the NER and ER patients independently; every chi-squared test sees the printed table.
    """
    n_ner, n_er = 102, 65
    rows = [{"ER": "NER"} for _ in range(n_ner)] + [{"ER": "ER"} for _ in range(n_er)]
    for factor, (levels, _) in SEED002_TABLE1.items():
        ner = [lvl for lvl, (a, _) in levels.items() for _ in range(a)]
        er = [lvl for lvl, (_, b) in levels.items() for _ in range(b)]
        assert len(ner) == n_ner and len(er) == n_er
        for row, value in zip(rows, ner + er):
            row[factor] = value
    return rows


def test_reproduces_seed002_table1_and_its_selection():
    result = select_factors(_patients_from_table1(), "ER")
    for factor, (_, printed) in SEED002_TABLE1.items():
        test = result.test(factor)
        if printed < 0.001:
            assert test.p_value < 0.001, factor
        else:
            assert round(test.p_value, 3) == printed, factor
        assert test.dof == len(SEED002_TABLE1[factor][0]) - 1
    assert set(result.selected) == {"age", "tumor_size", "portal_vein_invasion", "nl_ratio",
                                    "tb", "afp", "bclc"}
    assert "expected count < 5" in result.test("alb").note


def _asaur():
    with open(REFERENCE / "asaur_hepatoCellular.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_real_cohort_matches_statsmodels_pearson_statistic():
    rows = _asaur()
    result = select_factors(rows, "Recurrence", factors=["Age", "AFP", "Tumorsize", "TNM"],
                            thresholds={"Age": 60})
    ages = np.array([float(r["Age"]) for r in rows])
    recurrence = np.array([r["Recurrence"] for r in rows])
    for name, values in (("Age", np.where(ages >= 60, "hi", "lo")),
                         ("AFP", np.array([r["AFP"] for r in rows]))):
        levels, outcomes = np.unique(values), np.unique(recurrence)
        table = np.array([[np.sum((values == lv) & (recurrence == o)) for o in outcomes]
                          for lv in levels])
        reference = Table(table).test_nominal_association()
        test = result.test(name)
        assert test.statistic == pytest.approx(reference.statistic)
        assert test.p_value == pytest.approx(reference.pvalue)
        assert test.n == len(rows) and test.dof == reference.df
    assert result.test("Age").levels == ("<60", ">=60")
    assert result.selected == tuple(t.name for t in result.tests if t.p_value < 0.05)


def test_missing_values_are_left_out_of_that_factor_only():
    rows = _asaur()
    # Ki67 is recorded for 101 of 227 patients; thresholded like a lab value.
    result = select_factors(rows, "Recurrence", factors=["Ki67", "AFP"], thresholds={"Ki67": 10})
    assert result.test("Ki67").n == sum(r["Ki67"] not in ("", "NA") for r in rows)
    assert result.test("AFP").n == len(rows)


def test_seed002_thresholds_binarise_continuous_values():
    rows = [{"afp": v, "y": y} for v, y in [(3.0, 0), (8.99, 0), (9.0, 1), (400, 1), ("", 1)]]
    result = select_factors(rows, "y", thresholds=SEED002_THRESHOLDS)
    assert result.test("afp").table == ((2, 0), (0, 2))
    assert result.test("afp").levels == ("<9", ">=9")


@pytest.mark.parametrize("kwargs,needle", [
    (dict(rows=[], outcome="y"), "n = 0"),
    (dict(rows=[{"a": 1, "y": 1}, {"a": 2, "y": 1}], outcome="y"), "fewer than two classes"),
    (dict(rows=[{"a": 1, "y": 1}], outcome="z"), "no column 'z'"),
    (dict(rows=[{"a": 1, "y": 1}, {"a": 1, "y": 0}], outcome="y", factors=["b"]), "no column 'b'"),
    (dict(rows=[{"a": 1, "y": 1}, {"a": 1, "y": 0}], outcome="y", alpha=2), "alpha"),
    (dict(rows=[{"a": "high", "y": 1}, {"a": 3, "y": 0}], outcome="y", thresholds={"a": 2}),
     "not a number"),
    (dict(rows=[{"a": i, "y": i % 2} for i in range(30)], outcome="y"), "looks continuous"),
])
def test_bad_input_raises(kwargs, needle):
    with pytest.raises(HCCInputError, match=needle):
        select_factors(**kwargs)


def test_docs_clinical_selection_is_the_scripts_output():
    """docs/clinical-selection.md is exactly what training/select_clinical_factors.py writes."""
    import importlib.util

    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location(
        "select_clinical_factors", root / "training" / "select_clinical_factors.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    rows = [script.add_early_recurrence(r) for r in _asaur()]
    expected = script.render(rows, "Testing/reference/asaur_hepatoCellular.csv")
    assert (root / "docs" / "clinical-selection.md").read_text() == expected
