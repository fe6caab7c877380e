"""How text is cut into tokens: the one TextVectorization set-up that adapting the vocabulary and the
saved preprocessor share, so the n-grams counted when adapting are the ones looked up later."""

from __future__ import annotations

from fusionapp.preprocessing.configs import TextInput


def text_vectorizer(tokens: str, ngrams: int, text_input: TextInput, sequence_length: int | None = None,
                    max_tokens: int | None = None, name: str = "text_vectorizer"):
    """Lower-cased words (punctuation stripped, split on whitespace) or characters, in n-grams up to
    `ngrams`; for TF-IDF input it gives counts per n-gram, for token ids the ids cut or padded to
    `sequence_length`. `max_tokens` bounds the vocabulary when adapting."""
    import keras

    words = tokens == "words"
    token_ids = text_input == TextInput.TOKEN_IDS
    return keras.layers.TextVectorization(
        max_tokens=max_tokens, standardize="lower_and_strip_punctuation" if words else "lower",
        split="whitespace" if words else "character", ngrams=ngrams if ngrams > 1 else None,
        output_mode="int" if token_ids else "count",
        output_sequence_length=sequence_length if token_ids else None, name=name)


def wide_vectorizer(ngrams: int, max_tokens: int | None = None, name: str = "wide_vectorizer"):
    """The wide path's own n-grams: lower-cased characters in 1..`ngrams`-grams (spaces included, so
    n-grams at a word's edges mark them, and a language written without spaces is read as it is),
    counted into a sparse matrix: its vocabulary is far larger than the network's dense one."""
    import keras

    # Keras makes sparse outputs with TensorFlow only; under another backend a model file still
    # loads (its preprocessor unused: inputs come encoded), and encode_wide_text needs TensorFlow.
    return keras.layers.TextVectorization(max_tokens=max_tokens, standardize="lower", split="character",
                                          ngrams=ngrams, output_mode="count",
                                          sparse=keras.backend.backend() == "tensorflow", name=name)
