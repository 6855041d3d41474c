"""Render the report as one self-contained HTML page (figures embedded as base64 PNG).

Tables follow seed 001 (Zhen et al. 2020): Tables 1-3 put each class's AUC,
sensitivity and specificity with 95% CIs in one column per model, then McNemar and
DeLong p-values per pair of models; Table 4 lists accuracy, kappa, z and p. Before them,
every repeat: each repeat's pooled out-of-fold metrics, the mean +- SD over repeats (the
headline, as Jia, Zhen and Wang report) and the mean +- SD over folds beside it.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import base64
import html
import math

STYLE = """body{font-family:Helvetica,Arial,sans-serif;margin:2em;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:13px}
th,td{border-bottom:1px solid #ccc;padding:3px 9px;text-align:left}
th{background:#f0f0f0} tr.group td{font-weight:bold;background:#fafafa}
figure{display:inline-block;margin:0.5em;vertical-align:top}
figcaption{font-size:12px;color:#555;max-width:560px} .note{color:#666;font-size:13px}
tr.headline td{background:#eef4ff}"""


def esc(value: Any) -> str:
    return html.escape(str(value))


def fmt_p(p: float | None) -> str:
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "n/a"
    return "&lt;0.001" if p < 0.001 else f"{p:.3f}"


def fmt_ci(est: Mapping[str, float] | None, percent: bool) -> str:
    """'91.9 (84.7, 96.5)' for proportions, '0.951 (0.919, 0.982)' for AUCs; n/a when empty."""
    if est is None or math.isnan(est["value"]):
        return "n/a"
    if percent:
        return f"{100 * est['value']:.1f} ({100 * est['low']:.1f}, {100 * est['high']:.1f})"
    return f"{est['value']:.3f} ({est['low']:.3f}, {est['high']:.3f})"


def _row(cells, tag="td", css=None):
    attr = f' class="{css}"' if css else ""
    return f"<tr{attr}>" + "".join(f"<{tag}>{c}</{tag}>" for c in cells) + "</tr>"


def performance_table(caption: str, models: Sequence[dict], level: str, pairs: Sequence[tuple[str, str, dict]],
                      classes: Sequence[str]) -> str:
    """Seed 001 Tables 1-3: one column per model, McNemar and DeLong p per pair."""
    names = [m["name"] for m in models]
    pair_names = [f"{esc(a)} vs. {esc(b)}" for a, b, _ in pairs]
    spans = [("", 1), (f"Value ({models[0]['confidence_pct']}% CI)", len(names))]
    if pairs:
        spans += [("McNemar's P-value", len(pairs)), ("DeLong P-value", len(pairs))]
    head1 = "<tr>" + "".join(f"<th colspan='{n}'>{t}</th>" for t, n in spans) + "</tr>"
    head2 = [""] + [esc(n) for n in names] + pair_names + pair_names
    out = [f"<table><caption>{esc(caption)}</caption>", head1, _row(head2, "th")]
    for name in classes:
        per_model = [next(r for r in m["levels"][level]["per_class"] if r["class"] == name)
                     for m in models]
        tests = [next((c for c in result["classes"] if c["class"] == name), None)
                 for _, _, result in pairs]
        blank = [""] * len(pairs)
        out.append(_row([esc(name)] + [""] * (len(names) + 2 * len(pairs)), css="group"))
        delong = [fmt_p(t["delong"].get("p_value")) if t else "n/a" for t in tests]
        out.append(_row(["AUC"] + [fmt_ci(r["auc"], False) for r in per_model] + blank + delong))
        for metric in ("sensitivity", "specificity"):
            mcnemar = [fmt_p(t[f"mcnemar_{metric}"]) if t else "n/a" for t in tests]
            out.append(_row([f"{metric.capitalize()}, %"]
                            + [fmt_ci(r[metric], True) for r in per_model] + mcnemar + blank))
        out.append(_row(["Accuracy, %"] + [fmt_ci(r["accuracy"], True) for r in per_model]
                        + blank + blank))
    out.append("</table>")
    if pairs:
        counts = ", ".join(f"{esc(a)} vs. {esc(b)}: {r['n_common']} common cases"
                           for a, b, r in pairs)
        out.append(f"<p class='note'>Pairwise tests on the cases both models saw ({counts}); "
                   "McNemar exact (binomial) on sensitivity (positives) and specificity "
                   "(negatives); DeLong for correlated AUCs; all two-sided.</p>")
    return "\n".join(out)


def agreement_table(caption: str, models: Sequence[dict], level: str) -> str:
    """Seed 001 Table 4: accuracy with CI, Cohen's kappa, its z score and p."""
    out = [f"<table><caption>{esc(caption)}</caption>",
           _row(["", "Accuracy, %", "Kappa", "Z score", "P-value", "n"], "th")]
    for m in models:
        a = m["levels"][level]["agreement"]
        if "error" in a:
            out.append(_row([esc(m["name"]), "n/a", esc(a["error"]), "", "", ""]))
            continue
        z = "n/a" if math.isnan(a["z"]) else f"{a['z']:.2f}"
        out.append(_row([esc(m["name"]), fmt_ci(a["accuracy"], True), f"{a['kappa']:.3f}",
                         z, fmt_p(a["p_value"]), str(a["n"])]))
    out.append("</table>")
    return "\n".join(out)


def kappa_difference_table(caption: str, pairs: Sequence[Mapping[str, Any]]) -> str:
    """Model vs reader: both kappas with the truth and the two-sample two-tailed z-test (seed 001)."""
    out = [f"<table><caption>{esc(caption)}</caption>",
           _row(["", "Kappa (model)", "Kappa (reader)", "Z score", "P-value", "common cases"], "th")]
    for pair in pairs:
        d = pair["result"].get("kappa_difference", {"error": "no common case"})
        if "error" in d:
            out.append(_row([f"{esc(pair['a'])} vs. {esc(pair['b'])}", esc(d["error"]), "", "", "", ""]))
            continue
        z = "n/a" if math.isnan(d["z"]) else f"{d['z']:.2f}"
        out.append(_row([f"{esc(pair['a'])} vs. {esc(pair['b'])}", f"{d['kappa_a']:.3f}", f"{d['kappa_b']:.3f}",
                         z, fmt_p(d["p_value"]), str(pair["result"]["n_common"])]))
    out.append("</table><p class='note'>Readers give calls, not scores: no AUC or DeLong test for them; "
               "McNemar's test (exact) compares sensitivity and specificity on the cases both called, "
               "and the kappas are compared with a two-sample two-tailed z-test (asymptotic standard "
               "errors), as Zhen et al. 2020 did.</p>")
    return "\n".join(out)


METRIC_TITLES = {"accuracy": "Accuracy", "sensitivity": "Sensitivity", "specificity": "Specificity",
                 "precision": "Precision", "f1": "F1", "auc": "AUC"}

REPEATS_NOTE = (
    "Headline: each repeat's metrics are computed on its pooled out-of-fold predictions (every "
    "case once per repeat), then the mean &plusmn; SD (n-1) of those over repeats, as Jia, Zhen "
    "and Wang report repeated runs. Per fold: each test fold scored on its own rows, then the "
    "mean &plusmn; SD over all folds &times; repeats. The two AUCs differ in what they measure: "
    "the pooled AUC ranks every case against every other case of the repeat, so it also asks "
    "that scores from different folds' networks be comparable; the per-fold AUC ranks cases "
    "only within one fold, on few cases, so it is noisier, a fold with a single class has none "
    "(left out, see n), and its SD mixes fold-to-fold sampling variation with the variation "
    "between repeats. With one repeat the over-repeat SD is undefined (n/a).")


def _mean_sd(entry):
    if entry is None or entry["mean"] is None or math.isnan(entry["mean"]):
        return "n/a"
    sd = entry["sd"]
    sd = "n/a" if sd is None or math.isnan(sd) else f"{sd:.3f}"
    return f"{entry['mean']:.3f} &plusmn; {sd}"


def _value(value):
    return "n/a" if value is None or math.isnan(value) else f"{value:.3f}"


def repeats_table(model: dict) -> str:
    """Every repeat's pooled metrics, then mean +- SD over repeats (headline) and over folds."""
    summary = model["repeats"]
    names = summary["metrics"]
    out = [f"<table class='repeats'><caption>{esc(model['name'])}: repeated cross-validation"
           f"</caption>", _row(["", "n"] + [METRIC_TITLES.get(n, esc(n)) for n in names], "th")]
    for row in summary["repeats"]:
        out.append(_row([f"repeat {esc(row['repeat'])} (pooled)", str(row["n"])]
                        + [_value(row[n]) for n in names]))
    over_r = summary["over_repeats"]
    out.append(_row(["<b>mean &plusmn; SD over repeats</b>", f"{len(summary['repeats'])} repeats"]
                    + [f"<b>{_mean_sd(over_r[n])}</b>" for n in names], css="headline"))
    over_f = summary["over_folds"]
    out.append(_row(["mean &plusmn; SD over folds &times; repeats",
                     f"{summary['n_folds']} folds"]
                    + [_mean_sd(over_f[n]) + ("" if over_f[n]["n"] == summary["n_folds"]
                                              else f" (n={over_f[n]['n']})") for n in names]))
    out.append("</table>")
    return "\n".join(out)


def figure_html(figure: Mapping[str, Any]) -> str:
    data = base64.b64encode(figure["png"]).decode("ascii")
    return (f"<figure><img src='data:image/png;base64,{data}' alt='{esc(figure['file'])}' "
            f"width='{figure.get('width', 480)}'><figcaption>{esc(figure['caption'])}"
            f"</figcaption></figure>")


def render(report: Mapping[str, Any]) -> str:
    """The whole page from the report dict assembled by report.make_report."""
    models, classes = report["models"], report["reported_classes"]
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{esc(report['title'])}"
             f"</title><style>{STYLE}</style></head><body>", f"<h1>{esc(report['title'])}</h1>",
             "<h2>Evaluations</h2><ul>"]
    for m in models:
        parts.append(f"<li><b>{esc(m['name'])}</b>: {esc(m['path'])}; task {esc(m['task'])}; "
                     f"{esc(m['note'])}</li>")
    parts.append(f"</ul><p class='note'>Classes: {esc(', '.join(report['classes']))}. Intervals: "
                 "Clopper-Pearson (proportions), DeLong (AUC), "
                 f"{models[0]['confidence_pct']}%."
                 + (f" Two classes: one-vs-rest figures for the positive class "
                    f"{esc(classes[0])} (the second in metrics.json)."
                    if len(report["classes"]) == 2 else "") + "</p>")
    parts.append("<h2>Repeated cross-validation: every repeat</h2>")
    parts += [repeats_table(m) for m in models]
    parts.append(f"<p class='note'>{REPEATS_NOTE}</p>")
    parts += [figure_html(f) for f in report["figures"] if f["level"] == "repeats"]
    for level in report["levels"]:
        title = "Case level" if level == "case" else "Patient level"
        parts.append(f"<h2>{title}</h2>")
        if level == "patient":
            parts += [f"<p class='note'>{esc(m['name'])}: {esc(m['patient_note'])}</p>"
                      for m in models]
        pairs = [(c["a"], c["b"], c["result"]) for c in report["comparisons"].get(level, [])]
        shown = list(models) + [r for r in report.get("readers", []) if level in r["levels"]]
        parts.append(performance_table(f"Diagnostic performance ({title.lower()})", shown,
                                       level, pairs, classes))
        parts.append(agreement_table(f"Consistency with the reference labels ({title.lower()})",
                                     shown, level))
        reader_pairs = [c for c in report["comparisons"].get(level, []) if c.get("reader")]
        if reader_pairs:
            parts.append(kappa_difference_table(f"Kappa of the model vs. each reader ({title.lower()})",
                                                reader_pairs))
        parts += [figure_html(f) for f in report["figures"] if f["level"] == level]
    unavailable = [m for m in models if "patient" not in m["levels"]]
    if unavailable and "patient" not in report["levels"]:
        parts.append("<p class='note'>No patient-level analysis: "
                     + "; ".join(f"{esc(m['name'])}: {esc(m['patient_note'])}"
                                 for m in unavailable) + "</p>")
    parts += ["<h2>Embedding of the last hidden features</h2>"]
    tsne = [f for f in report["figures"] if f["level"] == "tsne"]
    parts += [figure_html(f) for f in tsne] or [
        "<p class='note'>No evaluation saved embeddings.npz.</p>"]
    parts.append("</body></html>")
    return "\n".join(parts)
