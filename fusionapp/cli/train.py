"""`fusionapp train`: its flags, each checked by the rule of the setting it names."""

from __future__ import annotations

import click

from fusionapp.cli.group import cli, column_options, setting_option
from fusionapp.errors import FusionError


@cli.command()
@click.argument("data", required=False)
@click.option("--out", type=click.Path(file_okay=False), help="Run folder (default: checkpoints/<data>-<time>).")
@column_options
@setting_option("--tabular-col", name="tabular_col", multiple=True,
                help="Tabular column, repeatable; NAME:numeric or NAME:categorical forces its kind.")
@setting_option("--modalities", name="modalities", help="Inputs the model uses (default: all the data has).")
@setting_option("--multi-label/--no-multi-label", name="multi_label", default=None,
                help="Each row has a set of labels: a sigmoid and a tuned threshold per label (default: off).")
@setting_option("--label-sep", name="label_sep",
                help="What joins a row's labels in the label column; implies --multi-label (default: |).")
@setting_option("--min-label-count", name="min_label_count", type=int,
                help="Multi-label: drop labels found on fewer training rows (default: 2).")
@setting_option("--image-size", name="image_size", type=int,
                help="Image side in pixels; 0: 64, or 224 with a pretrained backbone (default: 0).")
@setting_option("--image-backbone", name="image_backbone",
                help="Image branch: multi-kernel (learnt from scratch, default) or a pretrained ImageNet model.")
@setting_option("--backbone-weights", name="backbone_weights",
                help="Pretrained weights: imagenet (Keras' cache, $KERAS_HOME/models), none (random), or a local "
                     "file (default: imagenet).")
@setting_option("--backbone-head", name="backbone_head",
                help="Over the backbone's feature map: global pooling alone, or a multi-kernel block before it "
                     "(default: pool).")
@setting_option("--feature-cache/--no-feature-cache", name="feature_cache", default=None,
                help="Compute each image's frozen backbone features once, kept across epochs and runs "
                     "(default: on; `fusionapp feature-cache` shows and clears it).")
@setting_option("--fine-tune", name="fine_tune", type=int, is_flag=False, flag_value=30, metavar="[LAYERS]",
                help="Then unfreeze the top LAYERS backbone layers (30 if not given), batch norm excepted, "
                     "and train on (default: 0, off).")
@setting_option("--fine-tune-epochs", name="fine_tune_epochs", type=int,
                help="Maximum epochs of fine-tuning (default: 5).")
@setting_option("--fine-tune-learning-rate", name="fine_tune_learning_rate", type=float,
                help="Peak learning rate of fine-tuning (default: 0.0002).")
@setting_option("--image-kernels", name="image_kernels", help="Kernel sizes of each image block (default: 1,3,5).")
@setting_option("--image-filters", name="image_filters", help="Output channels of each image block (default: 48,96,192).")
@setting_option("--image-reduction", name="image_reduction", type=float,
                help="1x1 reductions before the larger kernels, as a share of each branch's channels; "
                     "0 for none (default: 0.5).")
@setting_option("--text-encoder", name="text_encoder",
                help="Text branch: bag (TF-IDF n-grams, default), cnn (1-D convolutions), mean (pooled embeddings).")
@setting_option("--text-backbone", name="text_backbone", metavar="NAME|PATH",
                help="A pretrained KerasHub text model in place of --text-encoder: a local preset or Hugging Face "
                     "snapshot folder, or a KerasHub preset name (from its cache, or downloaded).")
@setting_option("--image-text-backbone", name="image_text_backbone", metavar="NAME|PATH",
                help="A pretrained KerasHub CLIP or SigLIP model as both the image and the text branch (frozen, "
                     "cached): a local preset folder, or a preset name.")
@setting_option("--fine-tune-text", name="fine_tune_text", type=int, is_flag=False, flag_value=2, metavar="[LAYERS]",
                help="Then unfreeze the text backbone's top LAYERS transformer layers (2 if not given) and train "
                     "on (default: 0, off).")
@setting_option("--wide/--no-wide", name="wide", default=None,
                help="Blend in a linear model on the TF-IDF text and tabular values, fitted after the network "
                     "(default: on).")
@setting_option("--calibrate/--no-calibrate", name="calibrate", default=None,
                help="Fit one temperature on the validation rows so that confidences match accuracy (default: on).")
@setting_option("--ngrams", name="ngrams", type=int,
                help="N-gram length for the bag encoder; 0: 5 for chars, 2 for words (default: 0).")
@setting_option("--text-tokens", name="text_tokens",
                help="Words or characters (for languages without spaces); auto: chars for bag, words otherwise.")
@setting_option("--max-tokens", name="max_tokens", type=int, help="Vocabulary size bound (default: 20000).")
@setting_option("--max-text-chars", name="max_text_chars", type=int,
                help="Characters of each text the model reads; longer texts are cut (default: 10000).")
@setting_option("--adapt-rows", name="adapt_rows", type=int,
                help="Learn the text vocabulary and idf on a seeded sample of this many training rows "
                     "(default: 100000).")
@setting_option("--sequence-length", name="sequence_length", type=int, help="Tokens kept per text (default: 64).")
@setting_option("--dropout", name="dropout", type=float, help="Dropout rate (default: 0.3).")
@setting_option("--epochs", name="epochs", type=int, help="Maximum epochs (default: 15).")
@setting_option("--steps-per-epoch", name="steps_per_epoch", type=int,
                help="Training steps between validations, checkpoints and early-stopping checks; 0: one pass "
                     "over the training rows (default: 0).")
@setting_option("--data-service", name="data_service",
                help="Run the training input pipeline on the workers of this tf.data service dispatcher, "
                     "grpc://HOST:PORT (`fusionapp data-service`; default: in this process).")
@setting_option("--batch-size", name="batch_size", type=int,
                help="Batch size per replica; the global batch is this times the replicas (default: 64).")
@setting_option("--learning-rate", name="learning_rate", type=float, help="Peak learning rate (default: 0.002).")
@setting_option("--seed", name="seed", type=int, help="Random seed (default: 0).")
@setting_option("--val-split", name="val_split", type=float,
                help="Hold-out fraction when the data has no split column (default: 0.15).")
@setting_option("--patience", name="patience", type=int,
                help="Epochs without val-loss improvement before stopping (default: 4).")
@setting_option("--class-weight", name="class_weight",
                help="balanced: weight rows by the inverse frequency of their class; none: equally (default: balanced).")
@setting_option("--augment/--no-augment", name="augment", default=None,
                help="Random flips and shifts of training images (default: on wherever the network sees images).")
@setting_option("--pixel-cache", name="pixel_cache",
                help="Keep every image's decoded, resized pixels after the first pass, in memory or in RUN/cache "
                     "while training (default: none; not with a frozen backbone's feature cache, which keeps "
                     "features instead).")
@click.option("--cache", "old_pixel_cache", hidden=True)
@setting_option("--precision", name="precision",
                help="Compute precision; auto: bfloat16 where the hardware has it natively (default: auto).")
@setting_option("--jit/--no-jit", name="jit", default=None, help="XLA-compile the training step (default: off).")
@setting_option("--strategy", name="strategy",
                help="tf.distribute strategy: mirrored over this machine's GPUs, multi-worker across the machines "
                     "in TF_CONFIG; auto picks by what it finds (default: auto).")
@setting_option("--tune-decisions/--no-tune-decisions", name="tune_decisions", default=None,
                help="After training, tune each label's threshold for its validation F1 (multi-label), or shift "
                     "per-class decision offsets to maximise validation macro-F1 (default: thresholds on, offsets "
                     "only with --class-weight none).")
@setting_option("--modality-dropout", name="modality_dropout", type=float,
                help="Share of training rows whose image (and, separately, text) is blanked, so the model "
                     "copes with missing inputs (default: 0.3).")
@setting_option("--on-bad-row", name="on_bad_row", help="Skip and count bad rows (default) or stop at the first.")
@click.option("--tensorboard", is_flag=True, default=None, help="Write TensorBoard logs into RUN/tensorboard.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False),
              help="TOML or JSON file with the same settings as these flags; flags win.")
@click.option("--resume", is_flag=True,
              help="Continue the interrupted run in --out from its last epoch, with the settings and data it "
                   "recorded: only --epochs, --patience, --fine-tune-epochs and --tensorboard may differ; any other "
                   "setting given with another value, or another DATA, is refused.")
@click.option("--overwrite", is_flag=True, help="Replace the run already in --out.")
def train(data, out, resume, overwrite, config_file, old_pixel_cache, **flags):
    """Train a classifier on DATA (a CSV / JSON Lines table or tfds:NAME[:SPLIT]).

    With no DATA, trains on the demo set, creating it under data/demo first.
    """
    from fusionapp.training import train as train_run

    flags["tabular_col"] = flags["tabular_col"] or None
    flags["pixel_cache"] = flags["pixel_cache"] or old_pixel_cache
    saved = {}
    if config_file:
        saved, data, out = _config_file_settings(config_file, data, out)
    settings = _checked_flags(saved, flags)
    if resume:
        given = {**saved, **{name: value for name, value in flags.items() if value is not None}}
        train_run(data, out, resume=True, overwrite=overwrite, **given)
    else:
        train_run(data, out, overwrite=overwrite, settings=settings)


def _config_file_settings(path: str, data, out):
    """The flat settings of a --config file, checked, and DATA and --out (flags win)."""
    from fusionapp.settings import RunSettings, SettingError, apply_flat
    from fusionapp.settings.config_file import read_config_file

    saved = read_config_file(path)
    for key in ("data", "out"):
        if not isinstance(saved.get(key, ""), str):
            raise FusionError(f"{path}: {key} = {saved[key]!r}: must be a path")
    data, out = data or saved.pop("data", None), out or saved.pop("out", None)
    saved.pop("data", None)
    saved.pop("out", None)
    try:
        apply_flat(RunSettings(), saved)
    except SettingError as error:
        raise FusionError(f"{path}: {error.option} = {error.value!r}: must be {error.requirement}") from None
    except FusionError as error:
        raise FusionError(f"{path}: {error}") from None
    return saved, data, out


def _checked_flags(saved: dict, flags: dict):
    """The settings of the config file's values and the flags (which win); a refused flag is a usage error."""
    from fusionapp.settings import RunSettings, SettingError, apply_flat

    settings = apply_flat(RunSettings(), saved)
    try:
        return apply_flat(settings, flags)
    except SettingError as error:
        raise click.BadParameter(f"{error.value!r}: must be {error.requirement}",
                                 param_hint=f"'--{error.option}'") from None
