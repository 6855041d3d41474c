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
Exit status: 0 all cases done, 3 some cases failed, 2 bad input.
"""

import sys
from pathlib import Path


def _make_library_importable():
    # Source tree: <repo>/HCCAnalysis/Scripts/batch.py; installed extension: the library sits
    # beside the module in qt-scripted-modules/, which Slicer already has on sys.path.
    here = Path(__file__).resolve().parent
    for candidate in (here.parent.parent, here.parent):
        if (candidate / "HCCAnalysisLib").is_dir() and str(candidate) not in sys.path:
            sys.path.insert(0, str(candidate))


_make_library_importable()

from HCCAnalysisLib.batch import (BatchProgress, add_batch_arguments, batch_settings, load_batch_inputs,  # noqa: E402
                                  print_progress, run_batch, summarize)
from HCCAnalysisLib.errors import HCCInputError  # noqa: E402
from HCCAnalysisLib.slicer_io.files import standalone_scene  # noqa: E402


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


def main(argv=None):
    import argparse

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--"]:  # Slicer passes the separator through
        argv = argv[1:]
    parser = add_batch_arguments(argparse.ArgumentParser(prog="Scripts/batch.py", description=__doc__,
                                                         formatter_class=argparse.RawDescriptionHelpFormatter))
    args = parser.parse_args(argv)
    progress = None if args.quiet else print_progress
    try:
        cohort, model, choice = load_batch_inputs(args.cohort, args.task, args.model, args.device)
        if progress:
            note = f"{model.name} (MRML) on {choice.description}"
            progress(BatchProgress(0, len(cohort.records), "-", "started", note))
        result = run_batch(cohort.records, mrml_case_processor(model, choice.device, standalone_scene()), args.out,
                           settings=batch_settings(args.cohort, model.card["task"], model), progress=progress,
                           retry_failed=args.retry_failed)
    except HCCInputError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        return 2
    return summarize(result)


if __name__ == "__main__":
    status = main()
    import slicer

    if hasattr(slicer, "app"):  # inside Slicer: leave the application with the status
        slicer.util.exit(status)
    else:
        sys.exit(status)
