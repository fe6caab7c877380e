import numpy as np
import pytest

from fusionapp.config import Columns, TextSettings
from fusionapp.data.examples import Examples
from fusionapp.preprocessing import Preprocessing, adapt, infer_tabular_kinds


def examples(texts, tabular=None, labels=None):
    n = len(texts)
    return Examples(source="t.csv", row_numbers=np.arange(1, n + 1), ids=[str(i) for i in range(n)], images=None,
                    images_are_files=True, texts=texts, tabular=tabular or {}, labels=labels or ["a", "b"] * (n // 2),
                    splits=None)


def test_word_vectorisation_round_trips_through_the_saved_vocabulary():
    train = examples(["The cat sat", "the DOG sat!", "a cat, a dog", "unseen? no"])
    prep = adapt(train, TextSettings(tokens="words", sequence_length=5), 32, ("text",), {})
    assert "cat" in prep.vocabulary and "sat" in prep.vocabulary and "dog" in prep.vocabulary
    restored = Preprocessing.from_dict(prep.to_dict())
    ids = restored.text_vectorizer()(["the cat sat", "zebra cat"]).numpy()
    vocabulary = ["", "[UNK]"] + prep.vocabulary
    assert ids.shape == (2, 5)
    assert [vocabulary[i] for i in ids[0][:3]] == ["the", "cat", "sat"] and ids[0][3:].tolist() == [0, 0]
    assert ids[1][0] == 1  # out of vocabulary
    np.testing.assert_array_equal(ids, prep.text_vectorizer()(["the cat sat", "zebra cat"]).numpy())


def test_character_vectorisation_for_text_without_spaces():
    train = examples(["我爱猫", "猫爱我", "狗", "我"])
    prep = adapt(train, TextSettings(tokens="chars", sequence_length=4), 32, ("text",), {})
    assert {"我", "爱", "猫"} <= set(prep.vocabulary)
    ids = prep.text_vectorizer()(["我爱猫"]).numpy()[0]
    vocabulary = ["", "[UNK]"] + prep.vocabulary
    assert [vocabulary[i] for i in ids[:3]] == ["我", "爱", "猫"] and ids[3] == 0


def test_vocabulary_is_bounded():
    train = examples([f"word{i}" for i in range(100)])
    prep = adapt(train, TextSettings(max_tokens=20), 32, ("text",), {})
    assert prep.vocabulary_size == 20


def test_tabular_normalisation_with_missing_values_and_categories():
    cells = {"price": ["10", "", "30", "nan"], "shop": ["x", "y", "x", ""]}
    train = examples(["a"] * 4, tabular=cells)
    columns = Columns(tabular=("price", "shop"))
    kinds = infer_tabular_kinds(train, columns)
    assert kinds == {"price": "numeric", "shop": "categorical"}
    prep = adapt(train, TextSettings(), 32, ("tabular",), kinds)
    price = prep.tabular[0]
    assert price.mean == pytest.approx(20.0) and price.std == pytest.approx(10.0)
    new = examples(["a", "b"], tabular={"price": ["40", ""], "shop": ["y", "never-seen"]})
    matrix = Preprocessing.from_dict(prep.to_dict()).encode_tabular(new)
    # [normalised price, missing flag, unknown, x, y]
    np.testing.assert_allclose(matrix, [[2.0, 0.0, 0, 0, 1], [0.0, 1.0, 1, 0, 0]])


def test_forced_kind_wins_over_inference():
    train = examples(["a", "b"], tabular={"zip": ["10115", "20095"]})
    assert infer_tabular_kinds(train, Columns(tabular=("zip:categorical",))) == {"zip": "categorical"}


def test_labels_are_sorted_and_indexed():
    prep = adapt(examples(["a"] * 4, labels=["dog", "cat", "dog", "cat"]), TextSettings(), 32, (), {})
    assert prep.class_names == ["cat", "dog"]
    np.testing.assert_array_equal(prep.label_indices(["dog", "cat"]), [1, 0])
