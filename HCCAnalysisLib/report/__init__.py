"""`hcc report`: evaluation folders -> a self-contained HTML report (figures, tables, tests).

`HCCAnalysisLib.report` keeps `make_report` (report/command.py)."""

from HCCAnalysisLib.report.command import add_report_parser, make_report, run_report  # noqa: F401
