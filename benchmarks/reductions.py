"""Inception's 1x1 reductions in the image branch: multiply-adds per image and training samples/s.

    python benchmarks/reductions.py [--reductions 0,0.25,0.5] [--image-size 64] [--rows 1024]
                                    [--precision float32] [--out benchmarks/results/reductions.json]

For each `image_reduction`, builds the default fused model (image + TF-IDF text) and reports:
  - the image branch's multiply-adds per image (convolutions and its projection, counted from the
    layers), and the share the 5x5 convolutions take;
  - training samples/s on in-memory arrays (the network alone, no input pipeline): the median of
    3 timed epochs after a warm-up epoch.
Only Keras is used, so the same script times the model under KERAS_BACKEND=jax (on a GPU too).
Accuracy with and without reductions comes from benchmarks/quality.py (`--set image_reduction=0`).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np


def image_branch_macs(model) -> tuple[int, int]:
    """(multiply-adds per image of the image branch, of which in 5x5 convolutions)."""
    import keras

    total = five = 0
    for layer in model.layers:
        if not layer.name.startswith("image."):
            continue
        if isinstance(layer, keras.layers.Conv2D):
            macs = int(np.prod(layer.output.shape[1:-1])) * int(np.prod(layer.kernel_size)) \
                * layer.input.shape[-1] * layer.filters
            total += macs
            five += macs if layer.kernel_size == (5, 5) else 0
        elif isinstance(layer, keras.layers.Dense):
            total += layer.input.shape[-1] * layer.units
    return total, five


def samples_per_second(model, inputs, labels, batch_size: int, epochs: int = 3) -> float:
    model.fit(inputs, labels, batch_size=batch_size, epochs=1, verbose=0)
    seconds = []
    for _ in range(epochs):
        started = time.perf_counter()
        model.fit(inputs, labels, batch_size=batch_size, epochs=1, verbose=0)
        seconds.append(time.perf_counter() - started)
    return round(len(labels) / float(np.median(seconds)), 1)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reductions", default="0,0.25,0.5")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--rows", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--text-width", type=int, default=20001)
    parser.add_argument("--precision", default="float32")
    parser.add_argument("--out", default="benchmarks/results/reductions.json")
    args = parser.parse_args(argv)

    import keras

    from fusionapp.settings import ModelSettings
    from fusionapp.model import NetworkSpec, build_classifier
    from fusionapp.preprocessing.configs import TextInput

    keras.config.set_dtype_policy(args.precision)
    rng = np.random.default_rng(0)
    size = args.image_size
    inputs = {"image": rng.integers(0, 256, (args.rows, size, size, 3)).astype("uint8"),
              "text": (rng.random((args.rows, args.text_width)) < 0.003).astype("float32")}
    labels = rng.integers(0, 3, args.rows)
    results = {}
    for reduction in (float(value) for value in args.reductions.split(",")):
        settings = ModelSettings(modalities=("image", "text"), image_size=size, image_reduction=reduction)
        model = build_classifier(settings, NetworkSpec(3, size, TextInput.TF_IDF, args.text_width))
        model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        macs, five = image_branch_macs(model)
        results[str(reduction)] = {"image_branch_mmacs_per_image": round(macs / 1e6, 2),
                                   "share_in_5x5": round(five / macs, 3),
                                   "train_samples_per_s": samples_per_second(model, inputs, labels, args.batch_size)}
        print(f"reduction {reduction:<5} image branch {macs / 1e6:7.1f} M multiply-adds per image "
              f"({100 * five / macs:4.1f} % in 5x5), training {results[str(reduction)]['train_samples_per_s']} "
              f"samples/s ({keras.backend.backend()}, {args.precision})", flush=True)
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as handle:
        json.dump({"settings": vars(args), "backend": keras.backend.backend(), "results": results}, handle, indent=2)
    return results


if __name__ == "__main__":
    main()
