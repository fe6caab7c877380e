"""Everything adapted on the training rows only (labels, text vocabulary, tabular statistics),
saved inside the run so prediction turns raw inputs into the same tensors as training did."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field

import numpy as np

from fusionapp.config import Columns, TextSettings
from fusionapp.data.examples import Examples, numeric_problem, parse_number
from fusionapp.errors import FusionError

# A column is numeric when this share of its filled cells are numbers; the rest are then bad rows
# (a typo in a price column) rather than turning the whole column into categories.
NUMERIC_SHARE = 0.9
MAX_CATEGORIES = 100


@dataclass
class TabularColumn:
    name: str
    kind: str  # "numeric" or "categorical"
    mean: float = 0.0
    std: float = 1.0
    categories: list[str] = field(default_factory=list)

    @property
    def width(self) -> int:
        # numeric: value + missing flag; categorical: one slot per category + one for unknown/missing
        return 2 if self.kind == "numeric" else len(self.categories) + 1


@dataclass
class Preprocessing:
    class_names: list[str]
    image_size: int
    text_tokens: str = "words"
    sequence_length: int = 64
    vocabulary: list[str] = field(default_factory=list)
    # "sequence": token ids; "counts": n-gram counts, weighted inside the model by `idf_weights`;
    # "tf_idf": TF-IDF weights (runs saved before fusionapp 0.2)
    text_mode: str = "sequence"
    ngrams: int = 1
    idf_weights: list[float] = field(default_factory=list)
    tabular: list[TabularColumn] = field(default_factory=list)

    # === Labels ===
    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def label_indices(self, labels) -> np.ndarray:
        index = {name: i for i, name in enumerate(self.class_names)}
        return np.array([index[label] for label in labels], dtype=np.int32)

    # === Text ===
    @property
    def vocabulary_size(self) -> int:
        return len(self.vocabulary) + 2  # padding and out-of-vocabulary ids come first

    @property
    def count_idf_weights(self) -> list[float]:
        """One idf weight per count column: the out-of-vocabulary slot (given the mean) first."""
        weights = list(self.idf_weights)
        return [float(np.mean(weights)) if weights else 1.0, *weights]

    def text_vectorizer(self):
        """A TextVectorization layer holding the saved state: raw strings -> token ids, n-gram
        counts, or TF-IDF weights. Built once: its lookup table over a large vocabulary costs far
        more than vectorising one request."""
        cached = self.__dict__.get("_vectorizer")
        if cached is None:
            if self.text_mode == "counts":
                cached = _make_vectorizer(self.text_tokens, self.sequence_length, vocabulary=self.vocabulary,
                                          ngrams=self.ngrams, output_mode="count")
            elif self.text_mode == "tf_idf":
                cached = _make_vectorizer(self.text_tokens, self.sequence_length, vocabulary=self.vocabulary,
                                          ngrams=self.ngrams, idf_weights=self.idf_weights)
            else:
                cached = _make_vectorizer(self.text_tokens, self.sequence_length, vocabulary=self.vocabulary)
            self.__dict__["_vectorizer"] = cached  # not a dataclass field, so to_dict() leaves it out
        return cached

    # === Tabular ===
    @property
    def tabular_width(self) -> int:
        return sum(column.width for column in self.tabular)

    @property
    def tabular_kinds(self) -> dict[str, str]:
        return {column.name: column.kind for column in self.tabular}

    def encode_tabular(self, examples: Examples) -> np.ndarray:
        """Raw cells -> float32 matrix: normalised numbers with missing flags, one-hot categories."""
        parts = []
        for column in self.tabular:
            cells = examples.tabular[column.name]
            if column.kind == "numeric":
                values = np.array([_number_or_nan(cell) for cell in cells], dtype=np.float64)
                missing = np.isnan(values)
                normalised = np.where(missing, 0.0, (values - column.mean) / column.std)
                parts.append(np.stack([normalised, missing.astype(np.float64)], axis=1))
            else:
                slot = {category: i + 1 for i, category in enumerate(column.categories)}
                indices = np.array([slot.get(cell.strip(), 0) for cell in cells])
                parts.append(np.eye(column.width)[indices])
        if not parts:
            return np.zeros((len(examples), 0), dtype=np.float32)
        return np.concatenate(parts, axis=1).astype(np.float32)

    # === Config ===
    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "Preprocessing":
        values = dict(values)
        values["tabular"] = [TabularColumn(**column) for column in values.get("tabular", [])]
        return cls(**values)


def adapt(train: Examples, text: TextSettings, image_size: int, modalities,
          tabular_kinds: dict[str, str], text_mode: str = "sequence") -> Preprocessing:
    """Learn the preprocessing state from the training rows only."""
    bag = text_mode in ("counts", "tf_idf")
    text = text.resolved("bag" if bag else "cnn")
    class_names = sorted(set(train.labels))
    if len(class_names) < 2:
        raise FusionError(f"{train.source}: the training rows have only one label ('{class_names[0]}'); "
                          "a classifier needs at least two")
    vocabulary, idf_weights = [], []
    ngrams = text.ngrams if bag else 1
    if "text" in modalities:
        texts = np.array(train.texts, dtype=object)
        vectorizer = _make_vectorizer(text.tokens, text.sequence_length, max_tokens=text.max_tokens,
                                      ngrams=ngrams, output_mode="count" if bag else "int")
        vectorizer.adapt(texts)
        vocabulary = [str(token) for token in vectorizer.get_vocabulary(include_special_tokens=False)]
        if bag:
            idf_weights = _idf_weights(texts, text.tokens, vocabulary, ngrams)
    tabular = []
    if "tabular" in modalities:
        tabular = [_adapt_column(name, kind, train.tabular[name]) for name, kind in tabular_kinds.items()]
    return Preprocessing(class_names=class_names, image_size=image_size, text_tokens=text.tokens,
                         sequence_length=text.sequence_length, vocabulary=vocabulary, tabular=tabular,
                         text_mode=text_mode, ngrams=ngrams, idf_weights=idf_weights)


def _idf_weights(texts, tokens: str, vocabulary: list[str], ngrams: int) -> list[float]:
    """Keras' inverse document frequency, log(1 + n / (1 + document count)), per vocabulary entry."""
    present = _make_vectorizer(tokens, 1, vocabulary=vocabulary, ngrams=ngrams, output_mode="multi_hot")
    counts = np.zeros(len(vocabulary) + 1)
    for start in range(0, len(texts), 1024):
        counts += np.asarray(present(texts[start:start + 1024])).sum(axis=0)
    return [float(w) for w in np.log(1.0 + len(texts) / (1.0 + counts[1:]))]


def infer_tabular_kinds(examples: Examples, columns: Columns) -> dict[str, str]:
    """Numeric when nearly all filled cells are numbers, unless the user said otherwise."""
    forced = columns.tabular_kinds
    kinds = {}
    for name in columns.tabular_names:
        if name in forced:
            kinds[name] = forced[name]
            continue
        filled = [cell for cell in examples.tabular[name] if cell.strip()]
        numeric = sum(numeric_problem(cell) is None for cell in filled)
        kinds[name] = "numeric" if filled and numeric >= NUMERIC_SHARE * len(filled) else "categorical"
    return kinds


def _adapt_column(name: str, kind: str, cells: list[str]) -> TabularColumn:
    if kind == "numeric":
        values = np.array([_number_or_nan(cell) for cell in cells], dtype=np.float64)
        values = values[np.isfinite(values)]
        mean = float(values.mean()) if values.size else 0.0
        std = float(values.std()) if values.size > 1 else 1.0
        return TabularColumn(name, kind, mean=mean, std=std if std > 1e-12 else 1.0)
    counts = Counter(cell.strip() for cell in cells if cell.strip())
    categories = sorted(category for category, _ in counts.most_common(MAX_CATEGORIES))
    return TabularColumn(name, kind, categories=categories)


def _number_or_nan(cell: str) -> float:
    try:
        number = parse_number(cell)
    except ValueError:
        return float("nan")
    return float("nan") if number is None else number


def _make_vectorizer(tokens: str, sequence_length: int, max_tokens: int | None = None, vocabulary=None,
                     ngrams: int = 1, output_mode: str | None = None, idf_weights=None):
    import keras

    if tokens not in ("words", "chars"):
        raise FusionError(f"text tokens must be 'words' or 'chars' (got '{tokens}')")
    output_mode = output_mode or ("tf_idf" if idf_weights else "int")
    return keras.layers.TextVectorization(
        max_tokens=max_tokens,
        standardize="lower_and_strip_punctuation" if tokens == "words" else "lower",
        split="whitespace" if tokens == "words" else "character",
        ngrams=ngrams if ngrams > 1 else None,
        output_mode=output_mode,
        output_sequence_length=sequence_length if output_mode == "int" else None,
        vocabulary=vocabulary or None,
        idf_weights=idf_weights or None,
    )
