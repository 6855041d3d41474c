"""Run seed 002's chi-squared clinical factor selection on the real asaur HCC cohort.

Writes docs/clinical-selection.md (the numbers there come only from this script):

    .venv/bin/python training/select_clinical_factors.py [--csv PATH] [--out PATH]

The cohort (Li et al. 2014, 227 resected HCC patients, CC0) is bundled as
Testing/reference/asaur_hepatoCellular.csv. Its clinical columns come coded at the
source (0/1 or 1/2, cut-offs not documented); only Age is continuous and is binarised
at seed 002's 60 years. Three outcomes are tested: early recurrence as seed 002 defines
it (within one year of resection), any recurrence, and tumour differentiation.
"""

import argparse
import csv
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from HCCAnalysisLib.clinical import SEED002_THRESHOLDS, select_factors  # noqa: E402

BASELINE = ["Age", "Gender", "HBsAg", "Cirrhosis", "ALT", "AST", "AFP", "Tumorsize",
            "Tumordifferentiation", "Vascularinvasion", "Tumormultiplicity", "Capsulation",
            "TNM", "BCLC"]
OUTCOMES = {
    "EarlyRecurrence": "early recurrence as in seed 002: recurrence within 12 months of "
                       "resection (1; Recurrence = 1 and RFS <= 12) against recurrence-free "
                       "beyond 12 months (0; RFS > 12); patients censored before 12 months "
                       "are left out, as seed 002 required one year of follow-up",
    "Recurrence": "recurrence after resection (1 = recurrence, 0 = censored)",
    "Tumordifferentiation": "tumour differentiation (two coded levels in this table)",
}
THRESHOLDS = {"Age": SEED002_THRESHOLDS["age"]}


def add_early_recurrence(row):
    """Seed 002's outcome from RFS (months) and Recurrence; "" when not followed a year."""
    rfs, recurred = float(row["RFS"]), row["Recurrence"] == "1"
    early = "1" if recurred and rfs <= 12 else "0" if rfs > 12 else ""
    return {**row, "EarlyRecurrence": early}


def _p(value):
    return f"{value:.1e}" if value < 1e-4 else f"{value:.4f}"


def _table(selection):
    lines = ["| factor | level | " + " | ".join(f"{selection.outcome} = {o}"
                                                 for o in selection.tests[0].outcome_levels)
             + " | chi2 | df | p | selected |",
             "|---|---|" + "---|" * len(selection.tests[0].outcome_levels) + "---|---|---|---|"]
    for test in selection.tests:
        for i, (level, counts) in enumerate(zip(test.levels, test.table)):
            stats = (f"{test.statistic:.3f} | {test.dof} | {_p(test.p_value)} | "
                     f"{'**yes**' if test.selected else 'no'}") if i == 0 else " | | |"
            name = test.name if i == 0 else ""
            lines.append(f"| {name} | {level} | " + " | ".join(str(c) for c in counts)
                         + f" | {stats} |")
    return lines


def render(rows, source):
    """Return the Markdown text of the selection for both outcomes."""
    out = ["# Clinical factor selection on the real asaur HCC cohort", "",
           f"Written by `training/select_clinical_factors.py` from `{source}` "
           f"({len(rows)} patients); do not edit by hand.",
           "", "Method (seed 002, Wang et al. 2020, Table 1): Pearson's chi-squared test of each "
           "factor against the outcome, no continuity correction, factor selected when "
           "p < 0.05 (`HCCAnalysisLib.clinical.select_factors`). `Age` is binarised at "
           f"{THRESHOLDS['Age']:g} years (seed 002's threshold); every other factor is used "
           "with the table's own codes (0/1 or 1/2; the source does not document the "
           "laboratory cut-offs, so they are not seed 002's).", "",
           "Check of the method: on the counts printed in seed 002 Table 1 the same "
           "function gives the paper's p-values and selects its seven factors "
           "(`Testing/clinical/test_clinical_selection.py`).", ""]
    for outcome, description in OUTCOMES.items():
        factors = [f for f in BASELINE if f != outcome]
        used = sum(row[outcome] != "" for row in rows)
        selection = select_factors(rows, outcome, alpha=0.05, factors=factors,
                                   thresholds=THRESHOLDS)
        chosen = ", ".join(f"`{name}`" for name in selection.selected) or "none"
        out += [f"## Outcome: {outcome}", "", f"Outcome: {description} ({used} patients).", "",
                f"**Selected ({len(selection.selected)} of {len(factors)}):** {chosen}", ""]
        out += _table(selection)
        notes = [f"- `{t.name}`: {t.note}" for t in selection.tests if t.note]
        out += [""] + (["Notes:"] + notes + [""] if notes else [])
    return "\n".join(out) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", default=str(ROOT / "Testing/reference/asaur_hepatoCellular.csv"))
    parser.add_argument("--out", default=str(ROOT / "docs/clinical-selection.md"))
    args = parser.parse_args(argv)
    with open(args.csv, newline="") as handle:
        rows = [add_early_recurrence(row) for row in csv.DictReader(handle)]
    text = render(rows, os.path.relpath(args.csv, ROOT) if args.csv.startswith(str(ROOT))
                  else args.csv)
    tmp = args.out + ".tmp"
    with open(tmp, "w") as handle:
        handle.write(text)
    os.replace(tmp, args.out)  # atomic, as everywhere in the project
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
