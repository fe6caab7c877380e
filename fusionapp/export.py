"""`fusionapp export`: a run -> a TensorFlow SavedModel that takes raw inputs.

The `serving_default` signature takes what a client has: encoded image bytes, text, and one input
per tabular column (float32 with NaN for missing numbers; string for categories). It returns
`probabilities`, `predicted_label` and `confidence`, so TF Serving can serve it with no fusionapp
installed. Decoding, vectorising and normalising inside are the same functions training used.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile

from fusionapp.errors import FusionError


def signature_name(column: str) -> str:
    """The signature input for tabular column `column` (non-word characters become `_`)."""
    return "tabular_" + re.sub(r"\W", "_", column)


def export_run(model: str, out: str, overwrite: bool = False) -> str:
    import keras
    import tensorflow as tf

    from fusionapp.artifacts import load_run
    from fusionapp.data.images import decode_or_blank

    if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)) and not overwrite:
        raise FusionError(f"{out}: already exists; pass --overwrite to replace it")
    run = load_run(model)
    prep, modalities = run.preprocessing, run.modalities
    archive = keras.export.ExportArchive()
    archive.track(run.model)
    specs = []
    if "image" in modalities:
        specs.append(tf.TensorSpec([None], tf.string, name="image"))
    if "text" in modalities:
        vectorizer = prep.text_vectorizer()
        vectorizer.build((None,))
        archive.track(vectorizer)
        specs.append(tf.TensorSpec([None], tf.string, name="text"))
    tables = {}
    if "tabular" in modalities:
        for column in prep.tabular:
            if column.kind == "numeric":
                specs.append(tf.TensorSpec([None], tf.float32, name=signature_name(column.name)))
            else:
                specs.append(tf.TensorSpec([None], tf.string, name=signature_name(column.name)))
                # Index 0 for unknown or missing, 1.. for the categories: Preprocessing's encoding.
                lookup = keras.layers.StringLookup(vocabulary=column.categories or None, num_oov_indices=1)
                lookup.build((None,))
                archive.track(lookup)
                tables[column.name] = lookup
    class_names = tf.constant(prep.class_names)
    size = prep.image_size

    def serve(*values):
        given = dict(zip([spec.name for spec in specs], values))
        inputs = {}
        if "image" in modalities:
            inputs["image"] = tf.map_fn(lambda encoded: decode_or_blank(encoded, size), given["image"],
                                        fn_output_signature=tf.TensorSpec([size, size, 3], tf.uint8))
        if "text" in modalities:
            inputs["text"] = vectorizer(given["text"])
        if "tabular" in modalities:
            parts = []
            for column in prep.tabular:
                value = given[signature_name(column.name)]
                if column.kind == "numeric":
                    missing = tf.math.is_nan(value)
                    normalised = tf.where(missing, 0.0, (value - column.mean) / column.std)
                    parts.append(tf.stack([normalised, tf.cast(missing, tf.float32)], axis=1))
                else:
                    slot = tables[column.name](tf.strings.strip(value))
                    parts.append(tf.one_hot(slot, column.width, dtype=tf.float32))
            inputs["tabular"] = tf.concat(parts, axis=1)
        probabilities = run.model(inputs, training=False)
        best = tf.argmax(probabilities, axis=1)
        return {"probabilities": probabilities, "predicted_label": tf.gather(class_names, best),
                "confidence": tf.reduce_max(probabilities, axis=1)}

    archive.add_endpoint("serving_default", tf.function(serve, input_signature=specs))
    parent = os.path.dirname(os.path.abspath(out))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(out)}.tmp")
    try:
        archive.write_out(staging, verbose=False)
        if os.path.exists(out):
            shutil.rmtree(out) if os.path.isdir(out) else os.remove(out)
        os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out
