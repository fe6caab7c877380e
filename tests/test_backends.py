"""The network is backend-agnostic: a trained model.keras predicts the same under JAX."""

import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("jax")

JAX_SCRIPT = """
import os, sys
os.environ["KERAS_BACKEND"] = "jax"
import keras, numpy as np
import fusionapp.model, fusionapp.preprocessing
assert keras.backend.backend() == "jax"
model = keras.saving.load_model(sys.argv[1], safe_mode=True)
inputs = dict(np.load(sys.argv[2]))
np.save(sys.argv[3], np.asarray(model.predict(inputs, verbose=0)))
if len(sys.argv) > 4:  # the pretrained backbone's own feature maps, which dominate nothing in a tiny run
    backbone = model.backbones.image
    np.save(sys.argv[4], np.asarray(backbone(inputs["image"].astype("float32"))))
"""


# The backbone cases compile a whole keras.applications or KerasHub model under JAX (half a minute): slow.
@pytest.mark.integration
@pytest.mark.parametrize("which", ["multi-kernel", pytest.param("text-backbone", marks=pytest.mark.slow),
                                   pytest.param("backbone", marks=pytest.mark.slow)])
def test_model_file_predicts_the_same_under_jax(which, request, demo_table, tmp_path):
    import tensorflow as tf

    trained_run = {"multi-kernel": lambda: request.getfixturevalue("trained_run"),
                   "text-backbone": lambda: request.getfixturevalue("text_backbone_run")[0],
                   "backbone": lambda: request.getfixturevalue("backbone_run")("mobilenet_v3_small")}[which]()
    from fusionapp.runs.load import load_run
    from fusionapp.data.examples import raw_columns
    from fusionapp.data.sources import load_examples
    from fusionapp.inference.run_rows import run_columns

    run = load_run(trained_run)
    examples = load_examples(demo_table, run_columns(run), modalities=run.modalities).subset(range(12))
    raw = raw_columns(examples, run.modalities, run.preprocessor.tabular_kinds, read_images=True)
    specs = run.preprocessor.input_specs()
    encoded = run.preprocessor.encode({name: tf.constant(raw[name], dtype=spec.dtype) for name, spec in specs.items()})
    inputs = {name: value.numpy() for name, value in encoded.items()}
    np.savez(tmp_path / "inputs.npz", **inputs)
    extra = [str(tmp_path / "jax_features.npy")] if which == "backbone" else []
    done = subprocess.run([sys.executable, "-c", JAX_SCRIPT, os.path.join(trained_run, "model.keras"),
                           str(tmp_path / "inputs.npz"), str(tmp_path / "jax.npy"), *extra], capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    tensorflow_logits = run.model.predict(inputs, verbose=0)
    np.testing.assert_allclose(np.load(tmp_path / "jax.npy"), tensorflow_logits, rtol=1e-4, atol=1e-5)
    if extra:
        features = np.asarray(run.model.backbones.image(inputs["image"].astype("float32")))
        assert np.abs(features).max() > 0
        np.testing.assert_allclose(np.load(extra[0]), features, rtol=1e-3, atol=1e-3 * np.abs(features).max())
