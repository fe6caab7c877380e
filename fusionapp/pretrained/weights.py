"""Where a pretrained backbone's weights come from (--backbone-weights imagenet|none|PATH), found or
refused before anything is written, and loaded into the feature extractor a run trains with."""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass

import numpy as np

from fusionapp.errors import FusionError, one_line
from fusionapp.model.backbones import BACKBONES, build_feature_extractor
from fusionapp.model.dtype_policy import precision_policy
from fusionapp.pretrained.records import BackboneRecord
from fusionapp.runs.files import file_digest

OFFLINE_ENV = "FUSIONAPP_OFFLINE"  # "1": never try to download, fail at once instead


@dataclass(frozen=True)
class WeightsFile:
    source: str  # "imagenet", "none" or "file"
    path: str | None  # None for "none": random initial weights


def keras_models_dir() -> str:
    """Where Keras keeps downloaded weights: $KERAS_HOME/models, ~/.keras/models by default."""
    return os.path.join(os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras"), "models")


def resolve_weights(backbone_name: str, weights: str) -> WeightsFile:
    """The weights file a run will load: found locally, downloaded by Keras if that is allowed and
    possible, or a one-line FusionError that says which file to put where."""
    if weights == "none":
        return WeightsFile("none", None)
    if weights != "imagenet":
        path = os.path.abspath(os.path.expanduser(weights))
        if not os.path.isfile(path):
            raise FusionError(f"--backbone-weights {weights}: no such file")
        return WeightsFile("file", path)
    backbone = BACKBONES[backbone_name]
    folder = keras_models_dir()
    path = os.path.join(folder, backbone.weights_file)
    if os.path.isfile(path):
        if file_md5(path) != backbone.md5:
            raise FusionError(f"{path} is not the file Keras publishes (its md5 differs: a partial or damaged "
                              f"download?); delete it and fetch {backbone.weights_url} again, or pass "
                              "--backbone-weights PATH")
        return WeightsFile("imagenet", path)
    why = "downloads are off (FUSIONAPP_OFFLINE=1)" if os.environ.get(OFFLINE_ENV) == "1" else _download(backbone)
    if why is None:
        return WeightsFile("imagenet", path)
    raise FusionError(f"the ImageNet weights of {backbone_name} are not on this machine and {why}: put "
                      f"{backbone.weights_file} (from {backbone.weights_url}) in {folder} (the models folder of "
                      f"$KERAS_HOME, ~/.keras by default), or pass --backbone-weights PATH with a local "
                      ".h5 / .weights.h5 file")


def _download(backbone) -> str | None:
    """Let Keras fetch the file into its cache; None on success, else why it could not."""
    import keras

    try:
        keras.utils.get_file(backbone.weights_file, backbone.weights_url, cache_subdir="models",
                             file_hash=backbone.md5)
    except Exception as error:  # noqa: BLE001 - any failure to fetch means the same to the user
        return f"cannot be downloaded ({one_line(error)[:120]})"
    return None


def load_extractor(backbone_name: str, image_size: int, weights: WeightsFile):
    """The float32 feature extractor with its backbone's weights loaded (random ones for "none",
    drawn from the run's seed, which the caller has set)."""
    with precision_policy("float32"):
        extractor = build_feature_extractor(backbone_name, image_size)
    if weights.path is not None:
        try:
            # Keras only warns when parts of a file match nothing in the model and keeps their random
            # initial values; a backbone half loaded is an error here.
            with warnings.catch_warnings():
                warnings.simplefilter("error", UserWarning)
                extractor.backbone.load_weights(weights.path)
        except Exception as error:  # noqa: BLE001 - a file of the wrong model or format, said in one line
            raise FusionError(f"{weights.path}: cannot load it as weights of {backbone_name} "
                              f"({one_line(error)[:160]})") from None
    return extractor


def describe(backbone_name: str, weights: WeightsFile) -> BackboneRecord:
    """What config.json records of the backbone: its name, the weights' source, file and sha256."""
    return {"name": backbone_name, "weights": weights.source, "weights_file": weights.path,
            "sha256": file_sha256(weights.path) if weights.path else None}


def file_sha256(path: str) -> str:
    return file_digest(path, "sha256")


def file_md5(path: str) -> str:
    """The hash Keras publishes for its weights files."""
    return file_digest(path, "md5")


def weights_sha256(model) -> str:
    """A digest of a model's weight values: the feature cache's key for the weights, whatever file
    (or random draw) they came from."""
    digest = hashlib.sha256()
    for weight in model.get_weights():
        digest.update(np.ascontiguousarray(weight, dtype=np.float32).tobytes())
    return digest.hexdigest()
