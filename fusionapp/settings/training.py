"""How the network is fitted (`train`), and the options of `evaluate` and `predict`."""

from __future__ import annotations

from dataclasses import dataclass

from fusionapp.settings.rules import (auto_switch, check_fields, choice, integer, number, service_address, switch,
                                     weights_source)

PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
STRATEGIES = ("auto", "default", "mirrored", "multi-worker")
ON_BAD_ROW = ("skip", "error")
PIXEL_CACHES = ("none", "memory", "disk")


@dataclass(frozen=True)
class TrainingSettings:
    epochs: int = integer(15, 1)
    batch_size: int = integer(64, 1)
    learning_rate: float = number(2e-3, 0.0, 10.0, low_open=True)
    seed: int = integer(0, 0)
    val_split: float = number(0.15, 0.0, 1.0, low_open=True, high_open=True)
    patience: int = integer(4, 1)
    class_weight: str = choice("balanced", ("none", "balanced"))
    # random flips and shifts of training images; None: on wherever the network sees images (not
    # when it trains on a frozen backbone's cached features alone)
    augment: bool | None = auto_switch()
    on_bad_row: str = choice("skip", ON_BAD_ROW)
    tensorboard: bool = switch(False)
    # share of training rows that lose their image, and (separately) their text; never both
    modality_dropout: float = number(0.3, 0.0, 0.5)
    # decisions tuned on held-out rows: per-label thresholds (multi-label) and per-class logit offsets
    # (single-label); None: the thresholds always, the offsets only without class weights (see
    # tunes_offsets)
    tune_decisions: bool | None = auto_switch()
    # keep the decoded, resized pixels of every image after one pass: in memory, or in a file of the run
    pixel_cache: str = choice("none", PIXEL_CACHES)
    precision: str = choice("auto", PRECISIONS)
    jit: bool = switch(False)  # XLA-compile the training step
    strategy: str = choice("auto", STRATEGIES)  # tf.distribute
    # where a pretrained backbone's weights come from: Keras' cache ($KERAS_HOME/models), random, a file
    backbone_weights: str = weights_source("imagenet")
    # compute each image's backbone features once (frozen backbone) and reuse them across epochs and runs
    feature_cache: bool = switch(True)
    fine_tune: int = integer(0, 0)  # top backbone layers unfrozen in a second phase; 0: none
    fine_tune_text: int = integer(0, 0)  # top transformer layers of a text backbone unfrozen in that phase
    fine_tune_epochs: int = integer(5, 1)
    fine_tune_learning_rate: float = number(2e-4, 0.0, 10.0, low_open=True)
    # multi-label: labels on fewer training rows than this are reported and dropped
    min_label_count: int = integer(2, 1)
    # the text vocabulary and idf are learnt on a seeded sample of this many training rows
    adapt_rows: int = integer(100_000, 100)
    # training steps between validations, checkpoints and early-stopping checks; 0: one pass over the rows
    steps_per_epoch: int = integer(0, 0)
    # a tf.data service dispatcher (grpc://HOST:PORT) whose workers run the training input pipeline
    data_service: str = service_address("")

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

    batch_size: int = integer(256, 1)
    on_bad_row: str = choice("skip", ON_BAD_ROW)
    top_k: int = integer(1, 1)

    def __post_init__(self):
        check_fields(self)
