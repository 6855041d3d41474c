"""ROC figure of out-of-fold predictions: one curve per repeat and class (one-vs-rest)."""

import matplotlib

matplotlib.use("Agg")  # no screen needed: figures are files
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import roc_auc_score, roc_curve  # noqa: E402


def save_roc_figure(rows, classes, path, title=""):
    """rows: evaluation records with 'repeat', 'label' and 'prob_<class>' keys."""
    positives = classes[1:] if len(classes) == 2 else classes
    figure, axis = plt.subplots(figsize=(5, 5), dpi=100)
    for repeat in sorted({int(r["repeat"]) for r in rows}):
        subset = [r for r in rows if int(r["repeat"]) == repeat]
        for name in positives:
            truth = np.array([r["label"] == name for r in subset])
            if truth.all() or not truth.any():
                continue
            scores = np.array([float(r[f"prob_{name}"]) for r in subset])
            fpr, tpr, _ = roc_curve(truth, scores)
            axis.plot(fpr, tpr, lw=1.5, label=f"{name} r{repeat + 1}: AUC {roc_auc_score(truth, scores):.3f}")
    axis.plot([0, 1], [0, 1], ls="--", color="grey", lw=1)
    axis.set(xlabel="1 - specificity", ylabel="sensitivity", title=title or "ROC", xlim=(0, 1), ylim=(0, 1.02))
    if axis.get_legend_handles_labels()[0]:
        axis.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path
