"""`fusionapp export`: a run -> a TensorFlow SavedModel whose signature is the raw-input function.

The `serving_default` signature is `RawInference.outputs`, the function predict and the server
call: encoded image bytes, text, and one input per tabular column (float32 with NaN for missing
numbers; string for categories) in; logits, probabilities, predicted_label, confidence and missing
out (a multi-label run: logits, probabilities, thresholds, predicted, predicted_labels and missing).
TF Serving can serve it with no fusionapp installed.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from fusionapp.runs import files
from fusionapp.errors import FusionError
from fusionapp.inference.raw_inference import inference_for
from fusionapp.model.ensemble import member_models
from fusionapp.runs.load import load_run


def export_run(model: str, out: str, overwrite: bool = False) -> str:
    import keras
    import tensorflow as tf

    if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)) and not overwrite:
        raise FusionError(f"{out}: already exists; pass --overwrite to replace it")
    run = load_run(model)
    inference = inference_for(run.model)
    archive = keras.export.ExportArchive()
    archive.track(run.model)
    # The lookup tables of the preprocessors' layers (an ensemble's members have one each) are
    # TensorFlow resources the archive must own.
    for preprocessor in (member.preprocessor for member in member_models(run.model)):
        for layer in (preprocessor, getattr(preprocessor, "text_vectorizer", None),
                      getattr(preprocessor, "text_tokenizer", None), *preprocessor.category_lookups):
            if layer is not None:
                if not layer.built:  # a text backbone's tokenizer builds on first use, after its vocabulary loads
                    layer.build(None)
                archive.track(layer)
    names = list(inference.specs)

    def serve(*values):
        return inference.outputs(dict(zip(names, values)))

    archive.add_endpoint("serving_default", tf.function(serve, input_signature=list(inference.specs.values())))
    parent = os.path.dirname(os.path.abspath(out))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(out)}.tmp")
    try:
        archive.write_out(staging, verbose=False)
        files.follow_umask(staging)
        if os.path.exists(out):
            shutil.rmtree(out) if os.path.isdir(out) else os.remove(out)
        os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out
