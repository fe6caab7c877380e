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
from fusionapp.posthoc.linear import FOLDS, cross_fit, fold_numbers

# The linear model's inverse regularisation strength: scikit-learn's C, as the linear baselines.
WIDE_C = 4.0
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
    """Fit the linear part on every labelled row and choose alpha on the validation rows' held-out
    blend; both go into `model`."""
    import scipy.sparse as sparse

    preprocessor = model.preprocessor
    train_features, _ = wide_features(preprocessor, train_rows)
    val_features, val_present = wide_features(preprocessor, val_rows)
    features = sparse.vstack([train_features, val_features]).tocsr()
    del train_features
    labels = np.concatenate([preprocessor.label_targets(train_rows.labels), preprocessor.label_targets(val_rows.labels)])
    fitted = cross_fit(features, labels, preprocessor.num_classes, class_weight, WIDE_C,
                       fold_numbers(labels, FOLDS, seed))
    y_val = labels[len(train_rows):]
    wide_val = fitted.held_out_logits[len(train_rows):]
    alpha = choose_alpha(y_val, deep_val_logits, wide_val, val_present, preprocessor.multi_label)
    model.set_wide_path(fitted.kernel, fitted.bias)
    model.set_blend(alpha)

    def loss(weight):
        return mean_log_loss(y_val, probabilities_of(blend(deep_val_logits, wide_val, val_present, weight),
                                                     preprocessor.multi_label))

    chosen = dict(zip(preprocessor.class_names, map(float, alpha))) if preprocessor.multi_label else float(alpha)
    record = {"alpha": chosen, "C": WIDE_C, "folds": FOLDS, "fitted_on": "training and validation rows",
              "val_log_loss": {"deep": loss(0.0), "wide": loss(1.0), "blend": loss(alpha)}}
    return WideFit(record, blend(deep_val_logits, wide_val, val_present, alpha))


def choose_alpha(y_val, deep, wide, present, multi_label: bool):
    """The weight in ALPHAS with the lowest log loss of the blend on these rows (ties: the smaller);
    multi-label: one per label, each on that label's own log loss."""

    def best(y, d, w):
        losses = {float(a): mean_log_loss(y, probabilities_of(blend(d, w, present, a), multi_label)) for a in ALPHAS}
        return min(losses, key=lambda a: (round(losses[a], 6), a))

    if multi_label:
        return np.array([best(y_val[:, [k]], deep[:, [k]], wide[:, [k]]) for k in range(deep.shape[1])])
    return best(y_val, deep, wide)
