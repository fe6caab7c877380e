"""Ensemble selection rules compared offline, on the finished trials of searches kept with
`benchmarks/search.py --keep DIR`: each rule picks weights from the trials' probabilities on the
held-out validation rows, and is scored by the test macro-F1 of the mixture it picks (single-label).

    python benchmarks/search.py mvsa --folds 3 --candidate-text-model --no-default --keep /tmp/sel
    python benchmarks/selection.py /tmp/sel/mvsa-search-1 /tmp/sel/mvsa-search-2 /tmp/sel/mvsa-search-3

Each trial's test probabilities come from its saved model. The rules: fusionapp 0.13-0.16's greedy
selection from the single trial with the lowest log loss; `greedy_selection` as fusionapp runs it
since 0.17 (from every trial within two standard errors of the best, additions only for a clear
gain); the same on the balanced log loss (each class weighing the same); every trial in equal
shares; the one trial with the best held-out macro-F1. Each also with per-class offsets tuned on the
held-out rows. Prints one line per run and the means.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics

import numpy as np


def trial_table(run: str) -> dict:
    """The run's finished trials' probabilities on the held-out rows and on the test rows, and those
    rows' labels."""
    import optuna

    from fusionapp.inference.raw_inference import predict_examples
    from fusionapp.runs import files, layout
    from fusionapp.runs.load import load_model
    from fusionapp.search.run_search import HELD_OUT_SHARE, _targets
    from fusionapp.search.study import storage_url
    from fusionapp.settings import RunSettings
    from fusionapp.training.training_rows import held_for_selection, load_rows, usable_test_rows

    recorded = files.read_json(os.path.join(run, layout.SEARCH_DIR, layout.SEARCH_FILE))
    settings = RunSettings.from_dict(recorded["settings"])
    rows, resolved = load_rows(recorded["data"], settings, lambda *_: None)
    held, _ = held_for_selection(rows.val.labels, settings.training.seed, False, HELD_OUT_SHARE)
    _, y_held = _targets(rows.val.subset(held), rows.train.labels, resolved)
    study = optuna.load_study(study_name=recorded["study"], storage=storage_url(run, ""))
    trials = {}
    test_rows = y_test = None
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        folder = os.path.join(run, trial.user_attrs["run"])
        model = load_model(folder)
        if test_rows is None:
            test_rows, _ = usable_test_rows(rows.examples, settings.columns, model.preprocessor)
            index = {name: i for i, name in enumerate(model.preprocessor.class_names)}
            y_test = np.asarray([index[label] for label in test_rows.labels])
        trials[trial.number] = {"held": np.load(os.path.join(folder, layout.HELD_OUT_FILE)),
                                "test": predict_examples(model, test_rows).probabilities}
    return {"trials": trials, "y_held": y_held, "y_test": y_test}


def _macro_f1(y, probabilities, offsets=None) -> float:
    from sklearn.metrics import f1_score

    logits = np.log(np.clip(probabilities, 1e-7, 1)) + (0 if offsets is None else offsets)
    return float(f1_score(y, logits.argmax(axis=1), average="macro", labels=sorted(set(y.tolist()))))


def class_weights(y) -> np.ndarray:
    """Each row's weight so that every class counts the same (the rows' weighted log losses average to
    the balanced log loss, a criterion weighing classes as macro-F1 does; tried in 0.17, not kept)."""
    _, position, counts = np.unique(y, return_inverse=True, return_counts=True)
    return len(y) / (len(counts) * counts[position])


def greedy_from_the_best(held: list, y_held, size: int, rounds: int = 25) -> dict:
    """fusionapp 0.13-0.16's rule: start from the trial with the lowest held-out log loss, then add
    (with replacement) the one that most lowers the mixture's, while one does."""
    from fusionapp.search.selection import row_losses

    def loss(mixed):
        return row_losses(y_held, mixed).mean()

    counts = {min(range(len(held)), key=lambda i: loss(held[i])): 1}
    current = loss(held[next(iter(counts))])
    for _ in range(rounds):
        total = sum(counts.values())
        base = sum(count * held[i] for i, count in counts.items())
        allowed = range(len(held)) if len(counts) < size else sorted(counts)
        scores = {i: loss((base + held[i]) / (total + 1)) for i in allowed}
        choice = min(scores, key=lambda i: (scores[i], i))
        if scores[choice] >= current - 1e-6:
            break
        counts[choice] = counts.get(choice, 0) + 1
        current = scores[choice]
    total = sum(counts.values())
    return {i: count / total for i, count in counts.items()}


def rules(table: dict, size: int) -> dict:
    """Each rule's test macro-F1, as chosen and with per-class offsets tuned on the held-out rows."""
    from unittest import mock

    from fusionapp.posthoc.decisions import tune_offsets
    from fusionapp.search import selection
    from fusionapp.search.selection import greedy_selection, mixture, row_losses

    def balanced_losses(y, probabilities):
        return row_losses(y, probabilities) * class_weights(y)

    y_held, y_test, numbers = table["y_held"], table["y_test"], sorted(table["trials"])
    scores = {f"trial {n}": _macro_f1(y_test, table["trials"][n]["test"]) for n in numbers}
    held = [table["trials"][n]["held"] for n in numbers]
    test = [table["trials"][n]["test"] for n in numbers]
    with mock.patch.object(selection, "row_losses", balanced_losses):
        guarded_balanced = greedy_selection(held, y_held, False, size).weights
    choices = {
        "greedy from the best (0.16)": greedy_from_the_best(held, y_held, size),
        "greedy_selection (0.17)": greedy_selection(held, y_held, False, size).weights,
        "greedy_selection on the balanced log loss": guarded_balanced,
        "every trial, equal shares": {i: 1 / len(numbers) for i in range(len(numbers))},
        "the best held-out macro-F1": {max(range(len(numbers)), key=lambda i: _macro_f1(y_held, held[i])): 1.0},
    }
    for name, weights in choices.items():
        mixed_held, mixed_test = mixture(held, weights), mixture(test, weights)
        scores[name] = _macro_f1(y_test, mixed_test)
        offsets = tune_offsets(y_held, np.log(np.clip(mixed_held, 1e-7, 1)))
        scores[f"{name} + offsets"] = _macro_f1(y_test, mixed_test, offsets)
    return scores


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="search runs kept by benchmarks/search.py --keep")
    parser.add_argument("--size", type=int, default=5, help="the greedy selection's most members (balanced: 5)")
    args = parser.parse_args(argv)
    results = {}
    for run in args.runs:
        results[run] = rules(trial_table(run), args.size)
        print(json.dumps({"run": run, **{name: round(score, 4) for name, score in results[run].items()}}), flush=True)
    common = [name for name in results[args.runs[0]] if not name.startswith("trial ")]
    print("\nmean test macro-F1 over the runs:")
    for name in common:
        print(f"  {name}: {statistics.mean(scores[name] for scores in results.values()):.4f}")
    return results


if __name__ == "__main__":
    main()
