"""Early recurrence of HCC from Wang 2020's clinical vector on real data (asaur hepatoCellular).

Data: 227 resected HCC patients of Li et al. 2014 (asaur `hepatoCellular`, CC0). Label:
early recurrence (ER) = recurrence within 12 months of resection (Wang 2020's definition);
no patient was censored before 12 months, so all 227 are labelled.
Features: the bits of Wang's 9-element vector that the table gives
(`clinical.schemas.ASAUR_WANG2020_BITS`): age >= 60 exactly; tumour size, vascular invasion
and AFP as the table's own two-level codes (proxies); N/L ratio, bilirubin and BCLC 0/A/B/C
are not in the table and are left out, not guessed.
Models, on the same 10 stratified patient-level folds: Wang's clinical model (random forest)
and fusion D's clinical pathway (FC + ReLU + FC head) trained alone.

Usage:  python training/clinical_recurrence_baseline.py [--data CSV] [--write-docs] [--out DIR]
"""

import argparse
import csv
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from HCCAnalysisLib.methods.wang2020.baselines import SampleTable, clinical_baseline  # noqa: E402
from HCCAnalysisLib.methods.wang2020.baselines_pathway import clinical_pathway_cv  # noqa: E402
from HCCAnalysisLib.clinical.schemas import (ASAUR_WANG2020_BITS, WANG2020_SCHEMA,  # noqa: E402
                                             asaur_derivable_columns, asaur_early_recurrence,
                                             wang2020_vector_from_asaur)
from HCCAnalysisLib.errors import HCCInputError  # noqa: E402
from HCCAnalysisLib.stats.delong import delong_ci, delong_test  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "clinical" / "asaur_hepatoCellular.csv"
DOC = REPO / "docs" / "methods-fusion.md"
BEGIN, END = "<!-- clinical-recurrence:begin -->", "<!-- clinical-recurrence:end -->"
CLASSES = ["no_ER", "ER"]


def load_table(csv_path):
    """SampleTable of the derivable Wang bits with ER labels, one row per patient."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise HCCInputError("asaur table not found", source=csv_path)
    columns = asaur_derivable_columns()
    names = [WANG2020_SCHEMA.feature_names()[i] for i in columns]
    features, labels, ids = [], [], []
    with open(csv_path, newline="") as handle:
        for line, row in enumerate(csv.DictReader(handle), start=2):
            source = f"{csv_path.name} line {line}"
            label = asaur_early_recurrence(row, source=source)
            if label is None:
                continue  # censored before 12 months: ER status unknown
            vector = wang2020_vector_from_asaur(row, source=source)
            features.append(vector[columns])
            labels.append(CLASSES[label])
            ids.append(f"asaur-{row['Number']}")
    return SampleTable(np.asarray(features), labels, ids, ids, feature_names=names,
                       kind="patient", source=str(csv_path))


def patient_folds(table, n_folds=10, seed=0):
    """Stratified patient-level folds as (train patient ids, test patient ids) pairs."""
    from sklearn.model_selection import StratifiedGroupKFold

    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    patients = np.asarray(table.patient_ids)
    return [(sorted(set(patients[tr])), sorted(set(patients[te])))
            for tr, te in splitter.split(table.features, table.labels, groups=patients)]


def summarise(rows):
    """Per-fold AUC and accuracy (mean, SD as in Wang's tables) and the pooled AUC."""
    from sklearn.metrics import roc_auc_score

    y = np.asarray([r["label"] == "ER" for r in rows], dtype=int)
    p = np.asarray([r["prob_ER"] for r in rows])
    folds = np.asarray([r["fold"] for r in rows])
    aucs, accs = [], []
    for f in np.unique(folds):
        sel = folds == f
        accs.append(float(np.mean([r["predicted_class"] == r["label"]
                                   for r, s in zip(rows, sel) if s])))
        if len(np.unique(y[sel])) == 2:
            aucs.append(float(roc_auc_score(y[sel], p[sel])))
    _, low, high = delong_ci(y, p)
    return {"n": len(rows), "pooled_auc": float(roc_auc_score(y, p)), "ci_low": low,
            "ci_high": high,
            "auc_mean": float(np.mean(aucs)), "auc_sd": float(np.std(aucs, ddof=1)),
            "acc_mean": float(np.mean(accs)), "acc_sd": float(np.std(accs, ddof=1))}


def run(csv_path=DEFAULT_DATA, n_folds=10, seed=0, n_estimators=500, epochs=50):
    table = load_table(csv_path)
    folds = patient_folds(table, n_folds, seed)
    rf = clinical_baseline(table, folds, CLASSES, seed=seed, n_estimators=n_estimators)
    net = clinical_pathway_cv(table, folds, CLASSES, variant="d", seed=seed, epochs=epochs)
    y = [r["label"] == "ER" for r in rf.rows]
    if [r["patient_id"] for r in rf.rows] != [r["patient_id"] for r in net.rows]:
        raise RuntimeError("the two models' rows are not in the same patient order")
    test = delong_test(y, [r["prob_ER"] for r in rf.rows], [r["prob_ER"] for r in net.rows])
    return {"table": table, "folds": folds, "rf": rf, "pathway": net, "delong": test,
            "summary": {"clinical RF": summarise(rf.rows),
                        "fusion D clinical pathway alone": summarise(net.rows)}}


def markdown(result, n_folds, seed):
    table = result["table"]
    n_er = sum(label == "ER" for label in table.labels)
    lines = [BEGIN, "",
             f"Produced by `training/clinical_recurrence_baseline.py` (seed {seed}, {n_folds} "
             f"stratified patient-level folds). Data: asaur `hepatoCellular` (Li et al. 2014), "
             f"{table.features.shape[0]} patients, {n_er} with early recurrence (<= 12 months). "
             f"Features ({table.features.shape[1]} of Wang's 9 bits): "
             + ", ".join(f"`{n}`" for n in table.feature_names) + ".", "",
             "| model | AUC (fold mean +- SD) | pooled AUC (95% DeLong CI) | accuracy (fold mean +- SD) |",
             "|---|---|---|---|"]
    for name, s in result["summary"].items():
        lines.append(f"| {name} | {s['auc_mean']:.3f} +- {s['auc_sd']:.3f} | "
                     f"{s['pooled_auc']:.3f} ({s['ci_low']:.3f}-{s['ci_high']:.3f}) | "
                     f"{s['acc_mean']:.3f} +- {s['acc_sd']:.3f} |")
    test = result["delong"]
    lines += ["", f"DeLong test of the pooled AUCs (same patients): z = {test.z:.2f}, "
                  f"p = {test.p_value:.3f}."]
    lines += ["", "Bits of the vector and where they come from in this table:", ""]
    lines += [f"- `{n}`: {kind}: {why}" for n, kind, why in ASAUR_WANG2020_BITS]
    lines += ["", "Wang 2020 reports AUC 0.753 +- 0.13 for its clinical RF on all 9 bits of its "
                  "own cohort; this table lacks N/L ratio, bilirubin and the BCLC stages, so the "
                  "numbers are not comparable, only a check that the branch learns.", "", END]
    return "\n".join(lines)


def write_docs(text, doc=DOC):
    """Replace the marked block in docs/methods-fusion.md (atomically)."""
    current = doc.read_text() if doc.exists() else ""
    if BEGIN in current and END in current:
        new = current[:current.index(BEGIN)] + text + current[current.index(END) + len(END):]
    else:
        new = current.rstrip() + "\n\n" + text + "\n"
    fd, tmp = tempfile.mkstemp(dir=doc.parent, suffix=".md")
    with os.fdopen(fd, "w") as handle:
        handle.write(new)
    os.replace(tmp, doc)


def write_rows(rows, path):
    """predictions.tsv-style rows (atomic write)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tsv")
    with os.fdopen(fd, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), delimiter="\t")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--folds", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write-docs", action="store_true", help="update docs/methods-fusion.md")
    parser.add_argument("--out", help="folder for predictions_<model>.tsv")
    args = parser.parse_args(argv)
    result = run(args.data, args.folds, args.seed)
    text = markdown(result, args.folds, args.seed)
    print(text)
    if args.write_docs:
        write_docs(text)
    if args.out:
        write_rows(result["rf"].rows, Path(args.out) / "predictions_clinical_rf.tsv")
        write_rows(result["pathway"].rows, Path(args.out) / "predictions_fusion_d_clinical.tsv")


if __name__ == "__main__":
    main()
