"""`hcc`: the command line. Each subcommand is a thin shell over a library function.

    hcc                        (no command: this help, exit status 0)
    hcc tasks    [TASK] [--json]
    hcc train    --task T --cohort DIR --out MODEL_DIR [--phases a,b,c] [--pretrained NAME|FILE|none]
    hcc evaluate --task T --cohort DIR --folds K [--repeats R] --out DIR [--overwrite]
    hcc predict  --model MODEL_DIR --case CASE_DIR --out DIR | --out-file FILE.tsv [--dicom]
    hcc batch    --cohort DIR --model MODEL_DIR --out DIR
    hcc report   --eval DIR [--compare DIR2 ...] --out DIR
    hcc saliency --model MODEL_DIR --case CASE_DIR --out DIR | --out-file FILE.nrrd [--dicom]
    hcc demo     [--out DIR]
    hcc run-job  --job JOB_DIR     (the Slicer panel's child process: JSON progress lines on stdout)
    hcc models   list | install ID|ZIP|FOLDER|URL | remove TASK VERSION | entry PACKAGE --url U
Training runs unchanged under `torchrun --nproc_per_node N -m HCCAnalysisLib.cli train ...`.
Every command that reads case folders (train, evaluate, predict, batch, saliency) takes the same
--liver-label, --lesion-label, --segmentation and --phase NAME=PHASE (data/reading_options.py).

Every command takes `--version`, `-q/--quiet`, `-v/--verbose`, `--log-file FILE` and `--threads N`,
before or after its name (runtime/console.py). Results (a table, a path) alone go to stdout;
messages and progress bars (on a terminal only) go to stderr through `logging`. `--out` always
names a folder; `predict` writes OUT/results.tsv, `saliency` OUT/saliency.nrrd, and `--out-file`
names a single file instead. Unless set by the user, OMP_WAIT_POLICY=PASSIVE and a thread count of
the physical cores are set before torch loads (runtime/threads.py). Bad input: exit status 2.

Ctrl-C and SIGTERM stop any command with one line on stderr and exit status 130 / 143; every
output is written atomically, so nothing is left half-written, and `hcc evaluate` keeps its
finished folds (the same command resumes).
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from HCCAnalysisLib.data.reading_options import add_case_reading_arguments
from HCCAnalysisLib.errors import HCCInputError


def _common_training(parser, task_required=True):
    parser.add_argument("--task", required=task_required,
                        help="task name (see `hcc tasks`)" + ("" if task_required else "; not with --model"))
    parser.add_argument("--cohort", required=True, help="folder with cases.csv and one folder per case")
    parser.add_argument("--phases", default="", help="comma-separated phases in channel order (task default)")
    parser.add_argument("--pretrained", default=None,
                        help="pretraining to fine-tune from: a known name (jia2019-cifar, jia2019-mnist), a weights "
                             "file, or none (random initialisation); left out: the task's recipe (Jia: MNIST for one "
                             "phase, CIFAR10 for three)")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (task default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--allow-missing-classes", action="store_true",
                        help="go on (with a loud warning) when a class of the task is absent from the cohort")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--cache", default=None, metavar="DIR",
                        help="sample cache folder: each case is read and sampled once across runs "
                             "(default: $HCC_CACHE_DIR or ~/.cache/hccanalysis)")
    parser.add_argument("--no-cache", action="store_true", help="read and sample every case afresh")
    parser.add_argument("--net-option", action="append", default=[], metavar="KEY=VALUE",
                        help="change an argument of the task's network (repeatable), e.g. Jia 2019's grid: "
                             "embedding_dim=2 (2/16/32/64), pyramid=none (global pooling) or pyramid=1,2")
    parser.add_argument("--sampler-option", action="append", default=[], metavar="KEY=VALUE",
                        help="change an option of the task's sampler (repeatable), e.g. registration=none for "
                             "Liang 2018 (see `hcc tasks TASK`)")


def _add_loader_options(parser):
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help="DataLoader worker processes that stack batches (default: chosen for the machine; "
                             "0: in the main process; results never depend on it)")
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"),
                        help="training precision: auto = bf16 on a CUDA GPU that supports it, fp32 on the CPU")


def _tasks(args):
    import json

    from HCCAnalysisLib.methods.task_card import format_task_card, task_card
    from HCCAnalysisLib.tasks import TASKS, get_task

    tasks = [get_task(args.task)] if args.task else list(TASKS.values())
    if args.json:
        cards = [task_card(task) for task in tasks]
        print(json.dumps(cards[0] if args.task else cards, indent=2))
    elif args.task:
        print(format_task_card(task_card(tasks[0])))
    else:
        for task in tasks:
            print(f"{task.name:32s} {', '.join(task.classes):40s} {task.one_line()}")


def _cache(args):
    """--cache DIR, --no-cache, or the default sample cache folder (True)."""
    return False if args.no_cache else (args.cache or True)


def _reading(args):
    """--liver-label, --lesion-label, --segmentation, --phase (data/reading_options.py)."""
    from HCCAnalysisLib.data.reading_options import reading_from_args

    return reading_from_args(args)


def _train(args):
    from HCCAnalysisLib.workflows import train_model

    train_model(args.task, args.cohort, args.out, args.phases, args.pretrained, args.epochs, args.seed, args.device,
                args.overwrite, allow_missing_classes=args.allow_missing_classes, cache=_cache(args),
                reading=_reading(args), resume=args.resume, workers=args.workers, precision=args.precision,
                val_share=args.val_share, net_options=args.net_option, sampler_options=args.sampler_option)


def _evaluate(args):
    from HCCAnalysisLib.workflows import evaluate_task

    if args.model:  # an external test cohort: no training
        from HCCAnalysisLib.engine.external import evaluate_external

        given = [flag for flag, value in (("--task", args.task), ("--net-option", args.net_option),
                                          ("--sampler-option", args.sampler_option), ("--pretrained", args.pretrained),
                                          ("--epochs", args.epochs), ("--dynamic-phases", args.dynamic_phases))
                 if value]
        if given:
            raise HCCInputError(f"{', '.join(given)}: not used with --model (the model package fixes them)")
        evaluate_external(args.model, args.cohort, args.out, args.device, tta=args.tta, overwrite=args.overwrite,
                          reading=_reading(args), allow_unusual_input=args.allow_unusual_input)
        return
    if args.allow_unusual_input:  # cross-validation trains on the cohort itself: no card to check it against
        raise HCCInputError("--allow-unusual-input: only with --model (an external cohort checked against its card)")
    if not args.task:
        raise HCCInputError("give --task (cross-validation) or --model (an external test cohort)")
    from HCCAnalysisLib.engine.evaluate import EvaluationOptions

    options = EvaluationOptions(tta=args.tta, epoch_curve=args.epoch_curve, workers=args.workers,
                                precision=args.precision)
    evaluate_task(args.task, args.cohort, args.out, args.folds, args.repeats, args.phases, args.pretrained,
                  args.epochs, args.seed, args.device, overwrite=args.overwrite,
                  allow_missing_classes=args.allow_missing_classes, cache=_cache(args), reading=_reading(args),
                  net_options=args.net_option, sampler_options=args.sampler_option, options=options,
                  dynamic_phases=args.dynamic_phases)


def _predict(args):
    from HCCAnalysisLib.runtime.console import output_file
    from HCCAnalysisLib.workflows import case_fields, predict_folder

    out = output_file(args.out, args.out_file, "results.tsv", args.overwrite)
    fields = case_fields(args.case, args.cases_csv, args.case_id, args.clinical)
    dicom = _dicom_outputs(args, fields)
    prediction = predict_folder(args.model, args.case, out, args.device, case_id=args.case_id, fields=fields,
                                reading=_reading(args), allow_unusual_input=args.allow_unusual_input,
                                then=dicom.write_prediction if dicom else None)
    for record in prediction.records():
        print(f"{record['lesion_name']:28s} {record['predicted_class']}")


def _saliency(args):
    from HCCAnalysisLib.engine.saliency import save_saliency_volume
    from HCCAnalysisLib.runtime.console import output_file
    from HCCAnalysisLib.workflows import case_fields

    out = output_file(args.out, args.out_file, "saliency.nrrd", args.overwrite)
    fields = case_fields(args.case, args.cases_csv, None, args.clinical)
    dicom = _dicom_outputs(args, fields)
    image = save_saliency_volume(args.model, args.case, out, device=args.device, fields=fields,
                                 reading=_reading(args))
    print(out)  # the result: the volume's path (messages go to the log)
    if dicom:
        dicom.write_saliency(image)
        print(dicom.written[0])


def _dicom_outputs(args, fields):
    """--dicom: checked before any work (the case's phases must be DICOM series; io/dicom_outputs.py)."""
    if not args.dicom:
        return None
    from HCCAnalysisLib.io.dicom_outputs import plan_dicom_outputs

    return plan_dicom_outputs(args.command, args.model, args.case, args.out, args.out_file, args.overwrite,
                              _reading(args), fields)


def _add_dicom_flag(parser, what):
    parser.add_argument("--dicom", action="store_true",
                        help=f"also write {what} into the --out folder, referring to the case's DICOM series "
                             "(its phases must be DICOM series folders)")


def _demo(args):
    from HCCAnalysisLib.demo import run_demo

    run_demo(args.out, epochs=args.epochs)
    print(Path(args.out) / "demo_summary.json")  # the result; the steps were logged


def _one_file_output(parser, name, what):
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", metavar="DIR", help=f"output folder: writes DIR/{name}")
    where.add_argument("--out-file", metavar="FILE", help=f"write the {what} to FILE instead")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")


def build_parser() -> argparse.ArgumentParser:
    from HCCAnalysisLib import __version__
    from HCCAnalysisLib.runtime.console import CommandParser, HelpFormatter, add_global_options

    parser = argparse.ArgumentParser(prog="hcc", description="HCCAnalysis: deep-learning methods for liver tumours",
                                     formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"hcc (HCCAnalysisLib) {__version__}")
    add_global_options(parser, in_subcommand=False)
    # CommandParser: every subcommand (also those registered below by other modules) shows its
    # defaults in --help and accepts the global options after its name.
    sub = parser.add_subparsers(dest="command", parser_class=CommandParser, metavar="COMMAND")
    tasks = sub.add_parser("tasks", help="list the tasks, or describe one")
    tasks.add_argument("task", nargs="?", default=None, metavar="TASK",
                       help="describe this task: phases, label column and classes, clinical columns with units, "
                            "input size, pretraining")
    tasks.add_argument("--json", action="store_true", help="machine-readable: every task's card (or TASK's) as JSON")
    tasks.set_defaults(func=_tasks)

    train = sub.add_parser("train", help="train a model package on a cohort")
    _common_training(train)
    add_case_reading_arguments(train)
    train.add_argument("--out", required=True, help="model package folder to write")
    train.add_argument("--overwrite", action="store_true", help="replace an existing model package")
    train.add_argument("--resume", action="store_true",
                       help="continue an interrupted training from its last epoch's checkpoint (OUT.partial/)")
    train.add_argument("--val-share", type=float, default=None, metavar="F",
                       help="hold this share of the patients out of training (seeded) and record its loss, "
                            "accuracy and AUC after every epoch")
    _add_loader_options(train)
    train.set_defaults(func=_train)

    evaluate = sub.add_parser("evaluate", help="patient-level cross-validation, or a model on an external cohort")
    _common_training(evaluate, task_required=False)
    add_case_reading_arguments(evaluate)
    evaluate.add_argument("--folds", type=int, default=5, help="K (= number of patients: leave-one-patient-out)")
    evaluate.add_argument("--repeats", type=int, default=1)
    evaluate.add_argument("--out", required=True,
                          help="evaluation folder to write; rerunning the same command resumes an unfinished one")
    evaluate.add_argument("--overwrite", action="store_true",
                          help="start afresh in a folder holding a finished evaluation or other files")
    evaluate.add_argument("--model", default=None, metavar="MODEL_DIR",
                          help="score this trained model package on --cohort as an external test cohort (no "
                               "training; Zhen 2020's protocol); --task and the training options are then not used")
    evaluate.add_argument("--tta", action="store_true",
                          help="test-time augmentation: score every test sample in its six views (rotations, "
                               "flips) and average per lesion, as Jia 2019 scores an augmented test set")
    evaluate.add_argument("--epoch-curve", action="store_true",
                          help="score the test fold after every epoch (accuracy per epoch, Jia 2019 Fig. 7); "
                               "one more forward pass per epoch")
    evaluate.add_argument("--dynamic-phases", default="", metavar="S0,S1,...",
                          help="also compute Jia 2019's time-signal intensity curve over these dynamic phases "
                               "for every lesion and background ROI (tsic.tsv; plotted by `hcc report`)")
    _add_loader_options(evaluate)
    from HCCAnalysisLib.data.intensity_profile import add_unusual_input_argument

    add_unusual_input_argument(evaluate)  # with --model: the external cohort's cases, checked against its card
    evaluate.set_defaults(func=_evaluate)

    predict = sub.add_parser("predict", help="run a model package on one case folder")
    predict.add_argument("--model", required=True, help="model package folder")
    predict.add_argument("--case", required=True, help="case folder (its phases and segmentation)")
    _one_file_output(predict, "results.tsv", "results TSV")
    predict.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    predict.add_argument("--cases-csv", default=None,
                         help="a cases.csv whose row for this case (by --case-id or the folder name) gives "
                              "its clinical values")
    predict.add_argument("--case-id", default=None, help="the case's id (default: the folder name)")
    predict.add_argument("--clinical", nargs="*", default=[], metavar="COLUMN=VALUE",
                         help="clinical values for tasks that use them, e.g. age=63 afp=12.5")
    add_case_reading_arguments(predict)
    from HCCAnalysisLib.data.intensity_profile import add_unusual_input_argument

    add_unusual_input_argument(predict)  # a case far outside the card's input profile: warned, not refused
    _add_dicom_flag(predict, "results_sr.dcm (DICOM SR, TID 1500) and for Liang 2018 label_map_seg.dcm (DICOM SEG)")
    predict.set_defaults(func=_predict)

    saliency = sub.add_parser("saliency", help="saliency map of a model on one case, as a volume file")
    saliency.add_argument("--model", required=True, help="model package folder")
    saliency.add_argument("--case", required=True, help="case folder (its phases and segmentation)")
    _one_file_output(saliency, "saliency.nrrd", "volume file (.nrrd, .nii.gz, .mha)")
    saliency.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    saliency.add_argument("--cases-csv", default=None, help="cases.csv with the case's clinical values")
    saliency.add_argument("--clinical", nargs="*", default=[], metavar="COLUMN=VALUE",
                          help="clinical values for tasks that use them, e.g. age=63 afp=12.5")
    add_case_reading_arguments(saliency)
    _add_dicom_flag(saliency, "saliency_seg.dcm (DICOM SEG, fractional)")
    saliency.set_defaults(func=_saliency)

    demo = sub.add_parser("demo", help="the end-to-end demo on the bundled sample data")
    demo.add_argument("--out", default="out/demo", help="folder for the demo's outputs")
    demo.add_argument("--epochs", type=int, default=None, help="training epochs (the demo's default)")
    demo.set_defaults(func=_demo)

    from HCCAnalysisLib.batch import add_batch_parser
    from HCCAnalysisLib.models.command import add_models_parser
    from HCCAnalysisLib.panel.job_command import add_job_parser
    from HCCAnalysisLib.report.command import add_report_parser

    add_batch_parser(sub)
    add_models_parser(sub)
    add_job_parser(sub)
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
    """`hcc ARGV`: the exit status (0 done, 2 bad input, 3 some batch cases failed, 130 / 143 stopped)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # a bare `hcc`: the help, as --help gives it (exit status 0)
        parser.print_help()
        return 0
    try:
        from HCCAnalysisLib.runtime.console import start

        start(args)  # logging, then the thread policy: before any command imports torch
    except HCCInputError as err:
        print(f"hcc {args.command}: error: {err}", file=sys.stderr)
        return 2
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
