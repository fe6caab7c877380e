"""Examples -> tf.data pipeline of model inputs: one stream per modality, zipped, with images
decoded in parallel from disk and text vectorised per batch."""

from __future__ import annotations

import numpy as np

from fusionapp.data.examples import Examples
from fusionapp.data.images import decode_or_blank, read_or_blank
from fusionapp.preprocessing import Preprocessing


def make_dataset(examples: Examples, prep: Preprocessing, modalities, batch_size: int,
                 with_labels: bool = True, shuffle: bool = False, augment: bool = False, seed: int = 0,
                 modality_dropout: float = 0.0, cache: str | None = None, shard: tuple[int, int] | None = None):
    """Batches of ({"image", "text", "tabular"} inputs, label index) ready for `model.fit`.

    Empty image paths and empty texts are missing values: a blank image, an empty text.
    `modality_dropout` blanks the image or the text of that share of rows each (never both), so
    the model learns to answer from what is there. `cache` keeps decoded, resized images after the
    first pass: "memory", or a file path prefix for tf.data's on-disk cache. `shard` = (count,
    index) keeps every count-th row from `index` on, before any file is read: a multi-worker
    strategy then gets each worker's share as is, instead of every worker decoding every image.
    """
    import tensorflow as tf

    autotune = tf.data.AUTOTUNE
    streams = {}
    if "image" in modalities:
        streams["image"] = tf.data.Dataset.from_tensor_slices(_as_string_tensor(examples.images))
    if "text" in modalities:
        streams["text"] = tf.data.Dataset.from_tensor_slices(_as_string_tensor(examples.texts))
    if "tabular" in modalities:
        streams["tabular"] = tf.data.Dataset.from_tensor_slices(prep.encode_tabular(examples))
    inputs = tf.data.Dataset.zip(streams)
    if with_labels:
        labels = tf.data.Dataset.from_tensor_slices(prep.label_indices(examples.labels))
        dataset = tf.data.Dataset.zip((inputs, labels))
    else:
        dataset = inputs.map(lambda features: (features,))
    if shard is not None:
        dataset = dataset.shard(*shard)

    size = prep.image_size
    from_files = examples.images_are_files

    def decode(features, *rest):
        encoded = read_or_blank(features["image"]) if from_files else features["image"]
        return ({**features, "image": decode_or_blank(encoded, size)}, *rest)

    decoded = False
    if cache and "image" in modalities:
        # Decoded pixels are cached before shuffling, so every epoch still sees a new order.
        dataset = dataset.map(decode, num_parallel_calls=autotune, deterministic=True)
        dataset = dataset.cache("" if cache == "memory" else cache)
        decoded = True
    if shuffle:
        # Without a cache only file names and small arrays are shuffled; pixels come later.
        dataset = dataset.shuffle(min(len(examples), 20_000 if not decoded else 4_096), seed=seed,
                                  reshuffle_each_iteration=True)
    augment = augment and "image" in modalities
    drop = modality_dropout if {"image", "text"} <= set(modalities) else 0.0
    if augment or drop:
        # One seed pair per example, new each epoch but fixed by `seed`: stateless random ops fed
        # from this stream give the same augmentation however the parallel map schedules work.
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        dataset = tf.data.Dataset.zip((dataset, seeds)).map(lambda element, pair: (*element, pair))

    if "image" in modalities and (not decoded or augment or drop):
        def load_image(features, *rest):
            if not decoded:
                features, *rest = decode(features, *rest)
            if augment or drop:
                *rest, pair = rest
                augment_seed, drop_seed = tf.unstack(tf.random.experimental.stateless_split(pair, 2))
                if augment:
                    features = {**features, "image": augment_image(features["image"], size, augment_seed)}
                if drop:
                    features = drop_modality(features, drop, drop_seed)
            return (features, *rest)

        dataset = dataset.map(load_image, num_parallel_calls=autotune, deterministic=True)
    dataset = dataset.batch(batch_size)
    if "text" in modalities:
        vectorizer = prep.text_vectorizer()

        def vectorize(features, *rest):
            return ({**features, "text": vectorizer(features["text"])}, *rest)

        dataset = dataset.map(vectorize, num_parallel_calls=autotune, deterministic=True)
    if not with_labels:
        dataset = dataset.map(lambda features: features)
    if shard is not None:
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
        dataset = dataset.with_options(options)
    return dataset.prefetch(autotune)


def drop_modality(features, rate: float, seed):
    """With probability `rate` each, blank the image or the text (one at most)."""
    import tensorflow as tf

    roll = tf.random.stateless_uniform([], seed)
    drop_image = roll < rate
    drop_text = (roll >= rate) & (roll < 2 * rate)
    image = tf.where(drop_image, tf.zeros_like(features["image"]), features["image"])
    text = tf.where(drop_text, tf.constant(""), features["text"])
    return {**features, "image": image, "text": text}


def augment_image(image, size: int, seed):
    """Light, label-preserving changes: a horizontal flip and a small random shift."""
    import tensorflow as tf

    flip_seed, crop_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    image = tf.image.stateless_random_flip_left_right(image, flip_seed)
    pad = max(size // 8, 1)
    image = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]], mode="REFLECT")
    return tf.image.stateless_random_crop(image, (size, size, 3), crop_seed)


def _as_string_tensor(values):
    if values and isinstance(values[0], bytes):
        return np.array(values, dtype=object)
    return np.array([str(value) for value in values], dtype=object)
