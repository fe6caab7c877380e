"""Loading a trained run back: its model (with the preprocessor inside) and its config."""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass

import fusionapp
from fusionapp.errors import FusionError, one_line
from fusionapp.runs.files import read_json
from fusionapp.runs.layout import (CONFIG_FILE, MODEL_FILE, RESUME_DIR, RUN_FORMAT, SEARCH_DIR, SEARCH_FILE,
                                   STATE_FILE)

# What a damaged or foreign file makes Keras' loader raise. Anything else (a bug of fusionapp's own
# classes, say) keeps its type and traceback rather than passing for the user's file.
UNREADABLE_FILE = (OSError, ValueError, EOFError, zipfile.BadZipFile)


@dataclass
class Run:
    """A trained run loaded for inference: the model (with its preprocessor) and its config."""

    path: str
    model: object  # fusionapp.model.FusionClassifier, with .preprocessor
    config: dict

    @property
    def preprocessor(self):
        return self.model.preprocessor

    @property
    def modalities(self) -> tuple[str, ...]:
        return self.preprocessor.modalities


def resolve_run_dir(path: str) -> str:
    """A run folder, or the model file inside one, -> the run folder."""
    if not os.path.exists(path):
        raise FusionError(f"{path}: no such run directory or model file")
    if os.path.isfile(path):
        if not path.endswith(".keras"):
            raise FusionError(f"{path}: not a fusionapp run (expected a run directory or its {MODEL_FILE})")
        return os.path.dirname(os.path.abspath(path))
    if not os.path.exists(os.path.join(path, MODEL_FILE)):
        if os.path.exists(os.path.join(path, SEARCH_DIR, SEARCH_FILE)):
            raise FusionError(f"{path}: the search did not finish (no {MODEL_FILE}); continue it with "
                              f"`fusionapp train --resume --out {path}`")
        if os.path.exists(os.path.join(path, RESUME_DIR, STATE_FILE)):
            raise FusionError(f"{path}: training did not finish (no {MODEL_FILE}); continue it with "
                              f"`fusionapp train --resume --out {path}`")
        raise FusionError(f"{path}: not a fusionapp run (no {MODEL_FILE})")
    return path


def load_model(path: str):
    """A fusionapp model file (or a run folder) -> the Keras model, with its preprocessor as
    `model.preprocessor`; safe mode, and no other import needed first."""
    # Keras and the model load here only: `fusionapp info` and the server's parent read runs without TensorFlow.
    import keras

    import fusionapp.model  # noqa: F401 - registers the model's and the preprocessor's classes

    model_path = os.path.join(path, MODEL_FILE) if os.path.isdir(path) else path
    try:
        model = keras.saving.load_model(model_path, safe_mode=True)
    except FusionError:
        raise
    except UNREADABLE_FILE as error:
        raise FusionError(f"{model_path}: cannot load the model ({one_line(error)})") from error
    if getattr(model, "preprocessor", None) is None:
        raise FusionError(f"{model_path}: not a fusionapp model (no preprocessor inside)")
    return model


def load_run(path: str) -> Run:
    run_dir = resolve_run_dir(path)
    model_path = path if os.path.isfile(path) else os.path.join(run_dir, MODEL_FILE)
    config_path = os.path.join(run_dir, CONFIG_FILE)
    config = read_json(config_path) if os.path.exists(config_path) else {}
    saved_version = str(config.get("fusionapp_version", fusionapp.__version__))
    if saved_version.split(".")[0] != fusionapp.__version__.split(".")[0] or \
            (config and config.get("run_format", 1) != RUN_FORMAT):
        raise FusionError(f"{model_path}: made by fusionapp {saved_version}, whose runs this fusionapp "
                          f"{fusionapp.__version__} cannot load (run format {config.get('run_format', 1)}, "
                          f"expected {RUN_FORMAT}); retrain it")
    return Run(run_dir, load_model(model_path), config)
