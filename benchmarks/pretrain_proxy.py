"""Weights to measure pretrained backbones with where ImageNet's cannot be downloaded: a backbone
trained here, from scratch, on another labelled image set, and saved as a --backbone-weights file.

    python benchmarks/pretrain_proxy.py TABLE [--label-col label] [--split train] [--backbone mobilenet_v3_small]
                                        [--image-size 96] [--epochs 12] [--out benchmarks/results/proxy.weights.h5]

It trains the backbone without its top, plus global pooling and a softmax layer, on the rows of
--split (images only), and writes the backbone's weights (not the softmax layer's). A stand-in for
ImageNet: features learnt on a few thousand images of one domain, not on 1.3 million of a
thousand classes, so what it measures is the mechanism (a frozen pretrained backbone under
fusionapp's head, with the feature cache), not what ImageNet weights would score.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import time

import numpy as np


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("table")
    parser.add_argument("--label-col", default="label")
    parser.add_argument("--split", default="train")
    parser.add_argument("--backbone", default="mobilenet_v3_small")
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/results/proxy.weights.h5")
    args = parser.parse_args(argv)

    import keras
    import tensorflow as tf

    from fusionapp.model.backbones import build_backbone
    from fusionapp.preprocessing.image import decode_image

    keras.utils.set_random_seed(args.seed)
    folder = os.path.dirname(os.path.abspath(args.table))
    with open(args.table, newline="", encoding="utf-8") as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("split", args.split) == args.split]
    classes = sorted({row[args.label_col] for row in rows})
    labels = np.array([classes.index(row[args.label_col]) for row in rows])
    paths = [os.path.join(folder, row["image"]) for row in rows]
    images = tf.data.Dataset.from_tensor_slices(paths).map(
        lambda path: decode_image(tf.io.read_file(path), args.image_size), num_parallel_calls=tf.data.AUTOTUNE)
    pixels = np.stack(list(images.as_numpy_iterator()))
    held_out = np.random.default_rng(args.seed).random(len(rows)) < 0.1

    backbone = build_backbone(args.backbone, args.image_size)
    for layer in backbone.layers:
        # keras.applications' batch norm (momentum 0.99-0.999) is set for ImageNet's million steps;
        # over a thousand, its moving statistics would stay near their initial values, and the
        # frozen backbone that uses them would compute garbage.
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9
    inputs = keras.Input((args.image_size, args.image_size, 3), dtype="uint8")
    x = keras.layers.Rescaling(1.0)(inputs)
    x = keras.layers.RandomFlip("horizontal")(x)
    if args.backbone == "resnet50_v2":
        x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0)(x)
    x = keras.layers.GlobalAveragePooling2D()(backbone(x))
    x = keras.layers.Dropout(0.2)(x)
    model = keras.Model(inputs, keras.layers.Dense(len(classes))(x))
    steps = int(np.ceil((~held_out).sum() / args.batch_size)) * args.epochs
    model.compile(optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(2e-3, steps)),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    started = time.perf_counter()
    history = model.fit(pixels[~held_out], labels[~held_out], batch_size=args.batch_size, epochs=args.epochs,
                        validation_data=(pixels[held_out], labels[held_out]), verbose=2)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    backbone.save_weights(args.out)
    figures = {"backbone": args.backbone, "table": args.table, "label_col": args.label_col, "rows": len(rows),
               "classes": len(classes), "image_size": args.image_size, "epochs": args.epochs,
               "train_s": round(time.perf_counter() - started, 1),
               "held_out_accuracy": round(float(history.history["val_accuracy"][-1]), 4), "weights": args.out}
    print(json.dumps(figures, indent=2))
    return figures


if __name__ == "__main__":
    main()
