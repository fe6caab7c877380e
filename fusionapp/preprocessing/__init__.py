"""Raw inputs -> model tensors: the rules for raw values (`raw`) and label cells (`labels`), the image
decoder (`image`), and the Preprocessor adapted on the training rows (`adapt`) and saved inside the
model file.

Importing this package registers the Preprocessor with Keras, which loading a model file needs.
"""

from fusionapp.preprocessing.adapt import adapt, infer_tabular_kinds
from fusionapp.preprocessing.preprocessor import Preprocessor

__all__ = ["Preprocessor", "adapt", "infer_tabular_kinds"]
