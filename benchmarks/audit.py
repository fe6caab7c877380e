"""`fusionapp audit` measured: wrong labels found, duplicates found, rows to label next, time and memory.

    python benchmarks/audit.py noise        # injected label noise on fashion_products and MVSA-Single
    python benchmarks/audit.py duplicates   # injected duplicates on fashion_products
    python benchmarks/audit.py label-next   # labels to reach 95% of the full-data macro-F1, fashion_products
    python benchmarks/audit.py time         # `fusionapp audit` on fashion_products, wall time and peak memory
    python benchmarks/audit.py scale [--rows 1000000]   # a generated table (benchmarks/scale.py's)

noise: 5% and 10% of the labelled rows get another label (--seeds injections a case, averaged; --cases
chooses them; --time-limit S cross-fits the network too, as `audit --time-limit` does),
uniformly or the class's most similar one (the class it is most often taken for by the clean
table's out-of-fold probabilities). The audit's out-of-fold probabilities of the noisy table are
scored three ways: the AUROC of its label-quality score against the injected rows, the F1 of its
flagged rows, and cleanlab's `find_label_issues` F1 on the same probabilities (cleanlab, AGPL, is
only this oracle: `pip install --no-deps cleanlab`). Then a
TF-IDF + logistic regression model is trained on the train split with the noisy labels, without the
flagged rows and with the clean labels, and scored on the test split's clean labels.

duplicates: rows flagged as duplicates of each other in the table are dropped first; then 300 rows
are copied (exact, the image re-encoded as JPEG quality 50, the image resized to 80%, the text
changed in case, punctuation and one letter), into their own split or another. Recall: injected
pairs found; precision: found pairs that were injected.

label-next: the audit's features and a logistic regression; 200 rows labelled at random, then 100
more a round chosen by fusionapp.audit.label_next (margin within k-means clusters) or at random, 3
seeds; the labels each needs to reach 95% of the macro-F1 of every training row's labels.

Prints one line per case and writes nothing into the repository.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import subprocess
import sys
import tempfile
import time

import numpy as np

SHARED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data")
SETS = {
    "fashion": ("fashion_products/manifest.csv", ("gender", "baseColour", "season", "usage")),
    "mvsa": ("mvsa_single/manifest.csv", ()),
}


def _read(name: str) -> tuple[list[dict], str]:
    path = os.path.join(os.environ.get("FUSIONAPP_DATA", SHARED), SETS[name][0])
    if not os.path.exists(path):
        raise SystemExit(f"{path}: not found (set FUSIONAPP_DATA to the folder holding {SETS[name][0]})")
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    folder = os.path.dirname(os.path.abspath(path))
    for row in rows:
        row["image"] = os.path.join(folder, row["image"])
    return rows, path


def _write(rows: list[dict], path: str) -> str:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def _request(table: str, out: str, tabular=(), **settings):
    from fusionapp.audit.run_audit import AuditRequest
    from fusionapp.settings import Columns
    from fusionapp.settings.audit import AuditSettings

    return AuditRequest(table, out, Columns(tabular=tuple(tabular)), AuditSettings(overwrite=True, **settings))


def _scored(table: str, tabular, time_limit: float = 0.0):
    from fusionapp.audit.run_audit import out_of_fold

    request = _request(table, tempfile.mkdtemp(), tabular)
    deadline = time.time() + time_limit if time_limit else None
    say = (lambda line: print("  " + line, flush=True)) if time_limit else (lambda line: None)
    scored = out_of_fold(request, None, request.columns, say=say, deadline=deadline)
    if time_limit:
        print(f"  the network's cross-fit: {scored.network}", flush=True)
    return scored


# === Label noise ===
def noise(args) -> None:
    folder = tempfile.mkdtemp(prefix="audit-noise-")
    for name in args.sets.split(","):
        rows, _ = _read(name)
        tabular = SETS[name][1]
        rows = [row for row in rows if row["label"]]
        clean = _scored(_write(rows, os.path.join(folder, f"{name}-clean.csv")), tabular)
        names = clean.labels.class_names
        truth = clean.labels.classes
        similar = _similar_classes(truth, clean.probabilities, len(names))
        clean_f1 = _retrained_f1(rows, [row["label"] for row in rows], np.ones(len(rows), bool))
        for case in args.cases.split(","):
            kind, rate = case.split(":")[0], float(case.split(":")[1]) / 100
            results = [_noise_case(rows, clean, similar, tabular, rate, kind, seed, folder, clean_f1, args.time_limit)
                       for seed in range(1, args.seeds + 1)]
            mean = {key: float(np.mean([result[key] for result in results])) for key in results[0]}
            print(f"{name:8s} {kind:8s} {rate:.0%}, mean of {args.seeds} seeds: AUROC {mean['auroc']:.4f}  "
                  f"F1 {mean['ours']:.3f} (cleanlab {mean['cleanlab']:.3f})  retrained macro-F1 clean "
                  f"{clean_f1:.4f} noisy {mean['noisy']:.4f} cleaned {mean['cleaned']:.4f} (recovered "
                  f"{(mean['cleaned'] - mean['noisy']) / (clean_f1 - mean['noisy']):.0%})", flush=True)


def _noise_case(rows, clean, similar, tabular, rate: float, kind: str, seed: int, folder: str,
                clean_f1: float, time_limit: float = 0.0) -> dict:
    """One injection of noise, audited and retrained on."""
    from cleanlab.filter import find_label_issues
    from sklearn.metrics import f1_score, roc_auc_score

    from fusionapp.audit.confident import audit_labels

    names, truth = clean.labels.class_names, clean.labels.classes
    rng = np.random.default_rng(seed)
    noisy_rows = [dict(row) for row in rows]
    flipped = rng.choice(len(rows), int(rate * len(rows)), replace=False)
    for row in flipped:
        given = truth[row]
        new = similar[given] if kind == "pairs" else rng.choice([c for c in range(len(names)) if c != given])
        noisy_rows[row]["label"] = names[new]
    is_noisy = np.zeros(len(rows), bool)
    is_noisy[flipped] = True
    started = time.perf_counter()
    scored = _scored(_write(noisy_rows, os.path.join(folder, f"noisy-{kind}-{rate}-{seed}.csv")), tabular, time_limit)
    labels, probabilities = scored.labels.classes, scored.probabilities
    verdict = audit_labels(labels, probabilities)
    seconds = time.perf_counter() - started
    oracle = find_label_issues(labels, probabilities)
    noisy_labels = [row["label"] for row in noisy_rows]
    result = {"auroc": roc_auc_score(is_noisy, 1 - verdict.quality), "ours": f1_score(is_noisy, verdict.flagged),
              "cleanlab": f1_score(is_noisy, oracle),
              "noisy": _retrained_f1(rows, noisy_labels, np.ones(len(rows), bool)),
              "cleaned": _retrained_f1(rows, noisy_labels, ~verdict.flagged)}
    print(f"  seed {seed}: AUROC {result['auroc']:.4f}  F1 {result['ours']:.3f} (cleanlab {result['cleanlab']:.3f}; "
          f"flagged {verdict.flagged.sum()} / cleanlab {oracle.sum()} / injected {is_noisy.sum()})  retrained "
          f"macro-F1 noisy {result['noisy']:.4f} cleaned {result['cleaned']:.4f} (clean {clean_f1:.4f})  "
          f"{seconds:.0f} s", flush=True)
    return result


def _similar_classes(labels, probabilities, count: int) -> np.ndarray:
    """Each class's most similar other class: the one its rows are most often given probability of."""
    similar = np.zeros(count, np.int64)
    for c in range(count):
        mean = probabilities[labels == c].mean(axis=0)
        mean[c] = -1
        similar[c] = int(mean.argmax())
    return similar


def _retrained_f1(rows, labels, keep) -> float:
    """TF-IDF (words and character n-grams) + logistic regression trained on the kept train+val rows
    with `labels`, macro-F1 on the test split's true labels."""
    import scipy.sparse as sparse
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score

    train = [i for i, row in enumerate(rows) if row["split"] != "test" and keep[i]]
    test = [i for i, row in enumerate(rows) if row["split"] == "test"]
    texts = [row["text"] for row in rows]
    words = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2).fit([texts[i] for i in train])
    chars = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2,
                            max_features=200_000).fit([texts[i] for i in train])

    def features(indices):
        chosen = [texts[i] for i in indices]
        return sparse.hstack([words.transform(chosen), chars.transform(chosen)], format="csr")

    model = LogisticRegression(C=10, max_iter=2000).fit(features(train), [labels[i] for i in train])
    return f1_score([rows[i]["label"] for i in test], model.predict(features(test)), average="macro")


# === Duplicates ===
def duplicates(args) -> None:
    from PIL import Image

    from fusionapp.audit.duplicates import duplicate_pairs

    folder = tempfile.mkdtemp(prefix="audit-duplicates-")
    rows, _ = _read("fashion")
    base = _scored(_write(rows, os.path.join(folder, "all.csv")), ())
    first, second = duplicate_pairs(base.signals.prints)
    dropped = set(first.tolist()) | set(second.tolist())
    rows = [row for i, row in enumerate(rows) if i not in dropped]
    print(f"fashion: {len(dropped)} rows in the table's own duplicate pairs dropped, {len(rows)} kept")
    rng = random.Random(args.seed)
    originals = rng.sample(range(len(rows)), 300)
    kinds = ("exact", "reencoded", "resized", "text")
    copies, injected = [], set()
    for n, original in enumerate(originals):
        row = dict(rows[original])
        kind = kinds[n % len(kinds)]
        if kind in ("reencoded", "resized"):
            with Image.open(row["image"]) as image:
                picture = image.convert("RGB")
                if kind == "resized":
                    picture = picture.resize((int(picture.width * 0.8), int(picture.height * 0.8)))
                path = os.path.join(folder, f"copy{n}.jpg")
                picture.save(path, quality=50 if kind == "reencoded" else 90)
            row["image"] = path
        if kind == "text":
            row["text"] = _near_identical(row["text"], rng)
        if n % 2:  # half the copies land in another split: a leak
            row["split"] = {"train": "test", "val": "train", "test": "train"}[row["split"]]
        row["id"] = f"copy{n}"
        copies.append(row)
        injected.add((original, len(rows) + n))
    table = _write(rows + copies, os.path.join(folder, "injected.csv"))
    scored = _scored(table, ())
    first, second = duplicate_pairs(scored.signals.prints)
    found = set(zip(first.tolist(), second.tolist()))
    hits = found & injected
    by_kind = {kind: sum((originals[n], len(rows) + n) in found for n in range(len(originals))
                         if kinds[n % len(kinds)] == kind) for kind in kinds}
    print(f"duplicates: recall {len(hits) / len(injected):.3f} ({len(hits)}/{len(injected)}), precision "
          f"{len(hits) / max(len(found), 1):.3f} ({len(hits)}/{len(found)}); found by kind "
          + ", ".join(f"{kind} {count}/{len(originals) // len(kinds)}" for kind, count in by_kind.items()))


def _near_identical(text: str, rng: random.Random) -> str:
    """The text in another case, with a punctuation mark and one letter changed."""
    letters = [i for i, char in enumerate(text) if char.isalpha()]
    chars = list(text.upper() if rng.random() < 0.5 else text.lower())
    if letters:
        i = rng.choice(letters)
        chars[i] = "x" if chars[i].lower() != "x" else "y"
    return "".join(chars) + rng.choice(["!", ".", " -", ","])


# === Label next ===
def label_next(args) -> None:
    from sklearn.metrics import f1_score

    from fusionapp.audit.label_next import margins, rows_to_label
    from fusionapp.evaluation.calibration import probabilities_of
    from fusionapp.posthoc.linear import fit_linear

    rows, _ = _read("fashion")
    folder = tempfile.mkdtemp(prefix="audit-label-next-")
    scored = _scored(_write(rows, os.path.join(folder, "all.csv")), ())
    features = _features(scored, folder)
    labels = scored.labels.classes
    count = len(scored.labels.class_names)
    pool = np.array([i for i, row in enumerate(rows) if row["split"] != "test"])
    test = np.array([i for i, row in enumerate(rows) if row["split"] == "test"])

    def score(chosen) -> tuple[float, np.ndarray]:
        kernel, bias = fit_linear(features[chosen], labels[chosen], count, "none", 4.0)
        logits = features @ kernel + bias
        return f1_score(labels[test], logits[test].argmax(axis=1), average="macro"), probabilities_of(logits, False)

    full, _ = score(pool)
    target = 0.95 * full
    print(f"label-next: full-data macro-F1 {full:.4f} ({len(pool)} labels); target {target:.4f}")
    needed = {"random": [], "label-next": []}
    for seed in range(args.seeds):
        for strategy in needed:
            rng = np.random.default_rng(seed)
            chosen = rng.choice(pool, 200, replace=False)
            while True:
                f1, probabilities = score(chosen)
                if f1 >= target or len(chosen) >= len(pool):
                    break
                rest = np.setdiff1d(pool, chosen)
                if strategy == "random":
                    new = rng.choice(rest, min(100, len(rest)), replace=False)
                else:
                    new = rest[rows_to_label(margins(probabilities[rest], False), scored.embedding[rest], 100, seed)]
                chosen = np.concatenate([chosen, new])
            needed[strategy].append(len(chosen))
            print(f"  seed {seed} {strategy:10s}: {len(chosen)} labels (macro-F1 {f1:.4f})", flush=True)
    ours, theirs = np.mean(needed["label-next"]), np.mean(needed["random"])
    print(f"label-next: {ours:.0f} labels vs random {theirs:.0f} to reach 95% of the full-data macro-F1 "
          f"({1 - ours / theirs:.0%} fewer)")


def _features(scored, folder: str):
    """The audit's features of every row, as run_audit computes them."""
    from fusionapp.audit.features import Featurizer
    from fusionapp.data.sources import load_examples

    examples = load_examples(scored.signals.source, scored.columns, need_label=False)
    featurizer = Featurizer(scored.signals.modalities, {}).fit(examples, scored.signals.thumbnails, 0)
    return featurizer.transform(examples, scored.signals.thumbnails)


# === Time and scale ===
def timed(command: list[str]) -> tuple[float, float, str]:
    """(seconds, peak RSS in GB, output tail) of a command run as a process of its own."""
    started = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-f", "%M", *command], capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed: {done.stderr[-2000:]}")
    return seconds, int(done.stderr.strip().splitlines()[-1]) / 1e6, done.stdout.strip().splitlines()[-1]


def time_fashion(args) -> None:
    _, table = _read("fashion")
    out = tempfile.mkdtemp(prefix="audit-time-")
    command = [sys.executable, "-m", "fusionapp", "audit", table, "--out", out, "--overwrite"]
    for name in SETS["fashion"][1]:
        command += ["--tabular-col", name]
    seconds, peak, tail = timed(command)
    print(f"fashion_products audit: {seconds:.0f} s, peak RSS {peak:.2f} GB: {tail}")


def scale(args) -> None:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from scale import image_pool, write_table

    folder = args.folder or tempfile.mkdtemp(prefix="audit-scale-")
    table = os.path.join(folder, f"big{args.rows}.parquet")
    if not os.path.exists(table):
        _, fashion = _read("fashion")
        images = image_pool(os.path.join(os.path.dirname(fashion), "images"), os.path.join(folder, "images"))
        write_table(table, args.rows, images)
    out = os.path.join(folder, "audit")
    command = [sys.executable, "-m", "fusionapp", "audit", table, "--out", out, "--overwrite",
               "--tabular-col", "price", "--tabular-col", "brand"]
    seconds, peak, tail = timed(command)
    print(f"{args.rows} rows: {seconds:.0f} s, peak RSS {peak:.2f} GB: {tail}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    command = commands.add_parser("noise")
    command.add_argument("--sets", default="fashion,mvsa")
    command.add_argument("--seeds", type=int, default=3, help="Noise injections per case, averaged.")
    command.add_argument("--cases", default="uniform:5,pairs:5,uniform:10,pairs:10",
                         help="KIND:PERCENT of the labels changed, KIND uniform or pairs (to the most similar class).")
    command.add_argument("--time-limit", type=float, default=0.0,
                         help="Seconds for the network's cross-fit of each noisy table (audit --time-limit); 0: none.")
    command.set_defaults(run=noise)
    command = commands.add_parser("duplicates")
    command.add_argument("--seed", type=int, default=0)
    command.set_defaults(run=duplicates)
    command = commands.add_parser("label-next")
    command.add_argument("--seeds", type=int, default=3)
    command.set_defaults(run=label_next)
    commands.add_parser("time").set_defaults(run=time_fashion)
    command = commands.add_parser("scale")
    command.add_argument("--rows", type=int, default=1_000_000)
    command.add_argument("--folder", help="Where the table is written (kept for another run).")
    command.set_defaults(run=scale)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
