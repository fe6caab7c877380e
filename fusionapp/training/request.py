"""What a `train` call asks for, resolved before anything is written: the data, the run folder and
the settings of a new run, or those recorded by the run a `--resume` continues; and what the
settings need of this machine."""

from __future__ import annotations

import importlib.util
import os
from datetime import datetime

from fusionapp.console import printer
from fusionapp.data.demo import make_demo
from fusionapp.data.frames import FRAME_NAMES, frame_name, is_frame
from fusionapp.data.service import wait_for_dispatcher
from fusionapp.data.sources import data_fingerprint, data_label
from fusionapp.errors import FusionError
from fusionapp.pretrained.cache import cache_limit_bytes
from fusionapp.pretrained.weights import resolve_weights
from fusionapp.settings import RunSettings, apply_flat, flat_value
from fusionapp.settings.resume import PATH_SETTINGS, recorded_path, resumed_settings
from fusionapp.training.image_text import checked_image_text_preset
from fusionapp.training.record import recorded_run
from fusionapp.training.text_preset import checked_text_preset

DEMO_DIR = os.path.join("data", "demo")
MULTILABEL_DEMO_DIR = os.path.join("data", "demo-multilabel")
DEMO_TABULAR = ("price", "seller")


def new_run(data: str | None, out: str | None, settings: RunSettings, verbose: int):
    """(data, out, settings) of a new run; no DATA means the demo set, created if missing."""
    settings = apply_flat(settings, {name: recorded_path(name, flat_value(settings, name)) for name in PATH_SETTINGS})
    if data is None:
        if settings.model.multi_label and settings.columns.label_sep != "|":
            raise FusionError("the multi-label demo joins its labels with '|'; leave out --label-sep")
        data = demo_table(verbose, settings.model.multi_label)
        if not settings.columns.tabular:
            settings = apply_flat(settings, {"tabular_col": DEMO_TABULAR})
    return data, out or default_out(data), settings


def resumed_run(data: str | None, out: str | None, given: dict):
    """(data, settings) of the run in `out`: its recorded settings with the changes a resume allows
    (fusionapp.settings.resume); a DATA other than the recorded one, or a table changed since, is
    refused."""
    if out is None:
        raise FusionError("--resume needs --out RUN_DIR, the run to continue")
    config = recorded_run(out)
    recorded = config["data"]
    if is_frame(data) or recorded in FRAME_NAMES:
        name = recorded if recorded in FRAME_NAMES else frame_name(data)
        raise FusionError(f"--resume reads the run's table again, and an in-memory table ({name}) is not one it "
                          "can read: train into a new --out")
    if data is not None and data_label(data) != recorded:
        raise FusionError(f"--resume continues the run on the data it started with ({recorded}), not {data}; "
                          "leave DATA out, or train into a new --out")
    check_recorded_data(recorded, config.get("data_files"), "run", "a resumed run must see the rows it started "
                                                                   "with: train into a new --out")
    return recorded, resumed_settings(RunSettings.from_dict(config["settings"]), given)


def check_recorded_data(recorded: str, fingerprint: dict | None, what: str, why: str) -> None:
    """The table a run or search (`what`) recorded is still there, and unchanged since (`why`: what
    needs it unchanged, and what to do instead)."""
    if not recorded.startswith("tfds:") and not os.path.exists(recorded):
        raise FusionError(f"{recorded}: no such file (the data this {what} started with)")
    if fingerprint is not None and data_fingerprint(recorded) != fingerprint:
        raise FusionError(f"{recorded} changed since the {what} started (its size or modification time differs); "
                          f"{why}")


def check_pretrained_models(settings: RunSettings) -> None:
    """A new run's pretrained text or image-text model: found, and read without its weights, so a
    folder the run cannot use is refused before anything is written. Loading builds TensorFlow
    variables, so this runs after the distribution strategy exists."""
    model = settings.model
    if model.image_text_backbone:
        checked_image_text_preset(settings, load_weights=False)
    elif model.text_backbone and (not model.modalities or "text" in model.modalities):
        checked_text_preset(settings, load_weights=False)


def check_environment(settings: RunSettings, say) -> None:
    """What settings need of this machine (and of the machines they name), checked before any work
    starts or anything is written."""
    if settings.training.data_service:
        wait_for_dispatcher(settings.training.data_service, settings.training.data_service_timeout, say)
    model = settings.model
    if model.pretrained and (not model.modalities or "image" in model.modalities):
        resolve_weights(model.image_backbone, settings.training.backbone_weights)
    if model.starts_pretrained and settings.training.feature_cache:
        cache_limit_bytes()
    if settings.training.tensorboard:
        if importlib.util.find_spec("tensorboard") is None:
            raise FusionError("--tensorboard needs the tensorboard package: pip install 'fusionapp[tensorboard]'")


def demo_table(verbose: int, multi_label: bool = False) -> str:
    folder = MULTILABEL_DEMO_DIR if multi_label else DEMO_DIR
    table = os.path.join(folder, "demo.csv")
    if not os.path.exists(table):
        printer(verbose)(f"Creating the {'multi-label ' if multi_label else ''}demo data set in {folder} ...")
        make_demo(folder, multi_label=multi_label)
    return table


def default_out(data) -> str:
    if is_frame(data):
        name = frame_name(data).split()[-1].lower()
    else:
        name = data.split(":")[1] if data.startswith("tfds:") else os.path.splitext(os.path.basename(data))[0]
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return os.path.join("checkpoints", f"{name}-{stamp}")
