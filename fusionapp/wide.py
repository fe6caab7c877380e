"""The wide path: a linear model on the sparse text features and the tabular values, blended with the
network's logits.

It is fitted in closed form (scikit-learn's LogisticRegression, converged) once the network has
trained, rather than trained by gradient alongside it: on rare n-grams and rare classes Adam leaves
a linear layer far from the optimum a linear model reaches, which is where TF-IDF + logistic
regression beat the network. Its weights go into the model's `wide.logits` layer and the blend
weight alpha into `head.blend`, so the saved model, the server and the SavedModel run it like any
other layer. With alpha = 1 the model is the linear baseline; alpha is chosen on the validation
rows, so the deep part is kept only as far as it adds to it.
"""

from __future__ import annotations

import numpy as np

# The linear model's inverse regularisation strength: scikit-learn's C, as the README's baseline.
WIDE_C = 4.0
ALPHAS = np.round(np.linspace(0.0, 1.0, 11), 2)


def has_wide_path(model) -> bool:
    return any(layer.name == "wide.logits" for layer in model.layers)


def wide_features(preprocessor, examples, batch_size: int = 512):
    """The wide path's inputs for `examples` as a sparse matrix: TF-IDF vectors, then encoded tabular
    values, exactly what the model's `wide.concat` sees."""
    import scipy.sparse as sparse
    import tensorflow as tf

    from fusionapp.data.examples import raw_columns

    modalities = [m for m in preprocessor.modalities if m != "image"]
    parts = []
    for start in range(0, len(examples), batch_size):
        indices = range(start, min(start + batch_size, len(examples)))
        raw = raw_columns(examples, modalities, preprocessor.tabular_kinds, indices)
        specs = preprocessor.input_specs()
        tensors = {name: tf.constant(values, dtype=specs[name].dtype) for name, values in raw.items()}
        columns = []
        if "text" in modalities and preprocessor.text["output"] == "tf_idf":
            columns.append(preprocessor.encode_text(tensors["text"]).numpy())
        if "tabular" in modalities:
            columns.append(preprocessor.encode_tabular(tensors).numpy())
        parts.append(sparse.csr_matrix(np.concatenate(columns, axis=1)))
    return sparse.vstack(parts).tocsr()


def fit_linear(features, labels, num_classes: int, class_weight: str):
    """LogisticRegression on `features` -> (kernel [features, classes], bias [classes]) for a Dense layer."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=WIDE_C, class_weight=None if class_weight == "none" else "balanced",
                               max_iter=1000)
    with warnings.catch_warnings():
        # A few hundred iterations leave it within a hair of the optimum; no user needs to hear it.
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(features, labels)
    kernel = np.zeros((features.shape[1], num_classes), np.float32)
    bias = np.full(num_classes, -30.0, np.float32)  # a class absent from these rows stays unlikely
    if len(model.classes_) == 2 and num_classes == 2:
        # scikit-learn keeps one log-odds column for two classes; two logits of +-half give the same softmax
        kernel[:, 1], kernel[:, 0] = model.coef_[0] / 2, -model.coef_[0] / 2
        bias[1], bias[0] = model.intercept_[0] / 2, -model.intercept_[0] / 2
    else:
        kernel[:, model.classes_] = model.coef_.T
        bias[model.classes_] = model.intercept_
    return kernel, bias


class WidePath:
    """Fitting a model's wide path: `fit` on the training rows with alpha chosen on the validation
    rows, then (once the validation report is taken) `refit` on both, as the linear baseline is."""

    def __init__(self, model, train_rows, val_rows, class_weight: str):
        import scipy.sparse as sparse

        self.model, self.class_weight = model, class_weight
        preprocessor = model.preprocessor
        self.classes = preprocessor.num_classes
        self.y_train = preprocessor.label_indices(train_rows.labels)
        self.y_val = preprocessor.label_indices(val_rows.labels)
        self.x_train, self.x_val = wide_features(preprocessor, train_rows), wide_features(preprocessor, val_rows)
        self.x_all = sparse.vstack([self.x_train, self.x_val]).tocsr()
        self.val_rows = val_rows

    def fit(self) -> dict:
        """Returns what was chosen, for config.json."""
        from sklearn.metrics import log_loss

        from fusionapp.inference import predict_examples

        kernel, bias = fit_linear(self.x_train, self.y_train, self.classes, self.class_weight)
        deep = predict_examples(self.model, self.val_rows).logits  # alpha is still 0: the network alone
        wide = self.x_val @ kernel + bias

        def loss(alpha):
            logits = (1 - alpha) * deep + alpha * wide
            logits = logits - logits.max(axis=1, keepdims=True)
            probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
            return log_loss(self.y_val, probabilities, labels=list(range(self.classes)))

        losses = {float(alpha): loss(alpha) for alpha in ALPHAS}
        alpha = min(losses, key=lambda a: (round(losses[a], 6), a))
        self.model.get_layer("wide.logits").set_weights([kernel, bias])
        self.model.get_layer("head.blend").set_weights([np.float32(alpha)])
        return {"alpha": alpha, "C": WIDE_C,
                "val_log_loss": {"deep": losses[0.0], "wide": losses[1.0], "blend": losses[alpha]}}

    def refit(self) -> None:
        """The linear model again, on every labelled row; alpha stays."""
        kernel, bias = fit_linear(self.x_all, np.concatenate([self.y_train, self.y_val]), self.classes,
                                  self.class_weight)
        self.model.get_layer("wide.logits").set_weights([kernel, bias])
