"""What a `train` call asks for, resolved before anything is written: the data, the run folder and
the settings of a new run, or those recorded by the run a `--resume` continues; and what the
settings need of this machine."""

from __future__ import annotations

import os
from datetime import datetime

from fusionapp.console import printer
from fusionapp.errors import FusionError
from fusionapp.settings import RunSettings, apply_flat

DEMO_DIR = os.path.join("data", "demo")
MULTILABEL_DEMO_DIR = os.path.join("data", "demo-multilabel")
DEMO_TABULAR = ("price", "seller")


def new_run(data: str | None, out: str | None, settings: RunSettings, verbose: int):
    """(data, out, settings) of a new run; no DATA means the demo set, created if missing."""
    weights = settings.training.backbone_weights
    if weights not in ("imagenet", "none"):
        # Recorded absolute, so --resume from another folder finds the same file.
        settings = apply_flat(settings, {"backbone_weights": os.path.abspath(os.path.expanduser(weights))})
    for name in ("text_backbone", "image_text_backbone"):
        folder = os.path.expanduser(getattr(settings.model, name))
        if folder and os.path.isdir(folder):
            settings = apply_flat(settings, {name: os.path.abspath(folder)})
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
    from fusionapp.data.sources import data_fingerprint
    from fusionapp.settings.resume import resumed_settings
    from fusionapp.training.record import recorded_run

    if out is None:
        raise FusionError("--resume needs --out RUN_DIR, the run to continue")
    config = recorded_run(out)
    recorded = config["data"]
    if data is not None and (data if data.startswith("tfds:") else os.path.abspath(data)) != recorded:
        raise FusionError(f"--resume continues the run on the data it started with ({recorded}), not {data}; "
                          "leave DATA out, or train into a new --out")
    if not recorded.startswith("tfds:") and not os.path.exists(recorded):
        raise FusionError(f"{recorded}: no such file (the data this run started with)")
    if config.get("data_files") is not None and data_fingerprint(recorded) != config["data_files"]:
        raise FusionError(f"{recorded} changed since the run started (its size or modification time differs); "
                          "a resumed run must see the rows it started with: train into a new --out")
    return recorded, resumed_settings(RunSettings.from_dict(config["settings"]), given)


def check_environment(settings: RunSettings, resume: bool = False) -> None:
    """What settings need of this machine, checked before any work starts (or anything is written).
    A resumed run has its text backbone's weights and tokenizer in its own folder."""
    model = settings.model
    if not resume and (model.text_backbone or model.image_text_backbone):
        from fusionapp.pretrained.text_backbones import resolve_text_backbone

        if model.image_text_backbone:
            resolve_text_backbone(model.image_text_backbone, "--image-text-backbone")
        elif not model.modalities or "text" in model.modalities:
            resolve_text_backbone(model.text_backbone)
    if model.pretrained and (not model.modalities or "image" in model.modalities):
        from fusionapp.pretrained.cache import cache_limit_bytes
        from fusionapp.pretrained.weights import resolve_weights

        resolve_weights(model.image_backbone, settings.training.backbone_weights)
        if settings.training.feature_cache:
            cache_limit_bytes()
    if settings.training.tensorboard:
        import importlib.util

        if importlib.util.find_spec("tensorboard") is None:
            raise FusionError("--tensorboard needs the tensorboard package: pip install 'fusionapp[tensorboard]'")


def demo_table(verbose: int, multi_label: bool = False) -> str:
    folder = MULTILABEL_DEMO_DIR if multi_label else DEMO_DIR
    table = os.path.join(folder, "demo.csv")
    if not os.path.exists(table):
        from fusionapp.data.demo import make_demo

        printer(verbose)(f"Creating the {'multi-label ' if multi_label else ''}demo data set in {folder} ...")
        make_demo(folder, multi_label=multi_label)
    return table


def default_out(data: str) -> str:
    name = data.split(":")[1] if data.startswith("tfds:") else os.path.splitext(os.path.basename(data))[0]
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return os.path.join("checkpoints", f"{name}-{stamp}")
