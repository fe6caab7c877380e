"""config.json: what a run was asked, what it resolved and found, and how far it got. It is written
first, so a run killed at any later moment can be resumed, and again as the run learns more."""

from __future__ import annotations

import os
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, TypedDict

import fusionapp
from fusionapp.data.sources import data_label
from fusionapp.errors import FusionError
from fusionapp.runs import files, layout
from fusionapp.settings import RunSettings

if TYPE_CHECKING:  # the modules that write these entries import Keras; the record is written before
    from fusionapp.posthoc.temperature import CalibrationRecord
    from fusionapp.posthoc.wide import WideRecord
    from fusionapp.pretrained.records import BackboneRecord, ImageTextRecord, TextBackboneRecord
    from fusionapp.training.training_rows import LabelSetsRecord


class RunConfig(TypedDict, total=False):
    """config.json: the keys a run writes (docs/run-folder.md). A plain JSON dict: people, `info`,
    `evaluate`, `serve` and later versions read it."""

    fusionapp_version: str
    run_format: int  # fusionapp.runs.layout.RUN_FORMAT
    tensorflow_version: str
    keras_version: str
    created: str  # ISO 8601, UTC
    data: str  # the table's absolute path, or "tfds:NAME"
    data_files: dict | None  # what a resume checks the data against: each table file's size and mtime
    settings: dict  # RunSettings.to_dict(), resolved
    status: str  # "training", then "complete"
    class_names: list[str]
    tabular_kinds: dict[str, str]  # column -> "numeric" or "categorical"
    n_train: int
    n_val: int
    n_val_stop: int  # of them, those early stopping reads
    n_val_tune: int  # and those what is fitted after the network is chosen on
    n_skipped: int
    strategy: str
    replicas: int
    workers: int
    global_batch_size: int
    label_sets: LabelSetsRecord  # multi-label runs
    # the pretrained models it started from (fusionapp.pretrained.records.PretrainedRecords)
    backbone: BackboneRecord
    text_backbone: TextBackboneRecord
    image_text_backbone: ImageTextRecord
    # what was fitted after the network (fusionapp.posthoc.after_network.AfterNetworkRecord)
    wide: WideRecord | None
    class_offsets: dict[str, float]
    calibration: CalibrationRecord
    label_thresholds: dict[str, float]
    epochs_run: int
    best_epoch: int | None
    stage_seconds: dict[str, float]  # seconds per stage of the run (StageClock)


class RunRecord:
    """The run's config.json, kept in memory and rewritten whole (atomically) on each `save`."""

    def __init__(self, out: str, data: str, settings: RunSettings, fingerprint: dict | None):
        self.path = os.path.join(out, layout.CONFIG_FILE)
        self.values: RunConfig = new_record(data, settings, fingerprint)

    def update(self, **values) -> None:
        self.values.update(values)

    def save(self) -> None:
        files.write_json(self.path, self.values)


class StageClock:
    """Seconds per stage of a run (config.json's stage_seconds): each lap ends the stage it names."""

    def __init__(self):
        self._time = time.perf_counter
        self._last = self._time()
        self.seconds: dict[str, float] = {}

    def lap(self, stage: str) -> None:
        now = self._time()
        self.seconds[stage] = round(self.seconds.get(stage, 0.0) + now - self._last, 2)
        self._last = now


def new_record(data: str, settings: RunSettings, fingerprint: dict | None) -> RunConfig:
    import keras
    import tensorflow as tf

    return RunConfig(**{
        "fusionapp_version": fusionapp.__version__,
        "run_format": layout.RUN_FORMAT,
        "tensorflow_version": tf.__version__,
        "keras_version": keras.__version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "data": data_label(data),
        # what a resume checks the data against: each table file's size and modification time
        "data_files": fingerprint,
        "settings": settings.to_dict(),
        "status": "training",
    })


def recorded_run(out: str) -> RunConfig:
    """The config.json of the run in `out`, for `--resume`."""
    path = os.path.join(out, layout.CONFIG_FILE)
    if not os.path.exists(path):
        raise FusionError(f"{out}: nothing to resume (no {layout.CONFIG_FILE})")
    config = files.read_json(path)
    if config.get("run_format", 1) != layout.RUN_FORMAT:
        raise FusionError(f"{out}: started by fusionapp {config.get('fusionapp_version')}, whose runs this "
                          "fusionapp cannot resume; train again")
    return config
