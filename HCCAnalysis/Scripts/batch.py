"""Batch-predict a cohort through MRML nodes, the way the HCCAnalysis panel reads its inputs.

In Slicer (no window)::

    Slicer --no-main-window --python-script <module dir>/Scripts/batch.py -- \\
        --cohort DIR --task T --model M --out DIR [--device auto|cpu|cuda]

With plain Python and the `slicer-core` wheel (same engine, same MRML classes)::

    python HCCAnalysis/Scripts/batch.py --cohort DIR --task T --model M --out DIR

Each case folder is loaded into volume and segmentation nodes (label-map lesions split into
connected components, as `hcc batch` does), turned into a Case by `slicer_io.case_from_nodes`
and predicted; the nodes are removed again before the next case. Output, resume and error
handling are those of `HCCAnalysisLib.batch` (out/results.tsv, out/errors.tsv, out/cases/).

The script always ends the application with an exit status (Slicer started with
--python-script otherwise keeps running):
  0  every case done (or --help)
  3  some cases failed (see out/errors.tsv); re-running the same command retries them
  2  bad input (options, cohort, model, output folder) or missing dependencies; nothing was run
  1  unexpected internal error (traceback on stderr)
  130 interrupted (Ctrl-C); finished cases are kept and the same command resumes
Dependencies (torch and Resources/requirements.txt) are checked before any work; the script
never installs them: open the HCCAnalysis module once in Slicer and press Apply (it installs
them), or `pip install` them into this Python.
"""

import importlib.util
import sys
import traceback
from pathlib import Path

EXIT_DONE, EXIT_INTERNAL, EXIT_BAD_INPUT, EXIT_CASES_FAILED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
HERE = Path(__file__).resolve().parent
# Source tree and installed extension alike: <module dir>/Resources/requirements.txt.
REQUIREMENTS = HERE.parent / "Resources" / "requirements.txt"


def _make_library_importable() -> None:
    # Source tree: <repo>/HCCAnalysis/Scripts/batch.py; installed extension: the library sits
    # beside the module in qt-scripted-modules/, which Slicer already has on sys.path.
    for candidate in (HERE.parent.parent, HERE.parent):
        if (candidate / "HCCAnalysisLib").is_dir() and str(candidate) not in sys.path:
            sys.path.insert(0, str(candidate))


def _in_slicer() -> bool:
    try:
        import slicer
    except ImportError:  # plain Python without slicer-core
        return False
    return hasattr(slicer, "app")


def missing_dependencies(requirements: Path = REQUIREMENTS) -> list:
    """What this Python lacks to run a batch (empty when all is there), checked without pip or
    network, so that a batch with a missing package stops before it writes anything."""
    _make_library_importable()
    from HCCAnalysisLib.panel.dependencies import missing_requirements

    missing = []
    if importlib.util.find_spec("torch") is None:
        missing.append("torch (in Slicer: install the PyTorch extension)" if _in_slicer() else "torch")
    if not Path(requirements).is_file():
        return missing + [f"the requirements list {requirements} (the module is incompletely installed)"]
    return missing + missing_requirements(requirements)


def mrml_case_processor(model, device, scene):
    """process_case for the batch engine: files -> MRML nodes -> Case -> Prediction.

    Every node added for a case is removed afterwards, so memory stays flat over a cohort
    and a scene shown in Slicer keeps only what it had.
    """
    from HCCAnalysisLib.engine.infer import predict_case
    from HCCAnalysisLib.slicer_io.files import load_case_into_scene
    from HCCAnalysisLib.slicer_io.nodes import case_from_nodes

    def process(record):
        before = {scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())}
        try:
            volumes, segmentation = load_case_into_scene(scene, record.folder, model.card["phases"])
            case = case_from_nodes(volumes, segmentation, case_id=record.case_id, patient_id=record.patient_id,
                                   fields=record.fields)
            return predict_case(model, case, device=device)
        finally:
            added = [scene.GetNthNode(i) for i in range(scene.GetNumberOfNodes())]
            for node in reversed([n for n in added if n.GetID() not in before]):
                scene.RemoveNode(node)

    return process


def _parser():
    import argparse

    from HCCAnalysisLib.batch import add_batch_arguments

    return add_batch_arguments(argparse.ArgumentParser(prog="Scripts/batch.py", description=__doc__,
                                                       formatter_class=argparse.RawDescriptionHelpFormatter))


def main(argv=None) -> int:
    """Parse, check dependencies, run the cohort; returns the exit status. Raises only what
    `run` turns into a status (bad input, interruption, internal errors)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--"]:  # Slicer passes the separator through
        argv = argv[1:]
    _make_library_importable()
    args = _parser().parse_args(argv)  # SystemExit(2) on a bad option, SystemExit(0) on --help
    missing = missing_dependencies()
    if missing:
        print("error: missing dependencies: " + "; ".join(missing) + "\n  install them first: open the "
              "HCCAnalysis module in Slicer and press Apply once (it installs them), or `pip install` them "
              "into this Python; nothing was run", file=sys.stderr, flush=True)
        return EXIT_BAD_INPUT

    from HCCAnalysisLib.batch import BatchProgress, batch_settings, load_batch_inputs, print_progress, run_batch
    from HCCAnalysisLib.batch import summarize
    from HCCAnalysisLib.slicer_io.files import standalone_scene

    progress = None if args.quiet else print_progress
    cohort, model, choice = load_batch_inputs(args.cohort, args.task, args.model, args.device)
    if progress:
        progress(BatchProgress(0, len(cohort.records), "-", "started", f"{model.name} (MRML) on {choice.description}"))
    result = run_batch(cohort.records, mrml_case_processor(model, choice.device, standalone_scene()), args.out,
                       settings=batch_settings(args.cohort, model.card["task"], model), progress=progress,
                       retry_failed=args.retry_failed)
    return summarize(result)


def run(argv=None) -> int:
    """`main` that never raises: every outcome becomes an exit status and, unless it is 0,
    a message on stderr. The caller must be able to leave Slicer whatever happened."""
    try:
        return main(argv)
    except SystemExit as stop:  # argparse: usage errors (2, message already printed) and --help (0)
        code = stop.code
        return code if isinstance(code, int) else (EXIT_DONE if code is None else EXIT_BAD_INPUT)
    except KeyboardInterrupt:
        print("interrupted: finished cases are kept; run the same command again to resume",
              file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    except Exception as err:  # noqa: BLE001 (turned into a status; Slicer must still exit)
        errors = sys.modules.get("HCCAnalysisLib.errors")  # not imported here: it may be what failed
        if (errors is not None and isinstance(err, errors.HCCInputError)) or isinstance(err, OSError):
            # HCCInputError names the bad input; OSError: a folder given is unreadable,
            # unwritable or not a folder.
            print(f"error: {err}", file=sys.stderr, flush=True)
            return EXIT_BAD_INPUT
        if isinstance(err, ImportError) and (err.name or "").split(".")[0] == "HCCAnalysisLib":
            print(f"error: the HCCAnalysisLib library is not beside this script ({err}); reinstall the "
                  "HCCAnalysis extension", file=sys.stderr, flush=True)
            return EXIT_BAD_INPUT
        print("internal error (please report it with this traceback):\n" + traceback.format_exc(),
              file=sys.stderr, flush=True)
        return EXIT_INTERNAL


def leave(status: int) -> None:
    """End the process with `status`: through the application inside Slicer (a script started
    with --python-script must call slicer.util.exit, or Slicer never exits), sys.exit outside."""
    sys.stdout.flush()
    sys.stderr.flush()
    if _in_slicer():
        try:
            import slicer.util

            slicer.util.exit(status)
            return
        except Exception:  # noqa: BLE001 (Slicer turns SystemExit into its exit status too)
            traceback.print_exc()
    sys.exit(status)


if __name__ == "__main__":
    leave(run())
