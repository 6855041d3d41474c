"""`hcc report`: a self-contained HTML evaluation report from one or more evaluation folders.

Library API:  make_report(eval_dirs, out_dir, confidence=0.95, title=None, overwrite=False) -> Path (the HTML)
CLI wiring:   add_report_parser(subparsers) adds `report --eval DIR [--compare DIR ...] --out DIR [--overwrite]`

The report holds, per level (case; patient when predictions can be aggregated per
patient): ROC curves per class with AUC and DeLong CI, confusion matrices (counts
and row-normalised), sensitivity / specificity / accuracy with Clopper-Pearson CIs,
Cohen's kappa with z and p, and for several models pairwise DeLong and McNemar
p-values laid out like seed 001 Tables 1-4; plus a t-SNE of the last hidden features
when an evaluation saved embeddings.npz. Written to OUT: report.html (figures
embedded), figures/*.png, performance.tsv (per-class estimates with CIs) and
summary.json (every number in the report).

The work is done in report_build.py (imported on use: it pulls in matplotlib and
scikit-learn, which every other `hcc` command would otherwise pay for at start-up).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path


def make_report(eval_dirs: str | Path | Sequence[str | Path], out_dir: str | Path, confidence: float = 0.95,
                title: str | None = None, overwrite: bool = False, readers_csv: str | Path | None = None,
                reader_columns: Sequence[str] | None = None) -> Path:
    """Write the report of `eval_dirs` (first = main model, others compared) into `out_dir`.

    `eval_dirs` is one folder or a list of folders written by `hcc evaluate`. Returns the
    path of report.html. All inputs are read and checked, and every number and figure
    computed, before anything is written; bad input raises HCCInputError. A non-empty
    `out_dir` is refused unless `overwrite` (the same rule as `hcc train` and `evaluate`).
    `readers_csv` / `reader_columns`: radiologists' calls as comparators (report/readers.py).
    """
    from HCCAnalysisLib.report.build import build_report
    from HCCAnalysisLib.workflows import refuse_non_empty

    refuse_non_empty(out_dir, overwrite, "files (a report?)")
    from HCCAnalysisLib.io.output_location import check_output_folder

    check_output_folder(out_dir, [eval_dirs] if isinstance(eval_dirs, (str, Path)) else list(eval_dirs))

    return build_report(eval_dirs, out_dir, confidence=confidence, title=title, readers_csv=readers_csv,
                        reader_columns=reader_columns)


def run_report(args: argparse.Namespace) -> int:
    """Entry point of `hcc report` (argparse namespace from add_report_parser)."""
    path = make_report([args.eval] + list(args.compare or []), args.out,
                       confidence=args.confidence, title=args.title,
                       overwrite=getattr(args, "overwrite", False), readers_csv=args.readers,
                       reader_columns=[c for c in args.reader_columns.split(",") if c] or None)
    print(path)  # the result alone on stdout (the CLI's output; messages go to the log)
    return 0


def add_report_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:

    """Add the `report` subcommand to an argparse subparsers object."""
    parser = subparsers.add_parser(
        "report", help="HTML report (ROC, CIs, kappa, DeLong / McNemar, t-SNE) of evaluations",
        description=__doc__.split("\n\n")[0])
    parser.add_argument("--eval", required=True, metavar="DIR",
                        help="evaluation folder written by `hcc evaluate`")
    parser.add_argument("--compare", nargs="+", default=[], metavar="DIR",
                        help="further evaluation folders of the same task, compared pairwise")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for the report")
    parser.add_argument("--confidence", type=float, default=0.95,
                        help="confidence level of the intervals (default 0.95)")
    parser.add_argument("--title", default=None, help="report title")
    parser.add_argument("--readers", default=None, metavar="CASES_CSV",
                        help="a cases.csv whose reader columns hold radiologists' calls (class names), shown "
                             "beside the main model with McNemar's test and kappa (Zhen 2020 Tables 1-4)")
    parser.add_argument("--reader-columns", default="", metavar="A,B",
                        help="the reader columns (default: every column whose name starts with 'reader')")
    parser.add_argument("--overwrite", action="store_true", help="write into a folder that is not empty")
    parser.set_defaults(func=run_report)
    return parser
