"""Epoch times of `fusionapp train` under each speed option, on one table.

    python benchmarks/speed_options.py [DATA] [--epochs 3] [--out benchmarks/results/speed_options.json]

DATA defaults to the demo set (created if missing). Each configuration trains from scratch with
the defaults plus its options; the table shows epoch 1 and the mean of later epochs (read from
history.csv), so the effect of caching decoded images shows as epoch 1 vs epoch 2+.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import tempfile
import time

# Each option against float32, so the table does not depend on what --precision auto picks here.
# (No comma in a name: --only takes a comma list of them.)
CONFIGURATIONS = {
    "float32 (no cache)": {"precision": "float32"},
    "pixel_cache=memory": {"precision": "float32", "pixel_cache": "memory"},
    "pixel_cache=disk": {"precision": "float32", "pixel_cache": "disk"},
    "precision=mixed_bfloat16": {"precision": "mixed_bfloat16"},
    "mixed_bfloat16 + pixel_cache=memory": {"precision": "mixed_bfloat16", "pixel_cache": "memory"},
    "jit (XLA)": {"precision": "float32", "jit": True},
}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", nargs="?")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--only", help="comma list of configuration names to run, of: " + " | ".join(CONFIGURATIONS))
    parser.add_argument("--out", default="benchmarks/results/speed_options.json")
    args = parser.parse_args(argv)
    chosen = [name.strip() for name in args.only.split(",")] if args.only else list(CONFIGURATIONS)
    unknown = [name for name in chosen if name not in CONFIGURATIONS]
    if unknown:
        parser.error(f"--only: unknown configuration {unknown[0]!r}")
    from fusionapp import make_demo, train

    demo = os.path.join("data", "demo", "demo.csv")  # where `fusionapp train` without DATA makes it
    data = args.data or (demo if os.path.exists(demo) else make_demo(os.path.dirname(demo)))
    extra = {"tabular_col": ("price", "seller")} if args.data is None else {}
    results = {}
    with tempfile.TemporaryDirectory() as work:
        for name in chosen:
            started = time.perf_counter()
            run = train(data, os.path.join(work, str(len(results))), epochs=args.epochs, patience=args.epochs,
                        verbose=0, **extra, **CONFIGURATIONS[name])
            wall = time.perf_counter() - started
            with open(os.path.join(run, "history.csv"), newline="") as handle:
                seconds = [float(row["seconds"]) for row in csv.DictReader(handle)]
            with open(os.path.join(run, "metrics.json")) as handle:
                accuracy = json.load(handle)["accuracy"]
            later = seconds[1:] or seconds
            results[name] = {"epoch1_s": round(seconds[0], 2), "later_epoch_s": round(sum(later) / len(later), 2),
                             "wall_s": round(wall, 1), "val_accuracy": round(accuracy, 4)}
            print(f"{name:<30} epoch 1 {seconds[0]:6.2f} s   later {results[name]['later_epoch_s']:6.2f} s   "
                  f"wall {wall:6.1f} s   val acc {accuracy:.4f}", flush=True)
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as handle:
        json.dump({"data": data, "epochs": args.epochs, "results": results}, handle, indent=2)
    return results


if __name__ == "__main__":
    main()
