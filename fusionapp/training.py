"""`fusionapp train`: data -> checked rows -> adapted preprocessor -> fitted model -> run folder."""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from datetime import datetime, timezone

from fusionapp import artifacts
from fusionapp.config import RunSettings, apply_flat
from fusionapp.errors import FusionError
from fusionapp.fitting import printer

DEMO_DIR = os.path.join("data", "demo")
DEMO_TABLE = os.path.join(DEMO_DIR, "demo.csv")
MULTILABEL_DEMO_DIR = os.path.join("data", "demo-multilabel")
DEMO_TABULAR = ("price", "seller")


def train(data: str | None = None, out: str | None = None, *, resume: bool = False, overwrite: bool = False,
          verbose: int = 1, settings: RunSettings | None = None, **flat) -> str:
    """Train a classifier and return its run directory.

    Settings come as `settings` (checked RunSettings, as the CLI builds them) and/or as the flat
    names of the CLI flags (`epochs=3`, `image_col="photo"`, ...), which are checked here.
    With no `data`, trains on the demo set, creating it under data/demo first.
    """
    if resume:
        if out is None:
            raise FusionError("--resume needs --out RUN_DIR, the run to continue")
        run_settings, data = _saved_settings(out, data)
    else:
        run_settings = apply_flat(settings or RunSettings(), flat)
        weights = run_settings.training.backbone_weights
        if weights not in ("imagenet", "none"):
            # Recorded absolute, so --resume from another folder finds the same file.
            run_settings = apply_flat(run_settings, {"backbone_weights": os.path.abspath(os.path.expanduser(weights))})
        if data is None:
            if run_settings.model.multi_label and run_settings.columns.label_sep != "|":
                raise FusionError("the multi-label demo joins its labels with '|'; leave out --label-sep")
            data = _demo_table(verbose, run_settings.model.multi_label)
            if not run_settings.columns.tabular:
                run_settings = apply_flat(run_settings, {"tabular_col": DEMO_TABULAR})
        out = out or _default_out(data)
    if run_settings.model.multi_label and data.startswith("tfds:"):
        raise FusionError("--multi-label reads label sets from a table's label column; TFDS sources give one "
                          "label per example")
    _check_environment(run_settings)
    from fusionapp.distribute import make_placement

    # Before anything else runs a TensorFlow op: multi-worker training cannot start after one.
    placement = make_placement(run_settings.training.strategy)
    from fusionapp.precision import resolve_precision

    # Recorded as resolved, so config.json says what ran and --resume keeps it on other hardware.
    run_settings = apply_flat(run_settings, {"precision": resolve_precision(run_settings.training.precision)})
    if resume and placement.num_workers > 1:
        raise FusionError("--resume is not supported with --strategy multi-worker: restart the whole cluster "
                          "without --resume")
    if placement.is_chief:
        return _train_in(data, out, run_settings, placement, resume, overwrite, verbose)
    # Other workers train in step with the chief but write where nobody reads, then clean up.
    scratch = tempfile.mkdtemp(prefix=f"fusionapp-worker{placement.worker_index}-")
    try:
        _train_in(data, os.path.join(scratch, "run"), run_settings, placement, False, False, 0)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return out


def _train_in(data: str, out: str, settings: RunSettings, placement, resume: bool, overwrite: bool,
              verbose: int) -> str:
    import keras

    artifacts.make_writable_dir(out)
    from fusionapp.precision import precision_policy

    with artifacts.run_lock(out), precision_policy(settings.training.precision):
        artifacts.prepare_run_dir(out, resume=resume, overwrite=overwrite)
        keras.utils.set_random_seed(settings.training.seed)
        return _train_locked(data, out, settings, placement, resume, verbose)


def _train_locked(data: str, out: str, settings: RunSettings, placement, resume: bool, verbose: int) -> str:
    from fusionapp.data.checks import drop_bad_rows, find_bad_rows
    from fusionapp.data.sources import load_examples
    from fusionapp.data.splits import split_train_val, training_rows
    from fusionapp.evaluation import write_skipped
    from fusionapp.preprocessing import infer_tabular_kinds
    from fusionapp.train_state import load_state

    say = printer(verbose)
    if not resume:
        # Written first, so a run killed at any later moment can be resumed.
        artifacts.write_json(os.path.join(out, artifacts.CONFIG_FILE), _run_config(data, settings))
    columns, training = settings.columns, settings.training
    label_sep = columns.label_sep if settings.model.multi_label else None
    requested = settings.model.modalities or None
    examples = load_examples(data, columns, image_root=settings.image_root, need_label=True, modalities=requested)
    modalities = requested or examples.modalities
    if "tabular" in modalities and not columns.tabular:
        raise FusionError("--modalities tabular needs the tabular columns named with --tabular-col")
    settings = apply_flat(settings, {"modalities": modalities})
    settings = dataclasses.replace(settings, model=settings.model.resolved(),
                                   text=settings.text.resolved(settings.model.text_encoder))
    candidates = training_rows(examples)
    kinds = (infer_tabular_kinds({name: candidates.tabular[name] for name in columns.tabular_names},
                                 columns.tabular_kinds) if "tabular" in modalities else {})
    say(f"Checking {len(candidates)} rows of {examples.source} ...")
    bad_rows = find_bad_rows(candidates, columns, modalities, need_label=True, tabular_kinds=kinds,
                             label_sep=label_sep)
    checked = drop_bad_rows(candidates, bad_rows, training.on_bad_row)
    train_rows, val_rows = split_train_val(checked.examples, training.val_split, training.seed,
                                           multi_label=label_sep is not None)

    state = load_state(out) if resume else None
    checkpoint_model = _load_checkpoint(out, state, placement) if state else None
    preprocessor = (checkpoint_model.preprocessor if checkpoint_model is not None
                    else _adapt(train_rows, settings, modalities, kinds, examples.source))
    artifacts.write_json(os.path.join(out, artifacts.PREPROCESSING_FILE), preprocessor.describe())
    unseen = []
    if label_sep is None:
        # Label sets keep their rows: labels the model does not know are left out where they are scored.
        val_rows, unseen = _drop_unseen_labels(val_rows, preprocessor.class_names, columns.label)
    skipped = checked.skipped + unseen
    if skipped:
        write_skipped(os.path.join(out, artifacts.SKIPPED_FILE), skipped)
        say(f"Skipped {len(skipped)} bad rows (listed in {os.path.join(out, artifacts.SKIPPED_FILE)}); "
            f"first: {skipped[0].message(examples.source)}")
    if len(val_rows) == 0:
        raise FusionError(f"{examples.source}: no usable validation rows")

    config = _run_config(data, settings)
    config.update(class_names=preprocessor.class_names, tabular_kinds=preprocessor.tabular_kinds,
                  n_train=len(train_rows), n_val=len(val_rows), n_skipped=len(skipped), strategy=placement.name,
                  replicas=placement.replicas, workers=placement.num_workers,
                  global_batch_size=placement.global_batch_size(settings.training.batch_size))
    artifacts.write_json(os.path.join(out, artifacts.CONFIG_FILE), config)
    if label_sep is not None:
        config["label_sets"] = _label_summary(train_rows, val_rows, preprocessor, training.min_label_count, say)
    elif sum(columns.label_sep in label for label in train_rows.labels) * 2 > len(train_rows):
        say(f"Note: most labels contain {columns.label_sep!r}; if each is a set of labels, train with --multi-label")
    say(f"Training on {len(train_rows)} rows, validating on {len(val_rows)}; modalities: {', '.join(modalities)}; "
        f"{'labels' if label_sep else 'classes'}: {', '.join(preprocessor.class_names)}")
    if placement.name != "default":
        say(f"Strategy {placement.name}: {placement.replicas} replicas in sync on {placement.num_workers} "
            f"worker(s), global batch {placement.global_batch_size(settings.training.batch_size)}")

    from fusionapp.fitting import fit_model

    model, history, best_epoch, backbone = fit_model(settings, preprocessor, train_rows, val_rows, out, placement,
                                         checkpoint_model, state, verbose)
    if backbone is not None:
        config["backbone"] = backbone

    from fusionapp.evaluation import evaluate_examples
    from fusionapp.metrics import format_report
    from fusionapp.wide import WidePath, has_wide_path, wide_sources

    wide = WidePath(model, train_rows, val_rows, settings.training.class_weight) if has_wide_path(model) else None
    if wide is not None:
        config["wide"] = wide.fit()
        alpha = config["wide"]["alpha"]
        weight = (f"weights {min(alpha.values()):.1f}-{max(alpha.values()):.1f} (per label)" if isinstance(alpha, dict)
                  else f"weight {alpha:.1f}")
        say(f"Wide path: linear model on {' and '.join(wide_sources(preprocessor))}, blended with {weight} "
            f"(validation log loss {config['wide']['val_log_loss']['deep']:.4f} "
            f"network alone, {config['wide']['val_log_loss']['wide']:.4f} linear alone, "
            f"{config['wide']['val_log_loss']['blend']:.4f} blended)")
    elif settings.model.wide:
        config["wide"] = None
        say("Wide path: none (it reads TF-IDF text, from --text-encoder bag, and tabular columns; "
            "this model has neither)")
    if settings.training.tune_decisions or settings.model.calibrate:
        from fusionapp.inference import predict_examples

        logits = wide.val_logits if wide is not None else predict_examples(model, val_rows).logits
        y_val = preprocessor.label_targets(val_rows.labels)
    multi_label = preprocessor.multi_label
    if settings.training.tune_decisions and not multi_label:
        from fusionapp.decision import apply_offsets, tune_offsets

        offsets = tune_offsets(y_val, logits)
        apply_offsets(model, offsets)
        config["class_offsets"] = dict(zip(preprocessor.class_names, map(float, offsets)))
        logits = logits + offsets
    if settings.model.calibrate:
        from fusionapp.calibration import calibrate

        config["calibration"] = calibration = calibrate(model, y_val, logits)
        say(f"Calibration: temperature {calibration['temperature']:.3f} on the validation rows; their ECE "
            f"{calibration['val_ece']['before']:.4f} -> {calibration['val_ece']['after']:.4f}, Brier "
            f"{calibration['val_brier']['before']:.4f} -> {calibration['val_brier']['after']:.4f}")
        logits = logits / calibration["temperature"]
    if settings.training.tune_decisions and multi_label:
        from fusionapp.calibration import probabilities_of
        from fusionapp.decision import apply_thresholds, tune_thresholds

        # On the calibrated probabilities, the ones the thresholds are compared with at prediction.
        thresholds = tune_thresholds(y_val, probabilities_of(logits, True))
        apply_thresholds(model, thresholds)
        config["label_thresholds"] = dict(zip(preprocessor.class_names, map(float, thresholds)))
        say("Thresholds (best validation F1 per label): " + ", ".join(
            f"{name} {value:.2f}" for name, value in config["label_thresholds"].items()))
    report = evaluate_examples(model, val_rows, n_skipped=len(skipped))
    if wide is not None:
        # After the validation report: it then scores rows the linear part has not seen.
        wide.refit()
    artifacts.save_model(model, os.path.join(out, artifacts.MODEL_FILE))
    artifacts.write_json(os.path.join(out, artifacts.METRICS_FILE), report)
    say(format_report(report, title="Validation (best epoch)"))
    if examples.splits is not None and "test" in examples.splits:
        test_report = _evaluate_test_split(model, examples, columns, say)
        artifacts.write_json(os.path.join(out, "test_metrics.json"), test_report)
    if history:
        from fusionapp.plots import learning_curve

        learning_curve(history, os.path.join(out, "learning_curve.png"))
    # The epoch whose weights were kept; with --fine-tune its validation loss is measured on images at
    # the training precision, not on the cached features of the first phase.
    config.update(status="complete", epochs_run=len(history), best_epoch=best_epoch)
    artifacts.write_json(os.path.join(out, artifacts.CONFIG_FILE), config)
    # The run is complete; its resumable checkpoints would only double its size on disk.
    shutil.rmtree(os.path.join(out, artifacts.RESUME_DIR), ignore_errors=True)
    say(f"Saved the run to {out}")
    return out


def _adapt(train_rows, settings: RunSettings, modalities, kinds, source: str):
    from fusionapp.preprocessing import adapt

    label_sep = settings.columns.label_sep if settings.model.multi_label else None
    return adapt(train_rows.labels, train_rows.texts, train_rows.tabular, modalities=modalities,
                 image_size=settings.model.image_size, text=settings.text, text_encoder=settings.model.text_encoder,
                 tabular_kinds=kinds, source=source, label_sep=label_sep,
                 min_label_count=settings.training.min_label_count)


def _load_checkpoint(out: str, state: dict, placement):
    """The model of the last completed epoch, with its optimizer and preprocessor."""
    import keras

    import fusionapp.model  # noqa: F401 - registers the classes the checkpoint names
    import fusionapp.preprocessing  # noqa: F401

    with placement.strategy.scope():
        return keras.saving.load_model(os.path.join(out, artifacts.RESUME_DIR, state["checkpoint"]))


def _drop_unseen_labels(val_rows, class_names, label_column):
    """Validation rows whose label never occurs in training cannot be scored; skip them."""
    from fusionapp.data.examples import BadRow

    known = set(class_names)
    keep, unseen = [], []
    for i, label in enumerate(val_rows.labels):
        if label in known:
            keep.append(i)
        else:
            unseen.append(BadRow(int(val_rows.row_numbers[i]), label_column,
                                 f"label '{label}' occurs only in validation rows, not in training"))
    return val_rows.subset(keep), unseen


def _label_summary(train_rows, val_rows, preprocessor, min_count: int, say) -> dict:
    """What config.json records of a multi-label run's label sets, and the rare labels left out."""
    from fusionapp.preprocessing.adapt import frequent_labels
    from fusionapp.preprocessing.labels import unknown_label_counts

    sep = preprocessor.label_sep
    _, dropped = frequent_labels(train_rows.labels, sep, min_count)
    if dropped:
        say(f"Dropped {len(dropped)} labels found on fewer than {min_count} training rows (--min-label-count): "
            + ", ".join(f"{label} ({count})" for label, count in list(dropped.items())[:10])
            + (", ..." if len(dropped) > 10 else ""))
    targets = preprocessor.label_targets(train_rows.labels)
    return {"label_sep": sep, "min_label_count": min_count, "dropped_labels": dropped,
            "train_label_counts": dict(zip(preprocessor.class_names, map(int, targets.sum(axis=0)))),
            "train_rows_without_labels": int((targets.sum(axis=1) == 0).sum()),
            "labels_per_train_row": float(targets.sum(axis=1).mean()),
            "val_unknown_labels": unknown_label_counts(val_rows.labels, sep, preprocessor.class_names)}


def _evaluate_test_split(model, examples, columns, say) -> dict:
    from fusionapp.data.checks import drop_bad_rows, find_bad_rows
    from fusionapp.evaluation import evaluate_examples
    from fusionapp.metrics import format_report

    preprocessor = model.preprocessor
    test = examples.select_split("test")
    bad_rows = find_bad_rows(test, columns, preprocessor.modalities, need_label=True,
                             known_labels=preprocessor.class_names, tabular_kinds=preprocessor.tabular_kinds,
                             label_sep=preprocessor.label_sep)
    checked = drop_bad_rows(test, bad_rows, "skip")
    report = evaluate_examples(model, checked.examples, n_skipped=len(checked.skipped))
    say(format_report(report, title="Test split"))
    return report


def _run_config(data, settings: RunSettings) -> dict:
    import keras
    import tensorflow as tf

    import fusionapp

    return {
        "fusionapp_version": fusionapp.__version__,
        "run_format": artifacts.RUN_FORMAT,
        "tensorflow_version": tf.__version__,
        "keras_version": keras.__version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "data": data if data.startswith("tfds:") else os.path.abspath(data),
        "settings": settings.to_dict(),
        "status": "training",
    }


def _saved_settings(out: str, data: str | None):
    path = os.path.join(out, artifacts.CONFIG_FILE)
    if not os.path.exists(path):
        raise FusionError(f"{out}: nothing to resume (no {artifacts.CONFIG_FILE})")
    config = artifacts.read_json(path)
    if config.get("run_format", 1) != artifacts.RUN_FORMAT:
        raise FusionError(f"{out}: started by fusionapp {config.get('fusionapp_version')}, whose runs this "
                          "fusionapp cannot resume; train again")
    return RunSettings.from_dict(config["settings"]), data or config["data"]


def _check_environment(settings: RunSettings) -> None:
    """What settings need of this machine, checked before any work starts (or anything is written)."""
    model = settings.model
    if model.pretrained and (not model.modalities or "image" in model.modalities):
        from fusionapp.backbone_weights import resolve_weights
        from fusionapp.feature_cache import cache_limit_bytes

        resolve_weights(model.image_backbone, settings.training.backbone_weights)
        if settings.training.feature_cache:
            cache_limit_bytes()
    if settings.training.tensorboard:
        import importlib.util

        if importlib.util.find_spec("tensorboard") is None:
            raise FusionError("--tensorboard needs the tensorboard package: pip install 'fusionapp[tensorboard]'")


def _demo_table(verbose: int, multi_label: bool = False) -> str:
    folder = MULTILABEL_DEMO_DIR if multi_label else DEMO_DIR
    table = os.path.join(folder, "demo.csv")
    if not os.path.exists(table):
        from fusionapp.data.demo import make_demo

        printer(verbose)(f"Creating the {'multi-label ' if multi_label else ''}demo data set in {folder} ...")
        make_demo(folder, multi_label=multi_label)
    return table


def _default_out(data: str) -> str:
    name = data.split(":")[1] if data.startswith("tfds:") else os.path.splitext(os.path.basename(data))[0]
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return os.path.join("checkpoints", f"{name}-{stamp}")


