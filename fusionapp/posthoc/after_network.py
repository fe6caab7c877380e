"""Everything fitted after the network, in order, on the validation rows' held-out logits: the wide
path and its blend weight, then the decision offsets (single-label), the temperature, and the
per-label thresholds (multi-label, on the calibrated probabilities they are compared with)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict

import numpy as np

from fusionapp.evaluation.calibration import probabilities_of
from fusionapp.posthoc.decisions import tune_offsets, tune_thresholds
from fusionapp.posthoc.temperature import CalibrationRecord, calibrate
from fusionapp.posthoc.wide import WideRecord, fit_wide_path, wide_sources
from fusionapp.settings import RunSettings


class AfterNetworkRecord(TypedDict, total=False):
    """config.json's entries of what was fitted after the network (those the run has)."""

    wide: WideRecord | None  # None: --wide, but no text or tabular column to read
    class_offsets: dict[str, float]  # per class, added to its logit (single-label)
    calibration: CalibrationRecord
    label_thresholds: dict[str, float]  # per label (multi-label)


@dataclass(frozen=True)
class AfterNetwork:
    record: AfterNetworkRecord
    val_logits: np.ndarray  # the saved model's validation logits, its linear part held out


def fit_after_network(model, train_rows, val_rows, network_logits: np.ndarray, settings: RunSettings,
                      say, tune=None, text_vectors=None) -> AfterNetwork:
    """`network_logits`: the model's logits on `val_rows` with every post-hoc part still at its
    neutral value (fusionapp.training.val_logits). What is chosen on validation rows (the blend
    weight, the offsets, the temperature, the thresholds) is chosen on the rows at positions `tune`
    of them, when given: those early stopping did not choose its epoch on, whose network logits are
    as held out as the linear part's. The linear part learns from every row; `text_vectors` (a
    TextVectors) are the text backbone's vectors of the rows, where it reads them."""
    preprocessor = model.preprocessor
    tune = np.arange(len(val_rows)) if tune is None else np.asarray(tune)
    y_val = preprocessor.label_targets(val_rows.labels)[tune]
    logits = network_logits
    record = AfterNetworkRecord()
    if model.has_wide_path:
        record["wide"], logits = _wide(model, train_rows, val_rows, logits, settings, say, tune, text_vectors)
    elif settings.model.wide:
        record["wide"] = None
        say("Wide path: none (it reads text and tabular columns; this model has neither)")
    multi_label = preprocessor.multi_label
    if settings.training.tunes_offsets and not multi_label:
        offsets = tune_offsets(y_val, logits[tune])
        model.set_offsets(offsets)
        record["class_offsets"] = dict(zip(preprocessor.class_names, map(float, offsets)))
        logits = logits + offsets
    if settings.model.calibrate:
        record["calibration"] = calibration = calibrate(model, y_val, logits[tune])
        say(f"Calibration: temperature {calibration['temperature']:.3f} on the tuning rows; their ECE "
            f"{calibration['val_ece']['before']:.4f} -> {calibration['val_ece']['after']:.4f}, Brier "
            f"{calibration['val_brier']['before']:.4f} -> {calibration['val_brier']['after']:.4f}")
        logits = logits / calibration["temperature"]
    if settings.training.tunes_thresholds and multi_label:
        thresholds = tune_thresholds(y_val, probabilities_of(logits[tune], True))
        model.set_thresholds(thresholds)
        record["label_thresholds"] = dict(zip(preprocessor.class_names, model.thresholds.tolist()))
        say("Thresholds (best validation F1 per label): " + ", ".join(
            f"{name} {value:.2f}" for name, value in record["label_thresholds"].items()))
    return AfterNetwork(record, logits)


def _wide(model, train_rows, val_rows, deep_logits, settings: RunSettings, say, tune, text_vectors):
    fitted = fit_wide_path(model, train_rows, val_rows, deep_logits, settings.training.class_weight,
                           settings.training.seed, say, tune, text_vectors)
    alpha, losses = fitted.record["alpha"], fitted.record["val_log_loss"]
    weight = (f"weights {min(alpha.values()):.1f}-{max(alpha.values()):.1f} (per label)" if isinstance(alpha, dict)
              else f"weight {alpha:.1f}")
    sources = " and ".join(wide_sources(model.preprocessor, model.spec))
    say(f"Wide path: linear model (C {fitted.record['C']:g}) on {sources}, "
        f"blended with {weight} "
        f"(held-out validation log loss {losses['deep']:.4f} network alone, {losses['wide']:.4f} linear alone, "
        f"{losses['blend']:.4f} blended)")
    return fitted.record, fitted.val_logits
