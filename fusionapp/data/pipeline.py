"""Examples -> tf.data pipelines of network inputs: rows in a seeded order, image files read and
decoded in parallel, text and tabular cells encoded per batch, all by the run's preprocessor.

Training reads an endless stream of passes over the rows, each pass in its own seeded order, so
step S of a run always sees the same batch: a run resumed after any step continues exactly as the
uninterrupted run would have.
"""

from __future__ import annotations

import math

import numpy as np

from fusionapp.data.examples import Examples, raw_columns
from fusionapp.data.images import read_or_blank
from fusionapp.data.sharding import Shard


def make_dataset(examples: Examples, preprocessor, batch_size: int, *, training: bool = False, seed: int = 0,
                 start_step: int = 0, augment: bool = False, modality_dropout: float = 0.0,
                 pixel_cache: str | None = None, shard: Shard | None = None, image_features=None,
                 text_features=None, service: str = ""):
    """Batches of ({"image", "text", "tabular"} network inputs, label targets).

    `training`: endless passes over the rows, pass p in the order of a permutation seeded by
    (seed, p), batched as one stream (a batch may span two passes), starting at step `start_step`;
    otherwise one pass in row order. `pixel_cache` keeps decoded, resized images after one
    decoding pass: "memory", or a file path for an on-disk array. `modality_dropout` blanks the
    image or the text of that share of rows each (never both), so the model learns to answer from
    what is there. `shard` keeps one share of the rows, before any file is read: each worker
    of a multi-worker strategy reads only its own. `image_features`
    (fusionapp.pretrained.features.ImageFeatures of these rows) replaces each image by its frozen
    backbone's feature map, and a blanked image by a blank image's map; `text_features`
    (fusionapp.pretrained.text_features.TextFeatures) likewise each text by its text backbone's
    pooled vector, and a blanked text by an empty text's. `service`, a tf.data
    service dispatcher's address: the training rows are read and decoded on its workers.
    """
    import tensorflow as tf

    rows = np.arange(len(examples)) if shard is None else shard.of_positions(len(examples))
    # Texts are looked up per batch from the rows' own strings instead of being copied into the
    # graph (a tf.data service's workers get the graph, so there they travel inside it).
    texts = None
    if "text" in preprocessor.modalities and not service:
        texts = np.empty(len(rows), dtype=object)
        texts[:] = [examples.texts[i] for i in rows]
    fetch = _fetcher(examples, preprocessor, rows, pixel_cache, image_features,
                     augment=augment and training and "image" in preprocessor.modalities and image_features is None,
                     drop=modality_dropout if training and {"image", "text"} <= set(preprocessor.modalities) else 0.0,
                     texts_later=texts is not None)
    if text_features is not None:
        # Indexed only when sharded, as the image features below.
        text_features = (text_features.vectors if len(rows) == len(examples) else text_features.vectors[rows],
                         text_features.blank)
    encode = _encoder(preprocessor, texts, text_features)
    autotune = tf.data.AUTOTUNE

    def batches(positions, on_service: str = ""):
        examples = positions.map(fetch, num_parallel_calls=autotune, deterministic=True)
        if on_service:
            examples = examples.apply(tf.data.experimental.service.distribute("distributed_epoch", on_service))
        return examples.batch(batch_size).map(encode, num_parallel_calls=autotune, deterministic=True)

    if training:
        dataset = _passes(len(rows), batch_size, seed, start_step, batches, service)
    else:
        dataset = batches(tf.data.Dataset.range(len(rows)).map(lambda i: (i, tf.zeros([2], tf.int64))))
    if shard is not None:
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
        dataset = dataset.with_options(options)
    return dataset.prefetch(autotune)


def steps_per_pass(rows: int, batch_size: int) -> int:
    return max(1, math.ceil(rows / batch_size))


def _passes(rows: int, batch_size: int, seed: int, start_step: int, batches, service: str = ""):
    """Endless passes from `start_step` on, as one stream of example numbers g: pass g // rows, in
    the order of a permutation of the rows seeded by (seed, pass). Each element is (row position,
    per-example seed pair). A flat range is what the tf.data service can split among its workers."""
    import tensorflow as tf

    def element(g):
        number, index = g // rows, g % rows
        position = tf.random.experimental.index_shuffle(index, tf.stack([tf.constant(seed, tf.int64), number]),
                                                        rows - 1)
        # Example g of the whole stream gets its own stateless seed pair, whatever the map's schedule.
        return position, tf.random.experimental.stateless_fold_in(tf.constant([seed, 1], tf.int64), g)

    # With a service, its workers read and decode; each example goes to one of them, once per pass
    # ("distributed epoch"), and batches form as they come back.
    return batches(tf.data.Dataset.range(start_step * batch_size, 2**62).map(element), on_service=service)


def _fetcher(examples: Examples, preprocessor, rows, pixel_cache, image_features, augment: bool, drop: float,
             texts_later: bool = False):
    """(row position, seed pair) -> (raw features of the row, its label target), image decoded.
    `texts_later`: the text is left to the encoder, which looks it up by `position`."""
    import tensorflow as tf

    modalities = preprocessor.modalities
    columns = raw_columns(examples, tuple(m for m in modalities if m != "text" or not texts_later),
                          preprocessor.tabular_kinds)
    # Image paths as indices into the distinct paths: a million rows over a pool of photos hold
    # a million integers, not a million strings.
    image_names, image_codes = _distinct(columns.pop("image")[rows]) if "image" in columns else (None, None)
    raw = {name: tf.constant(values[rows]) for name, values in columns.items()}
    del columns
    labels = tf.constant(preprocessor.label_targets(examples.labels)[rows])
    if image_features is not None:
        # Indexed only when sharded: the maps can be gigabytes, and a full index would copy them.
        store = image_features.maps if len(rows) == len(examples) else image_features.maps[rows]
        store_type, store_shape = tf.float16, list(image_features.maps.shape[1:])
        blank = tf.constant(image_features.blank, tf.float32)
    else:
        store = decoded_store(examples, preprocessor, rows, pixel_cache) if pixel_cache and "image" in modalities \
            else None
        store_type, store_shape, blank = tf.uint8, [preprocessor.image_size, preprocessor.image_size, 3], None

    def fetch(position, pair):
        features = {name: column[position] for name, column in raw.items()}
        if texts_later:
            features["position"] = position
        if image_names is not None:
            features["image"] = tf.gather(image_names, image_codes[position])
        if "image" in modalities:
            if store is not None:
                image = tf.numpy_function(lambda i: store[i], [position], store_type, stateful=False)
                image.set_shape(store_shape)
                image = tf.cast(image, tf.float32) if image_features is not None else image
            else:
                encoded = features["image"]
                image = preprocessor.decode_image(read_or_blank(encoded) if examples.images_are_files else encoded)
            features["image"] = image
        augment_seed, drop_seed = tf.unstack(tf.random.experimental.stateless_split(pair, 2))
        if augment:
            features["image"] = augment_image(features["image"], preprocessor.image_size, augment_seed)
        if drop:
            features = drop_modality(features, drop, drop_seed, blank)
        return features, labels[position]

    return fetch


def _distinct(values):
    """(tf string tensor of the distinct values, tf int32 tensor of each value's index in it)."""
    import tensorflow as tf

    index = {}
    codes = np.fromiter((index.setdefault(value, len(index)) for value in values), np.int32, len(values))
    return tf.constant(list(index) or [""], tf.string), tf.constant(codes)


def _encoder(preprocessor, texts=None, text_features=None):
    """A batch of raw features -> the network's inputs (text and tabular encoded per batch);
    `texts`, the rows' texts by position, when the features carry positions instead of texts;
    `text_features`, (the rows' text backbone vectors by position, an empty text's vector), read
    in place of the text."""
    import tensorflow as tf

    modalities = preprocessor.modalities

    def encode(features, label):
        dropped = features.get("drop_text")
        inputs = {}
        if "image" in modalities:
            inputs["image"] = features["image"]
        if text_features is not None:
            vectors, blank = text_features
            looked_up = tf.numpy_function(lambda positions: vectors[positions], [features["position"]], tf.float16,
                                          stateful=False)
            looked_up = tf.cast(tf.ensure_shape(looked_up, [None, vectors.shape[1]]), tf.float32)
            inputs["text"] = looked_up if dropped is None else tf.where(
                dropped[:, None], tf.constant(blank, tf.float32)[None], looked_up)
        elif "text" in modalities:
            if texts is not None:
                looked_up = tf.numpy_function(lambda positions: texts[positions], [features["position"]], tf.string,
                                              stateful=False)
                looked_up.set_shape([None])
                features = {**features, "text": looked_up if dropped is None else tf.where(dropped, "", looked_up)}
            inputs.update(preprocessor.encode_text_inputs(features["text"]))
        if "text" in modalities and preprocessor.wide_text is not None:
            inputs.update(preprocessor.blank_wide_text(tf.shape(inputs["text"])[0]))
        if "tabular" in modalities:
            inputs["tabular"] = preprocessor.encode_tabular(features)
        return inputs, label

    return encode


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
    if "text" not in features:  # looked up per batch later: the decision travels with the row
        return {**features, "image": image, "drop_text": drop_text}
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
