"""Fitting the network: per-epoch checkpoints and early stopping, in one phase, or two with a
pretrained backbone (frozen, on cached features; then its top layers fine-tuned on images).

What is returned is always the whole model (backbone included) in float32, built outside any
distribution strategy, so what follows (post-hoc fitting, scoring, saving) runs the same on every
worker and every later load of the run answers exactly as the scores written now.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from dataclasses import dataclass

from fusionapp.compat import build_from_local_batch, restart_lora
from fusionapp.console import keras_verbosity, printer
from fusionapp.data.pipeline import make_dataset, steps_per_pass
from fusionapp.data.sharding import Shard
from fusionapp.model import NetworkSpec, build_classifier, copy_weights
from fusionapp.model.dtype_policy import precision_policy
from fusionapp.pretrained.records import ImageTextRecord, PretrainedRecords
from fusionapp.pretrained.text_features import TextVectors
from fusionapp.pretrained.weights import weights_sha256
from fusionapp.runs import layout
from fusionapp.settings import RunSettings
from fusionapp.training.checkpoints import RunCheckpoint, TrainingState
from fusionapp.training.frozen_backbone import cached_features, frozen_backbone
from fusionapp.training.image_text import frozen_image_text
from fusionapp.training.loss import class_weights, training_loss
from fusionapp.training.text_preset import cached_text_features, frozen_text_backbone


# The spec fields that train the text backbone in the second phase (its cached vectors then stale).
TEXT_TUNING = {"fine_tune_text", "text_lora"}


@dataclass(frozen=True)
class FittedNetwork:
    model: object  # the float32 FusionClassifier, best weights restored
    history: tuple[dict, ...]  # one row per epoch (TrainingState.history)
    best_epoch: int | None
    records: PretrainedRecords  # what config.json records of the pretrained models
    # the validation rows' cached features of the backbones that stayed frozen (image, text; None:
    # that branch reads its input), and the spec of a network that reads them (None: no such features)
    val_features: tuple = (None, None)
    reader_spec: NetworkSpec | None = None
    # the text backbone's pooled vectors of the training and validation rows (TextVectors), where
    # the wide path reads them; else None
    text_vectors: object = None


@dataclass
class Phase:
    """What one phase of fitting needs besides its model."""

    settings: RunSettings
    preprocessor: object
    train_rows: object
    val_rows: object
    out: str
    placement: object
    checkpoint: object
    class_weight: dict | None
    verbose: int
    # Keyword-only from here: 0.13 to 0.15 passed `stop` and `callbacks` by position into the two
    # fields below, so early stopping read every validation row and a search's trials lost their callbacks.
    _: dataclasses.KW_ONLY
    features: list | None = None  # cached backbone features of (train, val), or None: images
    text_features: list | None = None  # cached text backbone vectors of (train, val), or None: texts
    stop: object = None  # positions of the validation rows early stopping reads (None: every one)
    callbacks: tuple = ()  # Keras callbacks of a search's trial: its pruning and its deadline


def fit_network(settings: RunSettings, preprocessor, train_rows, val_rows, out: str, placement, checkpoint_model,
                state, verbose: int, stop=None, callbacks: tuple = ()) -> FittedNetwork:
    """`checkpoint_model`, `state` (a TrainingState): what `--resume` continues from (None: a new run).
    Early stopping reads the validation rows at `stop` (None: all); `callbacks` run in every phase."""
    say, training = printer(verbose), settings.training
    spec = NetworkSpec.for_preprocessor(preprocessor)
    if checkpoint_model is not None:  # a run started before 0.12 goes on without the wide path's text vector
        spec = dataclasses.replace(spec, wide_embedding=checkpoint_model.spec.wide_embedding)
    extractor, record, text_extractor, text_record = _frozen_backbones(settings, preprocessor, out)
    state, digest = _check_backbones(state or TrainingState(), extractor, record, text_record)
    if state.epoch:
        say(f"Resuming after epoch {state.epoch}")
    loss = training_loss(preprocessor, train_rows, training.class_weight)
    phase = Phase(settings, preprocessor, train_rows, val_rows, out, placement, RunCheckpoint(out, training.patience,
                  state), class_weights(preprocessor, train_rows, training.class_weight), verbose, stop=stop,
                  callbacks=callbacks)
    # The backbones fine-tuned in a second phase, and how many top layers of each.
    tuned = {name: layers for name, layers, backbone in (("fine_tune", training.fine_tune, extractor),
                                                         ("fine_tune_text", training.fine_tune_text, text_extractor),
                                                         ("text_lora", training.text_lora, text_extractor))
             if layers and backbone is not None}
    tunes_text = bool(TEXT_TUNING & set(tuned))
    # Cached features serve the frozen phase, and the second phase for a backbone it does not tune.
    cached = extractor is not None and training.feature_cache and not (state.fine_tuning and "fine_tune" in tuned)
    cached_text = text_extractor is not None and training.feature_cache and not (state.fine_tuning and tunes_text)
    phase.features = cached_features(train_rows, val_rows, preprocessor, extractor, digest, record, say) \
        if cached else None
    phase.text_features = cached_text_features(train_rows, val_rows, preprocessor, text_extractor, text_record,
                                               say) if cached_text else None
    final = float32_model(settings, spec, preprocessor)
    if not state.fine_tuning:
        first = _reading_features(spec, record if cached else None, text_record if cached_text else None)
        model = checkpoint_model or _compiled(phase, first, training.learning_rate, training.epochs, loss)
        if checkpoint_model is None:
            _set_backbones(model, None if cached else extractor, None if cached_text else text_extractor)
        _run_phase(model, phase, training.epochs)
        _finish_phase(model, final, extractor if cached else None, text_extractor if cached_text else None)
        checkpoint_model = None
    if tuned:
        cached, cached_text = cached and "fine_tune" not in tuned, cached_text and not tunes_text
        phase.features, phase.text_features = (phase.features if cached else None,
                                               phase.text_features if cached_text else None)
        second = _reading_features(dataclasses.replace(spec, **tuned), record if cached else None,
                                   text_record if cached_text else None)
        model = checkpoint_model or _start_fine_tune(phase, second, final, loss)
        say(f"Fine-tuning {' and '.join(_tuned_words(tuned))} at learning rate "
            f"{training.fine_tune_learning_rate:g} for up to {training.fine_tune_epochs} epochs, from validation "
            f"loss {phase.checkpoint.state.best_val_loss:.4f}")
        _run_phase(model, phase, phase.checkpoint.state.fine_tune_start + training.fine_tune_epochs)
        _finish_phase(model, final, extractor if cached else None, text_extractor if cached_text else None)
    shutil.rmtree(os.path.join(out, layout.PIXEL_CACHE_DIR), ignore_errors=True)
    state = phase.checkpoint.state
    joint = ImageTextRecord({**(record or text_record), "image": record, "text": text_record}) \
        if preprocessor.image_text else None
    records = {"image_text_backbone": joint} if joint else {"backbone": record, "text_backbone": text_record}
    reader = _reading_features(spec, record if cached else None, text_record if cached_text else None)
    return FittedNetwork(final, state.history, state.best_epoch,
                         PretrainedRecords({key: value for key, value in records.items() if value is not None}),
                         ((phase.features or (None, None))[1], (phase.text_features or (None, None))[1]),
                         reader if reader != spec else None, _text_vectors(phase, spec, final, text_extractor))


def _text_vectors(phase: Phase, spec: NetworkSpec, final, extractor):
    """The rows' text vectors for the wide path (TextVectors), where it reads them: the cached ones
    the last phase trained on, else computed by the extractor with the final model's weights."""
    if not spec.wide_embedding or extractor is None:
        return None
    if phase.text_features is not None:
        train, val = phase.text_features
        return TextVectors({}, phase.preprocessor, None, {"train": train.vectors, "val": val.vectors})
    extractor.backbone.set_weights(final.backbones.text.get_weights())
    return TextVectors({"train": phase.train_rows, "val": phase.val_rows}, phase.preprocessor, extractor)


def _frozen_backbones(settings: RunSettings, preprocessor, out: str):
    """(image extractor, its record, text extractor, its record) of the pretrained models the run
    starts from, frozen; None for each one it has not."""
    if preprocessor.image_text is not None:
        return frozen_image_text(settings, preprocessor, out)
    return (*frozen_backbone(settings, preprocessor), *frozen_text_backbone(preprocessor, out))


def _check_backbones(state, extractor, record, text_record):
    """A resumed run continues on the backbones it started with (TrainingState.with_backbone): the
    state with their digests, and the digest of the image backbone's weights, if any."""
    digest = None
    if extractor is not None:
        digest = record.get("weights_sha256") or weights_sha256(extractor.backbone)
        state = state.with_backbone("backbone_weights_sha256", digest)
    if text_record is not None:
        state = state.with_backbone("text_backbone_weights_sha256", text_record["weights_sha256"])
    return state, digest


def _reading_features(spec: NetworkSpec, record, text_record) -> NetworkSpec:
    """`spec`, made to read cached features: of the image backbone whose `record` is given, and of
    the text backbone whose `text_record` is."""
    return dataclasses.replace(spec, **({"image_features": tuple(record["feature_map"])} if record else {}),
                               **({"text_features": text_record["hidden_dim"]} if text_record else {}))


def _set_backbones(model, extractor, text_extractor) -> None:
    """The pretrained weights of the extractors given (None: leave that branch) into `model`'s
    backbones: its image (or joint image-text) backbone, its text (or joint) backbone."""
    backbones = model.backbones
    joint = backbones.image_text
    for source, target in ((extractor, joint if backbones.image is None else backbones.image),
                           (text_extractor, joint if backbones.text is None else backbones.text)):
        if source is not None:
            target.set_weights(source.backbone.get_weights())


def _finish_phase(model, final, extractor, text_extractor) -> None:
    """The phase's best weights into the float32 `final` model, with the pretrained weights of the
    backbones `model` read as cached features (from their extractors)."""
    copy_weights(model, final)
    _set_backbones(final, extractor, text_extractor)


def _tuned_words(tuned: dict) -> list[str]:
    words = {"fine_tune": "the top {} image backbone layers (batch norm frozen)",
             "fine_tune_text": "the top {} text backbone transformer layers",
             "text_lora": "rank-{} LoRA adapters of the text backbone's attention"}
    return [words[name].format(layers) for name, layers in tuned.items()]


def steps_per_epoch(phase: Phase) -> int:
    """--steps-per-epoch, or a pass over this worker's share of the training rows (the smallest
    share, so that every worker of a cluster takes as many steps)."""
    if phase.settings.training.steps_per_epoch:
        return phase.settings.training.steps_per_epoch
    shares = len(phase.train_rows) // phase.placement.num_workers
    return steps_per_pass(shares, phase.placement.global_batch_size(phase.settings.training.batch_size))


def _datasets(phase: Phase, start_step: int):
    training = phase.settings.training
    batch_size = phase.placement.global_batch_size(training.batch_size)
    cache_dir = os.path.join(phase.out, layout.PIXEL_CACHE_DIR)
    cache = {"none": (None, None), "memory": ("memory", "memory"),
             "disk": tuple(os.path.join(cache_dir, f"{name}.npy") for name in ("train", "val"))}[training.pixel_cache]
    if training.pixel_cache == "disk":
        # A cache left by an interrupted run may be partial; it is rebuilt.
        shutil.rmtree(cache_dir, ignore_errors=True)
        os.makedirs(cache_dir)
    # Each worker reads and decodes only its own share of the rows.
    placement = phase.placement
    shard = Shard(placement.worker_index, placement.num_workers) if placement.num_workers > 1 else None
    train_features, val_features = phase.features or (None, None)
    train_text, val_text = phase.text_features or (None, None)
    val_rows = phase.val_rows
    if phase.stop is not None:  # early stopping sees only its share of the validation rows
        val_rows = val_rows.subset(phase.stop)
        val_features = val_features.subset(phase.stop) if val_features is not None else None
        val_text = val_text.subset(phase.stop) if val_text is not None else None
    train_data = make_dataset(phase.train_rows, phase.preprocessor, batch_size, training=True, seed=training.seed,
                              start_step=start_step, augment=training.augment,
                              modality_dropout=training.modality_dropout, pixel_cache=cache[0], shard=shard,
                              image_features=train_features, text_features=train_text,
                              service=training.data_service)
    val_data = make_dataset(val_rows, phase.preprocessor, batch_size, pixel_cache=cache[1], shard=shard,
                            image_features=val_features, text_features=val_text)
    return train_data, val_data


def _compiled(phase: Phase, spec: NetworkSpec, learning_rate: float, epochs: int, loss):
    import keras

    settings = phase.settings
    with phase.placement.strategy.scope():
        model = build_classifier(settings.model, spec, phase.preprocessor)
        schedule = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=steps_per_epoch(phase) * epochs,
                                                          alpha=0.05)
        # A multi-label model's metric is the share of (row, label) decisions right at 0.5 (logit 0).
        metric = (keras.metrics.BinaryAccuracy(name="binary_accuracy", threshold=0.0)
                  if phase.preprocessor.multi_label else "accuracy")
        model.compile(optimizer=keras.optimizers.Adam(schedule), loss=loss, metrics=[metric],
                      jit_compile=settings.training.jit)
    return model


def _run_phase(model, phase: Phase, epochs: int) -> None:
    import keras

    checkpoint = phase.checkpoint
    done = checkpoint.state.epoch
    steps = steps_per_epoch(phase)
    if done < epochs and not checkpoint.state.stopped:
        train_data, val_data = _datasets(phase, start_step=done * steps)
        if phase.placement.num_workers > 1:
            build_from_local_batch(model, train_data)
        if model.spec.text_lora and model.backbones.text is not None:  # a resumed phase's adapters were merged
            restart_lora(model.backbones.text, phase.settings.training.seed)
        callbacks = [checkpoint, *phase.callbacks]
        if phase.settings.training.tensorboard:
            callbacks.append(keras.callbacks.TensorBoard(log_dir=os.path.join(phase.out, layout.TENSORBOARD_DIR)))
        model.fit(train_data, validation_data=val_data, epochs=epochs, initial_epoch=done, steps_per_epoch=steps,
                  shuffle=False, class_weight=phase.class_weight, callbacks=callbacks,
                  verbose=keras_verbosity(phase.verbose))
    checkpoint.restore_best(model)


def _start_fine_tune(phase: Phase, spec: NetworkSpec, start, loss):
    """The model of the second phase, from the first phase's best weights, with the state saying
    so (RunCheckpoint.start_fine_tune). Their validation loss is measured again here, on images
    through the whole model at the training precision, as the fine-tuning epochs will be: the first
    phase's own figure came from cached float32 features."""
    training = phase.settings.training
    model = _compiled(phase, spec, training.fine_tune_learning_rate, training.fine_tune_epochs, loss)
    copy_weights(start, model)
    # Built now, so the weights saved below carry an optimizer state of the right shape.
    with phase.placement.strategy.scope():
        model.optimizer.build(model.trainable_variables)
    _, val_data = _datasets(phase, start_step=0)
    if phase.placement.num_workers > 1:
        build_from_local_batch(model, val_data)
    phase.checkpoint.start_fine_tune(model, float(model.evaluate(val_data, verbose=0, return_dict=True)["loss"]))
    return model


def float32_model(settings: RunSettings, spec: NetworkSpec, preprocessor):
    with precision_policy("float32"):
        return build_classifier(settings.model, spec, preprocessor)
