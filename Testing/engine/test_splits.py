"""Patient-level folds: no patient on both sides, reproducible, stratified, LOPO at k = patients."""

from pathlib import Path

import pytest

from HCCAnalysisLib.data.cohort import CaseRecord
from HCCAnalysisLib.errors import HCCInputError
from HCCAnalysisLib.engine.evaluate import patient_folds


def _records(n_patients=12, cases_per_patient=3):
    records = []
    for p in range(n_patients):
        for c in range(cases_per_patient):
            grade = ("poorly", "moderately", "well")[p % 3]
            records.append(CaseRecord(f"p{p}-c{c}", f"p{p}", Path("."), {"differentiation": grade}))
    return records


@pytest.mark.parametrize("k", [2, 3, 4, 12])
def test_no_patient_on_both_sides(k):
    records = _records()
    labels = [r.fields["differentiation"] for r in records]
    folds = patient_folds(records, k, seed=7, labels=labels)
    assert len(folds) == k
    tested = []
    for train, test in folds:
        assert not {r.patient_id for r in train} & {r.patient_id for r in test}
        assert len(train) + len(test) == len(records)
        tested += [r.case_id for r in test]
    assert sorted(tested) == sorted(r.case_id for r in records)  # every case tested exactly once


def test_leave_one_patient_out_when_k_equals_patients():
    folds = patient_folds(_records(5), 5, seed=0)
    assert [len({r.patient_id for r in test}) for _, test in folds] == [1] * 5


def test_folds_are_reproducible_and_depend_on_the_seed():
    records = _records()
    labels = [r.fields["differentiation"] for r in records]
    ids = lambda folds: [[r.case_id for r in test] for _, test in folds]  # noqa: E731
    assert ids(patient_folds(records, 3, 1, labels)) == ids(patient_folds(records, 3, 1, labels))
    assert ids(patient_folds(records, 3, 1, labels)) != ids(patient_folds(records, 3, 2, labels))


def test_stratified_folds_hold_every_grade():
    records = _records()
    labels = [r.fields["differentiation"] for r in records]
    for _, test in patient_folds(records, 4, seed=3, labels=labels):
        assert {r.fields["differentiation"] for r in test} == {"poorly", "moderately", "well"}


def test_more_folds_than_patients_is_refused():
    with pytest.raises(HCCInputError, match="13 folds asked for 12 patients"):
        patient_folds(_records(), 13, seed=0)
