"""Request items -> answers, through the same row check and raw-input function as `predict`, and the
warm-up before the first request."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np

from fusionapp.data.checks import NO_INPUTS, has_no_input, no_input_column
from fusionapp.data.examples import BadRow, Examples
from fusionapp.data.formats import cell_text
from fusionapp.inference.answers import pair_result
from fusionapp.inference.explain import explain_examples
from fusionapp.inference.raw_inference import predict_examples
from fusionapp.inference.run_rows import check_rows, run_columns
from fusionapp.serve.schema import model_metadata  # noqa: F401 - its home until 0.11, where tests import it

# The warm-up's batch sizes after the first take at most this share of the time a first answer needs
# (loading the run and the first call), so that /ready comes close to the load time however large the
# model (`RequestPredictor.warm_up`).
WARM_UP_SHARE = 0.5


@dataclass(frozen=True)
class Warmed:
    """What the warm-up did."""

    largest: int  # every batch size from 1 to this was predicted once
    seconds: float


class RequestPredictor:
    """Request items -> answers, through the same row check and raw-input function as `predict`.

    An item is {"image": bytes | None, "text": str | None, "tabular": {column: cell}}; its answer is
    {"predicted_label", "confidence", "probabilities", "missing"} (multi-label: {"predicted_labels",
    "probabilities", "thresholds", "missing"}) or {"error": reason}.
    """

    def __init__(self, run):
        self.run = run
        self.columns = run_columns(run)
        self.warmed = Warmed(0, 0.0)
        # Keras models are not documented as safe to call from several threads at once.
        self._lock = threading.Lock()

    def predict(self, items: list[dict], explain: bool = False) -> list[dict]:
        """The answers to `items`, in order. A batch is first checked without the checks the raw-input
        function repeats (find_bad_rows' `model_checks`), and in full only if it then fails: one
        image in it does not decode."""
        import tensorflow as tf

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

    def warm_up(self, largest_batch: int = 1, load_s: float | None = None) -> None:
        """Predictions on a made-up pair in batches of each size from 1 up to `largest_batch`, before
        the first request (what `/ready` waits for): the first call traces the raw-input function,
        and the first call at each batch size prepares the CPU kernels for its shapes, which would
        cost the requests of that batch up to tens of ms. A batch of n costs about n times one, so
        warming every size costs the square of the largest. Sizes go smallest first and, given the
        seconds loading took (`load_s`), stop before one that would take the sizes after the first
        past WARM_UP_SHARE of the time a first answer needs (loading and the first call): a larger
        batch gains less, its own time dwarfing that preparation. `warmed` says what was done."""
        import io

        from PIL import Image

        image = io.BytesIO()
        Image.new("RGB", (8, 8), (128, 128, 128)).save(image, "PNG")
        item = {"image": image.getvalue(), "text": "warm up", "tabular": {}}
        began = time.perf_counter()
        size, spent, last, budget = 0, 0.0, 0.0, None
        while size < largest_batch:
            if size > 1 and budget is not None and spent + last * (size + 1) / size > budget:
                break
            size += 1
            call = time.perf_counter()
            answer = self.predict([item] * size)[0]
            if "error" in answer:
                raise RuntimeError(f"the warm-up prediction failed: {answer['error']}")
            last = time.perf_counter() - call
            if size == 1:
                budget = None if load_s is None else WARM_UP_SHARE * (load_s + last)
            else:
                spent += last
        self.warmed = Warmed(size, time.perf_counter() - began)

    def _message(self, bad_row) -> str:
        if bad_row.column in (self.columns.image, self.columns.text) or not bad_row.column:
            return bad_row.reason
        return f"tabular column '{bad_row.column}': {bad_row.reason}"
