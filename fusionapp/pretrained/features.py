"""Frozen backbone features of a set of rows, each image's computed once and kept in the feature
cache: training on them skips the backbone, which is most of a pretrained model's cost."""

from __future__ import annotations

import hashlib
import dataclasses
from dataclasses import dataclass

import numpy as np

from fusionapp.pretrained.cache import fill_from_cache, fill_repeats
from fusionapp.runs.files import file_digest
from fusionapp.data.examples import Examples, raw_columns
from fusionapp.data.images import read_or_blank

BATCH_SIZE = 32


@dataclass(frozen=True)
class ImageFeatures:
    """One feature map per row (float16, [rows, h, w, c]) and that of a blank image (a missing
    one, or one blanked by modality dropout), with how many rows the cache already had."""

    maps: np.ndarray
    blank: np.ndarray
    cached: int
    computed: int

    def subset(self, positions) -> "ImageFeatures":
        return dataclasses.replace(self, maps=self.maps[positions])


def image_hashes(examples: Examples) -> list[str]:
    """sha256 of each row's image bytes; "" for a row without an image."""
    hashes, of_file = [], {}  # a file many rows share is read and hashed once
    for image in examples.images:
        if not image:
            hashes.append("")
            continue
        if examples.images_are_files:
            hashes.append(of_file.get(image) or of_file.setdefault(image, file_digest(image)))
        else:
            hashes.append(hashlib.sha256(image).hexdigest())
    return hashes


def backbone_features(examples: Examples, preprocessor, extractor, cache=None) -> ImageFeatures:
    """Every row's feature map: from `cache` (a FeatureCache, or None for none) where it has the
    image, else decoded and run through `extractor` once per distinct image, and stored."""
    import tensorflow as tf

    size = preprocessor.image_size
    blank = np.asarray(extractor(np.zeros((1, size, size, 3), np.uint8), training=False))[0].astype(np.float16)
    hashes = image_hashes(examples)
    # Filled in place, one map per row (the maps can be gigabytes): a row whose image another row
    # already has takes that row's map once it is known.
    maps = np.empty((len(hashes), *blank.shape), dtype=np.float16)
    first, missing, cached = fill_from_cache(hashes, blank, maps, cache)
    if missing:
        images = tf.data.Dataset.from_tensor_slices(raw_columns(examples, ("image",), {}, indices=missing)["image"])
        if examples.images_are_files:
            images = images.map(read_or_blank, num_parallel_calls=tf.data.AUTOTUNE)
        images = images.map(preprocessor.decode_image, num_parallel_calls=tf.data.AUTOTUNE)
        start = 0
        for batch in images.batch(BATCH_SIZE).prefetch(2).as_numpy_iterator():
            computed = np.asarray(extractor(batch, training=False)).astype(np.float16)
            for features, row in zip(computed, missing[start:start + len(batch)]):
                maps[row] = features
                if cache is not None:
                    cache.put(hashes[row], features)
            start += len(batch)
    fill_repeats(hashes, first, maps)
    return ImageFeatures(maps, blank, cached, len(missing))
