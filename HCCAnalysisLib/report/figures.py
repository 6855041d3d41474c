"""Report figures as PNG bytes: ROC curves, confusion matrices, t-SNE of last hidden features.

Uses matplotlib's object API with the Agg canvas (no pyplot state, no display), so it
runs the same in a batch job, the CLI and inside Slicer.
"""

from __future__ import annotations

import io
from typing import Sequence, Tuple

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from sklearn.manifold import TSNE
from sklearn.metrics import roc_curve
from threadpoolctl import threadpool_limits

# Above this many points t-SNE gets slow on a laptop CPU; a fixed random subset is drawn.
TSNE_MAX_POINTS = 3000


def _png(figure):
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return buffer.getvalue()


def roc_figure(title: str, curves: Sequence[Tuple[str, np.ndarray, np.ndarray]],
               points: Sequence[Tuple[str, float, float]] = ()) -> bytes:
    """ROC curves; `curves` is a list of (legend label, 0/1 truth, scores); `points` are
    operating points (legend label, 1 - specificity, sensitivity), e.g. readers (Zhen Fig. 2)."""
    figure = Figure(figsize=(5.2, 5.0))
    axes = figure.add_subplot()
    for label, truth, scores in curves:
        fpr, tpr, _ = roc_curve(truth, scores)
        axes.plot(fpr, tpr, lw=1.6, label=label)
    markers = "osD^v<>p*h"
    for n, (label, fpr, tpr) in enumerate(points):
        axes.plot([fpr], [tpr], ls="none", marker=markers[n % len(markers)], ms=7, mfc="none", mew=1.5,
                  label=label)
    axes.plot([0, 1], [0, 1], ls="--", lw=0.8, color="grey")
    axes.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="1 - specificity", ylabel="sensitivity",
             title=title)
    axes.set_aspect("equal")
    axes.legend(loc="lower right", fontsize=7)
    return _png(figure)


def confusion_figure(title: str, classes: Sequence[str], counts: np.ndarray, normalised: np.ndarray) -> bytes:
    """Counts and row-normalised confusion matrices side by side (rows = truth)."""
    counts, normalised = np.asarray(counts), np.asarray(normalised, dtype=float)
    size = max(3.2, 0.7 * len(classes) + 1.8)
    figure = Figure(figsize=(2 * size + 0.6, size))
    for column, (matrix, what, fmt) in enumerate(((counts, "counts", "{:d}"),
                                                  (normalised, "row-normalised", "{:.2f}"))):
        axes = figure.add_subplot(1, 2, column + 1)
        shown = np.nan_to_num(normalised)  # colour by row share in both panels
        axes.imshow(shown, cmap="Blues", vmin=0, vmax=1)
        for i in range(len(classes)):
            for j in range(len(classes)):
                value = matrix[i, j]
                text = "n/a" if (what != "counts" and np.isnan(value)) else fmt.format(
                    int(value) if what == "counts" else value)
                axes.text(j, i, text, ha="center", va="center", fontsize=8,
                          color="white" if shown[i, j] > 0.6 else "black")
        axes.set_xticks(range(len(classes)), classes, rotation=45, ha="right", fontsize=8)
        # class names once, on the left panel, so the right one has room
        axes.set_yticks(range(len(classes)), classes if column == 0 else [], fontsize=8)
        axes.set(xlabel="predicted", ylabel="true" if column == 0 else "",
                 title=f"{title} ({what})")
    return _png(figure)


# Zhen et al. 2020 ("Statistical Analysis"): Barnes-Hut t-SNE of the last hidden layer with
# theta 0.5, perplexity 50 and 10,000 iterations. sklearn's Barnes-Hut angle is that theta; it
# stops early when 300 iterations bring no progress. Perplexity must stay below the number of
# points: small sets use (n - 1) / 3 instead, and the caption says which value was used.
TSNE_SETTINGS = {"method": "barnes_hut", "angle": 0.5, "perplexity": 50.0, "max_iter": 10000}


def tsne_points(embeddings: np.ndarray, seed: int = 0) -> Tuple[np.ndarray | None, np.ndarray, dict]:
    """2-D t-SNE of the embeddings (rows) with Zhen's settings; (points, used rows, settings used)."""
    embeddings = np.asarray(embeddings, dtype=float)
    rows = np.arange(len(embeddings))
    if len(rows) > TSNE_MAX_POINTS:
        rows = np.sort(np.random.default_rng(seed).choice(rows, TSNE_MAX_POINTS, replace=False))
    data = embeddings[rows]
    settings = dict(TSNE_SETTINGS, perplexity=float(min(TSNE_SETTINGS["perplexity"], (len(data) - 1) / 3.0)))
    if len(data) < 5:
        return None, rows, settings
    # One OpenMP thread: on a busy machine t-SNE's threads spin and run ~20x slower.
    with threadpool_limits(limits=1):
        model = TSNE(n_components=2, init="pca", random_state=seed, learning_rate="auto", **settings)
        points = model.fit_transform(data)
    settings["iterations_run"] = int(model.n_iter_)
    return points, rows, settings


def _class_scatter(axes, points, labels, classes):
    """2-D points coloured by true class, one legend entry (with its count) per class present."""
    for name in classes:
        chosen = labels == name
        if chosen.any():
            axes.scatter(points[chosen, 0], points[chosen, 1], s=10, alpha=0.8,
                         label=f"{name} (n={int(chosen.sum())})")


def _band(axes, x, mean, sd, label, **style):
    """A mean curve with its +-1 SD band in the curve's colour."""
    mean, sd = np.asarray(mean, dtype=float), np.asarray(sd, dtype=float)
    line, = axes.plot(x, mean, lw=1.6, label=label, **style)
    axes.fill_between(x, mean - sd, mean + sd, color=line.get_color(), alpha=0.15, lw=0)


def tsne_figure(title: str, points: np.ndarray, labels: Sequence[str], classes: Sequence[str]) -> bytes:
    """Scatter of t-SNE points coloured by true class."""
    figure = Figure(figsize=(5.4, 5.0))
    axes = figure.add_subplot()
    labels = np.asarray(labels, dtype=object)
    _class_scatter(axes, points, labels, classes)
    axes.set(title=title, xticks=[], yticks=[])
    axes.legend(fontsize=7, markerscale=1.5)
    return _png(figure)


# False-positive rates at which each repeat's ROC is read off before averaging (Jia Fig. 8).
MEAN_ROC_GRID = np.linspace(0.0, 1.0, 101)


def mean_roc(curves: Sequence[Tuple[np.ndarray, np.ndarray]]) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vertical average of ROC curves: (grid FPR, mean TPR, SD TPR) over `curves`' (truth, scores).

    Each curve is interpolated at MEAN_ROC_GRID (TPR 0 at FPR 0, 1 at FPR 1); SD is ddof=1,
    zero for a single curve.
    """
    rows = []
    for truth, scores in curves:
        fpr, tpr, _ = roc_curve(truth, scores)
        tpr_grid = np.interp(MEAN_ROC_GRID, fpr, tpr)
        tpr_grid[0] = 0.0
        rows.append(tpr_grid)
    rows = np.array(rows)
    sd = rows.std(axis=0, ddof=1) if len(rows) > 1 else np.zeros(len(MEAN_ROC_GRID))
    return MEAN_ROC_GRID, rows.mean(axis=0), sd


def mean_roc_figure(title: str, series: Sequence[Tuple[str, Sequence[Tuple[np.ndarray, np.ndarray]]]]) -> bytes:
    """Mean ROC with a +-1 SD band over repeats, one line per entry of `series`.

    `series` is a list of (legend label, [(0/1 truth, scores) per repeat]); each repeat's own
    curve is drawn thin underneath so the spread the band summarises stays visible.
    """
    figure = Figure(figsize=(5.2, 5.0))
    axes = figure.add_subplot()
    for index, (label, curves) in enumerate(series):
        colour = f"C{index % 10}"
        for truth, scores in curves:
            fpr, tpr, _ = roc_curve(truth, scores)
            axes.plot(fpr, tpr, lw=0.6, alpha=0.35, color=colour)
        grid, mean, sd = mean_roc(curves)
        axes.fill_between(grid, np.clip(mean - sd, 0, 1), np.clip(mean + sd, 0, 1), color=colour,
                          alpha=0.2, lw=0)
        axes.plot(grid, mean, lw=1.8, color=colour, label=label)
    axes.plot([0, 1], [0, 1], ls="--", lw=0.8, color="grey")
    axes.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="1 - specificity", ylabel="sensitivity",
             title=title)
    axes.set_aspect("equal")
    if series:  # no class with both outcomes in any repeat: axes only, no empty legend
        axes.legend(loc="lower right", fontsize=7)
    return _png(figure)


def embedding_figure(title: str, points: np.ndarray, labels: Sequence[str], classes: Sequence[str],
                     axis_labels: Tuple[str, str] = ("feature 1", "feature 2")) -> bytes:
    """Scatter of 2-D points coloured by true class, with axes kept (raw features, Jia Figs. 6/10)."""
    figure = Figure(figsize=(5.4, 5.0))
    axes = figure.add_subplot()
    points = np.asarray(points, dtype=float)
    labels = np.asarray(labels, dtype=object)
    _class_scatter(axes, points, labels, classes)
    axes.set(title=title, xlabel=axis_labels[0], ylabel=axis_labels[1])
    axes.legend(fontsize=7, markerscale=1.5)
    return _png(figure)


def tsic_figure(title: str, phases: Sequence[str], curves: dict) -> bytes:
    """Mean time-signal intensity curve per class with a +-1 SD band (Jia 2019 Fig. 4);
    `curves`: class -> {"mean", "sd", "n"} over the dynamic `phases`."""
    figure = Figure(figsize=(5.6, 4.2))
    axes = figure.add_subplot()
    x = np.arange(len(phases))
    for name, curve in curves.items():
        _band(axes, x, curve["mean"], curve["sd"], f"{name} (n={curve['n']})", marker="o")
    axes.set_xticks(x, list(phases))
    axes.set(xlabel="dynamic phase", ylabel="mean signal intensity (16 x 16 ROI centre)", title=title)
    axes.legend(fontsize=7)
    return _png(figure)


def epoch_curve_figure(title: str, epochs: np.ndarray, curves: dict) -> bytes:
    """Accuracy per epoch, mean with a +-1 SD band over repeats (Jia 2019 Fig. 7); `curves`:
    label -> (mean, sd) arrays over `epochs`."""
    figure = Figure(figsize=(5.6, 4.2))
    axes = figure.add_subplot()
    for label, (mean, sd) in curves.items():
        _band(axes, epochs, mean, sd, label)
    axes.set(xlabel="epoch", ylabel="accuracy", ylim=(0, 1.02), title=title)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    axes.legend(fontsize=7, loc="lower right")
    return _png(figure)
