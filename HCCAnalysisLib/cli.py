"""`hcc`: the command line. Each subcommand is a thin shell over a library function.

    hcc tasks
    hcc train    --task T --cohort DIR --out MODEL_DIR [--phases a,b,c] [--pretrained NAME|FILE|none]
    hcc evaluate --task T --cohort DIR --folds K [--repeats R] --out DIR [--overwrite]
    hcc predict  --model MODEL_DIR --case CASE_DIR --out results.tsv
    hcc batch    --cohort DIR --model MODEL_DIR --out DIR
    hcc report   --eval DIR [--compare DIR2 ...] --out DIR
    hcc saliency --model MODEL_DIR --case CASE_DIR --out saliency.nrrd
    hcc demo     [--out DIR]
Training runs unchanged under `torchrun --nproc_per_node N -m HCCAnalysisLib.cli train ...`.

Ctrl-C and SIGTERM stop any command with one line on stderr and exit status 130 / 143; every
output is written atomically, so nothing is left half-written, and `hcc evaluate` keeps its
finished folds (the same command resumes).
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence

from HCCAnalysisLib.errors import HCCInputError


def _common_training(parser):
    parser.add_argument("--task", required=True, help="task name (see `hcc tasks`)")
    parser.add_argument("--cohort", required=True, help="folder with cases.csv and one folder per case")
    parser.add_argument("--phases", default="", help="comma-separated phases in channel order (task default)")
    parser.add_argument("--pretrained", default=None,
                        help="pretraining to fine-tune from: a known name (jia2019-cifar, jia2019-mnist), a weights "
                             "file, or none (random initialisation); left out: the task's recipe (Jia: MNIST for one "
                             "phase, CIFAR10 for three)")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (task default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")


def _tasks(args):
    from HCCAnalysisLib.tasks import TASKS

    for task in TASKS.values():
        print(f"{task.name:32s} {', '.join(task.classes):40s} {task.one_line()}")


def _train(args):
    from HCCAnalysisLib.workflows import train_model

    train_model(args.task, args.cohort, args.out, args.phases, args.pretrained, args.epochs, args.seed, args.device,
                args.overwrite)


def _evaluate(args):
    from HCCAnalysisLib.workflows import evaluate_task

    evaluate_task(args.task, args.cohort, args.out, args.folds, args.repeats, args.phases, args.pretrained,
                  args.epochs, args.seed, args.device, overwrite=args.overwrite)


def _predict(args):
    from HCCAnalysisLib.workflows import predict_folder

    from HCCAnalysisLib.workflows import case_fields

    fields = case_fields(args.case, args.cases_csv, args.case_id, args.clinical)
    prediction = predict_folder(args.model, args.case, args.out, args.device, case_id=args.case_id, fields=fields)
    for record in prediction.records():
        print(f"{record['lesion_name']:28s} {record['predicted_class']}")


def _saliency(args):
    from HCCAnalysisLib.engine.saliency import save_saliency_volume
    from HCCAnalysisLib.workflows import case_fields

    fields = case_fields(args.case, args.cases_csv, None, args.clinical)
    save_saliency_volume(args.model, args.case, args.out, device=args.device, fields=fields)
    print(f"saliency volume written to {args.out}")


def _demo(args):
    from HCCAnalysisLib.demo import run_demo

    run_demo(args.out, epochs=args.epochs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hcc", description="HCCAnalysis: deep-learning methods for liver tumours")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("tasks", help="list the tasks").set_defaults(func=_tasks)

    train = sub.add_parser("train", help="train a model package on a cohort")
    _common_training(train)
    train.add_argument("--out", required=True, help="model package folder to write")
    train.add_argument("--overwrite", action="store_true", help="replace an existing model package")
    train.set_defaults(func=_train)

    evaluate = sub.add_parser("evaluate", help="patient-level cross-validation")
    _common_training(evaluate)
    evaluate.add_argument("--folds", type=int, default=5, help="K (= number of patients: leave-one-patient-out)")
    evaluate.add_argument("--repeats", type=int, default=1)
    evaluate.add_argument("--out", required=True,
                          help="evaluation folder to write; rerunning the same command resumes an unfinished one")
    evaluate.add_argument("--overwrite", action="store_true",
                          help="start afresh in a folder holding a finished evaluation or other files")
    evaluate.set_defaults(func=_evaluate)

    predict = sub.add_parser("predict", help="run a model package on one case folder")
    predict.add_argument("--model", required=True)
    predict.add_argument("--case", required=True)
    predict.add_argument("--out", required=True, help="results TSV")
    predict.add_argument("--device", default="auto")
    predict.add_argument("--cases-csv", default=None,
                         help="a cases.csv whose row for this case (by --case-id or the folder name) gives "
                              "its clinical values")
    predict.add_argument("--case-id", default=None, help="the case's id (default: the folder name)")
    predict.add_argument("--clinical", nargs="*", default=[], metavar="COLUMN=VALUE",
                         help="clinical values for tasks that use them, e.g. age=63 afp=12.5")
    predict.set_defaults(func=_predict)

    saliency = sub.add_parser("saliency", help="saliency map of a model on one case, as a volume file")
    saliency.add_argument("--model", required=True)
    saliency.add_argument("--case", required=True)
    saliency.add_argument("--out", required=True, help="volume file to write (.nrrd, .nii.gz, .mha)")
    saliency.add_argument("--device", default="auto")
    saliency.add_argument("--cases-csv", default=None, help="cases.csv with the case's clinical values")
    saliency.add_argument("--clinical", nargs="*", default=[], metavar="COLUMN=VALUE")
    saliency.set_defaults(func=_saliency)

    demo = sub.add_parser("demo", help="the end-to-end demo on the bundled sample data")
    demo.add_argument("--out", default="out/demo")
    demo.add_argument("--epochs", type=int, default=None)
    demo.set_defaults(func=_demo)

    from HCCAnalysisLib.batch import add_batch_parser
    from HCCAnalysisLib.report.command import add_report_parser

    add_batch_parser(sub)
    add_report_parser(sub)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM turned into an exception, so that it unwinds like Ctrl-C: temporary files are
    removed on the way out (HCCAnalysisLib.atomic) and finished work stays."""


def _raise_terminated(signum, frame):
    raise Terminated()


_KEPT = {"evaluate": "finished folds are kept in {out}; run the same command again to resume",
         "batch": "finished cases are kept in {out}; run the same command again to resume"}


def _stopped_message(args, how):
    kept = _KEPT.get(args.command, "nothing was left half-written")
    return f"hcc {args.command}: stopped by {how}; " + kept.format(out=getattr(args, "out", ""))


def main(argv: Sequence[str] | None = None) -> int:

    args = build_parser().parse_args(argv)
    previous = None
    try:
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread (e.g. called from a worker thread): leave signals alone
        pass
    try:
        return args.func(args) or 0
    except HCCInputError as err:
        print(f"hcc {args.command}: error: {err}", file=sys.stderr)
        return 2
    except Terminated:
        print(_stopped_message(args, "SIGTERM"), file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print(_stopped_message(args, "Ctrl-C"), file=sys.stderr)
        return 128 + signal.SIGINT
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
