"""A search's leaderboard: one row per trial (its settings, held-out, validation and test scores,
seconds and state) in RUN/leaderboard.csv, best first, and PNGs of the search's history and of which
settings mattered."""

from __future__ import annotations

import os
import warnings

from fusionapp.runs import files, layout

# The columns before the settings; the trial's settings follow, one column each.
COLUMNS = ("trial", "state", "in_ensemble", "held_out_log_loss", "held_out_score", "val_accuracy", "val_macro_f1",
           "test_accuracy", "test_macro_f1", "val_micro_f1", "test_micro_f1", "epochs_run", "seconds", "run", "note")


def leaderboard_rows(study, weights: dict[int, float]) -> tuple[list[str], list[list]]:
    """(header, rows): every trial, finished ones by held-out log loss first, then the rest by number.
    `weights`: trial number -> its share of the ensemble."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    params = sorted({name for trial in trials for name in trial.params})
    states = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned", TrialState.FAIL: "failed",
              TrialState.RUNNING: "running", TrialState.WAITING: "waiting"}
    order = sorted(trials, key=lambda trial: (trial.state != TrialState.COMPLETE,
                                              trial.value if trial.value is not None else 0.0, trial.number))
    rows = []
    for trial in order:
        attrs = trial.user_attrs
        values = {"trial": trial.number, "state": states[trial.state],
                  "in_ensemble": round(weights.get(trial.number, 0.0), 4), "held_out_log_loss":
                  round(trial.value, 6) if trial.state == TrialState.COMPLETE else "",
                  **{name: attrs.get(name, "") for name in COLUMNS if name in attrs}}
        rows.append([values.get(name, "") for name in COLUMNS] + [trial.params.get(name, "") for name in params])
    return [*COLUMNS, *params], rows


def write_leaderboard(out: str, study, weights: dict[int, float]) -> str:
    header, rows = leaderboard_rows(study, weights)
    path = os.path.join(out, layout.LEADERBOARD_FILE)
    files.write_csv(path, header, rows)
    return path


def save_search_plots(out: str, study) -> list[str]:
    """The search's history and its settings' importances as PNGs (what Optuna can draw from the
    trials finished: importances need two finished trials whose settings differ)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as plots

    written = []
    drawings = ((layout.SEARCH_HISTORY_FILE, plots.plot_optimization_history),
                (layout.PARAM_IMPORTANCES_FILE, plots.plot_param_importances))
    for name, draw in drawings:
        try:
            with warnings.catch_warnings():  # Optuna's plots are marked experimental
                warnings.simplefilter("ignore")
                axes = draw(study)
        except (ValueError, RuntimeError, ZeroDivisionError):
            continue
        figure = axes.figure if hasattr(axes, "figure") else axes[0].figure
        path = os.path.join(out, name)
        figure.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(figure)
        written.append(path)
    return written

