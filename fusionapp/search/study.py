"""The search's Optuna study: where it lives (SQLite in the run folder, or an RDB storage URL several
processes join), its sampler (seeded TPE) and pruner (successive halving on epochs), and what a
resumed search does with the trials a killed process left running."""

from __future__ import annotations

import os
import warnings

from fusionapp.errors import FusionError, one_line
from fusionapp.runs import layout

# A process's trials beat this often; one silent for the grace period is taken for dead, failed and
# queued again by whichever process notices first.
HEARTBEAT_S = 10
GRACE_S = 40
# TPE proposes at random until this many trials have finished.
STARTUP_TRIALS = 4


def storage_url(out: str, given: str) -> str:
    """The study's storage: the URL given, or SQLite in RUN/search."""
    return given or f"sqlite:///{os.path.abspath(os.path.join(out, layout.SEARCH_DIR, layout.STUDY_FILE))}"


def shown_url(url: str) -> str:
    """The URL without its password, as logs and config.json show it."""
    scheme, _, rest = url.partition("://")
    credentials, at, place = rest.rpartition("@")
    if not at or ":" not in credentials:
        return url
    return f"{scheme}://{credentials.split(':', 1)[0]}:***@{place}"


def open_study(url: str, name: str, seed: int, new: bool):
    """The study `name` at `url`: made (`new`), or loaded. `seed` seeds this process's TPE sampler:
    processes joined to one study are given different seeds, so their first proposals differ."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():  # the heartbeat and its callback are marked experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            storage = optuna.storages.RDBStorage(
                url, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1),
                engine_kwargs={"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {})
        return optuna.create_study(
            study_name=name, storage=storage, direction="minimize", load_if_exists=not new,
            sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=STARTUP_TRIALS, constant_liar=True),
            pruner=optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3))
    except ImportError as error:
        raise FusionError(f"--search-storage {shown_url(url)}: its database driver is not installed "
                          f"({one_line(error)}); for PostgreSQL: pip install 'fusionapp[postgres]'") from None
    except Exception as error:  # SQLAlchemy's errors: a server that does not answer, a bad password
        if type(error).__module__.startswith(("sqlalchemy", "psycopg")):
            raise FusionError(f"--search-storage {shown_url(url)}: cannot open the study ({one_line(error)})") \
                from None
        raise


def requeue_interrupted(study, out: str) -> int:
    """The trials a killed search left running, failed (their folders removed) and queued again with
    the same settings (a resumed search runs them first); how many. Only for a study no other process
    is running: the SQLite one inside the run folder, whose lock the resuming process holds."""
    import shutil

    from optuna.trial import TrialState

    interrupted = trials_of(study, TrialState.RUNNING)
    for trial in interrupted:
        if "run" in trial.user_attrs:
            shutil.rmtree(os.path.join(out, trial.user_attrs["run"]), ignore_errors=True)
        study.tell(trial.number, state=TrialState.FAIL)
        study.enqueue_trial(trial.params, user_attrs={"rerun_of": trial.number})
    return len(interrupted)


def trials_of(study, *states) -> list:
    from optuna.trial import TrialState

    wanted = states or tuple(TrialState)
    return [trial for trial in study.get_trials(deepcopy=False) if trial.state in wanted]
