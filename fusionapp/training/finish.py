"""The end of a run: its reports (validation rows from the held-out logits the post-hoc parts were
tuned on; the test split when the data has one) and the files that make it complete."""

from __future__ import annotations

import os
import shutil

from fusionapp.evaluation.evaluate import evaluate_examples
from fusionapp.evaluation.metrics import prediction_report
from fusionapp.evaluation.plots import learning_curve
from fusionapp.evaluation.report_text import format_report
from fusionapp.inference.raw_inference import predictions_from_logits
from fusionapp.runs import files, layout
from fusionapp.training.training_rows import usable_test_rows


def validation_report(model, val_rows, val_logits, n_skipped: int) -> dict:
    """metrics.json: the saved model's decisions on the validation rows, with the linear part of each
    row's logits from the fold fit that did not see the row (fusionapp.posthoc.wide)."""
    return prediction_report(model, val_rows, predictions_from_logits(model, val_logits), n_skipped=n_skipped)


def test_report(model, examples, columns, say) -> dict | None:
    """The report of the `test` split (None without one). Bad test rows are skipped and counted; a
    test split with no usable row gets a note, not an error: the model is trained either way."""
    if examples.splits is None or "test" not in examples.splits:
        return None
    usable, bad_rows = usable_test_rows(examples, columns, model.preprocessor)
    if len(usable) == 0:
        say(f"Test split: no usable rows (all {len(bad_rows)} are bad; first: {bad_rows[0].message(examples.source)})")
        return None
    say(f"Scoring the {len(usable)} rows of the test split ...")
    report = evaluate_examples(model, usable, n_skipped=len(bad_rows))
    say(format_report(report, title="Test split"))
    return report


def save_run(out: str, model, record, reports: dict, history: list[dict]) -> None:
    """model.keras, the reports and the learning curve, then config.json marked complete, then the
    resumable checkpoints removed: a crash before the last step leaves a run `--resume` finishes."""
    files.save_model(model, os.path.join(out, layout.MODEL_FILE))
    files.write_json(os.path.join(out, layout.METRICS_FILE), reports["validation"])
    if reports.get("test") is not None:
        files.write_json(os.path.join(out, layout.TEST_METRICS_FILE), reports["test"])
    if history:
        learning_curve(history, os.path.join(out, layout.LEARNING_CURVE_FILE))
    record.update(status="complete")
    record.save()
    # The run is complete; its resumable checkpoints would only double its size on disk.
    shutil.rmtree(os.path.join(out, layout.RESUME_DIR), ignore_errors=True)
