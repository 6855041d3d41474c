"""Jia 2019's time-signal intensity curve over the dynamic phases (sec. 3.2, Fig. 4), on a case whose
dynamic values are known: the lesion enhances 100, 140, 180, 150 and the liver 50, 60, 70, 80."""

import numpy as np
import pytest
import SimpleITK as sitk

from HCCAnalysisLib import HCCInputError
from HCCAnalysisLib.data.case import Case, Lesion
from HCCAnalysisLib.methods.jia2019.tsic import (case_curves, mean_curves, parse_dynamic_phases, read_curves,
                                                write_curves)
from HCCAnalysisLib.tasks import get_task

PHASES = ("S0", "S1", "S2", "S3")
LESION = (100.0, 140.0, 180.0, 150.0)
LIVER = (50.0, 60.0, 70.0, 80.0)


def _image(array, spacing=(0.8, 0.8, 3.0)):
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    return image


def known_case(case_id="c1", grade="well"):
    shape = (6, 120, 120)
    liver = np.zeros(shape, np.uint8)
    liver[:, 5:115, 5:115] = 1
    lesion = np.zeros(shape, np.uint8)
    lesion[1:5, 20:44, 20:44] = 1  # 24 x 24 voxels in-plane: the 16 x 16 centre lies inside
    images = {}
    for phase, inside, outside in zip(PHASES, LESION, LIVER):
        volume = np.full(shape, 5.0, np.float32)
        volume[liver > 0] = outside
        volume[lesion > 0] = inside
        images[phase] = _image(volume)
    segmentation = _image(liver + lesion)
    case = Case(case_id, f"P-{case_id}", images, segmentation, [Lesion("1", "lesion 1", _image(lesion))],
                liver_mask=_image(liver))
    return case, {"differentiation": grade}


def test_the_curve_is_the_known_enhancement_of_lesion_and_background():
    task = get_task("jia2019-differentiation")
    case, fields = known_case()
    rows = case_curves(case, task, PHASES, fields)
    lesion = next(r for r in rows if r["kind"] == "lesion")
    background = next(r for r in rows if r["kind"] == "background")
    assert lesion["class"] == "well" and background["class"] == "background"
    assert [lesion[f"tsic_{p}"] for p in PHASES] == pytest.approx(LESION)
    assert [background[f"tsic_{p}"] for p in PHASES] == pytest.approx(LIVER)
    assert case_curves(case, task, PHASES, fields) == rows  # the same background ROI every run


def test_mean_curves_per_class_with_spread_and_a_file_round_trip(tmp_path):
    task = get_task("jia2019-differentiation")
    rows = []
    for n, grade in enumerate(("well", "well", "poorly")):
        case, fields = known_case(f"c{n}", grade)
        case_rows = case_curves(case, task, PHASES, fields)
        for row in case_rows:  # make the two well-differentiated lesions differ by a known offset
            if row["class"] == "well":
                for p in PHASES:
                    row[f"tsic_{p}"] += 10.0 * n
        rows += case_rows
    curves = mean_curves(rows, PHASES)
    assert list(curves) == ["poorly", "well", "background"]
    assert curves["well"]["mean"] == pytest.approx([v + 5.0 for v in LESION])
    assert curves["well"]["sd"] == pytest.approx([np.std([0.0, 10.0], ddof=1)] * 4)
    assert curves["poorly"]["sd"] == [0.0] * 4 and curves["background"]["n"] == 3
    path = write_curves(tmp_path / "tsic.tsv", rows, PHASES)
    phases, read = read_curves(path)
    assert phases == PHASES and len(read) == len(rows)
    assert mean_curves(read, PHASES)["well"]["mean"] == pytest.approx(curves["well"]["mean"])


def test_dynamic_phases_are_checked():
    assert parse_dynamic_phases("S0, S1,S2") == ("S0", "S1", "S2")
    assert parse_dynamic_phases("") == ()
    with pytest.raises(HCCInputError, match="at least two distinct"):
        parse_dynamic_phases("S0,S0")
