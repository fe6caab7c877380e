"""Training and prediction throughput on real-size JPEGs, against the compute ceiling.

    python benchmarks/throughput.py [--rows 2000] [--big-rows 20000] [--photo-size 480]
                                    [--image-size 64] [--batch-size 64] [--out benchmarks/results/throughput.json]

Generates (once, under data/throughput/) tables of photo-like JPEGs of --photo-size pixels, then
reports in one run:
  1. training samples/s through the real pipeline (files on disk, decode + resize + augment);
  2. the same model's training samples/s on the pipeline's batches replayed from memory (the
     compute ceiling); 1 and 2 are medians over --epochs timed epochs;
  3. the ratio 1/2 (how well decoding is hidden behind compute), one core's decoding time per
     photo (what limits 3 on a small machine), and the ratio with --pixel-cache memory after epoch 1;
  4. achieved FLOP/s of the training step (3 x forward FLOPs counted from the layers) against
     this machine's fp32 matmul peak measured now (4096^2 matmuls);
  5. `fusionapp predict RUN table.csv` rows/s end to end (cold process) and at steady state, and
     single-pair latency with the model loaded;
  6. peak resident memory of `fusionapp train` (1 epoch) on --rows vs --big-rows rows.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np


def make_photos(folder: str, rows: int, photo_size: int, seed: int = 0) -> str:
    """Photo-like JPEGs (smooth gradients, blobs, texture) with short texts and 3 labels."""
    from PIL import Image, ImageDraw, ImageFilter

    table = os.path.join(folder, "table.csv")
    if os.path.exists(table):
        with open(table) as handle:
            if sum(1 for _ in handle) - 1 == rows:
                return table
    os.makedirs(os.path.join(folder, "images"), exist_ok=True)
    rng = np.random.default_rng(seed)
    labels = ("indoor", "outdoor", "portrait")
    with open(table, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "text", "label"])
        for i in range(rows):
            label = labels[i % 3]
            y, x = np.mgrid[0:photo_size, 0:photo_size] / photo_size
            base = rng.uniform(0, 255, 3)
            pixels = np.stack([base[c] * (0.5 + 0.5 * np.sin(3 * x + c + rng.uniform()) * y) for c in range(3)], -1)
            image = Image.fromarray(np.clip(pixels + rng.normal(0, 12, pixels.shape), 0, 255).astype(np.uint8))
            draw = ImageDraw.Draw(image)
            for _ in range(6):
                x0, y0 = rng.integers(0, photo_size, 2)
                draw.ellipse([x0, y0, x0 + photo_size // 5, y0 + photo_size // 6], fill=tuple(rng.integers(0, 255, 3)))
            image = image.filter(ImageFilter.GaussianBlur(1))
            name = f"images/{i:06d}.jpg"
            image.save(os.path.join(folder, name), "JPEG", quality=85)
            writer.writerow([name, f"a {label} picture number {i % 97} with some words", label])
    return table


def count_forward_flops(model) -> int:
    """Multiply-adds x 2 of the convolutions and dense layers, for one example."""
    import keras

    flops = 0
    for layer in model.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Conv1D)):
            out = layer.output.shape[1:-1]
            kernel = int(np.prod(layer.kernel_size))
            flops += 2 * int(np.prod(out)) * kernel * layer.input.shape[-1] * layer.filters
        elif isinstance(layer, keras.layers.Dense):
            flops += 2 * layer.input.shape[-1] * layer.units
    return flops


def matmul_peak(dtype: str = "float32", size: int = 4096, repeats: int = 5) -> float:
    import tensorflow as tf

    a = tf.cast(tf.random.normal((size, size)), dtype)
    b = tf.cast(tf.random.normal((size, size)), dtype)
    (a @ b).numpy()
    started = time.perf_counter()
    for _ in range(repeats):
        (a @ b).numpy()
    return 2 * size**3 * repeats / (time.perf_counter() - started)


def samples_per_second(model, dataset, rows: int, epochs: int) -> float:
    """Median training samples/s over `epochs` timed epochs, after one untimed warm-up epoch."""
    model.fit(dataset, epochs=1, verbose=0)
    seconds = []
    for _ in range(epochs):
        started = time.perf_counter()
        model.fit(dataset, epochs=1, verbose=0)
        seconds.append(time.perf_counter() - started)
    return round(rows / float(np.median(seconds)), 1)


def decode_seconds_per_image(examples, prep, count: int = 300) -> float:
    """Read + decode + resize, one image at a time on one thread, as the pipeline does per image."""
    import tensorflow as tf

    from fusionapp.data.images import read_or_blank

    paths = tf.data.Dataset.from_tensor_slices(list(examples.images[:count]))
    options = tf.data.Options()
    options.threading.private_threadpool_size = 1
    decoded = paths.map(lambda path: prep.decode_image(read_or_blank(path))).with_options(options)
    for _ in decoded.take(20):
        pass
    started = time.perf_counter()
    n = sum(1 for _ in decoded)
    return (time.perf_counter() - started) / n


def peak_memory_of(command: list[str]) -> float:
    """Peak resident memory (GB) of a command, from GNU time."""
    done = subprocess.run(["/usr/bin/time", "-v", *command], capture_output=True, text=True, check=True)
    kilobytes = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr).group(1))
    return kilobytes / 1024**2


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--big-rows", type=int, default=20000)
    parser.add_argument("--photo-size", type=int, default=480)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per training figure (median)")
    parser.add_argument("--precision", default="float32", choices=["float32", "mixed_bfloat16"],
                        help="compute precision of every training here (float32 to compare with the fp32 peak)")
    parser.add_argument("--image-reduction", type=float, default=None,
                        help="the model's 1x1 reductions (default: the training default)")
    parser.add_argument("--out", default="benchmarks/results/throughput.json")
    args = parser.parse_args(argv)

    import keras

    from fusionapp import train
    from fusionapp.runs.load import load_run
    from fusionapp.settings import RunSettings
    from fusionapp.model import build_classifier
    from fusionapp.model.dtype_policy import precision_policy
    from fusionapp.data.pipeline import make_dataset, steps_per_pass
    from fusionapp.data.sources import load_examples
    from fusionapp.inference.raw_inference import predict_examples
    from fusionapp.inference.predict import predict_pair
    from fusionapp.inference.run_rows import run_columns

    figures = {}
    started = time.perf_counter()
    table = make_photos(os.path.join("data", "throughput", f"{args.rows}"), args.rows, args.photo_size)
    figures["generate_s"] = round(time.perf_counter() - started, 1)
    work = tempfile.mkdtemp()
    run = train(table, os.path.join(work, "run"), epochs=1, image_size=args.image_size, batch_size=args.batch_size,
                precision=args.precision, image_reduction=args.image_reduction, verbose=0, tune_decisions=False)
    loaded = load_run(run)
    prep = loaded.preprocessor
    # The saved model computes in float32; the one timed here trains under --precision, as train does.
    with precision_policy(args.precision):
        model = build_classifier(RunSettings.from_dict(loaded.config["settings"]).model, loaded.model.spec, prep)
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    examples = load_examples(table, run_columns(loaded), modalities=loaded.modalities)

    # 1. the real pipeline, 2. the same batches held in memory. Each is timed over several epochs
    # after a warm-up epoch (tracing, filling a cache), and the median epoch counts: one short
    # epoch on a shared 2-core machine varies by a factor of two.
    # A training pipeline is endless (pass after pass, as `fit` reads it); one pass is an epoch here.
    steps = steps_per_pass(len(examples), args.batch_size)
    pipeline = make_dataset(examples, prep, args.batch_size, training=True, augment=True).take(steps)
    figures["train_pipeline_samples_per_s"] = samples_per_second(model, pipeline, len(examples), args.epochs)
    # The pipeline's own batches, decoded, augmented and vectorised once, then replayed from memory:
    # the same shapes and arithmetic with no input work left.
    in_memory = pipeline.cache()
    figures["train_in_memory_samples_per_s"] = samples_per_second(model, in_memory, len(examples), args.epochs)
    figures["pipeline_over_memory"] = round(figures["train_pipeline_samples_per_s"]
                                            / figures["train_in_memory_samples_per_s"], 3)

    # What limits the ratio on a small machine: one core's time to read, decode and resize one
    # photo, and the cores that decoding alone needs to feed the compute ceiling.
    figures["decode_ms_per_image_one_core"] = round(1000 * decode_seconds_per_image(examples, prep), 2)
    figures["cores_decoding_needs_at_ceiling"] = round(
        figures["decode_ms_per_image_one_core"] / 1000 * figures["train_in_memory_samples_per_s"], 2)
    # With --pixel-cache memory, epochs after the first read decoded pixels (the warm-up fills the
    # cache) and still augment and vectorise per epoch.
    cached = make_dataset(examples, prep, args.batch_size, training=True, augment=True,
                          pixel_cache="memory").take(steps)
    figures["train_cached_samples_per_s"] = samples_per_second(model, cached, len(examples), args.epochs)
    figures["cached_over_memory"] = round(figures["train_cached_samples_per_s"]
                                          / figures["train_in_memory_samples_per_s"], 3)

    # 4. achieved FLOP/s of the training step against the measured matmul peak
    step_flops = 3 * count_forward_flops(model)
    figures["train_gflop_per_example"] = round(step_flops / 1e9, 4)
    figures["train_achieved_gflops"] = round(step_flops * figures["train_in_memory_samples_per_s"] / 1e9, 1)
    figures["matmul_peak_fp32_gflops"] = round(matmul_peak("float32") / 1e9, 1)
    figures["fraction_of_fp32_peak"] = round(figures["train_achieved_gflops"] / figures["matmul_peak_fp32_gflops"], 3)
    if args.precision == "mixed_bfloat16":
        figures["matmul_peak_bf16_gflops"] = round(matmul_peak("bfloat16") / 1e9, 1)
        figures["fraction_of_bf16_peak"] = round(figures["train_achieved_gflops"] / figures["matmul_peak_bf16_gflops"], 3)

    # 5. prediction: end to end in a fresh process, steady state in this one, single pair
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "fusionapp", "predict", run, table, "--out", os.path.join(work, "p.csv")],
                   check=True, capture_output=True)
    figures["predict_end_to_end_rows_per_s"] = round(len(examples) / (time.perf_counter() - started), 1)
    predict_examples(loaded.model, examples)
    started = time.perf_counter()
    predict_examples(loaded.model, examples)
    figures["predict_steady_rows_per_s"] = round(len(examples) / (time.perf_counter() - started), 1)
    image = examples.images[0]
    predict_pair(loaded, image=image, text="a picture", tabular={})
    latencies = []
    for _ in range(20):
        started = time.perf_counter()
        predict_pair(loaded, image=image, text="a picture", tabular={})
        latencies.append(time.perf_counter() - started)
    figures["single_pair_latency_ms"] = round(1000 * float(np.median(latencies)), 1)

    # 6. peak memory, 1 epoch, small vs big table
    if args.big_rows:
        big = make_photos(os.path.join("data", "throughput", f"{args.big_rows}"), args.big_rows, args.photo_size)
        common = ["--epochs", "1", "--image-size", str(args.image_size), "--no-tune-decisions",
                  "--precision", args.precision]
        if args.image_reduction is not None:
            common += ["--image-reduction", str(args.image_reduction)]
        small_gb = peak_memory_of([sys.executable, "-m", "fusionapp", "train", table, "--out",
                                   os.path.join(work, "m1"), *common])
        big_gb = peak_memory_of([sys.executable, "-m", "fusionapp", "train", big, "--out",
                                 os.path.join(work, "m2"), *common])
        figures.update(peak_memory_small_gb=round(small_gb, 2), peak_memory_big_gb=round(big_gb, 2),
                       peak_memory_ratio=round(big_gb / small_gb, 3))
    for name, value in figures.items():
        print(f"{name:<34} {value}")
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as handle:
        json.dump({"settings": vars(args), "figures": figures}, handle, indent=2)
    return figures


if __name__ == "__main__":
    main()
