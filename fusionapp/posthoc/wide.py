"""The wide path: a linear model on the sparse text features and the tabular values, blended with the
network's logits.

It is fitted by scikit-learn's LogisticRegression once the network has trained, rather than by
gradient alongside it: on rare n-grams and rare classes Adam leaves a linear layer far from the
optimum a linear model reaches, which is where TF-IDF + logistic regression beat the network. Its
weights go into the model's wide layer and the blend weight alpha into its blend, so the saved
model, the server and the SavedModel run it like any other layer. With alpha = 1 the model is that
linear model (on rows with text); alpha is chosen on held-out rows, so the deep part is kept only as
far as it adds to it.

The linear part learns from every labelled row, training and validation. Whatever is chosen on the
validation rows (alpha here; the offsets, temperature and thresholds after it) is chosen on their
held-out logits: each row's linear logits come from the fit of the folds that did not hold it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fusionapp.evaluation.calibration import mean_log_loss, probabilities_of
from fusionapp.model.classifier import wide_path_inputs
from fusionapp.posthoc.linear import FOLDS, cross_fit, fit_linear, fold_numbers

# The linear model's inverse regularisation strength: scikit-learn's C, as the linear baselines.
WIDE_C = 4.0
# Past this many labelled rows the linear model learns from a sample of this many training rows:
# lbfgs on every row of a million would take longer than the network's epoch.
WIDE_MAX_ROWS = 50_000
ALPHAS = np.round(np.linspace(0.0, 1.0, 11), 2)


@dataclass
class WideFit:
    record: dict  # what config.json keeps under "wide"
    val_logits: np.ndarray  # the blend on the validation rows, the linear part held out


def wide_sources(preprocessor) -> list[str]:
    """What the wide path reads, in words, in the order of its features."""
    words = {"text": "TF-IDF text", "tabular": "tabular values"}
    return [words[m] for m in wide_path_inputs(preprocessor.modalities, preprocessor.network_inputs())]


def wide_features(preprocessor, examples):
    """The wide path's inputs for `examples`, exactly what the model's wide layer sees (TF-IDF
    vectors, then encoded tabular values), as a sparse matrix; and whether each row's TF-IDF vector
    has any non-zero, which is what the blend blends on (all True without text)."""
    import scipy.sparse as sparse
    import tensorflow as tf

    from fusionapp.data.examples import raw_columns

    specs = preprocessor.input_specs()
    inputs = preprocessor.network_inputs()
    read = wide_path_inputs(preprocessor.modalities, inputs)
    text = "text" in read
    width = sum(inputs[f"{m}_width"] for m in read)
    batch_size = max(1, 2**22 // max(width, 1))  # dense batches of about 32 MB, whatever the vocabulary
    parts = []
    for start in range(0, len(examples), batch_size):
        indices = range(start, min(start + batch_size, len(examples)))
        raw = raw_columns(examples, read, preprocessor.tabular_kinds, indices)
        tensors = {name: tf.constant(values, dtype=specs[name].dtype) for name, values in raw.items()}
        columns = [preprocessor.encode_text(tensors["text"]).numpy()] if text else []
        if "tabular" in read:
            columns.append(preprocessor.encode_tabular(tensors).numpy())
        parts.append(sparse.csr_matrix(np.concatenate(columns, axis=1), dtype=np.float64))
    features = sparse.vstack(parts).tocsr()
    if not text:
        return features, np.ones(len(examples), bool)
    return features, features[:, :inputs["text_width"]].getnnz(axis=1) > 0


def blend(deep, wide, present, alpha):
    """What the model's blend layer computes (fusionapp/model/head.py), in NumPy."""
    weight = np.asarray(alpha, np.float64) * np.asarray(present, np.float64)[:, None]
    return deep + weight * (wide - deep)


def fit_wide_path(model, train_rows, val_rows, deep_val_logits, class_weight: str, seed: int) -> WideFit:
    """Fit the linear part and choose alpha on the validation rows' held-out blend; both go into
    `model`. Up to WIDE_MAX_ROWS rows it learns from every labelled row (cross-fitted, so the
    validation rows' logits stay held out); past that, from (a seeded sample of at most
    WIDE_MAX_ROWS of) the training rows in one fit, which keeps every validation row held out and
    the time bounded."""
    preprocessor = model.preprocessor
    y_val = preprocessor.label_targets(val_rows.labels)
    if len(train_rows) + len(val_rows) <= WIDE_MAX_ROWS:
        val_features, val_present = wide_features(preprocessor, val_rows)
        kernel, bias, wide_val, fitted_on = _cross_fitted(preprocessor, train_rows, val_features, y_val,
                                                          class_weight, seed)
    else:
        size = min(WIDE_MAX_ROWS, len(train_rows))
        sample = np.sort(np.random.default_rng(seed).choice(len(train_rows), size, replace=False))
        rows = train_rows.subset(sample)
        features, _ = wide_features(preprocessor, rows)
        kernel, bias = fit_linear(features, preprocessor.label_targets(rows.labels), preprocessor.num_classes,
                                  class_weight, WIDE_C)
        del features
        wide_val, val_present = _held_out_logits(preprocessor, val_rows, kernel, bias)
        fitted_on = f"a sample of {size} training rows" if size < len(train_rows) else "training rows"
    alpha = choose_alpha(y_val, deep_val_logits, wide_val, val_present, preprocessor.multi_label)
    model.set_wide_path(kernel, bias)
    model.set_blend(alpha)

    def loss(weight):
        return mean_log_loss(y_val, probabilities_of(blend(deep_val_logits, wide_val, val_present, weight),
                                                     preprocessor.multi_label))

    chosen = dict(zip(preprocessor.class_names, map(float, alpha))) if preprocessor.multi_label else float(alpha)
    record = {"alpha": chosen, "C": WIDE_C, "folds": FOLDS, "fitted_on": fitted_on,
              "val_log_loss": {"deep": loss(0.0), "wide": loss(1.0), "blend": loss(alpha)}}
    return WideFit(record, blend(deep_val_logits, wide_val, val_present, alpha))


def _held_out_logits(preprocessor, rows, kernel, bias):
    """The linear part's logits of `rows` and whether each has TF-IDF text, a chunk of rows at a
    time: the validation rows of a big table hold gigabytes of sparse features."""
    logits, present = [], []
    for start in range(0, len(rows), WIDE_MAX_ROWS):
        features, has_text = wide_features(preprocessor, rows.subset(np.arange(start, min(start + WIDE_MAX_ROWS,
                                                                                          len(rows)))))
        logits.append(features @ kernel + bias)
        present.append(has_text)
    return np.concatenate(logits), np.concatenate(present)


def _cross_fitted(preprocessor, train_rows, val_features, y_val, class_weight: str, seed: int):
    import scipy.sparse as sparse

    train_features, _ = wide_features(preprocessor, train_rows)
    features = sparse.vstack([train_features, val_features]).tocsr()
    del train_features
    labels = np.concatenate([preprocessor.label_targets(train_rows.labels), y_val])
    fitted = cross_fit(features, labels, preprocessor.num_classes, class_weight, WIDE_C,
                       fold_numbers(labels, FOLDS, seed))
    return fitted.kernel, fitted.bias, fitted.held_out_logits[len(train_rows):], "training and validation rows"


def choose_alpha(y_val, deep, wide, present, multi_label: bool):
    """The weight in ALPHAS with the lowest log loss of the blend on these rows (ties: the smaller);
    multi-label: one per label, each on that label's own log loss."""

    def best(y, d, w):
        losses = {float(a): mean_log_loss(y, probabilities_of(blend(d, w, present, a), multi_label)) for a in ALPHAS}
        return min(losses, key=lambda a: (round(losses[a], 6), a))

    if multi_label:
        return np.array([best(y_val[:, [k]], deep[:, [k]], wide[:, [k]]) for k in range(deep.shape[1])])
    return best(y_val, deep, wide)
