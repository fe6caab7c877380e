"""Predictions for pairs held in memory (request bodies), without building a tf.data pipeline.

The model is called directly on one batch, so a single request costs milliseconds; the inputs go
through the same decoder, vectoriser and tabular encoder as training did.
"""

from __future__ import annotations

import threading

import numpy as np

from fusionapp.data.examples import Examples, numeric_problem
from fusionapp.data.images import HEADER_BYTES, check_image_bytes, decode_image, undecodable_reason


class PairPredictor:
    def __init__(self, run):
        self.run = run
        self.prep = run.preprocessing
        self.modalities = run.modalities
        self.vectorizer = self.prep.text_vectorizer() if "text" in self.modalities else None
        self.columns = {column.name: column.kind for column in self.prep.tabular}
        # Keras models are not documented as safe to call from several threads at once.
        self._lock = threading.Lock()

    def predict(self, items: list[dict]) -> list[dict]:
        """items: {"image": bytes | None, "text": str | None, "tabular": {col: value}} -> one result each.

        A result is {"predicted_label", "confidence", "probabilities"} or {"error": reason}.
        """
        results: list[dict | None] = [None] * len(items)
        images, usable = [], []
        for i, item in enumerate(items):
            problem, image = self._check(item)
            if problem:
                results[i] = {"error": problem}
            else:
                usable.append(i)
                images.append(image)
        if usable:
            probabilities = self._probabilities([items[i] for i in usable], images)
            names = self.prep.class_names
            for i, p in zip(usable, probabilities):
                best = int(np.argmax(p))
                missing = [m for m in ("image", "text") if m in self.modalities and not items[i].get(m)]
                results[i] = {"predicted_label": names[best], "confidence": float(p[best]),
                              "probabilities": {name: float(value) for name, value in zip(names, p)},
                              "missing": missing}
        return results

    def _check(self, item: dict):
        image = None
        missing = [m for m in ("image", "text") if m in self.modalities and not item.get(m)]
        if missing and len(missing) == len(self.modalities):
            return "no inputs: every input is empty", None
        if "image" in self.modalities:
            data = item.get("image")
            size = self.prep.image_size
            if not data:  # a missing image: the blank image the model was trained to expect
                image = np.zeros((size, size, 3), np.uint8)
            elif problem := check_image_bytes(data[:HEADER_BYTES], "image"):
                return problem, None
            else:
                try:
                    image = decode_image(data, size).numpy()
                except Exception as error:  # noqa: BLE001 - a decoder failure is the client's file
                    return undecodable_reason("image", error), None
        tabular = item.get("tabular") or {}
        unknown = sorted(set(tabular) - set(self.columns))
        if unknown:
            return f"unknown tabular column '{unknown[0]}' (this model's: {', '.join(self.columns) or 'none'})", None
        for name, kind in self.columns.items():
            if kind == "numeric" and name in tabular:
                problem = numeric_problem(_cell(tabular[name]))
                if problem:
                    return f"tabular column '{name}': {problem}", None
        return None, image

    def _probabilities(self, items: list[dict], images: list) -> np.ndarray:
        import keras

        inputs = {}
        if "image" in self.modalities:
            inputs["image"] = np.stack(images)
        if "text" in self.modalities:
            texts = [str(item.get("text") or "") for item in items]
            inputs["text"] = self.vectorizer(np.array(texts, dtype=object)).numpy()
        if "tabular" in self.modalities:
            examples = Examples(source="request", row_numbers=np.arange(1, len(items) + 1),
                                ids=[""] * len(items), images=None, images_are_files=False, texts=None,
                                tabular={name: [_cell((item.get("tabular") or {}).get(name)) for item in items]
                                         for name in self.columns},
                                labels=None, splits=None)
            inputs["tabular"] = self.prep.encode_tabular(examples)
        with self._lock:
            # predict_on_batch runs the compiled predict function: several times faster than an eager call.
            outputs = self.run.model.predict_on_batch(inputs)
        return np.asarray(keras.ops.convert_to_numpy(outputs), dtype=np.float64)


def _cell(value) -> str:
    return "" if value is None else str(value)
