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


class TextVectors:
    """The text backbone's pooled vectors of a run's training and validation rows, as its final model
    computes them: those the feature cache gave training (the backbone stayed frozen), else computed
    by `extractor` (holding the final weights): every validation row's once, when first asked for
    (they are asked for again and again), the training rows' for the rows asked for (once: all of
    them, or a big table's sample)."""

    def __init__(self, rows: dict, preprocessor, extractor, cached: dict | None = None):
        self._rows, self._preprocessor, self._extractor = rows, preprocessor, extractor
        self._cached = dict(cached or {})

    def of(self, which: str, positions=None) -> np.ndarray:
        """float32 [rows, hidden]: the vectors of the rows `which` ("train" or "val") at `positions`
        (None: all of them)."""
        if which == "val" and which not in self._cached:
            self._cached[which] = self._computed(self._rows[which].texts)
        if which in self._cached:
            vectors = self._cached[which]
            return np.asarray(vectors if positions is None else vectors[positions], np.float32)
        texts = self._rows[which].texts
        texts = texts if positions is None else [texts[i] for i in positions]
        return self._computed(texts)

    def _computed(self, texts) -> np.ndarray:
        return text_backbone_features(texts, self._preprocessor, self._extractor).vectors.astype(np.float32)


def _vectors(extractor, preprocessor, texts) -> np.ndarray:
    inputs = preprocessor.encode_text_inputs(np.array(texts, dtype=object))
    return np.asarray(extractor.predict_on_batch(inputs)).astype(np.float16)
