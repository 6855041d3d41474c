"""Patient-level cross-validation: folds, repeats, per-fold metrics and the evaluation folder
(`predictions.tsv`, `metrics.json`, `embeddings.npz`, `roc.png`) that `hcc report` reads."""

import json
from pathlib import Path

import numpy as np
from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

from HCCAnalysisLib.errors import HCCInputError
from HCCAnalysisLib.engine.infer import aggregate, make_samples, run_net
from HCCAnalysisLib.stats.metrics import fold_metrics, summarise
from HCCAnalysisLib.models.package import library_versions
from HCCAnalysisLib.data.prediction import write_records_tsv
from HCCAnalysisLib.engine.augment import augment_samples
from HCCAnalysisLib.engine.train import fit


def patient_folds(records, k, seed, labels=None):
    """K folds over cases with no patient on both sides; stratified by case label when given.

    k equal to the number of patients gives leave-one-patient-out.
    """
    patients = [r.patient_id for r in records]
    n_patients = len(set(patients))
    if k < 2 or k > n_patients:
        raise HCCInputError(f"{k} folds asked for {n_patients} patients", hint="use 2 <= folds <= patients")
    index = np.arange(len(records))
    if labels is not None and k < n_patients:
        splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
        splits = splitter.split(index, labels, groups=patients)
    else:
        splits = GroupKFold(n_splits=k, shuffle=True, random_state=seed).split(index, groups=patients)
    return [([records[i] for i in train], [records[i] for i in test]) for train, test in splits]


def load_samples(task, cohort, phases, seed, log=print, test_side=False):
    """Every case of the cohort loaded once and sampled: case_id -> training samples, and with
    `test_side` also case_id -> samples as prediction makes them (e.g. Liang's pace 1)."""
    train, test = {}, {}
    for record in cohort.records:
        case = record.load(phases, task)
        train[record.case_id] = make_samples(task, case, phases, seed=seed, training=True, fields=record.fields)
        if test_side:
            test[record.case_id] = make_samples(task, case, phases, seed=seed, training=False, fields=record.fields)
    log(f"{len(cohort.records)} cases, {sum(map(len, train.values()))} training samples")
    return (train, test) if test_side else train


def training_set(task, records, samples_by_case):
    samples = [s for r in records for s in samples_by_case[r.case_id]]
    return augment_samples(samples) if task.augment else samples


def cross_validate(task, cohort, phases, out_dir, folds=5, repeats=1, seed=0, device=None, pretrained_state=None,
                   epochs=None, log=print):
    """Repeated patient-level K-fold CV; writes the evaluation folder and returns metrics.json's dict."""
    import torch

    device = device or torch.device("cpu")
    out_dir = Path(out_dir)
    samples_by_case, test_samples_by_case = load_samples(task, cohort, phases, seed, log, test_side=True)
    labels = cohort.column(task.label_column) if task.label_column else None
    classes = list(task.classes)
    rows, fold_results, embeddings = [], [], []
    for repeat in range(repeats):
        for fold, (train, test) in enumerate(patient_folds(cohort.records, folds, seed + repeat, labels)):
            log(f"repeat {repeat + 1}/{repeats} fold {fold + 1}/{folds}: {len(train)} training cases, "
                f"test {[r.case_id for r in test]}")
            net, _ = fit(task, training_set(task, train, samples_by_case), device, seed=seed + repeat,
                         epochs=epochs, pretrained_state=pretrained_state, log=log)
            test_samples = [s for r in test for s in test_samples_by_case[r.case_id]]
            probs, embedded = run_net(net, test_samples, torch.device("cpu"), with_embeddings=True)
            fold_rows = aggregate(test_samples, probs, classes, votes=task.vote_extras)
            truth = {(s.case_id, s.lesion_id, s.kind): classes[s.target] for s in test_samples}
            records = []
            for row in fold_rows:
                record = {"repeat": repeat, "fold": fold, "case_id": row.case_id, "patient_id": row.patient_id,
                          "lesion_id": row.lesion_id, "kind": row.kind,
                          "label": truth[(row.case_id, row.lesion_id, row.kind)],
                          "predicted_class": row.predicted_class}
                record.update({f"prob_{c}": row.probabilities[c] for c in classes})
                records.append(record)
            if embedded is not None:
                keys = [(s.case_id, s.lesion_id, s.kind) for s in test_samples]
                for row in fold_rows:
                    mask = [k == (row.case_id, row.lesion_id, row.kind) for k in keys]
                    embeddings.append(embedded[np.array(mask)].mean(axis=0))
            y_true = [classes.index(r["label"]) for r in records]
            y_prob = np.array([[r[f"prob_{c}"] for c in classes] for r in records])
            result = {"repeat": repeat, "fold": fold, "n_test": len(records),
                      "test_patients": sorted({r.patient_id for r in test})}
            result.update(fold_metrics(y_true, y_prob, classes))
            fold_results.append(result)
            rows += records
    columns = ["repeat", "fold", "case_id", "patient_id", "lesion_id", "kind", "label", "predicted_class"] + \
        [f"prob_{c}" for c in classes]
    out_dir.mkdir(parents=True, exist_ok=True)
    write_records_tsv(out_dir / "predictions.tsv", rows, columns)
    if embeddings:
        np.savez(out_dir / "embeddings.npz", embeddings=np.array(embeddings, dtype=np.float32),
                 row=np.arange(len(embeddings)))
    metrics = {"task": task.name, "classes": classes, "phases": list(phases), "folds": fold_results,
               "summary": summarise(fold_results), "versions": library_versions(), "seed": seed,
               "config": {"folds": folds, "repeats": repeats, "epochs": epochs or task.training.get("epochs"),
                          "pretrained": pretrained_state is not None, "cohort": str(cohort.folder)}}
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    from HCCAnalysisLib.report.roc_figure import save_roc_figure

    save_roc_figure(rows, classes, out_dir / "roc.png", title=task.name)
    return metrics
