"""Scale: synthetic catalogue tables of 100,000 to 3,000,000 rows over a pool of real image files,
trained with --steps-per-epoch and predicted, printing each stage's seconds and the peak RSS.

    python benchmarks/scale.py --sizes 100000,300000,1000000 --formats csv,parquet
    python benchmarks/scale.py --images ../shared/data/fashion_products/images   # the image pool

Each table: a photo (one of 400 files), a ~100-character title whose words depend on the class,
a numeric price, a categorical brand, 25 classes, and a split column (96% train, 2% val, 2% test).
Tables are written under data/scale/ (never committed) and reused when already there. Every train
and predict runs in its own process; its peak RSS is that process's maximum resident set.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CLASSES = 25
POOL = 400


def image_pool(source: str, folder: str) -> list[str]:
    """POOL image files copied from `source` into `folder` (paths relative to the table's folder)."""
    names = sorted(name for name in os.listdir(source) if name.lower().endswith((".jpg", ".jpeg", ".png")))[:POOL]
    os.makedirs(folder, exist_ok=True)
    for name in names:
        target = os.path.join(folder, name)
        if not os.path.exists(target):
            shutil.copyfile(os.path.join(source, name), target)
    return [f"images/{name}" for name in names]


def write_table(path: str, rows: int, images: list[str], seed: int = 0) -> None:
    """The table, written in blocks of 100,000 rows so that making it takes little memory."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    vocabulary = np.array([f"w{i:04d}" for i in range(5000)])
    class_words = rng.integers(0, 5000, size=(CLASSES, 40))
    brands = np.array([f"brand{i}" for i in range(60)])
    writer = None
    for start in range(0, rows, 100_000):
        count = min(100_000, rows - start)
        labels = rng.integers(0, CLASSES, count)
        words = rng.integers(0, 5000, size=(count, 16))
        own = class_words[labels[:, None], rng.integers(0, 40, size=(count, 5))]
        words[:, 0:15:3] = own  # five of sixteen words say the class
        texts = [" ".join(vocabulary[line]) for line in words]
        split = rng.choice(np.array(["train", "val", "test"]), count, p=[0.96, 0.02, 0.02])
        table = pa.table({
            "id": [f"p{start + i}" for i in range(count)],
            "image": np.array(images)[(labels * 16 + rng.integers(0, 16, count)) % len(images)],
            "text": texts,
            "price": np.round(rng.lognormal(3 + labels / 10, 0.5), 2),
            "brand": brands[(labels * 2 + rng.integers(0, 3, count)) % len(brands)],
            "label": [f"type{label:02d}" for label in labels],
            "split": split,
        })
        if path.endswith(".parquet"):
            writer = writer or pq.ParquetWriter(path, table.schema)
            writer.write_table(table)
        else:
            if writer is None:
                writer = pacsv.CSVWriter(path, table.schema)
            writer.write_table(table)
    writer.close()


def measured(command: list[str]) -> tuple[float, float, str]:
    """(seconds, peak RSS in GB, the output's tail) of a command run in a process of its own."""
    wrapper = ("import resource, subprocess, sys; result = subprocess.run(sys.argv[1:]); "
               "print('PEAK_KB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(result.returncode)")
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", wrapper, *command], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    peak = next((int(line.split()[1]) for line in result.stdout.splitlines() if line.startswith("PEAK_KB")), 0)
    if result.returncode:
        print(result.stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"failed: {' '.join(command)}")
    return seconds, peak / 2**20, result.stderr[-2000:]


def run_size(rows: int, kind: str, folder: str, images: list[str], steps: int, predict_rows: int) -> dict:
    table = os.path.join(folder, f"table-{rows}.{kind}")
    if not os.path.exists(table):
        started = time.perf_counter()
        write_table(table, rows, images)
        print(f"  wrote {table} in {time.perf_counter() - started:.0f} s", flush=True)
    run = os.path.join(folder, f"run-{rows}-{kind}")
    fusionapp = [sys.executable, "-m", "fusionapp"]
    seconds, peak, _ = measured(fusionapp + ["train", table, "--out", run, "--overwrite", "--tabular-col", "price",
                                             "--tabular-col", "brand", "--epochs", "1", "--steps-per-epoch",
                                             str(steps), "--seed", "0"])
    with open(os.path.join(run, "config.json")) as handle:
        config = json.load(handle)
    stages = config.get("stage_seconds", {})
    result = {"rows": rows, "format": kind, "train_s": round(seconds, 1), "train_peak_gb": round(peak, 2),
              **{f"{name}_s": value for name, value in stages.items()},
              "outside_network_s": round(sum(v for k, v in stages.items() if k != "network"), 1)}
    if predict_rows:
        out = os.path.join(folder, f"predictions-{rows}.{kind}")
        seconds, peak, _ = measured(fusionapp + ["predict", run, table, "--out", out])
        result.update(predict_s=round(seconds, 1), predict_rows_per_s=round(rows / seconds),
                      predict_peak_gb=round(peak, 2))
    return result


def big_cell(folder: str, images: list[str]) -> dict:
    """40 rows, one of whose texts is 20 MB (what an unbalanced quote in a CSV makes): train's peak RSS."""
    import csv

    path = os.path.join(folder, "big-cell.csv")
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "text", "label"])
        for i in range(40):
            text = ("lorem ipsum dolor sit amet " * 800_000)[:20_000_000] if i == 7 else f"short text {i % 2}"
            writer.writerow([images[i % len(images)], text, f"c{i % 2}"])
    seconds, peak, _ = measured([sys.executable, "-m", "fusionapp", "train", path, "--out",
                                 os.path.join(folder, "run-big-cell"), "--overwrite", "--epochs", "1"])
    return {"case": "40 rows, one 20 MB text", "train_s": round(seconds, 1), "train_peak_gb": round(peak, 2)}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,300000,1000000,3000000")
    parser.add_argument("--formats", default="csv,parquet")
    parser.add_argument("--steps", type=int, default=200, help="--steps-per-epoch of the one epoch trained")
    parser.add_argument("--predict", default="100000,1000000", help="sizes also predicted in full")
    parser.add_argument("--images", default=os.path.join(ROOT, "..", "shared", "data", "fashion_products", "images"))
    parser.add_argument("--folder", default=os.path.join(ROOT, "data", "scale"))
    parser.add_argument("--big-cell", action="store_true", help="also train on 40 rows with one 20 MB text")
    args = parser.parse_args()
    images = image_pool(args.images, os.path.join(args.folder, "images"))
    if args.big_cell:
        print("  " + json.dumps(big_cell(args.folder, images)), flush=True)
    predicted = {int(size) for size in args.predict.split(",") if size}
    results = []
    for rows in (int(size) for size in args.sizes.split(",")):
        for kind in args.formats.split(","):
            print(f"{rows} rows, {kind} ...", flush=True)
            results.append(run_size(rows, kind, args.folder, images, args.steps, rows if rows in predicted else 0))
            print("  " + json.dumps(results[-1]), flush=True)
    columns = list(dict.fromkeys(key for result in results for key in result))
    print("\n| " + " | ".join(columns) + " |\n|" + "---|" * len(columns))
    for result in results:
        print("| " + " | ".join(str(result.get(column, "")) for column in columns) + " |")
    peaks = {(result["rows"], result["format"]): result["train_peak_gb"] for result in results}
    for kind in args.formats.split(","):
        if (300_000, kind) in peaks and (3_000_000, kind) in peaks:
            print(f"{kind}: train peak RSS at 3,000,000 rows / at 300,000 rows = "
                  f"{peaks[3_000_000, kind] / peaks[300_000, kind]:.2f}")


if __name__ == "__main__":
    main()
