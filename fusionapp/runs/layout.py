"""The run folder's layout: the name of every file a run holds, creating and tidying the folder,
and the lock that keeps two trainings out of one folder. Every module finds a run's files by these
names, and only here are they spelt."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile

from fusionapp.errors import FusionError
from fusionapp.runs.files import write_csv

# Runs written in an older layout (fusionapp 0.2: probability heads, vocabulary in the model's
# config) cannot be loaded; the format number says which layout a run has.
RUN_FORMAT = 2
MODEL_FILE = "model.keras"
CONFIG_FILE = "config.json"
PREPROCESSING_FILE = "preprocessing.json"
HISTORY_FILE = "history.csv"
METRICS_FILE = "metrics.json"
TEST_METRICS_FILE = "test_metrics.json"
LEARNING_CURVE_FILE = "learning_curve.png"
SKIPPED_FILE = "skipped.csv"
RESUME_DIR = "resume"
STATE_FILE = "state.json"  # inside RESUME_DIR
TEXT_BACKBONE_WEIGHTS = "text-backbone.weights.h5"  # inside RESUME_DIR: the pretrained text backbone's weights
IMAGE_TEXT_WEIGHTS = "image-text-backbone.weights.h5"  # inside RESUME_DIR: a joint image-text model's weights
PIXEL_CACHE_DIR = "pixel-cache"  # --pixel-cache disk, while training
TENSORBOARD_DIR = "tensorboard"
LOCK_FILE = ".lock"
# A search's run (train --time-limit): the ensemble's files above, and these
SEARCH_DIR = "search"  # its study (SQLite) and search.json, what --resume and search-join read
SEARCH_FILE = "search.json"  # inside SEARCH_DIR
STUDY_FILE = "study.db"  # inside SEARCH_DIR
TRIALS_DIR = "trials"  # one run folder per trial, trials/0000, trials/0001, ...
HELD_OUT_FILE = "held_out_probabilities.npy"  # inside a trial: its probabilities on the rows the search held out
LEADERBOARD_FILE = "leaderboard.csv"
SEARCH_HISTORY_FILE = "search_history.png"
PARAM_IMPORTANCES_FILE = "param_importances.png"
REPLACED_DIR = ".replaced"  # the run an --overwrite replaces, until the new one has a checkpoint
# What `train --overwrite` may remove; anything else in the folder is the user's and stays.
RUN_FILES = (MODEL_FILE, CONFIG_FILE, PREPROCESSING_FILE, HISTORY_FILE, METRICS_FILE, SKIPPED_FILE,
             TEST_METRICS_FILE, LEARNING_CURVE_FILE, LEADERBOARD_FILE, SEARCH_HISTORY_FILE, PARAM_IMPORTANCES_FILE)
RUN_FOLDERS = (RESUME_DIR, TENSORBOARD_DIR, PIXEL_CACHE_DIR, SEARCH_DIR, TRIALS_DIR)


def write_skipped(path: str, bad_rows) -> None:
    """Bad rows (data.examples.BadRow) as CSV: row, column, reason."""
    write_csv(path, ["row", "column", "reason"], [(row.row, row.column, row.reason) for row in bad_rows])


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


@contextlib.contextmanager
def run_folder(path: str, new_run: bool):
    """Make (and prove writable) the folder of a run. For a new run that fails before it has a
    checkpoint to resume from (on its data, a pretrained model's weights, a dispatcher that does not
    answer, ...), the folder is put back as it was found: what the run wrote is removed, a run that
    --overwrite set aside is put back, and the folder itself goes where the run made it. The
    corrected command then runs there as if the first never had."""
    made = not os.path.exists(path)
    make_writable_dir(path)
    found = set(os.listdir(path))
    try:
        yield
    except BaseException:
        if new_run and not resumable(path):
            _put_back(path, found, made)
        raise
    shutil.rmtree(os.path.join(path, REPLACED_DIR), ignore_errors=True)


def resumable(path: str) -> bool:
    """Whether the folder holds a run's last epoch, or a search's study, that --resume continues."""
    return os.path.exists(os.path.join(path, RESUME_DIR, STATE_FILE)) or \
        os.path.exists(os.path.join(path, SEARCH_DIR, SEARCH_FILE))


def _put_back(path: str, found: set, made: bool) -> None:
    replaced = os.path.join(path, REPLACED_DIR)
    for name in set(os.listdir(path)) - found - {REPLACED_DIR}:
        target = os.path.join(path, name)
        shutil.rmtree(target, ignore_errors=True) if os.path.isdir(target) else os.remove(target)
    if os.path.isdir(replaced):
        for name in os.listdir(replaced):
            os.replace(os.path.join(replaced, name), os.path.join(path, name))
        os.rmdir(replaced)
    if made:
        shutil.rmtree(path, ignore_errors=True)


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
    _remove_stale_temporaries(path)
    if overwrite and not resume:
        # Set aside, not removed: a run that fails before its first checkpoint puts them back (run_folder).
        replaced = os.path.join(path, REPLACED_DIR)
        for name in (*RUN_FILES, *RUN_FOLDERS):
            if os.path.exists(os.path.join(path, name)):
                os.makedirs(replaced, exist_ok=True)
                os.replace(os.path.join(path, name), os.path.join(replaced, name))


def _remove_stale_temporaries(path: str) -> None:
    """Temporary files left by a process killed mid-write, and a replaced run a killed --overwrite
    left set aside; the real files are untouched."""
    shutil.rmtree(os.path.join(path, REPLACED_DIR), ignore_errors=True)
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


