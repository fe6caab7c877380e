"""Request items -> answers, through the same row check and raw-input function as `predict`; and what
`/metadata` says of the model."""

from __future__ import annotations

import os
import threading

from fusionapp.data.formats import cell_text


class RequestPredictor:
    """Request items -> answers, through the same row check and raw-input function as `predict`.

    An item is {"image": bytes | None, "text": str | None, "tabular": {column: cell}}; its answer is
    {"predicted_label", "confidence", "probabilities", "missing"} (multi-label: {"predicted_labels",
    "probabilities", "thresholds", "missing"}) or {"error": reason}.
    """

    def __init__(self, run):
        from fusionapp.inference.run_rows import run_columns

        self.run = run
        self.columns = run_columns(run)
        # Keras models are not documented as safe to call from several threads at once.
        self._lock = threading.Lock()

    def predict(self, items: list[dict], explain: bool = False) -> list[dict]:
        """The answers to `items`, in order. A batch is first checked without the checks the raw-input
        function repeats (find_bad_rows' `model_checks`), and in full only if it then fails: one
        image in it does not decode."""
        import numpy as np
        import tensorflow as tf

        from fusionapp.data.examples import Examples

        run, count = self.run, len(items)
        examples = Examples(
            source="request", row_numbers=np.arange(1, count + 1), ids=[str(i) for i in range(count)],
            images=[item["image"] or b"" for item in items] if "image" in run.modalities else None,
            images_are_files=False,
            texts=[item["text"] or "" for item in items] if "text" in run.modalities else None,
            tabular={name: [cell_text(item["tabular"].get(name)) for item in items]
                     for name in run.preprocessor.tabular_kinds},
            labels=None, splits=None)
        try:
            return self._answers(examples, explain, model_checks=explain)
        except tf.errors.OpError:
            if explain:
                raise
            return self._answers(examples, explain, model_checks=True)

    def _answers(self, examples, explain: bool, model_checks: bool) -> list[dict]:
        from fusionapp.data.checks import NO_INPUTS, has_no_input, no_input_column
        from fusionapp.data.examples import BadRow
        from fusionapp.inference.answers import pair_result
        from fusionapp.inference.raw_inference import predict_examples
        from fusionapp.inference.run_rows import check_rows

        run, count = self.run, len(examples)
        errors = {row.row - 1: self._message(row) for row in check_rows(run, examples, self.columns, False,
                                                                         model_checks)}
        good = [i for i in range(count) if i not in errors]
        results = [{"error": errors[i]} if i in errors else None for i in range(count)]
        if not good:
            return results
        with self._lock:
            predictions = predict_examples(run.model, examples.subset(good))
            if explain:
                from fusionapp.inference.explain import explain_examples

                explanations = explain_examples(run.model, examples.subset(good))
        for position, i in enumerate(good):
            if not model_checks and has_no_input(predictions.missing[position], run.modalities):
                row = BadRow(i + 1, no_input_column(self.columns, run.modalities), NO_INPUTS)
                results[i] = {"error": self._message(row)}
                continue
            results[i] = pair_result(predictions, position, run.preprocessor.class_names)
            if explain:
                results[i]["explanation"] = explanations[position]
        return results

    def warm_up(self, largest_batch: int = 1) -> None:
        """Predictions on a made-up pair in batches of every size up to `largest_batch` (64 at
        most), before the first request (what `/ready` waits for): the first call traces the
        raw-input function, and the first call at each batch size prepares the CPU kernels for its
        shapes, which costs the requests of that batch up to tens of ms."""
        import io

        from PIL import Image

        image = io.BytesIO()
        Image.new("RGB", (8, 8), (128, 128, 128)).save(image, "PNG")
        item = {"image": image.getvalue(), "text": "warm up", "tabular": {}}
        for size in range(1, min(largest_batch, 64) + 1):
            answer = self.predict([item] * size)[0]
            if "error" in answer:
                raise RuntimeError(f"the warm-up prediction failed: {answer['error']}")

    def _message(self, bad_row) -> str:
        if bad_row.column in (self.columns.image, self.columns.text) or not bad_row.column:
            return bad_row.reason
        return f"tabular column '{bad_row.column}': {bad_row.reason}"


def model_metadata(run) -> dict:
    import fusionapp

    preprocessor = run.preprocessor
    inputs = {}
    if "image" in run.modalities:
        inputs["image"] = {"type": "image", "size": preprocessor.image_size}
    if "text" in run.modalities:
        inputs["text"] = {"type": "text", **preprocessor.text}
    if "tabular" in run.modalities:
        inputs["tabular"] = {column["name"]: {key: value for key, value in column.items() if key != "name"}
                             for column in preprocessor.tabular}
    return {
        "classes": preprocessor.class_names,
        # multi-label: answers carry predicted_labels and thresholds, not predicted_label and confidence
        "multi_label": preprocessor.multi_label,
        "label_sep": preprocessor.label_sep,
        "inputs": inputs,
        "run": os.path.basename(os.path.abspath(run.path)),
        "model_version": run.config.get("created"),
        "fusionapp_version": fusionapp.__version__,
        "validation_accuracy": _validation_metric(run.path, "accuracy"),  # null for multi-label runs
        **({"validation_micro_f1": _validation_metric(run.path, "micro_f1")} if preprocessor.multi_label else {}),
    }


def _validation_metric(run_dir: str, key: str):
    from fusionapp.runs.files import read_json
    from fusionapp.runs.layout import METRICS_FILE

    path = os.path.join(run_dir, METRICS_FILE)
    if not os.path.exists(path):
        return None
    return read_json(path).get(key)
