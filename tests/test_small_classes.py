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
