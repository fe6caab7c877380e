"""What the audit's own model reads of a row, learnt without labels: hashed character n-grams of the
text (TF-IDF; hashing needs no vocabulary, so chunks of a big table are encoded alike, and n-grams
need no spaces between words), the tabular cells (numbers standardised, categories hashed) and the
image thumbnail (standardised). A 32-wide SVD of the same features is the row's embedding, where
the audit measures how far a row is from the rest.

Only the TF-IDF weights, the standardisation and the SVD are fitted, on a sample of rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fusionapp.audit.signals import THUMBNAIL_WIDTH
from fusionapp.data.examples import Examples
from fusionapp.preprocessing.raw_values import numeric_values

# Few enough columns that lbfgs fits a fold in seconds; n-grams sharing a column cost the audit little.
TEXT_FEATURES = 2**16
TABULAR_FEATURES = 2**10
EMBEDDING_WIDTH = 32


@dataclass
class Featurizer:
    """The fitted parts: TF-IDF, the numeric columns' means and spreads, the thumbnails' and the SVD."""

    modalities: tuple[str, ...]
    tabular_kinds: dict[str, str]
    tfidf: object | None = None
    numeric_stats: dict[str, tuple[float, float]] | None = None
    image_stats: tuple[np.ndarray, np.ndarray] | None = None
    svd: object | None = None

    def fit(self, examples: Examples, thumbnails: np.ndarray, seed: int) -> "Featurizer":
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfTransformer

        if "text" in self.modalities:
            self.tfidf = TfidfTransformer(sublinear_tf=True).fit(_text_counts(examples.texts))
        if "tabular" in self.modalities:
            self.numeric_stats = {}
            for name, kind in self.tabular_kinds.items():
                if kind == "numeric":
                    values = numeric_values(examples.tabular[name]).astype(np.float64)
                    known = values[np.isfinite(values)]
                    self.numeric_stats[name] = ((float(known.mean()), float(known.std()) or 1.0) if len(known)
                                                else (0.0, 1.0))
        if "image" in self.modalities:
            values = thumbnails.astype(np.float32)
            self.image_stats = (values.mean(axis=0), values.std(axis=0) + 1e-3)
        features = self.transform(examples, thumbnails, embed=False)
        width = min(EMBEDDING_WIDTH, features.shape[1] - 1, features.shape[0] - 1)
        if width >= 2:
            self.svd = TruncatedSVD(width, random_state=seed).fit(features)
        return self

    @property
    def embedding_width(self) -> int:
        return self.svd.n_components if self.svd is not None else 1

    def transform(self, examples: Examples, thumbnails: np.ndarray, embed: bool = False):
        """The rows' features (sparse [rows, features]); with `embed`, also their embeddings."""
        import scipy.sparse as sparse

        blocks = []
        if self.tfidf is not None:
            blocks.append(self.tfidf.transform(_text_counts(examples.texts)))
        if self.numeric_stats is not None:
            blocks.append(self._tabular(examples))
        if self.image_stats is not None:
            mean, spread = self.image_stats
            # Scaled so the block's length is about one, as the text's is.
            scaled = (thumbnails.astype(np.float32) - mean) / spread / np.sqrt(THUMBNAIL_WIDTH)
            blocks.append(sparse.csr_matrix(scaled.astype(np.float64)))
        features = sparse.hstack(blocks, format="csr")
        if not embed:
            return features
        embedding = (self.svd.transform(features).astype(np.float32) if self.svd is not None
                     else np.zeros((features.shape[0], 1), np.float32))
        return features, embedding

    def _tabular(self, examples: Examples):
        import scipy.sparse as sparse
        from sklearn.feature_extraction import FeatureHasher

        numeric, categories = [], []
        for name, kind in self.tabular_kinds.items():
            if kind == "numeric":
                mean, spread = self.numeric_stats[name]
                values = (numeric_values(examples.tabular[name]).astype(np.float64) - mean) / spread
                numeric.append(np.where(np.isfinite(values), np.clip(values, -5, 5), 0.0))
                numeric.append((~np.isfinite(values)).astype(np.float64))
            else:
                categories.append([f"{name}={cell}" for cell in examples.tabular[name]])
        blocks = [sparse.csr_matrix(np.stack(numeric, axis=1))] if numeric else []
        if categories:
            rows = [list(cells) for cells in zip(*categories)]
            blocks.append(FeatureHasher(TABULAR_FEATURES, input_type="string", alternate_sign=False).transform(rows))
        scale = 1.0 / np.sqrt(max(len(self.tabular_kinds), 1))
        return sparse.hstack(blocks, format="csr") * scale


def _text_counts(texts):
    from sklearn.feature_extraction.text import HashingVectorizer

    vectorizer = HashingVectorizer(analyzer="char_wb", ngram_range=(2, 5), n_features=TEXT_FEATURES,
                                   alternate_sign=False, norm=None, lowercase=True)
    return vectorizer.transform(["" if text is None else text for text in texts])
