"""`hcc` as its peers behave (issue 13): help with defaults, a bare `hcc`, `--version`, global
options before or after the command, `hcc tasks TASK [--json]`, `--out` a folder or `--out-file`,
messages through `logging` on stderr and results alone on stdout, progress bars only on a terminal."""

import argparse
import json
import logging

import pytest

from HCCAnalysisLib.cli import build_parser, main
from HCCAnalysisLib.errors import HCCInputError
from HCCAnalysisLib.runtime import progress as progress_module
from HCCAnalysisLib.runtime.console import CommandParser, HelpFormatter, output_file
from HCCAnalysisLib.runtime.logs import ROOT_LOGGER, setup_logging


@pytest.fixture(autouse=True)
def _restore_logging():
    """main() installs its handlers on the HCCAnalysisLib logger: remove them after each test."""
    yield
    setup_logging(0)
    logger = logging.getLogger(ROOT_LOGGER)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    logger.propagate, logger.level = True, logging.NOTSET


def _subcommands(parser):
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


def test_bare_hcc_prints_the_help_and_exits_0(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: hcc") and "predict" in out and "--log-file" in out


def test_version(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0 and capsys.readouterr().out.startswith("hcc (HCCAnalysisLib) ")


def test_every_subcommand_shows_defaults_and_takes_the_global_options():
    commands = _subcommands(build_parser())
    assert {"tasks", "train", "evaluate", "predict", "batch", "report", "saliency", "demo"} <= set(commands)
    for name, sub in commands.items():
        assert isinstance(sub, CommandParser) and sub.formatter_class is HelpFormatter, name
        text = sub.format_help()
        assert "--quiet" in text and "--log-file" in text, name
    assert "(default: auto)" in commands["predict"].format_help()
    assert "(default: 5)" in commands["evaluate"].format_help()  # --folds
    assert "(default: None)" not in commands["train"].format_help()


@pytest.mark.parametrize("argv", [["-q", "--log-file", "L", "tasks"], ["tasks", "-q", "--log-file", "L"],
                                  ["-q", "tasks", "--log-file", "L"]])
def test_global_options_before_or_after_the_command(argv):
    args = build_parser().parse_args(argv)
    assert (args.command, args.quiet, args.log_file, args.verbose) == ("tasks", True, "L", 0)


def test_verbose_before_and_quiet_default_after():
    args = build_parser().parse_args(["-v", "batch", "--cohort", "c", "--model", "m", "--out", "o"])
    assert args.verbose == 1 and args.quiet is False  # batch's own --quiet default does not reset it
    args = build_parser().parse_args(["batch", "--cohort", "c", "--model", "m", "--out", "o", "--quiet"])
    assert args.quiet is True


def test_tasks_lists_and_describes(capsys):
    assert main(["tasks"]) == 0
    listing = capsys.readouterr()
    assert "zhen2020-model-f" in listing.out and listing.err == ""
    assert main(["tasks", "wang2020-fusion-d"]) == 0
    card = capsys.readouterr().out
    for fact in ("phases         nc, art, pv", "column 'early_recurrence'", "non_ER, ER", "224 x 224",
                 "total_bilirubin", "[umol/L]", "afp", "[ug/L]", "extras         fusion"):
        assert fact in card, fact
    assert main(["tasks", "jia2019-hcc-vs-background"]) == 0
    card = capsys.readouterr().out
    assert "1 phase(s): jia2019-mnist, 3 phase(s): jia2019-cifar" in card and "lesion samples -> HCC" in card


def test_tasks_json(capsys):
    assert main(["tasks", "--json"]) == 0
    cards = json.loads(capsys.readouterr().out)
    assert len(cards) >= 20 and all({"phases", "label", "classes", "clinical_fields", "input_size", "pretraining"}
                                    <= set(c) for c in cards)
    assert main(["tasks", "zhen2020-model-f", "--json"]) == 0
    card = json.loads(capsys.readouterr().out)
    assert card["label"]["column"] == "malignant_type" and card["input_size"] == [299, 299]
    afp = next(f for f in card["clinical_fields"] if f["column"] == "afp")
    assert afp["unit"] == "ng/mL" and card["extras"] == ["fusion"]


def test_unknown_task_names_the_close_ones(capsys):
    assert main(["tasks", "zhen2020-model-z"]) == 2
    err = capsys.readouterr().err
    assert "hcc tasks: error: unknown task 'zhen2020-model-z'" in err and "did you mean zhen2020-model-" in err


def test_out_is_a_folder_and_out_file_a_file(tmp_path):
    assert output_file(str(tmp_path / "new"), None, "results.tsv") == tmp_path / "new" / "results.tsv"
    named = tmp_path / "mine.tsv"
    assert output_file(None, str(named), "results.tsv") == named
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(HCCInputError, match="is a file; --out names a folder"):
        output_file(str(tmp_path / "a_file"), None, "results.tsv")
    with pytest.raises(HCCInputError, match="is a folder; --out-file"):
        output_file(None, str(tmp_path), "results.tsv")
    (tmp_path / "done").mkdir()
    (tmp_path / "done" / "results.tsv").write_text("finished")
    with pytest.raises(HCCInputError, match="already exists"):
        output_file(str(tmp_path / "done"), None, "results.tsv")
    assert output_file(str(tmp_path / "done"), None, "results.tsv", overwrite=True).name == "results.tsv"


def test_predict_needs_out_or_out_file_not_both(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["predict", "--model", "m", "--case", "c", "--out", "o", "--out-file", "f"])
    assert stop.value.code == 2 and "not allowed with argument" in capsys.readouterr().err


def test_messages_go_to_stderr_and_the_log_file(tmp_path, capsys):
    log_file = tmp_path / "run.log"
    assert main(["-v", "--log-file", str(log_file), "tasks", "meng2019-metastasis"]) == 0
    logging.getLogger("HCCAnalysisLib.workflows").info("a message from the library")
    captured = capsys.readouterr()
    assert captured.out.startswith("meng2019-metastasis:") and "a message from the library" not in captured.out
    assert "a message from the library" in captured.err
    text = log_file.read_text()
    assert "thread policy:" in text and "INFO    HCCAnalysisLib.workflows: a message from the library" in text


def test_quiet_hides_info_and_keeps_warnings(capsys):
    assert main(["tasks", "-q"]) == 0
    capsys.readouterr()
    logging.getLogger("HCCAnalysisLib.batch").info("progress line")
    logging.getLogger("HCCAnalysisLib.batch").warning("case failed")
    err = capsys.readouterr().err
    assert "progress line" not in err and "case failed" in err


def test_bad_log_file_is_an_input_error(tmp_path, capsys):
    assert main(["--log-file", str(tmp_path / "no" / "such" / "x.log"), "tasks"]) == 2
    assert "folder does not exist" in capsys.readouterr().err


def test_progress_bars_only_on_a_terminal(monkeypatch, capsys):
    setup_logging(0)
    monkeypatch.delenv(progress_module.FORCE_VARIABLE, raising=False)
    assert not progress_module.bars_wanted()  # pytest's captured stderr is not a terminal
    assert progress_module.progress(range(3)).disable
    monkeypatch.setenv(progress_module.FORCE_VARIABLE, "1")
    bar = progress_module.progress(total=2, desc="cases", unit="case")
    drawn = not bar.disable
    bar.update(2)
    bar.close()
    err = capsys.readouterr().err
    assert drawn and "cases:" in err and "0/2" in err and "case/s" in err  # bar, count, rate, ETA on stderr
    monkeypatch.setenv(progress_module.FORCE_VARIABLE, "0")
    assert not progress_module.bars_wanted()
