"""The network's logits on the validation rows, which everything fitted after it starts from.

With a frozen pretrained backbone, those rows' features are in the feature cache already (the
network validated on them every epoch), so the logits are taken on them rather than by running
every validation image and text through the backbone once more: with a text backbone on CPU that
pass cost a run about as much again as caching the validation texts did. The model that reads them
is the returned one's float32 layers, the backbones left out; what it gives equals the whole
model's logits to the float16 rounding of the stored features (tested).
"""

from __future__ import annotations

import numpy as np

from fusionapp.data.pipeline import make_dataset
from fusionapp.inference.raw_inference import PREDICT_BATCH_SIZE, predict_examples
from fusionapp.model import copy_weights
from fusionapp.settings import RunSettings
from fusionapp.training.network_fit import float32_model


def network_val_logits(fitted, settings: RunSettings, val_rows) -> np.ndarray:
    """float64 [rows, classes]: `fitted.model`'s logits on `val_rows`, with every post-hoc part
    still at its neutral value."""
    image_features, text_features = fitted.val_features
    if image_features is None and text_features is None:
        return predict_examples(fitted.model, val_rows).logits.astype(np.float64)
    model = fitted.model
    reader = float32_model(settings, fitted.reader_spec, model.preprocessor)
    copy_weights(model, reader)
    data = make_dataset(val_rows, model.preprocessor, PREDICT_BATCH_SIZE, image_features=image_features,
                        text_features=text_features)
    return np.asarray(reader.predict(data.map(lambda inputs, targets: inputs), verbose=0), np.float64)
