"""The run directory: what is saved, written atomically so a crash never leaves half a file,
and how a run is loaded back for evaluation and prediction."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
import tempfile
from dataclasses import dataclass

from fusionapp.errors import FusionError, one_line

# Runs written in an older layout (fusionapp 0.2: probability heads, vocabulary in the model's
# config) cannot be loaded; the format number says which layout a run has.
RUN_FORMAT = 2
MODEL_FILE = "model.keras"
CONFIG_FILE = "config.json"
PREPROCESSING_FILE = "preprocessing.json"
HISTORY_FILE = "history.csv"
METRICS_FILE = "metrics.json"
SKIPPED_FILE = "skipped.csv"
RESUME_DIR = "resume"
LOCK_FILE = ".lock"
# Files `train --overwrite` may remove; anything else in the folder is the user's and stays.
RUN_FILES = (MODEL_FILE, CONFIG_FILE, PREPROCESSING_FILE, HISTORY_FILE, METRICS_FILE, SKIPPED_FILE,
             "test_metrics.json", "learning_curve.png")


# === Atomic writes ===
@contextlib.contextmanager
def atomic_path(path: str, suffix: str = ""):
    """Yield a temporary path beside `path`; it replaces `path` only if the block succeeds."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=f".tmp{suffix}")
    os.close(handle)
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def write_text(path: str, text: str) -> None:
    with atomic_path(path) as temporary:
        with open(temporary, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())


def write_json(path: str, values) -> None:
    write_text(path, json.dumps(values, indent=2, ensure_ascii=False, default=_json_default) + "\n")


def write_csv(path: str, header: list[str], rows) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    write_text(path, buffer.getvalue())


def save_model(model, path: str) -> None:
    with atomic_path(path, suffix=".keras") as temporary:
        model.save(temporary)


def save_weights(model, path: str) -> None:
    with atomic_path(path, suffix=".weights.h5") as temporary:
        model.save_weights(temporary)


def file_digest(path: str, algorithm: str = "sha256") -> str:
    """The hex digest of a file's bytes, read in 1 MB blocks."""
    import hashlib

    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _json_default(value):
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def read_json(path: str):
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, json.JSONDecodeError) as error:
        raise FusionError(f"{path}: cannot read ({error})") from error


# === The run directory ===
def make_writable_dir(path: str) -> None:
    """Create the output folder and prove it is writable, before any training starts."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise FusionError(f"{path}: exists and is not a directory")
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as error:
        raise FusionError(f"{path}: cannot write there ({error.strerror or error})") from error


def prepare_run_dir(path: str, resume: bool, overwrite: bool) -> None:
    """Check what the (locked) folder holds against --resume / --overwrite and tidy it."""
    existing = any(name != LOCK_FILE and not name.startswith(".") for name in os.listdir(path))
    if resume:
        if os.path.exists(os.path.join(path, MODEL_FILE)) and not os.path.isdir(os.path.join(path, RESUME_DIR)):
            raise FusionError(f"{path}: this run already finished; nothing to resume")
        if not os.path.exists(os.path.join(path, CONFIG_FILE)):
            raise FusionError(f"{path}: nothing to resume (no {CONFIG_FILE}); train without --resume")
    elif existing and not overwrite:
        raise FusionError(f"{path}: already holds files; pass --resume to continue it or --overwrite to replace it")
    if overwrite and not resume:
        for name in RUN_FILES:
            if os.path.exists(os.path.join(path, name)):
                os.remove(os.path.join(path, name))
        for folder in (RESUME_DIR, "tensorboard", "cache"):
            shutil.rmtree(os.path.join(path, folder), ignore_errors=True)
    _remove_stale_temporaries(path)


def _remove_stale_temporaries(path: str) -> None:
    """Temporary files left by a process killed mid-write; the real files are untouched."""
    for folder in (path, os.path.join(path, RESUME_DIR)):
        if not os.path.isdir(folder):
            continue
        for name in os.listdir(folder):
            if name.startswith(".") and ".tmp" in name:
                os.remove(os.path.join(folder, name))


@contextlib.contextmanager
def run_lock(path: str):
    """Hold an exclusive lock on the run folder so two trainings cannot write into it at once."""
    import fcntl

    handle = open(os.path.join(path, LOCK_FILE), "w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        handle.close()
        raise FusionError(f"{path}: another fusionapp process is training into this folder") from error
    # The lock is held by the open file, so a killed process releases it with no clean-up needed.
    try:
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


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
        if os.path.exists(os.path.join(path, RESUME_DIR, "state.json")):
            raise FusionError(f"{path}: training did not finish (no {MODEL_FILE}); continue it with "
                              f"`fusionapp train --resume --out {path}`")
        raise FusionError(f"{path}: not a fusionapp run (no {MODEL_FILE})")
    return path


def load_run(path: str) -> Run:
    import keras

    import fusionapp
    import fusionapp.model  # noqa: F401 - registers the custom classes for safe-mode loading
    import fusionapp.preprocessing  # noqa: F401

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
    try:
        model = keras.saving.load_model(model_path, safe_mode=True)
    except Exception as error:  # noqa: BLE001 - any loader failure means an unusable file
        raise FusionError(f"{model_path}: cannot load the model ({one_line(error)})") from error
    if getattr(model, "preprocessor", None) is None:
        raise FusionError(f"{model_path}: not a fusionapp model (no preprocessor inside)")
    return Run(run_dir, model, config)
