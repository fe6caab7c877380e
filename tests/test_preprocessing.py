"""The preprocessor: adapted on training rows, raw inputs -> network tensors, saved as layer state."""

import json
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from fusionapp.settings import ModelSettings, TextSettings
from fusionapp.model import NetworkSpec, build_classifier
from fusionapp.preprocessing import Preprocessor, adapt, infer_tabular_kinds
from fusionapp.preprocessing.configs import TabularColumn, TextConfig, TextInput
from fusionapp.preprocessing.raw_values import missing_inputs, parse_number


def make(texts=None, tabular=None, labels=None, kinds=None, text=TextSettings(tokens="words"), encoder="cnn",
         image=False):
    n = len(texts) if texts is not None else len(next(iter(tabular.values())))
    modalities = (("image",) if image else ()) + (("text",) if texts is not None else ()) + \
        (("tabular",) if tabular else ())
    return adapt(labels or ["a", "b"] * (n // 2), texts, tabular or {}, modalities=modalities, image_size=16,
                 text=text.resolved(encoder), text_encoder=encoder, tabular_kinds=kinds or {})


def raw(**columns):
    return {name: tf.constant(values) for name, values in columns.items()}


def save_and_reload(preprocessor, tmp_path):
    """The preprocessor travels inside a model file, as in a run."""
    settings = ModelSettings(modalities=preprocessor.modalities, image_size=16, image_filters=(8,),
                             text_encoder="bag" if preprocessor.text and preprocessor.text.input == TextInput.TF_IDF
                             else "cnn")
    model = build_classifier(settings, NetworkSpec.for_preprocessor(preprocessor), preprocessor)
    model.save(tmp_path / "model.keras")
    return keras.saving.load_model(tmp_path / "model.keras", safe_mode=True).preprocessor


def test_word_ids_round_trip_through_the_saved_vocabulary(tmp_path):
    prep = make(["The cat sat", "the DOG sat!", "a cat, a dog", "unseen? no"],
                text=TextSettings(tokens="words", sequence_length=5))
    vocabulary = [str(t) for t in prep.text_vectorizer.get_vocabulary()]
    assert {"cat", "sat", "dog"} <= set(vocabulary) and vocabulary[:2] == ["", "[UNK]"]
    ids = prep.encode_text(tf.constant(["the cat sat", "zebra cat"])).numpy()
    assert ids.shape == (2, 5)
    assert [vocabulary[i] for i in ids[0][:3]] == ["the", "cat", "sat"] and ids[0][3:].tolist() == [0, 0]
    assert ids[1][0] == 1  # out of vocabulary
    restored = save_and_reload(prep, tmp_path)
    np.testing.assert_array_equal(restored.encode_text(tf.constant(["the cat sat", "zebra cat"])).numpy(), ids)


def test_state_is_layer_state_not_config():
    prep = make([f"word{i} common" for i in range(200)], text=TextSettings(tokens="words"), encoder="bag")
    config = json.dumps(prep.get_config())
    assert "word17" not in config and len(config) < 2000
    assert prep.text.vocabulary_size == len(prep.text_vectorizer.get_vocabulary())


def test_sublinear_tf_idf_vectors(tmp_path):
    texts = ["red red red shoe", "blue shoe", "red hat", "green hat"]
    prep = make(texts, text=TextSettings(tokens="words", ngrams=1), encoder="bag")
    vocabulary = [str(t) for t in prep.text_vectorizer.get_vocabulary()]
    idf = np.asarray(prep.idf)
    documents = {word: sum(word in text.split() for text in texts) for word in vocabulary[1:]}
    np.testing.assert_allclose(idf[1:], [math.log(1 + 4 / (1 + documents[w])) for w in vocabulary[1:]], rtol=1e-5)
    assert idf[0] == pytest.approx(idf[1:].mean())  # the out-of-vocabulary slot
    vectors = prep.encode_text(tf.constant(["red red shoe", "", "purple"])).numpy()
    expected = np.zeros(len(vocabulary))
    expected[vocabulary.index("red")] = math.log(3) * idf[vocabulary.index("red")]
    expected[vocabulary.index("shoe")] = math.log(2) * idf[vocabulary.index("shoe")]
    np.testing.assert_allclose(vectors[0], expected / np.linalg.norm(expected), rtol=1e-5)
    assert not vectors[1].any()  # an empty text stays all zeros: "missing", not a unit vector
    assert vectors[2][0] == pytest.approx(1.0)  # only the out-of-vocabulary slot
    restored = save_and_reload(prep, tmp_path)
    np.testing.assert_allclose(restored.encode_text(tf.constant(["red red shoe"])).numpy()[0], vectors[0], rtol=1e-6)


def test_character_n_grams_for_text_without_spaces(tmp_path):
    texts = ["我爱猫", "猫爱我", "狗很好", "我的狗"]
    prep = make(texts, text=TextSettings(tokens="chars", ngrams=2), encoder="bag")
    vocabulary = [str(t) for t in prep.text_vectorizer.get_vocabulary()]
    assert {"我", "爱", "猫", "我 爱"} <= set(vocabulary)
    vector = prep.encode_text(tf.constant(["我爱"])).numpy()[0]
    assert {vocabulary[i] for i in np.flatnonzero(vector)} == {"我", "爱", "我 爱"}
    restored = save_and_reload(prep, tmp_path)
    np.testing.assert_allclose(restored.encode_text(tf.constant(["我爱"])).numpy()[0], vector, rtol=1e-6)


def test_line_breaks_and_separators_in_texts_survive_the_saved_vocabulary(tmp_path):
    # Vocabulary assets are written one entry per line: any line break inside an n-gram would
    # shift every later entry after reloading.
    texts = ["a\u2028b c", "x\ny\r\nz", "p\x85q\x0br", "tab\tbed", "a b"]
    prep = make(texts + ["filler"], text=TextSettings(tokens="chars", ngrams=3), encoder="bag")
    probe = tf.constant(["a\u2028b", "x\ny", "p\x85q", "tab\tbed"])
    restored = save_and_reload(prep, tmp_path)
    assert [str(t) for t in restored.text_vectorizer.get_vocabulary()] == \
        [str(t) for t in prep.text_vectorizer.get_vocabulary()]
    np.testing.assert_allclose(restored.encode_text(probe).numpy(), prep.encode_text(probe).numpy(), rtol=1e-6)
    # and they are spaces to the model
    np.testing.assert_allclose(prep.encode_text(tf.constant(["a\u2028b"])).numpy(),
                               prep.encode_text(tf.constant(["a b"])).numpy())


def test_vocabulary_is_bounded():
    prep = make([f"word{i}" for i in range(100)], text=TextSettings(tokens="words", max_tokens=20))
    assert prep.text.vocabulary_size == 20


def test_tabular_normalisation_missing_values_and_categories(tmp_path):
    cells = {"price": ["10", "", "30", "nan"], "shop": ["x", "y ", "x", "NA"]}
    kinds = infer_tabular_kinds(cells, {})
    assert kinds == {"price": "numeric", "shop": "categorical"}
    prep = make(tabular=cells, kinds=kinds)
    assert prep.tabular[1].categories == ("x", "y")  # stripped; "NA" is a missing value, not a category
    assert NetworkSpec.for_preprocessor(prep).tabular_width == 2 + 3
    new = raw(tabular_price=np.array([40.0, np.nan], "float32"), tabular_shop=np.array(["y", "never-seen"]))
    # [normalised price, missing flag, unknown, x, y]; mean 20, std 10
    expected = [[2.0, 0.0, 0, 0, 1], [0.0, 1.0, 1, 0, 0]]
    np.testing.assert_allclose(prep.encode_tabular(new).numpy(), expected)
    np.testing.assert_allclose(save_and_reload(prep, tmp_path).encode_tabular(new).numpy(), expected)


def test_a_category_column_empty_in_training_has_the_unknown_slot_only():
    prep = make(tabular={"brand": ["", "null", "", "NA"]}, kinds={"brand": "categorical"})
    np.testing.assert_allclose(prep.encode_tabular(raw(tabular_brand=np.array(["acme", ""]))).numpy(), [[1.0], [1.0]])


def test_forced_kind_wins_over_inference():
    assert infer_tabular_kinds({"zip": ["10115", "20095"]}, {"zip": "categorical"}) == {"zip": "categorical"}
    assert infer_tabular_kinds({"zip": ["10115", "20095"]}, {}) == {"zip": "numeric"}


def test_labels_are_sorted_and_indexed():
    prep = make(["x"] * 4, labels=["dog", "cat", "dog", "cat"])
    assert prep.class_names == ["cat", "dog"]
    np.testing.assert_array_equal(prep.label_indices(["dog", "cat"]), [1, 0])


def test_one_label_only_is_refused():
    from fusionapp.errors import FusionError

    with pytest.raises(FusionError, match="only one label"):
        make(["x", "y"], labels=["a", "a"])


def test_what_counts_as_missing():
    raw_inputs = raw(image=np.array([b"", b"\xff\xd8", b"", b""], dtype=object),
                     text=np.array(["", "hi", " \u3000\n", "x"], dtype=object),
                     tabular_price=np.array([np.nan, 1.0, np.nan, np.nan], "float32"),
                     tabular_shop=np.array(["null", "", " NA ", "acme"], dtype=object))
    names = missing_inputs(raw_inputs, ("image", "text", "tabular"),
                           [("price", "numeric"), ("shop", "categorical")]).numpy()
    assert [n.decode() for n in names] == ["image text tabular", "", "image text tabular", "image"]
    assert math.isnan(parse_number(" nan ")) and math.isnan(parse_number(None)) and parse_number("1e3") == 1000.0
    with pytest.raises(ValueError):
        parse_number("cheap")


def test_encode_decodes_images_and_blanks_missing_ones():
    from conftest import image_bytes

    prep = make(["a b", "c d"], image=True)
    red = np.zeros((20, 30, 3), np.uint8)
    red[..., 0] = 255
    inputs = prep.encode(raw(image=np.array([image_bytes(red, "PNG"), b""], dtype=object),
                             text=np.array(["a", ""], dtype=object)))
    assert inputs["image"].shape == (2, 16, 16, 3) and inputs["image"].dtype == tf.uint8
    assert inputs["image"].numpy()[0, ..., 0].min() == 255 and not inputs["image"].numpy()[1].any()


def test_preprocessor_rebuilds_from_its_config():
    prep = make(tabular={"price": ["1", "2"], "shop": ["x", "y"]}, kinds={"price": "numeric", "shop": "categorical"})
    clone = Preprocessor.from_config(prep.get_config())
    assert clone.tabular == prep.tabular and clone.class_names == prep.class_names
    assert NetworkSpec.for_preprocessor(clone) == NetworkSpec.for_preprocessor(prep)


def test_the_configs_read_and_write_the_dicts_of_earlier_model_files():
    """model.keras keeps each per-input config as the plain dict earlier versions wrote; read back,
    it is typed, and written again as that dict."""
    text = {"tokens": "chars", "ngrams": 5, "sequence_length": 64, "max_chars": 10000, "output": "tf_idf",
            "vocabulary_size": 40}
    tabular = [{"name": "price", "kind": "numeric"}, {"name": "shop", "kind": "categorical", "categories": ["x"]}]
    prep = make(["ab cd", "ef gh"], tabular={"price": ["1", "2"], "shop": ["x", "y"]},
                kinds={"price": "numeric", "shop": "categorical"}, text=TextSettings(), encoder="bag")
    config = {**prep.get_config(), "text": text, "tabular": tabular, "wide_text": None}
    clone = Preprocessor.from_config(json.loads(json.dumps(config)))
    assert clone.text == TextConfig(TextInput.TF_IDF, 64, 10000, "chars", 5, 40)
    assert clone.tabular == (TabularColumn("price", "numeric"), TabularColumn("shop", "categorical", ("x",)))
    assert clone.get_config()["text"] == text and clone.get_config()["tabular"] == tabular
    assert clone.tabular_widths() == [2, 2]
    # Read by the saved keys too, as code written against the dicts reads them.
    assert clone.text["output"] == "tf_idf" and {**clone.text} == text and clone.text.get("backbone") is None
    assert [dict(column) for column in clone.tabular] == tabular
