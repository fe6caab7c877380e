"""The network: an Inception-style image branch (or a pretrained backbone), text and tabular
branches, fused by concatenation, and the head that holds what is fitted after training.

Only keras.layers / keras.ops are used here, so the model runs on any Keras 3 backend. Importing
this package registers every class a model file names (the preprocessor's too), which is all
`keras.saving.load_model` needs.
"""

import fusionapp.preprocessing  # noqa: F401 - registers the Preprocessor saved inside model files
from fusionapp.model.classifier import Backbones, FusionClassifier, Head, build_classifier
from fusionapp.model.ensemble import FusionEnsemble, member_models
from fusionapp.model.losses import LabelBinaryCrossentropy
from fusionapp.model.spec import NetworkSpec
from fusionapp.model.weight_copy import copy_weights

__all__ = ["Backbones", "FusionClassifier", "Head", "LabelBinaryCrossentropy", "NetworkSpec", "build_classifier",
           "FusionEnsemble", "copy_weights", "member_models"]
