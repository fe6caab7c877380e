"""`fusionapp train`: data -> checked rows -> adapted preprocessor -> fitted network -> what is fitted
after it -> reports -> run folder. `train` resolves the request; `_train_locked` is the list of
stages, each a function of its own."""

from __future__ import annotations

import os
import shutil
import tempfile

import fusionapp.model  # noqa: F401 - registers the classes the checkpoint names
import fusionapp.training.val_logits as val_logits
from fusionapp.console import printer
from fusionapp.data.memory import check_pixel_cache
from fusionapp.data.sources import data_fingerprint
from fusionapp.errors import FusionError
from fusionapp.evaluation.report_text import format_report
from fusionapp.model.dtype_policy import precision_policy
from fusionapp.posthoc import after_network
from fusionapp.preprocessing import adapt
from fusionapp.runs import files, layout
from fusionapp.settings import RunSettings, apply_flat, check_applies, given_settings
from fusionapp.settings.resume import check_request
from fusionapp.training.auto_precision import resolve_precision
from fusionapp.training.checkpoints import load_state, restore_seed_states
from fusionapp.training.hooks import TrialHooks
from fusionapp.training.finish import save_run, test_report, validation_report
from fusionapp.training.image_text import image_text_config
from fusionapp.training.network_fit import fit_network
from fusionapp.training.record import RunRecord, StageClock
from fusionapp.training.request import check_environment, check_pretrained_models, new_run, resumed_run
from fusionapp.training.strategies import make_placement
from fusionapp.training.text_preset import backbone_text_config
from fusionapp.training.training_rows import (drop_unseen_labels, label_summary, load_rows, small_class_notes,
                                              stop_and_tune)


def train(data: str | None = None, out: str | None = None, *, resume: bool = False, overwrite: bool = False,
          verbose: int = 1, settings: RunSettings | None = None, **flat: object) -> str:
    """Train a classifier and save its run folder.

    Settings come as `settings` (checked RunSettings, as the CLI builds them) and/or as the flat
    names of the CLI flags (`epochs=3`, `image_col="photo"`, ...), checked here by the same rules.

    Args:
        data: A table (CSV, TSV, JSON Lines, Parquet; a folder or glob of shards), `tfds:NAME[:SPLIT]`,
            or a pandas DataFrame or pyarrow Table (image cells: paths, bytes, PIL images or arrays);
            None trains on the demo set, creating it under data/demo first.
        out: The run folder; None: a new folder under checkpoints/.
        resume: Continue the interrupted run in `out` with the settings and data it recorded: of the
            settings given, only epochs, patience, fine_tune_epochs and tensorboard may differ
            (fusionapp.settings.resume), and `data`, if given, must be the recorded table, unchanged.
        overwrite: Replace the run already in `out` (not with `resume`).
        verbose: 0 prints nothing; 1 prints progress and the reports.
        settings: Checked RunSettings; the flat names below are applied on top of them.
        **flat: Settings by their flat names (the flags' names with `_`: `tabular_col`, `epochs`,
            `text_encoder`, ...); `fusionapp train --help` lists each with its rule.

    Returns:
        The run folder.

    Raises:
        fusionapp.settings.SettingError: A value a setting cannot take.
        fusionapp.settings.NotApplicable: A setting given where it does not apply.
        fusionapp.errors.FusionError: A missing or unreadable table, column or model, in one line.
    """
    data, out, run_settings, asked = _requested(data, out, resume, overwrite, settings, flat, verbose)
    if run_settings.model.multi_label and isinstance(data, str) and data.startswith("tfds:"):
        raise FusionError("--multi-label reads label sets from a table's label column; TFDS sources give one "
                          "label per example")
    check_environment(run_settings, printer(verbose))
    # Before anything else runs a TensorFlow op: multi-worker training cannot start after one.
    placement = make_placement(run_settings.training.strategy)
    # Recorded as resolved, so config.json says what ran and --resume keeps it on other hardware.
    run_settings = apply_flat(run_settings, {"precision": resolve_precision(run_settings.training.precision)})
    if resume and placement.num_workers > 1:
        raise FusionError("--resume is not supported with --strategy multi-worker: restart the whole cluster "
                          "without --resume")
    if not resume:  # a resumed run has its pretrained models' tokenizer and weights in its own folder
        check_pretrained_models(run_settings)
    if placement.is_chief:
        return _train_in(data, out, run_settings, asked, placement, resume, overwrite, verbose)
    # Other workers train in step with the chief but write where nobody reads, then clean up.
    scratch = tempfile.mkdtemp(prefix=f"fusionapp-worker{placement.worker_index}-")
    try:
        _train_in(data, os.path.join(scratch, "run"), run_settings, asked, placement, False, False, 0)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return out


def new_search_run(data, out, overwrite: bool, verbose: int, settings: RunSettings | None, flat: dict):
    """(data, out, settings, the names of the settings asked for) of a search's new run, checked as
    a run's are (the machine, the pretrained models), its precision resolved."""
    data, out, run_settings, asked = _requested(data, out, False, overwrite, settings, flat, verbose)
    check_environment(run_settings, printer(verbose))
    check_pretrained_models(run_settings)
    return data, out, apply_flat(run_settings, {"precision": resolve_precision(run_settings.training.precision)}), asked


def _requested(data, out, resume: bool, overwrite: bool, settings: RunSettings | None, flat: dict, verbose: int):
    """(data, out, settings, the names of the settings asked for) of a new run, checked, or of the
    run a resume continues."""
    check_request(resume, overwrite)
    given = {**(given_settings(settings) if settings else {}), **flat}
    if resume:
        data, run_settings = resumed_run(data, out, given)
        return data, out, run_settings, ()  # what applies was decided when the run started
    run_settings = apply_flat(settings or RunSettings(), flat)
    asked = tuple(name for name, value in given.items() if value is not None)
    check_applies(run_settings, asked)
    return *new_run(data, out, run_settings, verbose), asked


def train_trial(data: str, out: str, settings: RunSettings, placement, hooks: TrialHooks, verbose: int) -> str:
    """One model of a search, trained into a new run folder `out` on the rows the search read once
    (`hooks.rows`), with its callbacks; the fitted model is left in `hooks.model`."""
    return _train_in(data, out, settings, (), placement, False, False, verbose, hooks)


def _train_in(data: str, out: str, settings: RunSettings, asked: tuple[str, ...], placement, resume: bool,
              overwrite: bool, verbose: int, hooks: TrialHooks | None = None) -> str:
    import keras

    with layout.run_folder(out, new_run=not resume), layout.run_lock(out), \
            precision_policy(settings.training.precision):
        layout.prepare_run_dir(out, resume=resume, overwrite=overwrite)
        keras.utils.set_random_seed(settings.training.seed)
        return _train_locked(data, out, settings, asked, placement, resume, verbose, hooks)


def _train_locked(data: str, out: str, settings: RunSettings, asked: tuple[str, ...], placement, resume: bool,
                  verbose: int, hooks: TrialHooks | None = None) -> str:
    """The stages of a run. `asked`: the settings the user gave, checked again once the data says
    which inputs the model reads. `hooks`: what a search gives a trial (None: a run of its own)."""
    say = printer(verbose)
    record = RunRecord(out, data, settings, data_fingerprint(data))
    clock = StageClock()
    if hooks is None:
        rows, settings = load_rows(data, settings, say, clock)
    else:
        rows, settings = hooks.rows, settings.resolved(hooks.modalities)
    check_applies(settings, asked)
    record.update(settings=settings.to_dict())
    if not resume:
        record.save()  # once the data is read, so a run killed at any later moment can be resumed
    checkpoint_model, state = _restore(out, placement) if resume else (None, None)
    preprocessor = checkpoint_model.preprocessor if checkpoint_model is not None else _adapt(rows, settings, say)
    if preprocessor.image_size != settings.model.image_size:  # a joint image-text model's own size
        settings = apply_flat(settings, {"image_size": preprocessor.image_size})
        record.update(settings=settings.to_dict())
    files.write_json(os.path.join(out, layout.PREPROCESSING_FILE), preprocessor.describe())
    rows = _holdout(rows, preprocessor, settings, out, record, placement, say)
    check_pixel_cache(len(rows.train) + len(rows.val), preprocessor.image_size, settings.training.pixel_cache)
    clock.lap("adapt")
    stop, tune = stop_and_tune(rows.val.labels, settings.training.seed, preprocessor.multi_label, placement.replicas)
    record.update(n_val_stop=len(stop), n_val_tune=len(tune))
    say(f"Of the {len(rows.val)} validation rows, {len(stop)} decide early stopping and {len(tune)} what is "
        "fitted after the network (the blend, offsets, temperature), which the choice of epoch has not seen")
    fitted = fit_network(settings, preprocessor, rows.train, rows.val, out, placement, checkpoint_model, state, verbose,
                         stop=stop, callbacks=hooks.callbacks if hooks else ())
    clock.lap("network")
    record.update(**fitted.records)
    say(f"After the network: its logits on the {len(rows.val)} validation rows ...")
    after = after_network.fit_after_network(fitted.model, rows.train, rows.val,
                                            val_logits.network_val_logits(fitted, settings, rows.val), settings, say,
                                            tune, fitted.text_vectors)
    record.update(**after.record, epochs_run=len(fitted.history), best_epoch=fitted.best_epoch)
    say("Scoring the validation rows ...")
    reports = {"validation": validation_report(fitted.model, rows.val, after.val_logits, len(rows.skipped))}
    say(format_report(reports["validation"], title="Validation (the linear part held out)"))
    clock.lap("post_hoc")
    say(f"After the network: {clock.seconds['post_hoc']:.1f} s")
    reports["test"] = test_report(fitted.model, rows.examples, settings.columns, say)
    clock.lap("test")
    record.update(stage_seconds=clock.seconds)
    say(f"Saving the run to {out} ...")
    save_run(out, fitted.model, record, reports, fitted.history)
    clock.lap("save")
    record.update(stage_seconds=clock.seconds)
    record.save()
    say(f"Saved the run to {out}")
    if hooks is not None:
        hooks.model = fitted.model
    return out


def _restore(out: str, placement):
    """The model of the last completed epoch (with its optimizer and preprocessor) and the state it
    was saved with; (None, None) when no epoch completed before the run stopped."""
    import keras

    state = load_state(out)
    if state is None:
        return None, None
    with placement.strategy.scope():
        model = keras.saving.load_model(os.path.join(out, layout.RESUME_DIR, state.checkpoint))
    restore_seed_states(model, state.seed_states)
    return model, state


def _adapt(rows, settings: RunSettings, say):
    label_sep = settings.columns.label_sep if settings.model.multi_label else None
    training = settings.training
    backbone_text, tokenizer, image_text, image_size = None, None, None, settings.model.image_size
    if settings.model.image_text_backbone:
        image_text, backbone_text, tokenizer, image_size = image_text_config(settings, say)
    elif "text" in settings.model.modalities and settings.model.text_backbone:
        backbone_text, tokenizer = backbone_text_config(settings, say)
    if "text" in settings.model.modalities:
        limit = settings.text.max_chars
        cut = sum(len(text) > limit for text in rows.train.texts)
        if cut:
            say(f"Cut {cut} training texts to their first {limit} characters (--max-text-chars)")
        if len(rows.train) > training.adapt_rows:
            say(f"Learning the text vocabulary on a sample of {training.adapt_rows} of the {len(rows.train)} "
                "training rows (--adapt-rows)")
    return adapt(rows.train.labels, rows.train.texts, rows.train.tabular, modalities=settings.model.modalities,
                 image_size=image_size, text=settings.text, text_encoder=settings.model.text_encoder,
                 tabular_kinds=rows.tabular_kinds, source=rows.examples.source, label_sep=label_sep,
                 min_label_count=training.min_label_count, adapt_rows=training.adapt_rows, seed=training.seed,
                 wide=settings.model.wide, backbone_text=backbone_text, text_tokenizer=tokenizer, image_text=image_text)


def _holdout(rows, preprocessor, settings: RunSettings, out: str, record, placement, say):
    """The validation rows scorable by this preprocessor, what config.json records of the rows, and
    the summary lines."""
    columns, training = settings.columns, settings.training
    if not preprocessor.multi_label:
        rows = drop_unseen_labels(rows, preprocessor.class_names, columns.label)
    if rows.skipped:
        path = os.path.join(out, layout.SKIPPED_FILE)
        layout.write_skipped(path, rows.skipped)
        say(f"Skipped {len(rows.skipped)} bad rows (listed in {path}); first: "
            f"{rows.skipped[0].message(rows.examples.source)}")
    record.update(class_names=preprocessor.class_names, tabular_kinds=preprocessor.tabular_kinds,
                  n_train=len(rows.train), n_val=len(rows.val), n_skipped=len(rows.skipped), strategy=placement.name,
                  replicas=placement.replicas, workers=placement.num_workers,
                  global_batch_size=placement.global_batch_size(training.batch_size))
    record.save()
    if preprocessor.multi_label:
        record.update(label_sets=label_summary(rows, preprocessor, training.min_label_count, say))
    else:
        small_class_notes(rows, say)
        if sum(columns.label_sep in label for label in rows.train.labels) * 2 > len(rows.train):
            say(f"Note: most labels contain {columns.label_sep!r}; if each is a set of labels, train with "
                "--multi-label")
    say(f"Training on {len(rows.train)} rows, validating on {len(rows.val)}; modalities: "
        f"{', '.join(preprocessor.modalities)}; {'labels' if preprocessor.multi_label else 'classes'}: "
        f"{', '.join(preprocessor.class_names)}")
    if placement.name != "default":
        say(f"Strategy {placement.name}: {placement.replicas} replicas in sync on {placement.num_workers} "
            f"worker(s), global batch {placement.global_batch_size(training.batch_size)}")
    return rows
