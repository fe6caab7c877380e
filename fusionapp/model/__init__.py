"""The network: an Inception-style image branch, text and tabular branches, fused by concatenation.

Only keras.layers / keras.ops are used here, so the model runs on any Keras 3 backend.
"""

from fusionapp.model.classifier import FusionClassifier, build_classifier
from fusionapp.model.losses import LabelBinaryCrossentropy

__all__ = ["FusionClassifier", "LabelBinaryCrossentropy", "build_classifier"]
