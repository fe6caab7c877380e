"""An explanation's words: each n-gram's gradient x input shared among the words it overlaps (the
network's TF-IDF features and the wide path's own), or, with token-id encoders, the probability
lost when each word is left out; the strongest TOP_TEXT of them."""

from __future__ import annotations

import dataclasses
import re
import weakref

import numpy as np

from fusionapp.data.examples import Examples
from fusionapp.inference.raw_inference import predict_examples
from fusionapp.preprocessing.configs import TextInput

TOP_TEXT = 10
MAX_LEFT_OUT_WORDS = 48
# One word per CJK / kana / Hangul / Thai character (scripts written without spaces), else runs
# of word characters: what text weights are reported for.
WORD = re.compile(r"[\u0e00-\u0e7f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]|\w+")


def text_weights(model, row: Examples, out: dict, predicted: int, base: float) -> list[list]:
    preprocessor, text = model.preprocessor, row.texts[0]
    if preprocessor.text.input != TextInput.TF_IDF:
        return top_words(left_out_words(model, row, text, predicted, base))
    weights = _ngram_weights(preprocessor, out["text"], out["text_gradient"])
    words = _words_of_ngrams(text, weights, preprocessor.text.tokens)
    if "wide_ids" in out:
        # The wide path's n-grams push the logits too: their gradient x input joins the words.
        contributions = out["wide_weights"] * out["wide_weights_gradient"]
        wide = _wide_ngram_weights(preprocessor, out["wide_ids"], contributions)
        for word, weight in _words_of_ngrams(text, wide, "chars").items():
            words[word] = words.get(word, 0.0) + weight
    return top_words(words)


def _wide_ngram_weights(preprocessor, ids, contributions) -> dict[str, float]:
    """The wide path's gradient x input per n-gram of the row (id 0: none), keyed by its text."""
    vocabulary = _vocabulary(preprocessor.wide_vectorizer)
    weights = {}
    for index, contribution in zip(ids, contributions):
        if index > 0 and contribution:
            text = vocabulary[index][0::2]  # characters joined by single spaces, as below
            weights[text] = weights.get(text, 0.0) + float(contribution)
    return weights


def _ngram_weights(preprocessor, features, gradient) -> dict[str, float]:
    """gradient x input per vocabulary n-gram of the row, keyed by the n-gram's text."""
    vocabulary = _vocabulary(preprocessor.text_vectorizer)
    chars = preprocessor.text.tokens == "chars"
    weights = {}
    for index in np.flatnonzero(features):
        entry = vocabulary[index]
        if index == 0 or not entry:
            continue  # the out-of-vocabulary slot
        # TextVectorization joins an n-gram's tokens with single spaces; characters sit at even places.
        text = entry[0::2] if chars else entry
        weights[text] = weights.get(text, 0.0) + float(features[index] * gradient[index])
    return weights


_VOCABULARIES = weakref.WeakKeyDictionary()


def _vocabulary(vectorizer) -> list[str]:
    if vectorizer not in _VOCABULARIES:
        _VOCABULARIES[vectorizer] = [str(token) for token in vectorizer.get_vocabulary()]
    return _VOCABULARIES[vectorizer]


def _words_of_ngrams(text: str, weights: dict[str, float], tokens: str) -> dict[str, float]:
    """Each n-gram's weight shared among its words: for word n-grams the words it joins, for
    character n-grams the words its occurrences in the text overlap (spaces and punctuation
    belong to no word)."""
    totals: dict[str, float] = {}

    def add(word, weight):
        totals[word] = totals.get(word, 0.0) + weight

    if tokens == "words":
        for ngram, weight in weights.items():
            parts = ngram.split()
            for part in parts:
                add(part, weight / len(parts))
        return totals
    lowered = " ".join(text.split()).lower()
    owner = [-1] * len(lowered)  # the word each character belongs to
    words = []
    for match in WORD.finditer(lowered):
        owner[match.start():match.end()] = [len(words)] * (match.end() - match.start())
        words.append(match.group())
    for ngram, weight in weights.items():
        starts, at = [], lowered.find(ngram)
        while at != -1:
            starts.append(at)
            at = lowered.find(ngram, at + 1)
        for start in starts:
            overlapped = set(owner[start:start + len(ngram)]) - {-1}
            for i in overlapped:
                add(words[i], weight / (len(starts) * len(overlapped)))
    return totals


def left_out_words(model, row: Examples, text: str, predicted: int, base: float) -> dict[str, float]:
    """For token-id encoders: the predicted class's probability lost when each word is left out."""
    matches = list(WORD.finditer(text))[:MAX_LEFT_OUT_WORDS]
    if not matches:
        return {}
    variants = [text[:m.start()] + text[m.end():] for m in matches]
    batch = dataclasses.replace(row.subset([0] * len(variants)), texts=variants)
    probabilities = predict_examples(model, batch).probabilities[:, predicted]
    totals: dict[str, float] = {}
    for match, probability in zip(matches, probabilities):
        word = match.group().lower()
        totals[word] = totals.get(word, 0.0) + float(base - probability)
    return totals


def top_words(weights: dict[str, float]) -> list[list]:
    ranked = sorted(weights.items(), key=lambda item: (-abs(item[1]), item[0]))
    return [[word, weight] for word, weight in ranked[:TOP_TEXT] if weight != 0.0]
