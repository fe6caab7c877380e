"""Examples -> tf.data pipeline of network inputs for `model.fit`: rows in a seeded order, image files
read and decoded in parallel, text and tabular cells encoded per batch, all by the run's preprocessor."""

from __future__ import annotations

import numpy as np

from fusionapp.data.examples import Examples, raw_columns
from fusionapp.data.images import read_or_blank


def make_dataset(examples: Examples, preprocessor, batch_size: int, shuffle: bool = False, augment: bool = False, seed: int = 0, modality_dropout: float = 0.0,
                 cache: str | None = None, shard: tuple[int, int] | None = None, image_features=None):
    """Batches of ({"image", "text", "tabular"} network inputs, label index).

    The order comes from shuffling row positions (a full shuffle, whatever the table's size), and
    each position then fetches its row, so caching decoded images cannot change it. `cache` keeps
    decoded, resized images after one decoding pass: "memory", or a file path for an on-disk array.
    `modality_dropout` blanks the image or the text of that share of rows each (never both), so the
    model learns to answer from what is there. `shard` = (count, index) keeps every count-th row from
    `index` on, before any file is read: each worker of a multi-worker strategy reads only its share.
    `image_features` (fusionapp.data.features.ImageFeatures of these rows) replaces each image by
    its frozen backbone's feature map, and a blanked image by a blank image's map; images are then
    not augmented, their features being computed once.
    """
    import tensorflow as tf

    autotune = tf.data.AUTOTUNE
    modalities = preprocessor.modalities
    rows = np.arange(len(examples))
    if shard is not None:
        rows = rows[shard[1]::shard[0]]
    raw = {name: tf.constant(values[rows]) for name, values in
           raw_columns(examples, modalities, preprocessor.tabular_kinds).items()}
    labels = tf.constant(preprocessor.label_targets(examples.labels)[rows])
    if image_features is not None:
        # Indexed only when sharded: the maps can be gigabytes, and a full index would copy them.
        store = image_features.maps if shard is None else image_features.maps[rows]
        store_type = tf.float16
        store_shape, blank = list(image_features.maps.shape[1:]), tf.constant(image_features.blank, tf.float32)
    else:
        store = decoded_store(examples, preprocessor, rows, cache) if cache and "image" in modalities else None
        store_type, store_shape, blank = tf.uint8, [preprocessor.image_size, preprocessor.image_size, 3], None
    from_files = examples.images_are_files

    positions = tf.data.Dataset.range(len(rows))
    if shuffle:
        positions = positions.shuffle(max(len(rows), 1), seed=seed, reshuffle_each_iteration=True)
    augment = augment and "image" in modalities and image_features is None
    drop = modality_dropout if {"image", "text"} <= set(modalities) else 0.0
    if augment or drop:
        # One seed pair per example, new each epoch but fixed by `seed`: stateless random ops fed
        # from this stream give the same draws however the parallel map schedules work.
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        positions = tf.data.Dataset.zip((positions, seeds))
    else:
        positions = positions.map(lambda position: (position, tf.zeros([2], tf.int64)))

    def fetch(position, pair):
        features = {name: column[position] for name, column in raw.items()}
        if "image" in modalities:
            if store is not None:
                image = tf.numpy_function(lambda i: store[i], [position], store_type, stateful=False)
                image.set_shape(store_shape)
                if image_features is not None:
                    image = tf.cast(image, tf.float32)
            else:
                image = preprocessor.decode_image(read_or_blank(features["image"]) if from_files else features["image"])
            features["image"] = image
        if augment or drop:
            augment_seed, drop_seed = tf.unstack(tf.random.experimental.stateless_split(pair, 2))
            if augment:
                features["image"] = augment_image(features["image"], preprocessor.image_size, augment_seed)
            if drop:
                features = drop_modality(features, drop, drop_seed, blank)
        return features, labels[position]

    dataset = positions.map(fetch, num_parallel_calls=autotune, deterministic=True).batch(batch_size)

    def encode(features, label):
        inputs = {}
        if "image" in modalities:
            inputs["image"] = features["image"]
        if "text" in modalities:
            inputs["text"] = preprocessor.encode_text(features["text"])
        if "tabular" in modalities:
            inputs["tabular"] = preprocessor.encode_tabular(features)
        return inputs, label

    dataset = dataset.map(encode, num_parallel_calls=autotune, deterministic=True)
    if shard is not None:
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
        dataset = dataset.with_options(options)
    return dataset.prefetch(autotune)


def decoded_store(examples: Examples, preprocessor, rows, cache: str):
    """Every image of `rows` decoded and resized once, in order: a uint8 array [rows, size, size, 3]
    in memory (cache "memory") or in a file mapped into memory (cache = that file's path)."""
    import tensorflow as tf

    size = preprocessor.image_size
    shape = (len(rows), size, size, 3)
    if cache == "memory":
        store = np.empty(shape, dtype=np.uint8)
    else:
        store = np.lib.format.open_memmap(cache, mode="w+", dtype=np.uint8, shape=shape)
    images = tf.data.Dataset.from_tensor_slices(raw_columns(examples, ("image",), {})["image"][rows])
    if examples.images_are_files:
        images = images.map(read_or_blank, num_parallel_calls=tf.data.AUTOTUNE)
    images = images.map(preprocessor.decode_image, num_parallel_calls=tf.data.AUTOTUNE).batch(256)
    start = 0
    for batch in images.as_numpy_iterator():
        store[start:start + len(batch)] = batch
        start += len(batch)
    return store


def drop_modality(features, rate: float, seed, blank_image=None):
    """With probability `rate` each, blank the image or the text (one at most): the same blank
    values a missing input has (an all-zero image, or `blank_image`, its features; an empty text)."""
    import tensorflow as tf

    roll = tf.random.stateless_uniform([], seed)
    drop_image = roll < rate
    drop_text = (roll >= rate) & (roll < 2 * rate)
    blank_image = tf.zeros_like(features["image"]) if blank_image is None else blank_image
    image = tf.where(drop_image, blank_image, features["image"])
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
