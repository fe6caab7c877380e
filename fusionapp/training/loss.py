"""What the network minimises: cross-entropy on the logits, with rows (single-label) or each
label's positives (multi-label) weighted by `--class-weight`."""

from __future__ import annotations

import numpy as np

from fusionapp.model.losses import LabelBinaryCrossentropy


def class_weights(preprocessor, train_rows, mode: str) -> dict | None:
    """Keras' class_weight for single-label models (each row's loss times its class's weight);
    multi-label ones weigh labels in the loss itself."""
    if mode == "none" or preprocessor.multi_label:
        return None
    from sklearn.utils.class_weight import compute_class_weight

    y = preprocessor.label_indices(train_rows.labels)
    present = np.unique(y)
    weights = compute_class_weight("balanced", classes=present, y=y)
    return {int(label): float(weight) for label, weight in zip(present, weights)}


def training_loss(preprocessor, train_rows, mode: str):
    """Cross-entropy on the logits: over classes, or for a multi-label model per label, where
    `balanced` weighs each label's positives by the square root of its negatives / positives in the
    training rows. The full ratio (about 100 for a genre on 1% of films) skewed the network's
    probabilities so far that the wide path's blend dropped the network altogether (docs: "Multi-
    label" under Figures); thresholds, tuned per label afterwards, are what rare labels need most."""
    import keras

    if not preprocessor.multi_label:
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    if mode == "none":
        return LabelBinaryCrossentropy()
    targets = preprocessor.label_targets(train_rows.labels)
    positives = targets.sum(axis=0)
    return LabelBinaryCrossentropy(np.sqrt(np.maximum(len(targets) - positives, 1.0) / np.maximum(positives, 1.0)))
