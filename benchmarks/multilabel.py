"""Multi-label accuracy: fusionapp's fused, image-only and text-only models against TF-IDF + one-vs-rest
logistic regression on the text, all scored on the `test` split.

    python benchmarks/multilabel.py ../shared/data/movie_genres/manifest.csv --label-col labels [--seeds 1]
        [--set NAME=VALUE]
    python benchmarks/multilabel.py --demo [--rows 3000]      # the multi-label demo (made in a temp folder)

DATA is a table with image, text, a label column of sets joined by "|" and a split column. Every
fusionapp model is trained through `fusionapp.train(..., multi_label=True)` with default settings
otherwise, as `fusionapp train --multi-label` would (on `train`, validated on `val`). The baseline is
the one movie_genres' README.txt describes: TF-IDF of word 1-2-grams into one-vs-rest
LogisticRegression(C=4, class_weight="balanced"), trained on `train` and `val` together, threshold
0.5, on the text alone. Prints micro / macro / samples F1, Hamming loss and subset accuracy per model.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import numpy as np

MODELS = {"fused": None, "image-only": ("image",), "text-only": ("text",)}
FIGURES = ("micro_f1", "macro_f1", "samples_f1", "hamming_loss", "subset_accuracy")


def baseline(data: str, label_col: str = "label", sep: str = "|") -> dict:
    """TF-IDF word 1-2-grams + one-vs-rest logistic regression, on train+val, scored on test."""
    from sklearn import metrics
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.preprocessing import MultiLabelBinarizer

    from fusionapp.preprocessing.labels import parse_label_set
    from fusionapp.data.tables import iter_table

    rows = [row for chunk in iter_table(data) for row in chunk.rows]
    fit = [row for row in rows if row["split"] in ("train", "val")]
    test = [row for row in rows if row["split"] == "test"]
    binarizer = MultiLabelBinarizer()
    y_fit = binarizer.fit_transform([parse_label_set(row[label_col], sep) for row in fit])
    known = set(binarizer.classes_)
    y_test = binarizer.transform([[label for label in parse_label_set(row[label_col], sep) if label in known]
                                  for row in test])
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
    x_fit = vectorizer.fit_transform([row["text"] for row in fit])
    model = OneVsRestClassifier(LogisticRegression(C=4, class_weight="balanced", max_iter=1000))
    model.fit(x_fit, y_fit)
    chosen = model.predict_proba(vectorizer.transform([row["text"] for row in test])) >= 0.5
    return {"micro_f1": metrics.f1_score(y_test, chosen, average="micro", zero_division=0),
            "macro_f1": metrics.f1_score(y_test, chosen, average="macro", zero_division=0),
            "samples_f1": metrics.f1_score(y_test, chosen, average="samples", zero_division=0),
            "hamming_loss": metrics.hamming_loss(y_test, chosen),
            "subset_accuracy": metrics.accuracy_score(y_test, chosen)}


def fusion(data: str, modalities, seed: int, settings: dict, workdir: str) -> dict:
    from fusionapp import evaluate, train

    started = time.perf_counter()
    run = train(data, os.path.join(workdir, f"run-{'-'.join(modalities or ['fused'])}-{seed}"), multi_label=True,
                modalities=modalities, seed=seed, verbose=0, **settings)
    seconds = time.perf_counter() - started
    report = evaluate(run, data, split="test", verbose=0, label_col=settings["label_col"])
    return {**{key: report[key] for key in FIGURES}, "seconds": seconds}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", nargs="?")
    parser.add_argument("--demo", action="store_true", help="the multi-label demo instead of DATA")
    parser.add_argument("--rows", type=int, default=3000, help="rows of the demo")
    parser.add_argument("--label-col", default="label")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--models", default="fused,image-only,text-only,tfidf-ovr")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="override a training setting, e.g. --set epochs=3")
    parser.add_argument("--out", default="benchmarks/results/multilabel.json")
    args = parser.parse_args(argv)
    if not args.data and not args.demo:
        parser.error("give DATA or --demo")
    unknown = sorted(set(args.models.split(",")) - {*MODELS, "tfidf-ovr"})
    if unknown:
        parser.error(f"unknown model {unknown[0]} (known: {', '.join([*MODELS, 'tfidf-ovr'])})")
    settings = {}
    for item in args.set:
        name, value = item.split("=", 1)
        try:
            settings[name] = json.loads(value)
        except json.JSONDecodeError:
            settings[name] = value
    results = {}
    with tempfile.TemporaryDirectory(prefix="fusionapp-multilabel-") as workdir:
        data = args.data
        if args.demo:
            from fusionapp.data.demo import make_demo

            data = make_demo(os.path.join(workdir, "demo"), rows=args.rows, multi_label=True)
        for name in args.models.split(","):
            if name == "tfidf-ovr":
                results[name] = [baseline(data, args.label_col, settings.get("label_sep", "|"))]
            else:
                results[name] = [fusion(data, MODELS[name], seed, {"label_col": args.label_col, **settings}, workdir)
                                 for seed in range(args.seeds)]
            _print(name, results[name])
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as handle:
        json.dump({"data": "demo" if args.demo else args.data, "settings": settings, "results": results}, handle,
                  indent=2)
    return results


def _print(name: str, runs: list[dict]) -> None:
    parts = []
    for key in FIGURES:
        values = [run[key] for run in runs]
        spread = f" ± {statistics.stdev(values):.3f}" if len(values) > 1 else ""
        parts.append(f"{key} {np.mean(values):.3f}{spread}")
    seconds = [run["seconds"] for run in runs if "seconds" in run]
    print(f"{name:<12} " + "   ".join(parts) + (f"   ({np.mean(seconds):.0f} s)" if seconds else ""), flush=True)


if __name__ == "__main__":
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
    main()
