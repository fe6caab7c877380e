"""What an audit writes into its folder, each file whole or not at all: issues.csv, label_quality.csv
(or .parquet, --format), report.json, the PNGs and report.html; label_next.csv for --label-next. The
folder's file names are spelt here and nowhere else."""

from __future__ import annotations

import itertools
import os

import numpy as np

from fusionapp.audit.findings import KINDS, Findings
from fusionapp.audit.html_page import write_html
from fusionapp.errors import FusionError
from fusionapp.evaluation.plots import pyplot, save_figure
from fusionapp.inference.writers import TableWriter
from fusionapp.runs import files

# The row tables, written as NAME.csv or NAME.parquet (--format).
ISSUES, QUALITY, LABEL_NEXT = "issues", "label_quality", "label_next"
REPORT_FILE = "report.json"
HTML_FILE = "report.html"
KINDS_PNG = "issues_by_kind.png"
QUALITY_PNG = "label_quality.png"
NOISE_PNG = "noise_matrix.png"
AUDIT_FILES = (*(f"{name}.{kind}" for name in (ISSUES, QUALITY, LABEL_NEXT) for kind in ("csv", "parquet")),
               REPORT_FILE, HTML_FILE, KINDS_PNG, QUALITY_PNG, NOISE_PNG)
# Each row table's columns, and the Arrow type of those that are not strings.
ISSUE_COLUMNS = {"row": "int64", "id": None, "split": None, "kind": None, "score": "float64", "given_label": None,
                 "suggested_label": None, "other_row": "int64", "reason": None}
QUALITY_COLUMNS = {"row": "int64", "id": None, "split": None, "given_label": None, "suggested_label": None,
                   "label_quality": "float64", "flagged": "int64"}
LABEL_NEXT_COLUMNS = {"rank": "int64", "row": "int64", "id": None, "split": None, "predicted_label": None,
                      "probability": "float64", "margin": "float64"}
ROWS_AT_ONCE = 10_000
# The noise matrix's plot shows at most this many classes: those with the most suspected rows.
NOISE_PLOT_CLASSES = 20


def check_out(out: str, overwrite: bool) -> None:
    """`out` is a folder the audit may write (made when the first file is written): new, empty, or
    an earlier audit's with --overwrite."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise FusionError(f"{out}: not a folder (--out)")
    earlier = [name for name in AUDIT_FILES if os.path.exists(os.path.join(out, name))]
    if earlier and not overwrite:
        raise FusionError(f"{out}: holds an earlier audit ({earlier[0]}); --overwrite replaces it, or choose "
                          "another --out")


def write_reports(request, scored, label_audit, findings: Findings, shown, seconds: float) -> dict:
    """Every file of a labelled audit; returns report.json's content. `shown` (row index -> the
    row's image and text) are the rows report.html shows."""
    out, kind = request.out, request.settings.format
    signals, labels = scored.signals, scored.labels
    given = labels.cells()
    order = findings.order()
    tables = [f"{ISSUES}.{kind}", f"{QUALITY}.{kind}"]
    _write_table(os.path.join(out, tables[0]), ISSUE_COLUMNS, (
        [int(signals.row_numbers[findings.rows[i]]), _id(signals, findings.rows[i]), _split(signals, findings.rows[i]),
         findings.kinds[i], round(findings.scores[i], 6), given[findings.rows[i]], findings.suggested[i],
         int(signals.row_numbers[findings.others[i]]) if findings.others[i] >= 0 else None, findings.reasons[i]]
        for i in order))
    flagged = {findings.rows[i] for i in order if findings.kinds[i] == "label"}
    _write_table(os.path.join(out, tables[1]), QUALITY_COLUMNS, (
        [int(signals.row_numbers[row]), _id(signals, row), _split(signals, row), given[row],
         findings.suggested_labels[row], round(float(findings.quality[row]), 6), int(row in flagged)]
        for row in labels.labelled))
    report = _report(request, scored, label_audit, findings, seconds)
    pictures = _plots(out, findings, labels, label_audit)
    report["files"] = [*tables, REPORT_FILE, HTML_FILE, *pictures]
    files.write_json(os.path.join(out, REPORT_FILE), report)
    write_html(os.path.join(out, HTML_FILE), report, _shown_issues(findings, order, request.settings.report_rows,
                                                                   signals, given, shown), pictures)
    _remove_stale(out, report["files"])
    return report


def shown_rows(findings: Findings, limit: int) -> list[int]:
    """The rows report.html shows: the first `limit` of each kind, in the issues table's order."""
    seen, per_kind = [], {}
    for i in findings.order():
        kind = findings.kinds[i]
        if per_kind.get(kind, 0) < limit:
            per_kind[kind] = per_kind.get(kind, 0) + 1
            seen.append(findings.rows[i])
            if findings.others[i] >= 0:
                seen.append(findings.others[i])
    return sorted(set(seen))


def write_label_next(request, signals, chosen, probabilities, margin, class_names, unlabelled: int,
                     scored: int) -> str:
    name = f"{LABEL_NEXT}.{request.settings.format}"
    path = os.path.join(request.out, name)
    top = np.argsort(-probabilities, axis=1)[:, :2] if len(chosen) else np.zeros((0, 2), int)
    _write_table(path, LABEL_NEXT_COLUMNS, (
        [rank + 1, int(signals.row_numbers[row]), _id(signals, row), _split(signals, row), class_names[top[rank, 0]],
         round(float(probabilities[rank, top[rank, 0]]), 6), round(float(margin[rank]), 6)]
        for rank, row in enumerate(chosen)))
    files.write_json(os.path.join(request.out, REPORT_FILE), {
        "data": request.data, "model": request.model, "rows": len(signals), "unlabelled": unlabelled,
        "scored": scored, "label_next": len(chosen), "files": [name, REPORT_FILE]})
    _remove_stale(request.out, [name, REPORT_FILE])
    return path


def _write_table(path: str, columns: dict[str, str | None], rows) -> None:
    """A row table, CSV or Parquet by its name, written ROWS_AT_ONCE rows at a time into a file that
    replaces `path` once whole."""
    rows, header = iter(rows), list(columns)
    with TableWriter(path, {name: kind for name, kind in columns.items() if kind}) as writer:
        while True:
            chunk = list(itertools.islice(rows, ROWS_AT_ONCE))
            if chunk or writer.header is None:
                writer.write(header, chunk)
            if len(chunk) < ROWS_AT_ONCE:
                return


def _remove_stale(out: str, written: list[str]) -> None:
    """An earlier audit's files this one did not write again (with --overwrite): once the new files
    are all in place, so an audit that fails leaves the earlier one whole."""
    for name in AUDIT_FILES:
        if name not in written and os.path.exists(os.path.join(out, name)):
            os.remove(os.path.join(out, name))


def _id(signals, row: int) -> str:
    return signals.ids[row] if signals.ids is not None else ""


def _split(signals, row: int) -> str:
    return signals.splits[row] if signals.splits is not None else ""


def _report(request, scored, label_audit, findings: Findings, seconds: float) -> dict:
    signals, labels = scored.signals, scored.labels
    per_class = {name: {"rows": 0} for name in labels.class_names}
    for row in labels.labelled:
        for name in labels.names(row):
            per_class[name]["rows"] += 1
    for row, kind in zip(findings.rows, findings.kinds):
        for name in labels.names(row):
            per_class[name][kind] = per_class[name].get(kind, 0) + 1
    report = {
        "data": request.data,
        "rows": len(signals),
        "labelled": int(len(labels.labelled)),
        "multi_label": labels.matrix is not None,
        "classes": labels.class_names,
        "kinds": {kind: {"rows": count, "meaning": KINDS[kind]} for kind, count in findings.counts().items()},
        "per_class": per_class,
        "cross_fit": {"folds": request.settings.folds, "rows": scored.sampled, "left_out": scored.left_out,
                      "model": "logistic regression on hashed character n-grams, tabular cells and image thumbnails"
                               + (", averaged with the network's (--time-limit)" if scored.network else ""),
                      **out_of_fold_scores(labels, labels.labelled, scored.probabilities[labels.labelled])},
        "seconds": round(seconds, 1),
    }
    if scored.network:
        report["cross_fit"]["network"] = scored.network
    if labels.matrix is None:
        report["label_noise"] = _noise_summary(label_audit, labels.class_names)
    return report


def out_of_fold_scores(labels, rows: np.ndarray, probabilities: np.ndarray) -> dict:
    """How well out-of-fold `probabilities` (of `rows`) predict the given labels: the weaker the
    audit's model, the more right labels it doubts."""
    from sklearn.metrics import accuracy_score, f1_score

    if labels.matrix is None:
        truth, predicted = labels.classes[rows], probabilities.argmax(axis=1)
        return {"accuracy": round(float(accuracy_score(truth, predicted)), 4),
                "macro_f1": round(float(f1_score(truth, predicted, average="macro")), 4)}
    truth, predicted = labels.matrix[rows], probabilities >= 0.5
    return {"micro_f1": round(float(f1_score(truth, predicted, average="micro", zero_division=0)), 4),
            "macro_f1": round(float(f1_score(truth, predicted, average="macro", zero_division=0)), 4)}


def _noise_summary(label_audit, names: list[str]) -> dict:
    """The estimated share of wrong labels and the class pairs most confused, from the calibrated
    confident joint."""
    joint = label_audit.joint
    off = joint - np.diag(np.diag(joint))
    pairs = sorted(((int(off[i, j]), names[i], names[j]) for i, j in zip(*np.nonzero(off))), reverse=True)[:20]
    share = float(off.sum() / max(joint.sum(), 1))
    return {"estimated_wrong_labels": int(off.sum()), "estimated_share": round(share, 4),
            "pairs": [{"given": given, "true": true, "rows": rows} for rows, given, true in pairs],
            "thresholds": dict(zip(names, np.round(label_audit.thresholds, 4).tolist()))}


def _plots(out: str, findings: Findings, labels, label_audit) -> list[str]:
    plt = pyplot()
    written = []
    counts = findings.counts()
    figure, axes = plt.subplots(figsize=(6, 0.4 * max(len(counts), 1) + 1))
    axes.barh(list(counts)[::-1], list(counts.values())[::-1], color="#c0392b")
    axes.set_xlabel("rows")
    axes.set_title("Issues by kind")
    save_figure(figure, os.path.join(out, KINDS_PNG))
    written.append(KINDS_PNG)
    quality = findings.quality[labels.labelled]
    flagged = np.isin(labels.labelled, [row for row, kind in zip(findings.rows, findings.kinds) if kind == "label"])
    figure, axes = plt.subplots(figsize=(6, 3.5))
    bins = np.linspace(0, 1, 41)
    axes.hist([quality[~flagged], quality[flagged]], bins=bins, stacked=True, label=["kept", "flagged"],
              color=["#7f8c8d", "#c0392b"])
    axes.set_xlabel("label quality (probability of the given label, out of fold)")
    axes.set_ylabel("rows")
    axes.legend()
    save_figure(figure, os.path.join(out, QUALITY_PNG))
    written.append(QUALITY_PNG)
    if labels.matrix is None:
        noise = label_audit.noise
        suspected = (label_audit.joint - np.diag(np.diag(label_audit.joint))).sum(axis=1)
        keep = np.sort(np.argsort(-suspected, kind="stable")[:NOISE_PLOT_CLASSES])
        figure, axes = plt.subplots(figsize=(1 + 0.35 * len(keep), 1 + 0.35 * len(keep)))
        axes.imshow(noise[np.ix_(keep, keep)], cmap="Reds", vmin=0, vmax=1)
        names = [labels.class_names[k][:18] for k in keep]
        axes.set_xticks(range(len(keep)), names, rotation=90)
        axes.set_yticks(range(len(keep)), names)
        axes.set_xlabel("true class (estimated)")
        axes.set_ylabel("given label")
        axes.set_title("P(given label | true class)")
        save_figure(figure, os.path.join(out, NOISE_PNG))
        written.append(NOISE_PNG)
    return written


def _shown_issues(findings: Findings, order, limit: int, signals, given, shown) -> dict[str, list[dict]]:
    """Per kind, the first `limit` issues as the page shows them: the row, its inputs, its labels."""
    by_kind: dict[str, list[dict]] = {}
    for i in order:
        kind = findings.kinds[i]
        if len(by_kind.setdefault(kind, [])) >= limit:
            continue
        row = findings.rows[i]
        other = findings.others[i]
        by_kind[kind].append({
            "row": int(signals.row_numbers[row]), "id": _id(signals, row), "split": _split(signals, row),
            "given": given[row], "suggested": findings.suggested[i], "reason": findings.reasons[i],
            "score": findings.scores[i], "example": shown.get(row),
            "other": None if other < 0 else {"row": int(signals.row_numbers[other]), "given": given[other],
                                             "example": shown.get(other)}})
    return by_kind
