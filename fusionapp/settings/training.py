"""How the network is fitted (`train`), and the options of `evaluate` and `predict`."""

from __future__ import annotations

from dataclasses import dataclass

from fusionapp.settings.conditions import (BOTH_INPUTS, DATA_SERVICE, FINE_TUNING, IMAGES_SEEN, MULTI_LABEL,
                                          PIXELS_KEPT, PRETRAINED_IMAGE, SINGLE_LABEL, STARTS_PRETRAINED, TEXT,
                                          TEXT_BACKBONE)
from fusionapp.settings.options import Search
from fusionapp.settings.rules import (auto_switch, check_fields, choice, integer, number, service_address, switch,
                                     weights_source)

PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
STRATEGIES = ("auto", "default", "mirrored", "multi-worker")
ON_BAD_ROW = ("skip", "error")
PIXEL_CACHES = ("none", "memory", "disk")


@dataclass(frozen=True)
class TrainingSettings:
    epochs: int = integer(15, 1, help="Maximum epochs.")
    batch_size: int = integer(64, 1, help="Batch size per replica; the global batch is this times the replicas.")
    learning_rate: float = number(2e-3, 0.0, 10.0, low_open=True, help="Peak learning rate.",
                                  search=Search(3e-4, 1e-2, log=True))
    seed: int = integer(0, 0, help="Random seed.")
    val_split: float = number(0.15, 0.0, 1.0, low_open=True, high_open=True,
                              help="Share of the rows held out for validation when the data has no split column.")
    patience: int = integer(4, 1, help="Epochs without validation-loss improvement before stopping.")
    class_weight: str = choice("balanced", ("none", "balanced"), search=Search(choices=("none", "balanced")),
                               help="balanced: weight rows by the inverse frequency of their class; none: equally.")
    augment: bool | None = auto_switch(applies=IMAGES_SEEN, help="Random flips and shifts of training images.",
                                       default_words="on wherever the network sees images, not when it trains on "
                                                     "a frozen backbone's cached features alone")
    on_bad_row: str = choice("skip", ON_BAD_ROW, help="skip: leave bad rows out and count them; error: stop at the "
                                                      "first.")
    tensorboard: bool = switch(False, help="Write TensorBoard logs into RUN/tensorboard.")
    # never both, so every row keeps one of the two
    modality_dropout: float = number(0.3, 0.0, 0.5, applies=BOTH_INPUTS, search=Search(0.0, 0.5),
                                     help="Share of training rows whose image, and separately whose text, is "
                                          "blanked, so the model copes with missing inputs.")
    tune_decisions: bool | None = auto_switch(
        help="After training, tune each label's decision threshold for its validation F1 (multi-label), or "
             "per-class decision offsets for validation macro-F1 (single-label).",
        default_words="thresholds on; offsets only with --class-weight none")
    pixel_cache: str = choice("none", PIXEL_CACHES, applies=PIXELS_KEPT,
                              help="Keep every image's decoded, resized pixels after the first pass: in memory, or "
                                   "on disk in RUN/pixel-cache while training (not with a frozen backbone's feature "
                                   "cache, which keeps features instead).")
    precision: str = choice("auto", PRECISIONS, default_words="auto: bfloat16 where the hardware computes it "
                                                              "natively, else float32",
                            help="Compute precision.")
    jit: bool = switch(False, help="XLA-compile the training step.")
    strategy: str = choice("auto", STRATEGIES, help="tf.distribute strategy: mirrored over this machine's GPUs, "
                                                    "multi-worker across the machines in TF_CONFIG; auto picks by "
                                                    "what it finds.")
    backbone_weights: str = weights_source("imagenet", applies=PRETRAINED_IMAGE,
                                           help="Pretrained image backbone weights: imagenet (Keras' cache, "
                                                "$KERAS_HOME/models), none (random), or a local file.")
    feature_cache: bool = switch(True, applies=STARTS_PRETRAINED,
                                 help="Compute each input's frozen backbone features once, kept across epochs and "
                                      "runs (`fusionapp feature-cache` shows and clears it).")
    fine_tune: int = integer(0, 0, applies=PRETRAINED_IMAGE, flag_value=30, metavar="[LAYERS]",
                             default_words="0, off; the flag alone: 30",
                             help="Then unfreeze the top LAYERS backbone layers, batch norm excepted, and train on.")
    fine_tune_text: int = integer(0, 0, applies=TEXT_BACKBONE, flag_value=2, metavar="[LAYERS]",
                                  default_words="0, off; the flag alone: 2",
                                  help="Then unfreeze the text backbone's top LAYERS transformer layers and train "
                                       "on.")
    text_lora: int = integer(0, 0, applies=TEXT_BACKBONE, flag_value=8, metavar="[RANK]",
                             default_words="0, off; the flag alone: 8",
                             help="Then train rank-RANK LoRA adapters on the text backbone's attention query and "
                                  "value projections (and their biases), the rest of it frozen, and train on (not "
                                  "with --fine-tune-text).")
    fine_tune_epochs: int = integer(5, 1, applies=FINE_TUNING, help="Maximum epochs of fine-tuning.")
    fine_tune_learning_rate: float = number(2e-4, 0.0, 10.0, low_open=True, applies=FINE_TUNING,
                                            help="Peak learning rate of fine-tuning.")
    sample: int = integer(0, 0, default_words="0: every row",
                          help="Train on a seeded sample of this many rows, stratified by label: a quick try on a "
                               "big table (read streaming, shards too).")
    min_class_rows: int = integer(0, 0, applies=SINGLE_LABEL, default_words="0: keep every class",
                                  help="Drop the classes with fewer training rows than this, and their rows (rows "
                                       "of the train split, or every labelled row without a split column); with "
                                       "--on-bad-row error, stop instead.")
    min_label_count: int = integer(2, 1, applies=MULTI_LABEL,
                                   help="Labels found on fewer training rows than this are reported and dropped.")
    adapt_rows: int = integer(100_000, 100, applies=TEXT,
                              help="Learn the text vocabularies and idf on a seeded sample of this many training "
                                   "rows (tabular statistics use every row).")
    steps_per_epoch: int = integer(0, 0, default_words="0: one pass over the training rows",
                                   help="Training steps between validations, checkpoints and early-stopping checks.")
    data_service: str = service_address("", help="Run the training input pipeline on the workers of this tf.data "
                                                 "service dispatcher, grpc://HOST:PORT (`fusionapp data-service`).",
                                        default_words="none: in this process")
    data_service_timeout: float = number(60.0, 0.0, 86400.0, low_open=True, applies=DATA_SERVICE,
                                         help="Seconds to wait for the --data-service dispatcher to answer "
                                              "before giving up.")

    def __post_init__(self):
        check_fields(self)

    @property
    def tunes_offsets(self) -> bool:
        """Whether a single-label run tunes per-class offsets for validation macro-F1. By default
        only with --class-weight none: balanced class weights already shift decisions towards rare
        classes, and offsets tuned on top of them on a few hundred validation rows measured as noise
        that costs test macro-F1 (docs/figures.md)."""
        return self.class_weight == "none" if self.tune_decisions is None else self.tune_decisions

    @property
    def tunes_thresholds(self) -> bool:
        """Whether a multi-label run tunes each label's threshold (always, unless turned off)."""
        return self.tune_decisions is not False


@dataclass(frozen=True)
class PredictionSettings:
    """The options of `evaluate` and `predict`: their defaults live here and nowhere else."""

    batch_size: int = integer(256, 1, help="Rows per prediction batch.")
    on_bad_row: str = choice("skip", ON_BAD_ROW, help="skip: leave unusable rows out (predict lists them with an "
                                                      "error); error: stop at the first.")
    top_k: int = integer(1, 1, help="Also list the K likeliest labels.", metavar="K")
    sample: int = integer(0, 0, default_words="0: every row", metavar="N",
                          help="Score a seeded sample of N rows, stratified by label (the same rows each time).")

    def __post_init__(self):
        check_fields(self)
