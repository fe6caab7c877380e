"""The wide path: a linear model on the sparse text features and the tabular values, blended with the
network's logits.

It is fitted by scikit-learn's LogisticRegression once the network has trained, rather than by
gradient alongside it: on rare n-grams and rare classes Adam leaves a linear layer far from the
optimum a linear model reaches, which is where TF-IDF + logistic regression beat the network. Its
weights go into the model's wide layer and the blend weight alpha into its blend, so the saved
model, the server and the SavedModel run it like any other layer. With alpha = 1 the model is that
linear model (on rows with text); alpha is chosen on held-out rows, so the deep part is kept only as
far as it adds to it.

The linear part reads its own vocabulary of character n-grams (fusionapp/preprocessing/adapt.py),
far larger than the network's, and learns from every labelled row, training and validation, with
its regularisation chosen from a small grid on the held-out log loss of every row. Whatever is
chosen on the validation rows (alpha here; the offsets, temperature and thresholds after it) is
chosen on their held-out logits: each row's linear logits come from the fit of the folds that did
not hold it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TypedDict

import numpy as np

from fusionapp.data.examples import raw_columns
from fusionapp.model import NetworkSpec
from fusionapp.model.classifier import wide_path_inputs
from fusionapp.posthoc.linear import C_GRID, FOLDS, cross_fit, extend_grid, fit_linear, fold_numbers, held_out_loss

# Past this many labelled rows the linear model learns from a sample of this many training rows:
# lbfgs on every row of a million would take longer than the network's epoch.
WIDE_MAX_ROWS = 50_000
ALPHAS = np.round(np.linspace(0.0, 1.0, 11), 2)


class WideRecord(TypedDict):
    """config.json's "wide": the wide path as fitted."""

    alpha: float | dict[str, float]  # its weight in the blend (multi-label: per label)
    C: float  # the linear model's inverse regularisation, chosen from C_GRID
    C_log_loss: dict[str, float]  # each C's held-out log loss
    fitted_on: str  # which rows the final linear model learnt from, in words
    folds: int  # of the cross-fit
    features: int  # the linear model's inputs: n-grams (then tabular values, the text backbone's vector)
    val_log_loss: dict[str, float]  # the validation rows' log loss: "deep", "wide" and "blend"


@dataclass(frozen=True)
class _LinearFit:
    """The linear part as fitted, with what config.json records of the fit."""

    kernel: np.ndarray  # [features, classes]
    bias: np.ndarray
    val: np.ndarray  # the validation rows' held-out linear logits
    present: np.ndarray  # whether each validation row has text features (what the blend blends on)
    C: float
    C_log_loss: dict[str, float]
    fitted_on: str


@dataclass(frozen=True)
class WideFit:
    record: WideRecord
    val_logits: np.ndarray  # the blend on the validation rows, the linear part held out


def wide_sources(preprocessor, spec: NetworkSpec | None = None) -> list[str]:
    """What the wide path of a network of `spec` (default: the one `preprocessor` makes) reads, in
    words, in the order of its features."""
    spec = spec or NetworkSpec.for_preprocessor(preprocessor)
    words = {"wide_text": "character n-grams", "text": "TF-IDF text", "tabular": "tabular values",
             "text_vector": "the text backbone's sentence vector"}
    return [words[m] for m in wide_path_inputs(preprocessor.modalities, spec)]


def wide_features(preprocessor, examples, text_vectors=None):
    """The wide path's inputs for `examples`, exactly what the model's wide layer sees (its own
    n-grams' TF-IDF, or a model before 0.9's network TF-IDF vectors; then the encoded tabular values;
    then the text backbone's vectors `text_vectors` [rows, hidden] at unit length, when given: a
    network that reads them computes them in float32, the feature cache holds them in float16), as a
    sparse matrix; and whether each row has any text feature, which is what the blend
    blends on (all True without text)."""
    import scipy.sparse as sparse
    import tensorflow as tf

    specs = preprocessor.input_specs()
    spec = NetworkSpec.for_preprocessor(preprocessor)
    # A run resumed from a model before 0.12 reads no vector: what is given decides.
    read = tuple(m for m in wide_path_inputs(preprocessor.modalities, spec) if m != "text_vector" or
                 text_vectors is not None)
    columns = tuple("text" if m == "wide_text" else m for m in read)
    text_width = spec.wide_width if "wide_text" in read else spec.text_width if "text" in read else 0
    # Sparse n-grams come a few thousand rows at a time; dense TF-IDF in batches of about 32 MB.
    batch_size = 4096 if "text" not in read else max(1, 2**22 // max(text_width, 1))
    parts = []
    for start in range(0, len(examples), batch_size):
        indices = range(start, min(start + batch_size, len(examples)))
        raw = raw_columns(examples, columns, preprocessor.tabular_kinds, indices)
        tensors = {name: tf.constant(values, dtype=specs[name].dtype) for name, values in raw.items()}
        blocks = []
        if "wide_text" in read:
            encoded = preprocessor.encode_wide_text(tensors["text"])
            blocks.append(_sparse_rows(encoded["wide_ids"].numpy(), encoded["wide_weights"].numpy(), text_width))
        elif "text" in read:
            blocks.append(sparse.csr_matrix(preprocessor.encode_text(tensors["text"]).numpy(), dtype=np.float64))
        if "tabular" in read:
            blocks.append(sparse.csr_matrix(preprocessor.encode_tabular(tensors).numpy(), dtype=np.float64))
        if "text_vector" in read:
            blocks.append(sparse.csr_matrix(_unit_rows(text_vectors[indices.start:indices.stop])))
        parts.append(sparse.hstack(blocks, format="csr"))
    features = sparse.vstack(parts).tocsr()
    if not text_width:
        return features, np.ones(len(examples), bool)
    return features, features[:, :text_width].getnnz(axis=1) > 0


def _unit_rows(vectors) -> np.ndarray:
    """Each row scaled to unit length, as the model's UnitNormalization layer scales it."""
    vectors = np.asarray(vectors, np.float64)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def _sparse_rows(ids, weights, width: int):
    """Padded (ids, weights) rows -> a CSR matrix [rows, width]; the padding (weight 0) left out."""
    import scipy.sparse as sparse

    rows = np.repeat(np.arange(ids.shape[0]), ids.shape[1])
    kept = weights.ravel() != 0
    return sparse.csr_matrix((weights.ravel()[kept].astype(np.float64), (rows[kept], ids.ravel()[kept])),
                             shape=(ids.shape[0], width))


def blend(deep, wide, present, alpha):
    """What the model's blend layer computes (fusionapp/model/head.py), in NumPy."""
    weight = np.asarray(alpha, np.float64) * np.asarray(present, np.float64)[:, None]
    return deep + weight * (wide - deep)


def fit_wide_path(model, train_rows, val_rows, deep_val_logits, class_weight: str, seed: int,
                  say=lambda message: None, tune=None, text_vectors=None) -> WideFit:
    """Fit the linear part and choose alpha on the validation rows' held-out blend (on the rows at
    positions `tune` of them, when given: those early stopping did not see); both go into `model`.
    Up to WIDE_MAX_ROWS rows it learns from every labelled row (cross-fitted, so the validation rows'
    logits stay held out, and C chosen on every row's held-out logits); past that, from (a seeded
    sample of at most WIDE_MAX_ROWS of) the training rows, C chosen on the validation rows, which
    keeps the time bounded. `text_vectors` (a TextVectors) are the text backbone's vectors of the
    rows, where the wide path reads them."""
    preprocessor = model.preprocessor
    y_val = preprocessor.label_targets(val_rows.labels)
    if len(train_rows) + len(val_rows) <= WIDE_MAX_ROWS:
        linear = _cross_fitted(preprocessor, train_rows, val_rows, y_val, class_weight, seed, say, text_vectors)
    else:
        say(f"Wide path: fitting a linear model on a sample of the training rows, C {_grid_words()} ...")
        linear = _sample_fitted(preprocessor, train_rows, val_rows, y_val, class_weight, seed, text_vectors)
    chosen_on = np.arange(len(y_val)) if tune is None else np.asarray(tune)
    alpha = choose_alpha(y_val[chosen_on], deep_val_logits[chosen_on], linear.val[chosen_on],
                         linear.present[chosen_on], preprocessor.multi_label)
    model.set_wide_path(linear.kernel, linear.bias)
    model.set_blend(alpha)

    def loss(weight):
        return held_out_loss(y_val[chosen_on], blend(deep_val_logits[chosen_on], linear.val[chosen_on],
                                                     linear.present[chosen_on], weight))

    chosen = dict(zip(preprocessor.class_names, map(float, alpha))) if preprocessor.multi_label else float(alpha)
    record = WideRecord(alpha=chosen, C=linear.C, C_log_loss=linear.C_log_loss, fitted_on=linear.fitted_on,
                        folds=FOLDS, features=int(linear.kernel.shape[0]),
                        val_log_loss={"deep": loss(0.0), "wide": loss(1.0), "blend": loss(alpha)})
    return WideFit(record, blend(deep_val_logits, linear.val, linear.present, alpha))


def _cross_fitted(preprocessor, train_rows, val_rows, y_val, class_weight: str, seed: int, say,
                  text_vectors) -> _LinearFit:
    import scipy.sparse as sparse

    train_features, _ = wide_features(preprocessor, train_rows, _vectors(text_vectors, "train"))
    val_features, val_present = wide_features(preprocessor, val_rows, _vectors(text_vectors, "val"))
    features = sparse.vstack([train_features, val_features]).tocsr()
    del train_features, val_features
    labels = np.concatenate([preprocessor.label_targets(train_rows.labels), y_val])
    say(f"Wide path: a linear model on {features.shape[0]} rows x {features.shape[1]} features, {FOLDS} folds "
        f"x C {_grid_words()} ...")
    started = time.perf_counter()

    def progress(done: int, total: int) -> None:
        say(f"  fold {done}/{total} fitted ({time.perf_counter() - started:.1f} s)")

    fitted = cross_fit(features, labels, preprocessor.num_classes, class_weight, C_GRID,
                       fold_numbers(labels, FOLDS, seed), progress)
    return _LinearFit(fitted.kernel, fitted.bias, fitted.held_out_logits[len(train_rows):], val_present, fitted.C,
                      _rounded(fitted.held_out_loss), "training and validation rows")


def _grid_words() -> str:
    return ", ".join(f"{C:g}" for C in sorted(C_GRID))


def _sample_fitted(preprocessor, train_rows, val_rows, y_val, class_weight: str, seed: int,
                   text_vectors) -> _LinearFit:
    size = min(WIDE_MAX_ROWS, len(train_rows))
    sample = np.sort(np.random.default_rng(seed).choice(len(train_rows), size, replace=False))
    rows = train_rows.subset(sample)
    features, _ = wide_features(preprocessor, rows, _vectors(text_vectors, "train", sample))
    labels = preprocessor.label_targets(rows.labels)
    fits, start = {}, None
    for C in sorted(C_GRID):
        fits[C] = start = fit_linear(features, labels, preprocessor.num_classes, class_weight, C, start=start)
    held_out, present = _held_out_logits(preprocessor, val_rows, list(fits.values()), text_vectors)
    val_logits = dict(zip(fits, held_out))

    def try_C(C: float, edge: float) -> np.ndarray:
        fits[C] = fit_linear(features, labels, preprocessor.num_classes, class_weight, C, start=fits[edge])
        return _held_out_logits(preprocessor, val_rows, [fits[C]], text_vectors)[0][0]

    losses, chosen = extend_grid(val_logits, y_val, C_GRID, try_C)
    del features
    val = val_logits[chosen]
    return _LinearFit(fits[chosen][0], fits[chosen][1], val, present, chosen, _rounded(losses),
                      f"a sample of {size} training rows" if size < len(train_rows) else "training rows")


def _rounded(losses: dict) -> dict:
    return {f"{C:g}": round(float(loss), 6) for C, loss in losses.items()}


def _vectors(text_vectors, which: str, positions=None):
    return None if text_vectors is None else text_vectors.of(which, positions)


def _held_out_logits(preprocessor, rows, fits, text_vectors):
    """Each (kernel, bias) of `fits`' logits of the validation `rows`, and whether each row has text
    features, a chunk of rows at a time: the validation rows of a big table hold gigabytes of sparse
    features."""
    logits, present = [[] for _ in fits], []
    for start in range(0, len(rows), WIDE_MAX_ROWS):
        chunk = np.arange(start, min(start + WIDE_MAX_ROWS, len(rows)))
        features, has_text = wide_features(preprocessor, rows.subset(chunk), _vectors(text_vectors, "val", chunk))
        for part, (kernel, bias) in zip(logits, fits):
            part.append(features @ kernel + bias)
        present.append(has_text)
    return [np.concatenate(part) for part in logits], np.concatenate(present)


def choose_alpha(y_val, deep, wide, present, multi_label: bool):
    """The weight in ALPHAS with the lowest log loss of the blend on these rows (ties: the smaller);
    multi-label: one per label, each on that label's own log loss."""

    def best(y, d, w):
        losses = {float(a): held_out_loss(y, blend(d, w, present, a)) for a in ALPHAS}
        return min(losses, key=lambda a: (round(losses[a], 6), a))

    if multi_label:
        return np.array([best(y_val[:, [k]], deep[:, [k]], wide[:, [k]]) for k in range(deep.shape[1])])
    return best(y_val, deep, wide)
