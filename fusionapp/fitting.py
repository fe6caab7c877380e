"""Fitting the network: per-epoch checkpoints and early stopping, in one phase, or two with a
pretrained backbone (frozen, on cached features; then its top layers fine-tuned on images).

What is returned is always the whole model (backbone included) in float32, built outside any
distribution strategy, so what follows (decision tuning, evaluation, saving) runs the same on
every worker and every later load of the run answers exactly as the scores written now.
"""

from __future__ import annotations

import math
import os
import shutil
import sys

import numpy as np

from fusionapp import artifacts
from fusionapp.config import RunSettings


def fit_model(settings: RunSettings, preprocessor, train_rows, val_rows, out: str, placement, checkpoint_model,
              state, verbose: int):
    """-> (model, history, best epoch, backbone record for config.json or None). `checkpoint_model` and
    `state` are what `--resume` continues from (None: a new run)."""
    from fusionapp.model.backbones import BACKBONE_LAYER
    from fusionapp.train_state import RunCheckpoint, new_state

    say = printer(verbose)
    training = settings.training
    inputs = preprocessor.network_inputs()
    extractor, record = _backbone(settings, preprocessor)
    cached = extractor is not None and training.feature_cache
    state = state or new_state()
    if record is not None:
        from fusionapp.backbone_weights import weights_sha256

        weights_digest = weights_sha256(extractor.get_layer(BACKBONE_LAYER))
        _check_same_backbone(state, weights_digest)
    if state["epoch"]:
        say(f"Resuming after epoch {state['epoch']}")
    checkpoint = RunCheckpoint(out, patience=training.patience, state=state)
    class_weight = class_weights(preprocessor, train_rows, training.class_weight)
    loss = training_loss(preprocessor, train_rows, training.class_weight)
    fine_tuning = state.get("phase") == "fine_tune"
    trained = None
    if not fine_tuning:
        features = (_cached_features(train_rows, val_rows, preprocessor, extractor, weights_digest, record, say)
                    if cached else None)
        phase_inputs = {**inputs, "image_features": record["feature_map"]} if cached else inputs
        train_data, val_data = _datasets(settings, preprocessor, train_rows, val_rows, out, placement, features)
        model = checkpoint_model
        if model is None:
            model = _compiled(settings, phase_inputs, preprocessor, placement, training.learning_rate,
                              len(train_rows), training.epochs, loss)
            if extractor is not None and not cached:
                model.get_layer(BACKBONE_LAYER).set_weights(extractor.get_layer(BACKBONE_LAYER).get_weights())
        _run_phase(model, train_data, val_data, checkpoint, training.epochs, class_weight, placement, training,
                   out, verbose)
        trained = model
    final = _float32_model(settings, inputs, preprocessor)
    if trained is not None:
        copy_weights(trained, final)
        if cached:
            final.get_layer(BACKBONE_LAYER).set_weights(extractor.get_layer(BACKBONE_LAYER).get_weights())
    if training.fine_tune and settings.model.pretrained and "image" in preprocessor.modalities:
        tune_inputs = {**inputs, "fine_tune": training.fine_tune}
        train_data, val_data = _datasets(settings, preprocessor, train_rows, val_rows, out, placement, None)
        model = checkpoint_model if fine_tuning else _start_fine_tune(settings, tune_inputs, preprocessor,
                                                                     placement, len(train_rows), final, val_data,
                                                                     checkpoint, out, loss)
        say(f"Fine-tuning the top {training.fine_tune} backbone layers (batch norm frozen) at learning rate "
            f"{training.fine_tune_learning_rate:g} for up to {training.fine_tune_epochs} epochs, from validation "
            f"loss {checkpoint.state['best_val_loss']:.4f}")
        _run_phase(model, train_data, val_data, checkpoint, checkpoint.state["fine_tune_start"] +
                   training.fine_tune_epochs, class_weight, placement, training, out, verbose)
        copy_weights(model, final)
    shutil.rmtree(os.path.join(out, "cache"), ignore_errors=True)
    return final, checkpoint.state["history"], checkpoint.state["best_epoch"], record


def _backbone(settings: RunSettings, preprocessor):
    """The frozen backbone as a float32 feature extractor with its weights, and what config.json
    records of it; (None, None) without a pretrained backbone."""
    if not settings.model.pretrained or "image" not in preprocessor.modalities:
        return None, None
    from fusionapp.backbone_weights import describe, load_extractor, resolve_weights

    name = settings.model.image_backbone
    weights = resolve_weights(name, settings.training.backbone_weights)
    if weights.path is None:
        import keras

        # Random weights drawn from the run's seed alone, so a resumed run gets the same backbone.
        keras.utils.set_random_seed(settings.training.seed)
    extractor = load_extractor(name, preprocessor.image_size, weights)
    record = describe(name, weights)
    record["feature_map"] = [int(d) for d in extractor.output_shape[1:]]
    return extractor, record


def _check_same_backbone(state: dict, digest: str) -> None:
    """A resumed run must continue on the backbone it started with: its checkpoint's head learnt
    that backbone's features. The state records the digest of the weights' values from the start."""
    from fusionapp.errors import FusionError

    started = state.setdefault("backbone_weights_sha256", digest)
    if started != digest:
        raise FusionError("the backbone's weights differ from those this run started with (the weights file "
                          "changed since); resume with the original file, or train again")


def _cached_features(train_rows, val_rows, preprocessor, extractor, weights_digest: str, record, say):
    from fusionapp.data.features import backbone_features
    from fusionapp.feature_cache import FeatureCache, enforce_limit
    from fusionapp.preprocessing.image import DECODE_VERSION

    key = {"backbone": record["name"], "image_size": preprocessor.image_size, "decode": DECODE_VERSION,
           "weights_sha256": weights_digest}
    cache = FeatureCache(key)
    say(f"Backbone features ({record['name']}, {preprocessor.image_size} px) from the cache in {cache.root} ...")
    features = [backbone_features(rows, preprocessor, extractor, cache) for rows in (train_rows, val_rows)]
    record["feature_cache"] = {"folder": cache.folder, "images_cached": sum(f.cached for f in features),
                               "images_computed": sum(f.computed for f in features)}
    say(f"Backbone features: {record['feature_cache']['images_cached']} images from the cache, "
        f"{record['feature_cache']['images_computed']} computed")
    enforce_limit(cache.root)
    return features


def _datasets(settings: RunSettings, preprocessor, train_rows, val_rows, out: str, placement, features):
    from fusionapp.data.pipeline import make_dataset

    training = settings.training
    batch_size = placement.global_batch_size(training.batch_size)
    cache_dir = os.path.join(out, "cache")
    cache = {"none": (None, None), "memory": ("memory", "memory"),
             "disk": tuple(os.path.join(cache_dir, f"{name}.npy") for name in ("train", "val"))}[training.cache]
    if training.cache == "disk":
        # A cache left by an interrupted run may be partial; it is rebuilt.
        shutil.rmtree(cache_dir, ignore_errors=True)
        os.makedirs(cache_dir)
    # Each worker reads and decodes only its own share of the rows.
    shard = (placement.num_workers, placement.worker_index) if placement.num_workers > 1 else None
    train_features, val_features = features or (None, None)
    train_data = make_dataset(train_rows, preprocessor, batch_size, shuffle=True, augment=training.augment,
                              seed=training.seed, modality_dropout=training.modality_dropout, cache=cache[0],
                              shard=shard, image_features=train_features)
    val_data = make_dataset(val_rows, preprocessor, batch_size, cache=cache[1], shard=shard, image_features=val_features)
    return train_data, val_data


def _compiled(settings: RunSettings, inputs: dict, preprocessor, placement, learning_rate: float, rows: int,
              epochs: int, loss):
    import keras

    from fusionapp.model import build_classifier

    training = settings.training
    steps = math.ceil(rows / placement.global_batch_size(training.batch_size)) * epochs
    with placement.strategy.scope():
        model = build_classifier(settings.model, inputs, preprocessor)
        schedule = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=steps, alpha=0.05)
        # A multi-label model's metric is the share of (row, label) decisions right at 0.5 (logit 0).
        metric = (keras.metrics.BinaryAccuracy(name="binary_accuracy", threshold=0.0) if preprocessor.multi_label
                  else "accuracy")
        model.compile(optimizer=keras.optimizers.Adam(schedule), loss=loss, metrics=[metric],
                      jit_compile=training.jit)
    return model


def _run_phase(model, train_data, val_data, checkpoint, epochs: int, class_weight, placement, training, out: str,
               verbose: int) -> None:
    import keras

    if placement.num_workers > 1:
        from fusionapp.distribute import build_from_local_batch

        build_from_local_batch(model, train_data)
    callbacks = [checkpoint]
    if training.tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=os.path.join(out, "tensorboard")))
    done = checkpoint.state["epoch"]
    if done < epochs and not checkpoint.state["stopped"]:
        model.fit(train_data, validation_data=val_data, epochs=epochs, initial_epoch=done, class_weight=class_weight,
                  callbacks=callbacks, shuffle=False, verbose=keras_verbosity(verbose))
    checkpoint.restore_best(model)


def _start_fine_tune(settings: RunSettings, inputs: dict, preprocessor, placement, rows: int, start, val_data,
                     checkpoint, out: str, loss):
    """The model of the second phase, from the first phase's best weights, with the state saying
    so: a crash from here on resumes the fine-tuning, and if it never beats those weights'
    validation loss, they are what the run keeps. That loss is measured again here, on images
    through the whole model at the training precision, as the fine-tuning epochs will be: the first
    phase's own figure came from cached float32 features."""
    from fusionapp.train_state import STATE_FILE

    training = settings.training
    model = _compiled(settings, inputs, preprocessor, placement, training.fine_tune_learning_rate, rows,
                      training.fine_tune_epochs, loss)
    copy_weights(start, model)
    # Built now, so the weights saved below carry an optimizer state of the right shape.
    with placement.strategy.scope():
        model.optimizer.build(model.trainable_variables)
    if placement.num_workers > 1:
        from fusionapp.distribute import build_from_local_batch

        build_from_local_batch(model, val_data)
    start_loss = float(model.evaluate(val_data, verbose=0, return_dict=True)["loss"])
    resume_dir = os.path.join(out, artifacts.RESUME_DIR)
    os.makedirs(resume_dir, exist_ok=True)
    state = checkpoint.state
    epoch = state["epoch"]
    artifacts.save_weights(model, os.path.join(resume_dir, f"fine-tune-start{epoch:04d}.weights.h5"))
    artifacts.save_model(model, os.path.join(resume_dir, f"fine-tune-start{epoch:04d}.keras"))
    state.update(phase="fine_tune", fine_tune_start=epoch, wait=0, stopped=False, best_val_loss=start_loss,
                 best_weights=f"fine-tune-start{epoch:04d}.weights.h5", checkpoint=f"fine-tune-start{epoch:04d}.keras")
    artifacts.write_json(os.path.join(resume_dir, STATE_FILE), state)
    return model


def _float32_model(settings: RunSettings, inputs: dict, preprocessor):
    from fusionapp.model import build_classifier
    from fusionapp.precision import precision_policy

    with precision_policy("float32"):
        return build_classifier(settings.model, inputs, preprocessor)


def copy_weights(source, target) -> None:
    """Every layer's weights from `source` into the layer of the same name in `target`: models of
    one run differ at most by the backbone (absent from the one trained on cached features) and by
    which backbone layers are trainable, never in the names of the layers they share."""
    for layer in source.layers:
        if layer.weights:
            target.get_layer(layer.name).set_weights(layer.get_weights())


def class_weights(preprocessor, train_rows, mode: str) -> dict | None:
    """Keras' class_weight for single-label models; multi-label ones weigh labels in the loss."""
    if mode == "none" or preprocessor.multi_label:
        return None
    from sklearn.utils.class_weight import compute_class_weight

    y = preprocessor.label_indices(train_rows.labels)
    present = np.unique(y)
    weights = compute_class_weight("balanced", classes=present, y=y)
    return {int(label): float(weight) for label, weight in zip(present, weights)}


def training_loss(preprocessor, train_rows, mode: str):
    """Cross-entropy on the logits: over classes, or for a multi-label model per label, where
    `balanced` weighs each label's positives by the square root of its negatives / positives in the
    training rows. The full ratio (about 100 for a genre on 1% of films) skewed the network's
    probabilities so far that the wide path's blend dropped the network altogether (README, "Multi-
    label" under Figures); thresholds, tuned per label afterwards, are what rare labels need most."""
    import keras

    if not preprocessor.multi_label:
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    from fusionapp.model.losses import LabelBinaryCrossentropy

    if mode == "none":
        return LabelBinaryCrossentropy()
    targets = preprocessor.label_targets(train_rows.labels)
    positives = targets.sum(axis=0)
    return LabelBinaryCrossentropy(np.sqrt(np.maximum(len(targets) - positives, 1.0) / np.maximum(positives, 1.0)))


def printer(verbose: int):
    return (lambda message: print(message, flush=True)) if verbose else (lambda message: None)


def keras_verbosity(verbose: int) -> int:
    if not verbose:
        return 0
    return 1 if sys.stdout.isatty() else 2
