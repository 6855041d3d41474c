"""roc.png of an evaluation folder, drawn by the report's ROC figures (report/figures.py).

One implementation of ROC drawing serves `hcc evaluate` and `hcc report`: with several
repeats the figure is the mean ROC with its SD band over repeats (Jia Fig. 8), with one
repeat that repeat's curve; one line per positive class (one-vs-rest).
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Mapping, Sequence, Tuple

import numpy as np

from HCCAnalysisLib.atomic import write_bytes_atomic
from HCCAnalysisLib.errors import HCCInputError
from HCCAnalysisLib.report import figures
from HCCAnalysisLib.stats.metrics import repeat_order


def roc_series(rows: Sequence[Mapping], classes: Sequence[str]) -> List[Tuple[str, list]]:
    """[(legend label, [(0/1 truth, scores) per repeat])] per positive class with both outcomes.

    Binary tasks draw the second class only; a repeat where a class is all or none is skipped.
    The label gives the AUC of each repeat's pooled out-of-fold predictions as mean +- SD.
    """
    from sklearn.metrics import roc_auc_score

    classes = [str(c) for c in classes]
    positives = classes[1:] if len(classes) == 2 else classes
    repeats = sorted({str(r["repeat"]) for r in rows}, key=repeat_order)
    series = []
    for name in positives:
        curves = []
        for repeat in repeats:
            subset = [r for r in rows if str(r["repeat"]) == repeat]
            truth = np.array([str(r["label"]) == name for r in subset], dtype=int)
            if truth.all() or not truth.any():
                continue
            try:
                scores = np.array([float(r[f"prob_{name}"]) for r in subset])
            except (KeyError, TypeError, ValueError) as err:
                raise HCCInputError(f"no numeric prob_{name} in the predictions ({err})", source="roc")
            curves.append((truth, scores))
        if not curves:
            continue
        aucs = [roc_auc_score(t, s) for t, s in curves]
        label = (f"{name}: AUC {np.mean(aucs):.3f} +- {np.std(aucs, ddof=1):.3f} over {len(aucs)} repeats"
                 if len(aucs) > 1 else f"{name}: AUC {aucs[0]:.3f}")
        series.append((label, curves))
    return series


def save_roc_figure(rows: Sequence[Mapping], classes: Sequence[str], path: str | Path, title: str = "") -> Path:
    """Write roc.png from evaluation rows ('repeat', 'label', 'prob_<class>'); returns the path."""
    series = roc_series(rows, classes)
    n_repeats = len({str(r["repeat"]) for r in rows})
    heading = title or "ROC"
    if n_repeats > 1:
        heading += f" (mean +- SD over {n_repeats} repeats)"
    png = figures.mean_roc_figure(heading, series)
    write_bytes_atomic(Path(path), png)
    return Path(path)
