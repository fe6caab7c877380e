"""Why a prediction was made, for one row at a time, in one forward and backward pass.

The row goes through the model together with copies of it that each lack one input (blanked as
a missing input is: fusionapp.data.examples.Examples.blanked), and the gradient of the predicted
class's logit (less the mean logit, which softmax ignores) is taken on that row alone; for a
multi-label model, of the likeliest label's logit, named in `label`. Each figure's unit is named
in `units`:
- `modalities`: the change in that probability when the input is blanked (negative: the input
  supported the prediction);
- `image`: Grad-CAM on the feature map the image branch pools (the last multi-kernel block, or
  the pretrained backbone's output), as a heat map PNG the size of the input image, warm where the
  image pushes towards the predicted class. The map is scaled to its own maximum, so its opacity is
  scaled again by `strength`, how much blanking the image moved the probability: an image that did
  not matter shows a faint map;
- `text`: gradient x input on the TF-IDF n-gram features (the network's and the wide path's own),
  in logit units, each n-gram's share given to the words it overlaps (with token-id encoders, the
  probability lost when each word is left out instead), the strongest 10;
- `tabular`: gradient x input summed over each column's encoded values, in logit units.
An input the row does not have (`missing`: the modality, or a tabular column whose cell is empty)
gets no figure. Gradients need TensorFlow, as the raw-input function does; the network itself
stays Keras-only.
"""

from __future__ import annotations

import base64
import weakref

import numpy as np

from fusionapp.data.examples import Examples, raw_columns
from fusionapp.data.images import encoded_dimensions
from fusionapp.inference.explain_text import left_out_words, text_weights, top_words
from fusionapp.inference.raw_inference import inference_for, predict_examples
from fusionapp.preprocessing.configs import TextInput
from fusionapp.preprocessing.raw_values import missing_inputs, tabular_key

HEATMAP_MAX_SIDE = 1024
# A change of the explained probability this large, or larger, when the image is blanked shows the
# heat map at full opacity; smaller changes show it fainter, in proportion.
IMAGE_MATTERS = 0.2
LOGIT_UNITS = "logit units: gradient x input of the explained class's logit, less the mean logit"
UNITS = {
    "modalities": "change in the explained class's probability when the input is blanked",
    "image": "Grad-CAM of the explained class's logit, scaled to its maximum; opacity x strength, the "
             f"probability change when the image is blanked over {IMAGE_MATTERS} (at most 1)",
    "tabular": LOGIT_UNITS,
}
TEXT_UNITS = {TextInput.TF_IDF: LOGIT_UNITS}
LEFT_OUT_UNITS = "probability of the explained class lost when the word is left out"

_EXPLAINERS = weakref.WeakKeyDictionary()


def explain_examples(model, examples: Examples) -> list[dict]:
    """One explanation per row of already-checked `examples` (see the module docstring)."""
    return [explain_row(model, examples.subset([i])) for i in range(len(examples))]


def explain_row(model, row: Examples) -> dict:
    if hasattr(model, "members"):
        return _explain_ensemble(model, row)
    preprocessor = model.preprocessor
    modalities = preprocessor.modalities
    columns, out = _explained(model, row)
    probabilities, predicted = out["probabilities"], int(out["predicted"])
    base = float(probabilities[0, predicted])
    missing = _missing(columns[0], modalities, preprocessor.tabular_columns)
    explanation = _modality_figures(preprocessor, probabilities, predicted, missing)
    if "text" in modalities and "text" not in missing:
        explanation["text"] = text_weights(model, row, out, predicted, base)
        explanation["units"]["text"] = TEXT_UNITS.get(preprocessor.text.input, LEFT_OUT_UNITS)
    if "image" in modalities and "image" not in missing:
        explanation["image"] = _image_map(preprocessor, columns[0]["image"][0], out,
                                          explanation["modalities"]["image"])
        explanation["units"]["image"] = UNITS["image"]
    if "tabular" in modalities and "tabular" not in missing:
        explanation["tabular"] = _tabular_figures(preprocessor, out, missing)
        explanation["units"]["tabular"] = UNITS["tabular"]
    return explanation


def _explained(model, row: Examples, target: int = -1):
    """(the raw columns of the row and of its copies each lacking one input, the explainer's outputs)
    for the class or label `target` (-1: the likeliest)."""
    import tensorflow as tf

    preprocessor = model.preprocessor
    modalities = preprocessor.modalities
    variants = [row] + [row.blanked(m) for m in modalities]
    columns = [raw_columns(v, modalities, preprocessor.tabular_kinds, read_images=True) for v in variants]
    explainer = _explainer(model)
    out = explainer({name: tf.constant(np.concatenate([c[name] for c in columns]), dtype=spec.dtype)
                     for name, spec in explainer.specs.items()}, tf.constant(target, tf.int32))
    return columns, {name: value.numpy() for name, value in out.items()}


def _modality_figures(preprocessor, probabilities, predicted: int, missing: list[str]) -> dict:
    """The explanation's start: each input's probability change when blanked (rows 1.. of
    `probabilities`, in modality order), what is missing, and the units."""
    base = float(probabilities[0, predicted])
    explanation = {"modalities": {m: float(probabilities[1 + k, predicted] - base)
                                  for k, m in enumerate(preprocessor.modalities) if m not in missing},
                   "missing": missing, "units": {"modalities": UNITS["modalities"]}}
    if preprocessor.multi_label:
        # Several labels may be chosen; the explanation is of the likeliest.
        explanation.update(label=preprocessor.class_names[predicted], probability=base)
    return explanation


def _tabular_figures(preprocessor, out: dict, missing: list[str]) -> dict[str, float]:
    contributions = out["tabular_gradient"] * out["tabular"]
    ends = np.cumsum(preprocessor.tabular_widths())
    return {name: float(contributions[end - width:end].sum()) for (name, _), width, end
            in zip(preprocessor.tabular_columns, preprocessor.tabular_widths(), ends)
            if f"tabular:{name}" not in missing}


def _explain_ensemble(model, row: Examples) -> dict:
    """An ensemble's explanation of its own decision: inputs blanked and words left out through the
    whole ensemble; the image's Grad-CAM and the tabular figures of each member for the ensemble's
    class, averaged with the members' weights."""
    import tensorflow as tf

    preprocessor = model.preprocessor
    modalities = preprocessor.modalities
    variants = [row] + [row.blanked(m) for m in modalities]
    probabilities = np.concatenate([predict_examples(model, variant).probabilities for variant in variants])
    predicted = int(np.argmax(probabilities[0]))
    columns = raw_columns(row, modalities, preprocessor.tabular_kinds, read_images=True)
    missing = _missing(columns, modalities, preprocessor.tabular_columns)
    explanation = _modality_figures(preprocessor, probabilities, predicted, missing)
    if "text" in modalities and "text" not in missing:
        words = left_out_words(model, row, row.texts[0], predicted, float(probabilities[0, predicted]))
        explanation["text"], explanation["units"]["text"] = top_words(words), LEFT_OUT_UNITS
    if not ({"image", "tabular"} & set(modalities) - set(missing)):
        return explanation
    cams, tabular = [], {}
    for member, weight in zip(model.members, model.member_weights):
        _, out = _explained(member, row, predicted)
        if "feature_map" in out:
            cams.append((weight, _grad_cam(out["feature_map"], out["feature_gradient"])))
        if "tabular" in modalities and "tabular" not in missing:
            for name, value in _tabular_figures(member.preprocessor, out, missing).items():
                tabular[name] = tabular.get(name, 0.0) + weight * value
    if "image" in modalities and "image" not in missing:
        strength = min(1.0, abs(explanation["modalities"]["image"]) / IMAGE_MATTERS)
        heatmap = None
        if cams:
            size = _heatmap_size(preprocessor, columns["image"][0])
            cam = sum(weight * tf.image.resize(cam[..., None].astype(np.float32), size).numpy()[..., 0]
                      for weight, cam in cams)
            heatmap = _heatmap_png(cam / cam.max() if cam.max() > 0 else cam, size, strength)
        explanation["image"], explanation["units"]["image"] = {"heatmap": heatmap, "strength": strength}, UNITS["image"]
    if tabular:
        explanation["tabular"], explanation["units"]["tabular"] = tabular, UNITS["tabular"]
    return explanation


def _missing(raw: dict, modalities, tabular_columns) -> list[str]:
    """The inputs row 0 of `raw` lacks: its modalities (the raw-input function's rule), then each
    empty tabular cell of a row that has others, as `tabular:COLUMN`."""
    import tensorflow as tf

    first = {name: value[:1] for name, value in raw.items()}
    names = missing_inputs({name: tf.constant(value) for name, value in first.items()}, modalities,
                           tabular_columns).numpy()[0].decode().split()
    if "tabular" in modalities and "tabular" not in names:
        for column, kind in tabular_columns:
            cell = first[tabular_key(column)][0]
            empty = np.isnan(cell) if kind == "numeric" else not str(cell.decode() if isinstance(cell, bytes)
                                                                        else cell).strip()
            if empty:
                names.append(f"tabular:{column}")
    return names


def _image_map(preprocessor, image: bytes, out: dict, change: float) -> dict:
    """{"heatmap": base64 PNG or None, "strength": how much the image mattered, 0-1}."""
    strength = min(1.0, abs(change) / IMAGE_MATTERS)
    if "feature_map" not in out:  # a joint image-text model's image branch has no map to show
        return {"heatmap": None, "strength": strength}
    cam = _grad_cam(out["feature_map"], out["feature_gradient"])
    return {"heatmap": _heatmap_png(cam, _heatmap_size(preprocessor, image), strength), "strength": strength}


def _heatmap_size(preprocessor, image: bytes) -> tuple[int, int]:
    """(height, width) of a heat map: the input image's size, but at most HEATMAP_MAX_SIDE on its
    longest side: a phone photo's full-size map would be megabytes of JSON for a picture scaled
    down to show it."""
    width, height = encoded_dimensions(image) or (preprocessor.image_size,) * 2
    scale = min(1.0, HEATMAP_MAX_SIDE / max(width, height))
    return max(1, round(height * scale)), max(1, round(width * scale))


def _explainer(model):
    """A function traced once for any batch: raw inputs -> the model's preprocessor -> the network,
    with the raw-input function's decision (its probabilities and row 0's likeliest class or label),
    and on row 0 its encoded text and tabular inputs and the gradients of its centred logit (of the
    class `target`; -1: the likeliest) with respect to them and to the image feature map. Built once
    per model."""
    if model in _EXPLAINERS:
        return _EXPLAINERS[model]
    import keras
    import tensorflow as tf

    preprocessor = model.preprocessor
    decide = inference_for(model).decide
    feature_map = model.image_feature_map
    graph = keras.Model(model.input, ([feature_map] if feature_map is not None else []) + [model.output])
    specs = preprocessor.input_specs()

    @tf.function(input_signature=[specs, tf.TensorSpec((), tf.int32)])
    def run(raw, target):
        inputs = preprocessor.encode(raw)
        watched = {name: value for name, value in inputs.items() if value.dtype == tf.float32}
        with tf.GradientTape() as tape:
            tape.watch(list(watched.values()))
            results = graph(inputs, training=False)
            results = results if isinstance(results, (list, tuple)) else [results]
            decision = decide(tf.cast(results[-1], tf.float32))
            logits = decision["logits"]
            predicted = tf.where(target >= 0, target, decision["ranking"][0, 0])
            # Multi-label: the likeliest label's own logit, which its sigmoid alone reads. Single-label:
            # the predicted class's logit less the mean logit, what softmax sees of it, without the
            # probability's saturation, whose gradient vanishes on confident predictions.
            target = tf.gather(logits[0], predicted) - (0.0 if model.multi_label else tf.reduce_mean(logits[0]))
        sources = {**watched, **({"feature_map": results[0]} if feature_map is not None else {})}
        gradients = tape.gradient(target, sources, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        answer = {"probabilities": decision["probabilities"], "predicted": predicted}
        if feature_map is not None:
            answer["feature_map"] = tf.cast(results[0][0], tf.float32)
            answer["feature_gradient"] = tf.cast(gradients["feature_map"][0], tf.float32)
        for name in watched:
            answer[name] = watched[name][0]
            answer[f"{name}_gradient"] = gradients[name][0]
        if "wide_ids" in inputs:
            answer["wide_ids"] = inputs["wide_ids"][0]
        return answer

    run.specs = specs
    # The traced function holds the graph model, which holds the model's layers: cached per model.
    _EXPLAINERS[model] = run
    return run


def _grad_cam(feature_map, gradient) -> np.ndarray:
    """Grad-CAM: channels weighted by their mean gradient, summed, ReLU, scaled to [0, 1]."""
    weights = gradient.mean(axis=(0, 1))
    cam = np.maximum((feature_map * weights).sum(axis=-1), 0.0)
    top = cam.max()
    return cam / top if top > 0 else cam


def _heatmap_png(cam, size: tuple[int, int], strength: float) -> str:
    """A transparent PNG of the input image's size: black-red-yellow ("hot") where the cam is high,
    its opacity the cam times `strength`, as base64 text."""
    import tensorflow as tf

    resized = tf.image.resize(cam[..., None].astype(np.float32), size, method="bilinear").numpy()[..., 0]
    x = np.clip(resized, 0.0, 1.0)
    rgba = np.stack([np.clip(3 * x, 0, 1), np.clip(3 * x - 1, 0, 1), np.clip(3 * x - 2, 0, 1), x * strength],
                    axis=-1)
    # The fastest compression: a heat map is smooth, and the size of the input image can be large.
    png = tf.io.encode_png(tf.constant((rgba * 255).round().astype(np.uint8)), compression=1).numpy()
    return base64.b64encode(png).decode("ascii")


