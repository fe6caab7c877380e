"""Learn the preprocessor's state from the training rows only: classes, vocabulary, idf, statistics."""

from __future__ import annotations

import dataclasses
from collections import Counter

import numpy as np

from fusionapp.errors import FusionError
from fusionapp.preprocessing.configs import ImageTextConfig, TabularColumn, TextConfig, TextInput, WideTextConfig
from fusionapp.preprocessing.labels import label_counts
from fusionapp.preprocessing.preprocessor import Preprocessor
from fusionapp.preprocessing.raw_values import (cut_text, is_missing_cell, normalize_category, normalize_text,
                                                numeric_problem, numeric_values, tabular_key)
from fusionapp.preprocessing.text import text_vectorizer, wide_vectorizer
from fusionapp.settings import TextSettings

# A column is numeric when this share of its filled cells are numbers; the rest are then bad rows
# (a typo in a price column) rather than turning the whole column into categories.
NUMERIC_SHARE = 0.9
MAX_CATEGORIES = 100
# The wide path's character n-grams: up to 5 characters, kept when at least WIDE_MIN_DOCUMENTS texts
# hold them (an n-gram of one text teaches a linear model nothing it can use again), at most
# WIDE_MAX_TOKENS of them, or fewer with many classes: its weights are vocabulary x classes floats.
WIDE_NGRAMS = 5
WIDE_MIN_DOCUMENTS = 2
WIDE_MAX_TOKENS = 262_144
WIDE_MAX_WEIGHTS = 2**24


def adapt(labels, texts, tabular_cells: dict, *, modalities, image_size: int, text: TextSettings,
          text_encoder: str, tabular_kinds: dict[str, str], source: str = "data",
          label_sep: str | None = None, min_label_count: int = 1, adapt_rows: int | None = None,
          seed: int = 0, wide: bool = False, backbone_text: TextConfig | None = None, text_tokenizer=None,
          image_text: ImageTextConfig | None = None) -> Preprocessor:
    """A Preprocessor adapted on these (training) rows. `tabular_cells` maps column -> raw cells;
    `text` is already resolved for `text_encoder` (see TextSettings.resolved). With `label_sep`
    the labels are sets (multi-label), and those on fewer than `min_label_count` rows are left out.
    The vocabulary and idf are learnt on a seeded sample of at most `adapt_rows` texts: their cost
    then stays bounded however many rows there are (the frequent n-grams a sample misses are rare).
    With `wide`, the wide path's own n-gram vocabulary and idf are learnt on the same sample.
    `backbone_text` (the text config of a pretrained text backbone) and its `text_tokenizer` replace
    the learnt text vocabulary; `image_text`, a joint image-text model's config, is kept as it is."""
    if label_sep is None:
        class_names = sorted(set(labels))
        if len(class_names) < 2:
            raise FusionError(f"{source}: the training rows have only one label ('{class_names[0]}'); "
                              "a classifier needs at least two")
    else:
        class_names = frequent_labels(labels, label_sep, min_label_count, source)[0]
    text_config, wide_config, state = None, None, {}
    if "text" in modalities:
        sample = _normalized(adapt_sample(texts, adapt_rows, seed), text.max_chars)
        if backbone_text is not None:
            text_config = dataclasses.replace(backbone_text, max_chars=text.max_chars)
        else:
            text_config, vocabulary, idf = _adapt_text(sample, text, text_encoder, source)
            state.update(vocabulary=vocabulary, idf=idf)
        if wide:
            classes = len(class_names)
            wide_config, wide_vocabulary, wide_idf = _adapt_wide(sample, classes)
            if wide_config is not None:
                state.update(wide_vocabulary=wide_vocabulary, wide_idf=wide_idf)
    tabular, means, stds = [], [], []
    if "tabular" in modalities:
        keys = {}
        for name, kind in tabular_kinds.items():
            clash = keys.setdefault(tabular_key(name), name)
            if clash != name:
                raise FusionError(f"tabular columns '{clash}' and '{name}' both become the input "
                                  f"'{tabular_key(name)}'; rename one")
            if kind == "numeric":
                values = numeric_values(tabular_cells[name]).astype(np.float64)
                values = values[np.isfinite(values)]
                std = float(values.std()) if values.size > 1 else 1.0
                means.append(float(values.mean()) if values.size else 0.0)
                stds.append(std if std > 1e-12 else 1.0)
                tabular.append(TabularColumn(name, kind))
            else:
                tabular.append(TabularColumn(name, kind, _categories(tabular_cells[name])))
        if means:
            state.update(means=means, stds=stds)
    preprocessor = Preprocessor(class_names, modalities, image_size, text=text_config, tabular=tabular,
                                label_sep=label_sep, wide_text=wide_config, text_tokenizer=text_tokenizer,
                                image_text=image_text)
    preprocessor.set_state(**state)
    return preprocessor


def adapt_sample(texts, adapt_rows: int | None, seed: int) -> list:
    """The texts, or a seeded sample of `adapt_rows` of them in their table order."""
    if adapt_rows is None or len(texts) <= adapt_rows:
        return list(texts)
    chosen = np.sort(np.random.default_rng(seed).choice(len(texts), adapt_rows, replace=False))
    return [texts[i] for i in chosen]


def frequent_labels(cells, label_sep: str, min_count: int, source: str = "data") -> tuple[list[str], dict[str, int]]:
    """The labels of a multi-label table's (training) cells on at least `min_count` rows, sorted; and
    the rarer ones with their counts."""
    counts = label_counts(cells, label_sep)
    kept = sorted(label for label, count in counts.items() if count >= min_count)
    if len(kept) < 2:
        found = f"only '{kept[0]}'" if kept else "none"
        raise FusionError(f"{source}: a multi-label model needs at least two labels on {min_count} or more "
                          f"training rows (--min-label-count), and {found} does ({len(counts)} labels seen; "
                          f"labels are read as sets joined by {label_sep!r})")
    return kept, {label: count for label, count in sorted(counts.items()) if count < min_count}


def _normalized(texts, max_chars: int | None) -> np.ndarray:
    """The texts as every consumer reads them: cut to `max_chars`, whitespace normalised."""
    if not len(texts):
        return np.array([], dtype=object)
    return np.concatenate([normalize_text(cut_text(np.array(texts[start:start + 8192], dtype=object),
                                                   max_chars)).numpy()
                           for start in range(0, len(texts), 8192)])


def _adapt_text(texts, text: TextSettings, text_encoder: str, source: str):
    bag = text_encoder == "bag"
    ngrams = text.ngrams if bag else 1
    counter = text_vectorizer(text.tokens, ngrams, TextInput.TF_IDF if bag else TextInput.TOKEN_IDS,
                              max_tokens=text.max_tokens)
    import tensorflow as tf

    # A dataset, not the array: Keras adapts an array in one call, n-grams of every text in one
    # tensor (gigabytes at 100,000 texts); a dataset is counted batch by batch.
    counter.adapt(tf.data.Dataset.from_tensor_slices(texts).batch(1024))
    vocabulary = [str(token) for token in counter.get_vocabulary(include_special_tokens=False)]
    if not vocabulary:
        raise FusionError(f"{source}: every training text is empty; train without text (--modalities) "
                          "or fill the text column")
    special = 1 if bag else 2  # the out-of-vocabulary slot, and for token ids the padding id too
    config = TextConfig(TextInput.TF_IDF if bag else TextInput.TOKEN_IDS, text.sequence_length, text.max_chars,
                        text.tokens, ngrams, len(vocabulary) + special)
    return config, vocabulary, (_idf_weights(texts, counter) if bag else None)


def _adapt_wide(texts, classes: int):
    """The wide path's vocabulary: the character n-grams of at least WIDE_MIN_DOCUMENTS texts, the
    most widespread first, and their idf as scikit-learn's smooth idf, ln((1 + n) / (1 + df)) + 1;
    the out-of-vocabulary slot (also the padding id) weighs 0."""
    import tensorflow as tf

    limit = max(1024, min(WIDE_MAX_TOKENS, WIDE_MAX_WEIGHTS // max(classes, 1)))
    # Counted by frequency first (C++), bounded well past the limit, then by the texts holding each.
    counter = wide_vectorizer(WIDE_NGRAMS, max_tokens=4 * limit)
    counter.adapt(tf.data.Dataset.from_tensor_slices(texts).batch(1024))
    documents = np.zeros(counter.vocabulary_size(), np.int64)
    for start in range(0, len(texts), 1024):
        counts = counter(tf.constant(texts[start:start + 1024]))
        documents += np.bincount(counts.indices[:, 1].numpy(), minlength=len(documents))
    vocabulary = np.array(counter.get_vocabulary(include_special_tokens=False), dtype=object)
    documents = documents[1:]
    keep = np.flatnonzero(documents >= WIDE_MIN_DOCUMENTS)
    keep = keep[np.argsort(-documents[keep], kind="stable")][:limit]
    if not len(keep):
        return None, None, None  # too few texts share an n-gram: the wide path reads tabular values only
    idf = np.log((1.0 + len(texts)) / (1.0 + documents[keep])) + 1.0
    config = WideTextConfig(WIDE_NGRAMS, len(keep) + 1, WIDE_MIN_DOCUMENTS)
    return config, [str(token) for token in vocabulary[keep]], np.concatenate([[0.0], idf])


def _idf_weights(texts, counter) -> np.ndarray:
    """Inverse document frequency per count column, log(1 + n / (1 + documents with the n-gram));
    the out-of-vocabulary column gets the mean."""
    import tensorflow as tf

    documents = np.zeros(counter.vocabulary_size())
    for start in range(0, len(texts), 1024):
        counts = counter(tf.constant(texts[start:start + 1024]))
        documents += np.asarray(tf.reduce_sum(tf.cast(counts > 0, tf.float32), axis=0))
    idf = np.log(1.0 + len(texts) / (1.0 + documents))
    idf[0] = idf[1:].mean()
    return idf


def _categories(cells) -> list[str]:
    """The most frequent categories (at most MAX_CATEGORIES), sorted; missing cells are none."""
    normalised = normalize_category(np.array([str(cell) for cell in cells], dtype=object)).numpy()
    counts = Counter(value.decode("utf-8") for value in normalised if value)
    return sorted(category for category, _ in counts.most_common(MAX_CATEGORIES))


def infer_tabular_kinds(tabular_cells: dict, forced: dict[str, str]) -> dict[str, str]:
    """Numeric when nearly all filled cells are numbers, unless the user said otherwise."""
    kinds = {}
    for name, cells in tabular_cells.items():
        if name in forced:
            kinds[name] = forced[name]
            continue
        filled = [cell for cell in cells if not is_missing_cell(cell)]
        numeric = sum(numeric_problem(cell) is None for cell in filled)
        kinds[name] = "numeric" if filled and numeric >= NUMERIC_SHARE * len(filled) else "categorical"
    return kinds
