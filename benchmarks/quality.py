"""Accuracy on a real data set: fusionapp's fused, image-only and text-only models against a
TF-IDF + logistic regression text baseline, trained on `train`, selected on `val`, scored on `test`.

    python benchmarks/quality.py DATA [--folds 1] [--seeds 3] [--out benchmarks/results/quality.json]

DATA is a table with image, text, label and split columns (e.g. ../shared/data/mvsa_single/manifest.csv,
or $FUSIONAPP_REAL_DATA). With `--folds K`, a `folds_10.csv` beside DATA (columns image, fold1..fold10)
supplies the split of each fold. Every fusionapp model is trained through `fusionapp.train` with
default settings, exactly as `fusionapp train` would; `--set NAME=VALUE` overrides one.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import tempfile
import time

MODELS = {"fused": None, "image-only": ("image",), "text-only": ("text",)}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", nargs="?", default=os.environ.get("FUSIONAPP_REAL_DATA"))
    parser.add_argument("--folds", type=int, default=1)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--models", default="fused,image-only,text-only,tfidf-logreg")
    parser.add_argument("--rows", type=int, help="use only the first N rows (a quick check)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="override a training setting, e.g. --set epochs=3")
    parser.add_argument("--out", default="benchmarks/results/quality.json")
    args = parser.parse_args(argv)
    if not args.data:
        parser.error("give DATA or set FUSIONAPP_REAL_DATA")
    overrides = {name: json.loads(value) if value[:1] in "[{0123456789-.tfn" else value
                 for name, value in (item.split("=", 1) for item in args.set)}
    models = args.models.split(",")
    rows = _read(args.data)[: args.rows] if args.rows else _read(args.data)
    results = []
    with tempfile.TemporaryDirectory() as work:
        for fold in range(1, args.folds + 1):
            table = _fold_table(args.data, rows, fold, args.folds, work)
            for seed in range(args.seeds):
                for model in models:
                    if model == "tfidf-logreg" and seed > 0:
                        continue  # deterministic
                    started = time.perf_counter()
                    report = (_tfidf_logreg(table) if model == "tfidf-logreg"
                              else _fusionapp(table, MODELS[model], seed, overrides, work))
                    seconds = time.perf_counter() - started
                    results.append({"model": model, "fold": fold, "seed": seed, "seconds": round(seconds, 1),
                                    **{key: report[key] for key in ("accuracy", "macro_f1", "balanced_accuracy")}})
                    print(f"fold {fold} seed {seed} {model:<13} acc {report['accuracy']:.4f} "
                          f"macro-F1 {report['macro_f1']:.4f} bal-acc {report['balanced_accuracy']:.4f} "
                          f"{seconds:6.1f} s", flush=True)
    summary = _summarise(results, models)
    _print_table(summary)
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as handle:
        json.dump({"data": os.path.abspath(args.data), "overrides": overrides, "runs": results,
                   "summary": summary}, handle, indent=2)
    return summary


def _read(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _fold_table(data, rows, fold, folds, work):
    """The table with the split of `fold` (fold 1 = the table's own split column)."""
    root = os.path.dirname(os.path.abspath(data))
    if folds > 1:
        folds_by_image = {row["image"]: row for row in _read(os.path.join(root, "folds_10.csv"))}
        rows = [{**row, "split": folds_by_image[row["image"]][f"fold{fold}"]} for row in rows]
    path = os.path.join(work, f"fold{fold}.csv")
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["id", "image", "text", "label", "split"], extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "image": os.path.join(root, row["image"])})
    return path


def _fusionapp(table, modalities, seed, overrides, work):
    from fusionapp import train

    settings = {"seed": seed, "verbose": 0, **overrides}
    if modalities:
        settings["modalities"] = modalities
    run = train(table, tempfile.mkdtemp(dir=work), **settings)
    with open(os.path.join(run, "test_metrics.json")) as handle:
        return json.load(handle)


def _tfidf_logreg(table):
    """The classical baseline: character 2-5-grams, TF-IDF, balanced logistic regression, text only."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from fusionapp.metrics import classification_report

    rows = _read(table)
    train = [row for row in rows if row["split"] in ("train", "val")]
    test = [row for row in rows if row["split"] == "test"]
    classes = sorted({row["label"] for row in train})
    model = make_pipeline(TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2),
                          LogisticRegression(C=4.0, class_weight="balanced", max_iter=2000))
    model.fit([row["text"] for row in train], [row["label"] for row in train])
    probabilities = model.predict_proba([row["text"] for row in test])
    order = [list(model.classes_).index(name) for name in classes]
    return classification_report([classes.index(row["label"]) for row in test], probabilities[:, order], classes)


def _summarise(results, models):
    summary = {}
    for model in models:
        runs = [r for r in results if r["model"] == model]
        if not runs:
            continue
        summary[model] = {"runs": len(runs)}
        for key in ("accuracy", "macro_f1", "balanced_accuracy", "seconds"):
            values = [r[key] for r in runs]
            summary[model][key] = round(statistics.mean(values), 4)
            summary[model][f"{key}_std"] = round(statistics.stdev(values), 4) if len(values) > 1 else 0.0
    return summary


def _print_table(summary):
    print(f"\n{'model':<14}{'accuracy':>18}{'macro-F1':>18}{'balanced acc':>18}{'train s':>10}")
    for model, row in summary.items():
        cells = [f"{row[k]:.3f} ± {row[k + '_std']:.3f}" for k in ("accuracy", "macro_f1", "balanced_accuracy")]
        print(f"{model:<14}" + "".join(f"{cell:>18}" for cell in cells) + f"{row['seconds']:>10.0f}")


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
