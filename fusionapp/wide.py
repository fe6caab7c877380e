"""The wide path: a linear model on the sparse text features and the tabular values, blended with the
network's logits.

It is fitted by scikit-learn's LogisticRegression (lbfgs) once the network has
trained, rather than trained by gradient alongside it: on rare n-grams and rare classes Adam leaves
a linear layer far from the optimum a linear model reaches, which is where TF-IDF + logistic
regression beat the network. Its weights go into the model's `wide.logits` layer and the blend
weight alpha into `head.blend`, so the saved model, the server and the SavedModel run it like any
other layer. With alpha = 1 the model is that linear model (on rows with text); alpha is chosen on
the validation rows, so the deep part is kept only as far as it adds to it.
"""

from __future__ import annotations

import numpy as np

from fusionapp.model.classifier import wide_path_inputs

# The linear model's inverse regularisation strength: scikit-learn's C, as the README's baseline.
WIDE_C = 4.0
ALPHAS = np.round(np.linspace(0.0, 1.0, 11), 2)


def has_wide_path(model) -> bool:
    return any(layer.name == "wide.logits" for layer in model.layers)


def wide_sources(preprocessor) -> list[str]:
    """What the wide path reads, in words, in the order of its features."""
    words = {"text": "TF-IDF text", "tabular": "tabular values"}
    return [words[m] for m in wide_path_inputs(preprocessor.modalities, preprocessor.network_inputs())]


def wide_features(preprocessor, examples):
    """The wide path's inputs for `examples`, exactly what the model's `wide.concat` sees (TF-IDF
    vectors, then encoded tabular values), as a sparse matrix; and whether each row's TF-IDF vector
    has any non-zero, which is what `head.blend` blends on (all True without text)."""
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


def blend(deep, wide, present, alpha: float):
    """What `head.blend` computes (fusionapp/model/blocks.py), in NumPy."""
    weight = alpha * np.asarray(present, np.float64)[:, None]
    return deep + weight * (wide - deep)


def fit_linear(features, labels, num_classes: int, class_weight: str):
    """LogisticRegression on `features` -> (kernel [features, classes], bias [classes]) for a Dense
    layer. Labels as a 0/1 matrix [rows, labels] (multi-label): one binary model per label."""
    if np.ndim(labels) == 2:
        return _fit_per_label(features, labels, class_weight)
    model = _logistic_regression(features, labels, class_weight)
    kernel = np.zeros((features.shape[1], num_classes), np.float32)
    bias = np.full(num_classes, -30.0, np.float32)  # a class absent from these rows stays unlikely
    if model.coef_.shape[0] == 1:
        # scikit-learn keeps one log-odds column for two classes; two logits of +-half give the same softmax
        negative, positive = model.classes_
        kernel[:, positive], kernel[:, negative] = model.coef_[0] / 2, -model.coef_[0] / 2
        bias[positive], bias[negative] = model.intercept_[0] / 2, -model.intercept_[0] / 2
    else:
        kernel[:, model.classes_] = model.coef_.T
        bias[model.classes_] = model.intercept_
    return kernel, bias


def _logistic_regression(features, labels, class_weight: str):
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=WIDE_C, class_weight=None if class_weight == "none" else "balanced",
                               max_iter=1000)
    with warnings.catch_warnings():
        # A few hundred iterations leave it within a hair of the optimum; no user needs to hear it.
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(features, labels)
    return model


def _fit_per_label(features, labels, class_weight: str):
    """One-vs-rest: a binary LogisticRegression per label; a label every row carries (or none does)
    gets a constant logit of +-30."""
    labels = np.asarray(labels) > 0.5
    kernel = np.zeros((features.shape[1], labels.shape[1]), np.float32)
    bias = np.zeros(labels.shape[1], np.float32)
    for k in range(labels.shape[1]):
        if labels[:, k].all() or not labels[:, k].any():
            bias[k] = 30.0 if labels[:, k].all() else -30.0
            continue
        model = _logistic_regression(features, labels[:, k], class_weight)
        kernel[:, k], bias[k] = model.coef_[0], model.intercept_[0]
    return kernel, bias


class WidePath:
    """Fitting a model's wide path: `fit` on the training rows with alpha chosen on the validation
    rows, then (once the validation report is taken) `refit` on both, as the linear baseline is."""

    def __init__(self, model, train_rows, val_rows, class_weight: str):
        self.model, self.class_weight = model, class_weight
        preprocessor = model.preprocessor
        self.classes = preprocessor.num_classes
        self.y_train = preprocessor.label_targets(train_rows.labels)
        self.y_val = preprocessor.label_targets(val_rows.labels)
        self.x_train, _ = wide_features(preprocessor, train_rows)
        self.x_val, self.val_present = wide_features(preprocessor, val_rows)
        self.val_rows = val_rows
        self.val_logits = None  # the blend's logits on the validation rows, once fitted

    def fit(self) -> dict:
        """Returns what was chosen, for config.json."""
        from fusionapp.calibration import is_multi_label, mean_log_loss, probabilities_of
        from fusionapp.inference import predict_examples

        kernel, bias = fit_linear(self.x_train, self.y_train, self.classes, self.class_weight)
        deep = predict_examples(self.model, self.val_rows).logits  # alpha is still 0: the network alone
        wide = self.x_val @ kernel + bias
        multi_label = is_multi_label(self.y_val)

        def loss(alpha, y_val=self.y_val, deep=deep, wide=wide):
            probabilities = probabilities_of(blend(deep, wide, self.val_present, alpha), multi_label)
            return mean_log_loss(y_val, probabilities)

        def best(losses):
            return min(losses, key=lambda a: (round(losses[a], 6), a))  # ties: the smaller weight

        if multi_label:
            # A weight per label, each chosen on that label's own log loss.
            alpha = np.array([best({float(a): loss(a, self.y_val[:, [k]], deep[:, [k]], wide[:, [k]]) for a in ALPHAS})
                              for k in range(self.classes)])
        else:
            losses = {float(a): loss(a) for a in ALPHAS}
            alpha = best(losses)
        self.model.get_layer("wide.logits").set_weights([kernel, bias])
        self.model.get_layer("head.blend").set_weights([np.asarray(alpha, np.float32)])
        self.val_logits = blend(deep, wide, self.val_present, alpha)
        chosen = (dict(zip(self.model.preprocessor.class_names, map(float, alpha))) if multi_label else alpha)
        return {"alpha": chosen, "C": WIDE_C, "refit_on_validation_rows": True,
                "val_log_loss": {"deep": loss(0.0), "wide": loss(1.0), "blend": loss(alpha)}}

    def refit(self) -> None:
        """The linear model again, on every labelled row; alpha stays."""
        import scipy.sparse as sparse

        features = sparse.vstack([self.x_train, self.x_val]).tocsr()
        self.x_train = self.x_val = None  # one copy of the features at a time
        kernel, bias = fit_linear(features, np.concatenate([self.y_train, self.y_val]), self.classes,
                                  self.class_weight)
        self.model.get_layer("wide.logits").set_weights([kernel, bias])

