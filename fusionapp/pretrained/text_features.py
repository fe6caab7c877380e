"""Frozen text backbone vectors of a set of rows, each distinct text's computed once and kept in the
feature cache: training on them skips the transformer, which is nearly all of the text branch's cost."""

from __future__ import annotations

import hashlib
import dataclasses
from dataclasses import dataclass

import numpy as np

from fusionapp.pretrained.cache import fill_from_cache, fill_repeats

BATCH_SIZE = 64


@dataclass(frozen=True)
class TextFeatures:
    """One pooled vector per row (float16, [rows, hidden]) and that of an empty text (a missing one,
    or one blanked by modality dropout), with how many texts the cache already had."""

    vectors: np.ndarray
    blank: np.ndarray
    cached: int
    computed: int

    def subset(self, positions) -> "TextFeatures":
        return dataclasses.replace(self, vectors=self.vectors[positions])


def text_backbone_features(texts, preprocessor, extractor, cache=None) -> TextFeatures:
    """Every row's vector: from `cache` (a FeatureCache, or None) where it has the text, else
    tokenized by the preprocessor and run through `extractor` once per distinct text, and stored."""
    blank = _vectors(extractor, preprocessor, [""])[0]
    vectors = np.empty((len(texts), blank.shape[0]), dtype=np.float16)
    hashes = [hashlib.sha256(text.encode("utf-8")).hexdigest() if text else "" for text in texts]
    first, missing, cached = fill_from_cache(hashes, blank, vectors, cache)
    for start in range(0, len(missing), BATCH_SIZE):
        batch = missing[start:start + BATCH_SIZE]
        for row, vector in zip(batch, _vectors(extractor, preprocessor, [texts[i] for i in batch])):
            vectors[row] = vector
            if cache is not None:
                cache.put(hashes[row], vector)
    fill_repeats(hashes, first, vectors)
    return TextFeatures(vectors, blank, cached, len(missing))


def _vectors(extractor, preprocessor, texts) -> np.ndarray:
    inputs = preprocessor.encode_text_inputs(np.array(texts, dtype=object))
    return np.asarray(extractor.predict_on_batch(inputs)).astype(np.float16)
