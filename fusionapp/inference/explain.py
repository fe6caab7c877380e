"""Why a prediction was made, for one row at a time, in one forward and backward pass.

The row goes through the model together with copies of it that each lack one input (blanked as
a missing input is: fusionapp.data.examples.Examples.blanked), and the gradient of the predicted
class's logit (less the mean logit, which softmax ignores) is taken on that row alone; for a
multi-label model, of the likeliest label's logit, named in `label`:
- `modalities`: the change in that probability when the input is blanked (negative: the input
  supported the prediction);
- `image`: Grad-CAM on the feature map the image branch pools (the last multi-kernel block, or
  the pretrained backbone's output), as a heat map PNG the size of the input image, warm where the
  image pushes towards the predicted class;
- `text`: gradient x input on the TF-IDF n-gram features (the network's and the wide path's own),
  each n-gram's share given to the words it overlaps (with token-id encoders, leaving each word out
  instead), the strongest 10;
- `tabular`: gradient x input summed over each column's encoded values.
Gradients need TensorFlow, as the raw-input function does; the network itself stays Keras-only.
"""

from __future__ import annotations

import base64
import re
import dataclasses
import weakref

import numpy as np

from fusionapp.data.examples import Examples, raw_columns
from fusionapp.data.images import encoded_dimensions
from fusionapp.inference.raw_inference import inference_for, predict_examples
from fusionapp.preprocessing.configs import TextInput

TOP_TEXT = 10
HEATMAP_MAX_SIDE = 1024
MAX_LEFT_OUT_WORDS = 48
# One word per CJK / kana / Hangul / Thai character (scripts written without spaces), else runs
# of word characters: what text weights are reported for.
WORD = re.compile(r"[\u0e00-\u0e7f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]|\w+")

_EXPLAINERS = weakref.WeakKeyDictionary()


def explain_examples(model, examples: Examples) -> list[dict]:
    """One explanation per row of already-checked `examples` (see the module docstring)."""
    return [explain_row(model, examples.subset([i])) for i in range(len(examples))]


def explain_row(model, row: Examples) -> dict:
    import tensorflow as tf

    preprocessor = model.preprocessor
    modalities = preprocessor.modalities
    variants = [row] + [row.blanked(m) for m in modalities]
    columns = [raw_columns(v, modalities, preprocessor.tabular_kinds, read_images=True) for v in variants]
    explainer = _explainer(model)
    out = explainer({name: tf.constant(np.concatenate([c[name] for c in columns]), dtype=spec.dtype)
                     for name, spec in explainer.specs.items()})
    out = {name: value.numpy() for name, value in out.items()}
    probabilities, predicted = out["probabilities"], int(out["predicted"])
    base = float(probabilities[0, predicted])
    explanation = {"modalities": {m: float(probabilities[1 + k, predicted] - base) for k, m in enumerate(modalities)}}
    if preprocessor.multi_label:
        # Several labels may be chosen; the explanation is of the likeliest.
        explanation.update(label=preprocessor.class_names[predicted], probability=base)
    if "text" in modalities:
        text = row.texts[0]
        if preprocessor.text.input == TextInput.TF_IDF:
            weights = _ngram_weights(preprocessor, out["text"], out["text_gradient"])
            words = _words_of_ngrams(text, weights, preprocessor.text.tokens)
            if "wide_ids" in out:
                # The wide path's n-grams push the logits too: their gradient x input joins the words.
                contributions = out["wide_weights"] * out["wide_weights_gradient"]
                wide = _wide_ngram_weights(preprocessor, out["wide_ids"], contributions)
                for word, weight in _words_of_ngrams(text, wide, "chars").items():
                    words[word] = words.get(word, 0.0) + weight
            explanation["text"] = _top(words)
        else:
            explanation["text"] = _top(_left_out_words(model, row, text, predicted, base))
    if "image" in modalities:
        image = columns[0]["image"][0]
        heatmap = None
        if image and "feature_map" in out:  # a joint image-text model's image branch has no map to show
            width, height = encoded_dimensions(image) or (preprocessor.image_size,) * 2
            # The input image's size, but at most HEATMAP_MAX_SIDE on its longest side: a phone
            # photo's full-size map would be megabytes of JSON for a picture scaled down to show it.
            scale = min(1.0, HEATMAP_MAX_SIDE / max(width, height))
            size = (max(1, round(height * scale)), max(1, round(width * scale)))
            heatmap = _heatmap_png(_grad_cam(out["feature_map"], out["feature_gradient"]), size)
        explanation["image"] = {"heatmap": heatmap}
    if "tabular" in modalities:
        contributions = out["tabular_gradient"] * out["tabular"]
        ends = np.cumsum(preprocessor.tabular_widths())
        explanation["tabular"] = {name: float(contributions[end - width:end].sum()) for (name, _), width, end
                                  in zip(preprocessor.tabular_columns, preprocessor.tabular_widths(), ends)}
    return explanation


def _explainer(model):
    """A function traced once for any batch: raw inputs -> the model's preprocessor -> the network,
    with the raw-input function's decision (its probabilities and row 0's likeliest class or label),
    and on row 0 its encoded text and tabular inputs and the gradients of its centred logit with
    respect to them and to the image feature map. Built once per model."""
    if model in _EXPLAINERS:
        return _EXPLAINERS[model]
    import keras
    import tensorflow as tf

    preprocessor = model.preprocessor
    decide = inference_for(model).decide
    feature_map = model.image_feature_map
    graph = keras.Model(model.input, ([feature_map] if feature_map is not None else []) + [model.output])
    specs = preprocessor.input_specs()

    @tf.function(input_signature=[specs])
    def run(raw):
        inputs = preprocessor.encode(raw)
        watched = {name: value for name, value in inputs.items() if value.dtype == tf.float32}
        with tf.GradientTape() as tape:
            tape.watch(list(watched.values()))
            results = graph(inputs, training=False)
            results = results if isinstance(results, (list, tuple)) else [results]
            decision = decide(tf.cast(results[-1], tf.float32))
            logits, predicted = decision["logits"], decision["ranking"][0, 0]
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


def _heatmap_png(cam, size: tuple[int, int]) -> str:
    """A transparent PNG of the input image's size: black-red-yellow ("hot") where the cam is high,
    its opacity the cam itself, as base64 text."""
    import tensorflow as tf

    resized = tf.image.resize(cam[..., None].astype(np.float32), size, method="bilinear").numpy()[..., 0]
    x = np.clip(resized, 0.0, 1.0)
    rgba = np.stack([np.clip(3 * x, 0, 1), np.clip(3 * x - 1, 0, 1), np.clip(3 * x - 2, 0, 1), x], axis=-1)
    # The fastest compression: a heat map is smooth, and the size of the input image can be large.
    png = tf.io.encode_png(tf.constant((rgba * 255).round().astype(np.uint8)), compression=1).numpy()
    return base64.b64encode(png).decode("ascii")


def _wide_ngram_weights(preprocessor, ids, contributions) -> dict[str, float]:
    """The wide path's gradient x input per n-gram of the row (id 0: none), keyed by its text."""
    vocabulary = _vocabulary(preprocessor.wide_vectorizer)
    weights = {}
    for index, contribution in zip(ids, contributions):
        if index > 0 and contribution:
            text = vocabulary[index][0::2]  # characters joined by single spaces, as below
            weights[text] = weights.get(text, 0.0) + float(contribution)
    return weights


def _ngram_weights(preprocessor, features, gradient) -> dict[str, float]:
    """gradient x input per vocabulary n-gram of the row, keyed by the n-gram's text."""
    vocabulary = _vocabulary(preprocessor.text_vectorizer)
    chars = preprocessor.text.tokens == "chars"
    weights = {}
    for index in np.flatnonzero(features):
        entry = vocabulary[index]
        if index == 0 or not entry:
            continue  # the out-of-vocabulary slot
        # TextVectorization joins an n-gram's tokens with single spaces; characters sit at even places.
        text = entry[0::2] if chars else entry
        weights[text] = weights.get(text, 0.0) + float(features[index] * gradient[index])
    return weights


_VOCABULARIES = weakref.WeakKeyDictionary()


def _vocabulary(vectorizer) -> list[str]:
    if vectorizer not in _VOCABULARIES:
        _VOCABULARIES[vectorizer] = [str(token) for token in vectorizer.get_vocabulary()]
    return _VOCABULARIES[vectorizer]


def _words_of_ngrams(text: str, weights: dict[str, float], tokens: str) -> dict[str, float]:
    """Each n-gram's weight shared among its words: for word n-grams the words it joins, for
    character n-grams the words its occurrences in the text overlap (spaces and punctuation
    belong to no word)."""
    totals: dict[str, float] = {}

    def add(word, weight):
        totals[word] = totals.get(word, 0.0) + weight

    if tokens == "words":
        for ngram, weight in weights.items():
            parts = ngram.split()
            for part in parts:
                add(part, weight / len(parts))
        return totals
    lowered = " ".join(text.split()).lower()
    owner = [-1] * len(lowered)  # the word each character belongs to
    words = []
    for match in WORD.finditer(lowered):
        owner[match.start():match.end()] = [len(words)] * (match.end() - match.start())
        words.append(match.group())
    for ngram, weight in weights.items():
        starts, at = [], lowered.find(ngram)
        while at != -1:
            starts.append(at)
            at = lowered.find(ngram, at + 1)
        for start in starts:
            overlapped = set(owner[start:start + len(ngram)]) - {-1}
            for i in overlapped:
                add(words[i], weight / (len(starts) * len(overlapped)))
    return totals


def _left_out_words(model, row: Examples, text: str, predicted: int, base: float) -> dict[str, float]:
    """For token-id encoders: the predicted class's probability lost when each word is left out."""
    matches = list(WORD.finditer(text))[:MAX_LEFT_OUT_WORDS]
    if not matches:
        return {}
    variants = [text[:m.start()] + text[m.end():] for m in matches]
    batch = dataclasses.replace(row.subset([0] * len(variants)), texts=variants)
    probabilities = predict_examples(model, batch).probabilities[:, predicted]
    totals: dict[str, float] = {}
    for match, probability in zip(matches, probabilities):
        word = match.group().lower()
        totals[word] = totals.get(word, 0.0) + float(base - probability)
    return totals


def _top(weights: dict[str, float]) -> list[list]:
    ranked = sorted(weights.items(), key=lambda item: (-abs(item[1]), item[0]))
    return [[word, weight] for word, weight in ranked[:TOP_TEXT] if weight != 0.0]
