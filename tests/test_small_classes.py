"""A class too small to learn or to score is named before training; --min-class-rows drops it (or,
with --on-bad-row error, refuses it) with a count of the rows dropped."""

import json
import re

import pytest

from conftest import assert_user_error, run_cli, write_csv

pytestmark = pytest.mark.integration

WORDS = {"red": "crimson scarlet ruby", "blue": "azure navy cobalt", "green": "emerald olive lime"}


@pytest.fixture(scope="module")
def one_row_class(tmp_path_factory):
    """Three classes of 24 rows, and "Smart Casual" with one training row and no validation row."""
    rows = [{"text": f"{word} item {i}", "label": label, "split": "val" if i % 4 == 0 else "train"}
            for label, words in WORDS.items() for i in range(24) for word in [words.split()[i % 3]]]
    rows.append({"text": "a smart casual jacket", "label": "Smart Casual", "split": "train"})
    return write_csv(tmp_path_factory.mktemp("small") / "table.csv", rows)


def test_a_one_row_class_is_named_before_training(one_row_class, tmp_path, capsys):
    code, out, err = run_cli(capsys, "train", one_row_class, "--out", tmp_path / "run", "--epochs", 1)
    assert code == 0, err
    assert "Warning: 1 classes have fewer than 5 training rows: Smart Casual (1)" in out
    assert "Warning: no validation rows of Smart Casual" in out
    metrics = json.load(open(tmp_path / "run" / "metrics.json"))
    assert metrics["absent_classes"] == ["Smart Casual"]


def test_min_class_rows_drops_the_class_and_counts_its_rows(one_row_class, tmp_path, capsys):
    code, out, err = run_cli(capsys, "train", one_row_class, "--out", tmp_path / "run", "--epochs", 1,
                             "--min-class-rows", 2)
    assert code == 0, err
    assert "Dropped 1 rows of 1 classes with fewer than 2 training rows (--min-class-rows): Smart Casual (1)" in out
    config = json.load(open(tmp_path / "run" / "config.json"))
    assert config["class_names"] == sorted(WORDS) and config["n_skipped"] == 1
    code, _, err = run_cli(capsys, "train", one_row_class, "--out", tmp_path / "strict", "--min-class-rows", 2,
                           "--on-bad-row", "error")
    assert_user_error(code, err, "classes with fewer than 2 training rows", "Smart Casual (1)")
    assert not (tmp_path / "strict").exists()


def test_every_stage_after_the_network_says_what_it_does(one_row_class, tmp_path, capsys):
    """No silence after the last epoch: the wide path's folds, the scoring and the saving each say so."""
    code, out, err = run_cli(capsys, "train", one_row_class, "--out", tmp_path / "run", "--epochs", 1)
    assert code == 0, err
    lines = out.splitlines()
    after = lines.index(next(line for line in lines if line.startswith("After the network: its logits")))
    expected = ["Wide path: a linear model on", "  fold 1/5 fitted", "  fold 5/5 fitted", "Wide path: linear model",
                "Scoring the validation rows", r"After the network: [\d.]+ s", "Saving the run to"]
    found = [next((i for i, line in enumerate(lines[after:]) if re.match(start, line)), None) for start in expected]
    assert None not in found and found == sorted(found), (found, lines[after:])


def test_the_validation_rows_split_into_a_stopping_half_and_a_tuning_half():
    from fusionapp.training.training_rows import stop_and_tune

    labels = ["a"] * 11 + ["b"] * 6 + ["c"]
    stop, tune = stop_and_tune(labels, seed=3, multi_label=False)
    assert sorted([*stop, *tune]) == list(range(len(labels))) and not set(stop) & set(tune)
    for label in ("a", "b"):
        counts = [sum(labels[i] == label for i in half) for half in (stop, tune)]
        assert abs(counts[0] - counts[1]) <= 1 and min(counts) > 0
    again = stop_and_tune(labels, seed=3, multi_label=False)
    assert (again[0] == stop).all() and (again[1] == tune).all()
    stop, tune = stop_and_tune([None] * 9, seed=0, multi_label=True)
    assert len(stop) + len(tune) == 9 and not set(stop) & set(tune)
    stop, tune = stop_and_tune(labels, seed=3, multi_label=False, multiple=4)  # replicas share its batches
    assert len(stop) % 4 == 0 and sorted([*stop, *tune]) == list(range(len(labels)))


def test_the_blend_is_chosen_on_rows_early_stopping_did_not_see(one_row_class, tmp_path, monkeypatch, capsys):
    from fusionapp.posthoc import wide

    seen = {}
    choose = wide.choose_alpha

    def spying(y_val, deep, linear, present, multi_label):
        seen["rows"] = len(y_val)
        return choose(y_val, deep, linear, present, multi_label)

    monkeypatch.setattr(wide, "choose_alpha", spying)
    from fusionapp.training import network_fit

    datasets = network_fit._datasets

    def spying_datasets(phase, start_step):
        seen["stop_rows"] = len(phase.val_rows) if phase.stop is None else len(phase.stop)
        return datasets(phase, start_step)

    monkeypatch.setattr(network_fit, "_datasets", spying_datasets)
    code, out, err = run_cli(capsys, "train", one_row_class, "--out", tmp_path / "run", "--epochs", 1)
    assert code == 0, err
    config = json.load(open(tmp_path / "run" / "config.json"))
    assert config["n_val_stop"] + config["n_val_tune"] == config["n_val"] == 18
    assert seen["rows"] == config["n_val_tune"] == 9
    assert seen["stop_rows"] == config["n_val_stop"] == 9  # early stopping read its half alone (not in 0.13-0.15)
    assert f"{config['n_val_stop']} decide early stopping and 9 what is fitted after the network" in out
