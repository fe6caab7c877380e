"""Pretrained image backbones: what the feature cache saves, and the head over the feature map.

    python benchmarks/backbone.py [--backbone mobilenet_v3_small] [--weights PATH|imagenet]
                                  [--rows 600] [--image-size 0] [--epochs 3]
                                  [--heads-data data/demo/demo.csv] [--out benchmarks/results/backbone.json]

On --rows photo-like 480 px JPEGs (made once under data/throughput/, as benchmarks/throughput.py
makes them), `fusionapp train` with the frozen backbone is run three times, with image + text:
  1. --no-feature-cache: the backbone runs in every training step, on decoded, augmented images;
  2. feature cache cold: each image's features are computed once, then the epochs train on them;
  3. feature cache warm: a second run of the same setup, which finds every image in the cache.
Each reports its wall time and its training samples/s (the median epoch of history.csv), and 2
reports the time the features took. Then 4. --fine-tune 30 samples/s (median of 3 epochs).

5. The head: image-only macro-F1 on --heads-data (test split) with a multi-kernel block over the
feature map, against global pooling alone (--backbone-head pool), over --seeds seeds.

Without --weights, the backbone gets seeded random weights saved to a file, which times
everything truly but says nothing of accuracy: give a real weights file (or `imagenet`, with the
file in $KERAS_HOME/models) for figure 5 to mean anything.
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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from throughput import make_photos  # noqa: E402


def epoch_samples_per_s(run: str, rows: int, first_epoch: int = 1) -> float:
    with open(os.path.join(run, "history.csv")) as handle:
        seconds = [float(row["seconds"]) for row in csv.DictReader(handle) if int(row["epoch"]) >= first_epoch]
    return round(rows / statistics.median(seconds), 1)


def timed_train(table, out, **settings):
    from fusionapp import train

    started = time.perf_counter()
    run = train(table, out, verbose=0, tune_decisions=False, wide=False, **settings)
    with open(os.path.join(run, "config.json")) as handle:
        config = json.load(handle)
    return run, config, round(time.perf_counter() - started, 1)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="mobilenet_v3_small")
    parser.add_argument("--weights", help="a weights file, or imagenet (default: seeded random weights, saved)")
    parser.add_argument("--rows", type=int, default=600)
    parser.add_argument("--photo-size", type=int, default=480)
    parser.add_argument("--image-size", type=int, default=0, help="0: the backbone default, 224")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--heads-data", default=os.path.join("data", "demo", "demo.csv"))
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/results/backbone.json")
    args = parser.parse_args(argv)

    work = tempfile.mkdtemp(prefix="fusionapp-backbone-bench-")
    # A private feature cache, so "cold" is cold whatever ran before.
    os.environ["FUSIONAPP_CACHE_DIR"] = os.path.join(work, "features")
    weights = args.weights
    if weights is None:
        import keras

        from fusionapp.model.backbones import build_backbone

        keras.utils.set_random_seed(0)
        weights = os.path.join(work, f"{args.backbone}.weights.h5")
        build_backbone(args.backbone, 224).save_weights(weights)
    common = {"image_backbone": args.backbone, "backbone_weights": weights, "image_size": args.image_size,
              "epochs": args.epochs, "patience": args.epochs, "modalities": ("image", "text")}
    table = make_photos(os.path.join("data", "throughput", f"{args.rows}"), args.rows, args.photo_size)
    figures = {"backbone": args.backbone, "weights": "random (seeded)" if args.weights is None else args.weights,
               "rows": args.rows, "epochs": args.epochs}

    for name, extra in (("no_feature_cache", {"feature_cache": False}), ("feature_cache_cold", {}),
                        ("feature_cache_warm", {})):
        run, config, wall = timed_train(table, os.path.join(work, name), **common, **extra)
        train_rows = config["n_train"]
        figures[name] = {"wall_s": wall, "train_samples_per_s": epoch_samples_per_s(run, train_rows),
                         "image_size": config["settings"]["model"]["image_size"]}
        if "feature_cache" in config.get("backbone", {}):
            figures[name]["feature_cache"] = {key: value for key, value in config["backbone"]["feature_cache"].items()
                                              if key != "folder"}
        print(name, figures[name], flush=True)
    # The cold run's extra time is the features' computation (plus hashing and writing them).
    figures["features_computed_s"] = round(figures["feature_cache_cold"]["wall_s"]
                                           - figures["feature_cache_warm"]["wall_s"], 1)
    figures["feature_cache_speedup_per_epoch"] = round(figures["feature_cache_warm"]["train_samples_per_s"]
                                                       / figures["no_feature_cache"]["train_samples_per_s"], 1)
    figures["feature_cache_speedup_whole_run_warm"] = round(figures["no_feature_cache"]["wall_s"]
                                                            / figures["feature_cache_warm"]["wall_s"], 2)
    figures["feature_cache_speedup_whole_run_cold"] = round(figures["no_feature_cache"]["wall_s"]
                                                            / figures["feature_cache_cold"]["wall_s"], 2)

    run, config, wall = timed_train(table, os.path.join(work, "fine_tune"), **{**common, "epochs": 1},
                                    fine_tune=30, fine_tune_epochs=3)
    figures["fine_tune_30_layers"] = {"wall_s": wall,
                                      "train_samples_per_s": epoch_samples_per_s(run, config["n_train"], 2)}
    print("fine_tune", figures["fine_tune_30_layers"], flush=True)

    if os.path.exists(args.heads_data):
        heads = {}
        for head in ("multi-kernel", "pool"):
            scores = []
            for seed in range(args.seeds):
                run, _, _ = timed_train(args.heads_data, os.path.join(work, f"head-{head}-{seed}"),
                                        **{**common, "modalities": ("image",), "epochs": 10, "patience": 4},
                                        backbone_head=head, seed=seed)
                with open(os.path.join(run, "test_metrics.json")) as handle:
                    scores.append(json.load(handle)["macro_f1"])
            heads[head] = {"image_only_macro_f1": round(statistics.mean(scores), 4),
                           "sd": round(statistics.pstdev(scores), 4), "seeds": args.seeds}
            print("head", head, heads[head], flush=True)
        figures["heads"] = {"data": args.heads_data, **heads}

    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as handle:
        json.dump(figures, handle, indent=2)
    print(json.dumps(figures, indent=2))
    return figures


if __name__ == "__main__":
    main()
