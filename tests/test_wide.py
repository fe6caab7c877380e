"""The wide path: a converged linear model on its own character n-grams and the tabular values,
blended with the network's logits; at alpha = 1 the model is exactly that linear model."""

import dataclasses
import json
import os

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from conftest import TINY_MODEL, read_csv, run_cli, write_csv
from fusionapp.settings import ModelSettings, TextSettings
from fusionapp.data.examples import Examples
from fusionapp.inference.raw_inference import predict_examples
from fusionapp.model import NetworkSpec, build_classifier
from fusionapp.model.head import LogitBlend, WideLinear
from fusionapp.preprocessing import adapt
from fusionapp.posthoc.linear import cross_fit, fit_linear, fold_numbers
from fusionapp.posthoc.wide import fit_wide_path, wide_features, wide_sources

WORDS = ["apple", "river", "stone", "cloud"]


def word_examples(count, seed=0, noise_words=("the", "a", "my", "big", "old")):
    """Texts whose label is the one topic word in them; tabular noise beside it."""
    rng = np.random.default_rng(seed)
    labels = [WORDS[i % len(WORDS)] for i in range(count)]
    texts = [" ".join([*rng.choice(noise_words, 3), label, *rng.choice(noise_words, 2)]) for label in labels]
    price = [f"{rng.normal(50, 10):.2f}" for _ in range(count)]
    return Examples(source="words", row_numbers=np.arange(1, count + 1), ids=[str(i) for i in range(count)],
                    images=None, images_are_files=True, texts=texts, tabular={"price": price}, labels=labels,
                    splits=None)


def model_for(examples, text_encoder="bag", modalities=("text", "tabular"), wide_vocabulary=True):
    """`wide_vocabulary=False`: a preprocessor as fusionapp 0.8 adapted it, whose wide path read the
    network's TF-IDF text."""
    preprocessor = adapt(examples.labels, examples.texts, examples.tabular, modalities=modalities,
                         image_size=16, text=TextSettings(tokens="words").resolved(text_encoder),
                         text_encoder=text_encoder, tabular_kinds={"price": "numeric"}, wide=wide_vocabulary)
    settings = ModelSettings(modalities=modalities, text_encoder=text_encoder, branch_units=8, fusion_units=8)
    return build_classifier(settings, NetworkSpec.for_preprocessor(preprocessor), preprocessor)


def with_texts(examples, texts):
    return dataclasses.replace(examples, texts=list(texts))


@pytest.mark.parametrize("classes", [2, 4])
def test_fitted_linear_layer_gives_scikit_learns_probabilities(classes):
    rng = np.random.default_rng(classes)
    features = rng.normal(size=(120, 6))
    labels = rng.integers(0, classes, 120)
    kernel, bias = fit_linear(features, labels, classes, "balanced", 4.0)
    reference = LogisticRegression(C=4.0, class_weight="balanced", max_iter=1000).fit(features, labels)
    logits = features @ kernel + bias
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(probabilities, reference.predict_proba(features), atol=1e-5)


def test_a_class_absent_from_the_rows_stays_unlikely_and_the_others_match_scikit_learn():
    rng = np.random.default_rng(7)
    features = rng.normal(size=(100, 5))
    labels = np.where(features[:, 0] > 0, 2, 0)  # classes 0 and 2 of three
    kernel, bias = fit_linear(features, labels, 3, "none", 4.0)
    logits = features @ kernel + bias
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    reference = LogisticRegression(C=4.0, max_iter=1000).fit(features, labels).predict_proba(features)
    np.testing.assert_allclose(probabilities[:, [0, 2]], reference, atol=1e-5)
    assert probabilities[:, 1].max() < 1e-6


def test_at_alpha_one_the_model_is_the_linear_model():
    examples = word_examples(80)
    model = model_for(examples)
    preprocessor = model.preprocessor
    features, _ = wide_features(preprocessor, examples)
    # the wide path reads its own n-grams' TF-IDF (id 0: none), then the tabular encodings
    spec = NetworkSpec.for_preprocessor(preprocessor)
    assert features.shape[1] == spec.wide_width + 2
    assert features.shape[1] > spec.text_width + 2  # more than the network's words
    labels = preprocessor.label_indices(examples.labels)
    kernel, bias = fit_linear(features, labels, preprocessor.num_classes, "none", 4.0)
    model.set_wide_path(kernel, bias)
    model.set_blend(1.0)
    reference = LogisticRegression(C=4.0, max_iter=1000).fit(features, labels)
    np.testing.assert_allclose(predict_examples(model, examples).probabilities, reference.predict_proba(features),
                               atol=1e-4)


def test_rows_without_text_keep_the_networks_logits():
    """The linear model never saw a row without text (the network did, through modality dropout),
    so there the blend keeps the deep logits, whatever alpha."""
    examples = word_examples(80)
    model = model_for(examples)
    features, present = wide_features(model.preprocessor, examples)
    assert present.all()
    kernel, bias = fit_linear(features, model.preprocessor.label_indices(examples.labels), 4, "none", 4.0)
    model.set_wide_path(kernel, bias)
    blank = with_texts(examples, ["", "   "] * 40)
    assert not wide_features(model.preprocessor, blank)[1].any()
    deep = predict_examples(model, blank).logits
    with_text = predict_examples(model, examples).logits
    model.set_blend(1.0)
    np.testing.assert_allclose(predict_examples(model, blank).logits, deep, atol=1e-6)
    assert np.abs(predict_examples(model, examples).logits - with_text).max() > 1.0  # where text is, it blends


def test_each_rows_held_out_logits_come_from_a_fit_without_it_and_the_final_fit_is_scikit_learns():
    rng = np.random.default_rng(5)
    features = rng.normal(size=(150, 6))
    labels = (features[:, 0] + rng.normal(scale=0.5, size=150) > 0).astype(int) + 2 * (features[:, 1] > 0)
    folds = fold_numbers(labels, 5, seed=0)
    assert sorted(np.bincount(folds)) == [30] * 5
    fitted = cross_fit(features, labels, 4, "balanced", [4.0], folds)
    for fold in range(5):
        reference = LogisticRegression(C=4.0, class_weight="balanced", max_iter=1000).fit(
            features[folds != fold], labels[folds != fold])
        held_out = fitted.held_out_logits[folds == fold]
        probabilities = np.exp(held_out) / np.exp(held_out).sum(axis=1, keepdims=True)
        np.testing.assert_allclose(probabilities, reference.predict_proba(features[folds == fold]), atol=1e-4)
    reference = LogisticRegression(C=4.0, class_weight="balanced", max_iter=1000).fit(features, labels)
    logits = features @ fitted.kernel + fitted.bias
    # Warm-started from the folds' mean, lbfgs stops sooner, within its tolerance of the same optimum.
    np.testing.assert_allclose(np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True),
                               reference.predict_proba(features), atol=5e-3)


def shifted_examples(count, seed, cue_words):
    """Texts whose label is the cue word at its index, among noise words."""
    rng = np.random.default_rng(seed)
    labels = [WORDS[i % len(WORDS)] for i in range(count)]
    texts = [" ".join([*rng.choice(["the", "a", "my"], 2), cue_words[WORDS.index(label)], *rng.choice(NOISE, 2)])
             for label in labels]
    return Examples(source="shift", row_numbers=np.arange(1, count + 1), ids=[str(i) for i in range(count)],
                    images=None, images_are_files=True, texts=texts, tabular={"price": ["1"] * count}, labels=labels,
                    splits=None)


NOISE = ["pear", "lake", "sand", "mist"]


def test_what_is_tuned_after_the_network_sees_the_linear_part_the_model_keeps():
    """The saved linear part learns from the validation rows too. Alpha (and the offsets and the
    temperature after it) must be chosen on that part's held-out logits of those rows, which know what
    the other validation rows teach: here the validation rows follow a cue the training rows show as
    noise, so a linear part fitted on the training rows alone knows nothing of them."""
    train_rows = shifted_examples(120, 1, WORDS)  # the topic word is the cue; the others are noise
    val_rows = shifted_examples(60, 2, NOISE)  # here the cue is the word the training rows had as noise
    model = model_for(train_rows)
    preprocessor = model.preprocessor
    deep = predict_examples(model, val_rows).logits
    fitted = fit_wide_path(model, train_rows, val_rows, deep, "none", seed=0)
    train_features, _ = wide_features(preprocessor, train_rows)
    val_features, _ = wide_features(preprocessor, val_rows)
    y_val = preprocessor.label_indices(val_rows.labels)
    kernel, bias = fit_linear(train_features, preprocessor.label_indices(train_rows.labels), 4, "none", 4.0)
    from sklearn.metrics import log_loss

    def loss(logits):
        return log_loss(y_val, np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True), labels=range(4))

    train_only = loss(val_features @ kernel + bias)
    assert fitted.record["val_log_loss"]["wide"] < train_only - 0.3, (fitted.record, train_only)
    assert fitted.record["alpha"] > 0.5
    # The model answers with the final fit, which learnt from the validation rows as well.
    assert (predict_examples(model, val_rows).logits.argmax(axis=1) == y_val).mean() > 0.95


def test_the_wide_path_reads_what_it_can_use_as_it_is():
    examples = word_examples(8)
    # Its own n-grams, whatever the network's text encoder.
    cnn = model_for(examples, text_encoder="cnn")
    assert wide_sources(cnn.preprocessor) == ["character n-grams", "tabular values"]
    assert wide_features(cnn.preprocessor, examples)[0].shape[1] == cnn.spec.wide_width + 2
    # A 0.8 preprocessor (no vocabulary of the wide path's own): TF-IDF text, or with token ids
    # (no linear features) the tabular values only.
    old_cnn = model_for(examples, text_encoder="cnn", wide_vocabulary=False)
    assert old_cnn.head.wide.input.shape[-1] == 2
    assert wide_sources(old_cnn.preprocessor) == ["tabular values"]
    features, present = wide_features(old_cnn.preprocessor, examples)
    assert features.shape == (8, 2) and present.all()  # every row blends: no text in the wide path
    assert wide_sources(model_for(examples, wide_vocabulary=False).preprocessor) == ["TF-IDF text", "tabular values"]
    head = model_for(examples, text_encoder="cnn", modalities=("text",), wide_vocabulary=False).head
    assert head.wide is None and head.blend is None


def test_without_the_wide_path_there_is_no_wide_layer():
    examples = word_examples(8)
    model = model_for(examples)
    assert model.has_wide_path and model.head.blend in model.layers
    preprocessor = model.preprocessor
    plain = build_classifier(ModelSettings(modalities=("text", "tabular"), wide=False),
                             NetworkSpec.for_preprocessor(preprocessor), preprocessor)
    assert not plain.has_wide_path and plain.head.blend is None
    assert not {type(layer) for layer in plain.layers} & {WideLinear, LogitBlend}


def word_table(path, count, seed):
    examples = word_examples(count, seed=seed)
    splits = ["train", "train", "val", "test"]  # by blocks of four rows, so every split has every label
    rows = [{"text": text, "price": price, "label": label, "split": splits[(i // 4) % 4]}
            for i, (text, price, label) in enumerate(zip(examples.texts, examples.tabular["price"], examples.labels))]
    return write_csv(path, rows)


@pytest.mark.integration
def test_no_wide_trains_the_network_alone(tmp_path, capsys):
    table = word_table(tmp_path / "words.csv", 80, seed=2)
    code, out, err = run_cli(capsys, "train", table, "--out", tmp_path / "run", "--epochs", 1, "--no-wide")
    assert code == 0, err
    config = json.load(open(tmp_path / "run" / "config.json"))
    assert config["settings"]["model"]["wide"] is False and "wide" not in config and "Wide path" not in out
    from fusionapp.runs.load import load_run

    assert not load_run(str(tmp_path / "run")).model.has_wide_path


@pytest.mark.integration
def test_training_blends_in_the_linear_model_where_it_is_better(tmp_path):
    from fusionapp import train

    table = word_table(tmp_path / "words.csv", 400, seed=3)
    # One short epoch leaves the network far from solving it; the linear model solves it outright.
    run = train(table, str(tmp_path / "run"), epochs=1, learning_rate=1e-4, tabular_col=["price"], verbose=0,
                **{k: v for k, v in TINY_MODEL.items() if not k.startswith("image")})
    config = json.load(open(os.path.join(run, "config.json")))
    wide = config["wide"]
    assert wide["alpha"] >= 0.5
    assert wide["val_log_loss"]["blend"] < wide["val_log_loss"]["deep"] - 0.1
    assert json.load(open(os.path.join(run, "test_metrics.json")))["accuracy"] > 0.95
    history = read_csv(os.path.join(run, "history.csv"))
    assert float(history[0]["val_accuracy"]) < 0.9  # the network alone had not got there
    # the saved model carries the linear part and alpha, and scores as test_metrics.json says
    from fusionapp.evaluation.evaluate import evaluate
    from fusionapp.runs.load import load_run

    model = load_run(run).model
    assert float(model.head.blend.get_weights()[0]) == pytest.approx(wide["alpha"])
    assert np.abs(model.head.wide.get_weights()[0]).max() > 0.1
    report = evaluate(run, table, split="test", verbose=0)
    assert report == json.load(open(os.path.join(run, "test_metrics.json")))


def test_a_model_saved_before_the_wide_path_loads_without_one(tmp_path):
    """fusionapp 0.3.0 saved no `wide` setting: its models must load as they were, with no wide layers."""
    import zipfile

    import keras

    import fusionapp.preprocessing  # noqa: F401  (registers the classes model.keras holds)

    examples = word_examples(40)
    preprocessor = model_for(examples, wide_vocabulary=False).preprocessor
    model = build_classifier(ModelSettings(modalities=("text", "tabular"), branch_units=8, fusion_units=8,
                                           wide=False), NetworkSpec.for_preprocessor(preprocessor), preprocessor)
    path, old = str(tmp_path / "model.keras"), str(tmp_path / "old.keras")
    model.save(path)
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(old, "w") as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == "config.json":
                config = json.loads(data)
                del config["config"]["settings"]["wide"]
                data = json.dumps(config).encode()
            target.writestr(item, data)
    loaded = keras.saving.load_model(old, safe_mode=True)
    assert not loaded.has_wide_path and not {type(layer) for layer in loaded.layers} & {WideLinear, LogitBlend}
    np.testing.assert_allclose(predict_examples(loaded, examples).probabilities,
                               predict_examples(model, examples).probabilities, atol=1e-6)


@pytest.mark.parametrize("train,val", [(100, 60), (140, 20)])
def test_past_the_row_bound_the_linear_part_fits_training_rows_once(monkeypatch, train, val):
    """Past WIDE_MAX_ROWS labelled rows: one fit on (a sample of at most that many) training rows,
    every validation row held out. Also when the training rows alone are fewer than the bound."""
    from fusionapp.posthoc import wide

    monkeypatch.setattr(wide, "WIDE_MAX_ROWS", 120)
    train_rows, val_rows = word_examples(train, seed=1), word_examples(val, seed=2)
    model = model_for(train_rows)
    preprocessor = model.preprocessor
    fitted = fit_wide_path(model, train_rows, val_rows, predict_examples(model, val_rows).logits, "none", seed=0)
    size = min(train, 120)
    assert fitted.record["fitted_on"] == (f"a sample of {size} training rows" if size < train else "training rows")
    sample = np.sort(np.random.default_rng(0).choice(train, size, replace=False))
    features, _ = wide_features(preprocessor, train_rows.subset(sample))
    C = fitted.record["C"]
    kernel, bias = fit_linear(features, preprocessor.label_indices(train_rows.subset(sample).labels), 4, "none", C)
    text_kernel, tabular_kernel, saved_bias = model.head.wide.get_weights()

    def softmax(logits):
        logits = logits - logits.max(axis=1, keepdims=True)
        return np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)

    # Fitted warm from the grid's smaller C, lbfgs stops within its tolerance of the cold fit.
    saved = features @ np.concatenate([text_kernel, tabular_kernel]) + saved_bias
    np.testing.assert_allclose(softmax(saved), softmax(features @ kernel + bias), atol=5e-3)


def test_the_wide_paths_own_features_are_scikit_learns_character_tfidf():
    """Its vocabulary is TfidfVectorizer(analyzer="char", ngram_range=(1, 5), min_df=2)'s, and its
    row vectors that model's sublinear TF-IDF at unit length, for spaced and unspaced scripts alike."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    rng = np.random.default_rng(3)
    pieces = ["apple pie", "river stone", "東京の天気", "明日は晴れ", "cloud", "雨が降る"]
    texts = [" ".join(rng.choice(pieces, 3)) for _ in range(60)]
    examples = with_texts(word_examples(60), texts)
    preprocessor = model_for(examples).preprocessor
    ours = [str(token)[0::2] for token in preprocessor.wide_vectorizer.get_vocabulary()[1:]]
    reference = TfidfVectorizer(analyzer="char", ngram_range=(1, 5), min_df=2, sublinear_tf=True).fit(texts)
    assert set(ours) == set(reference.vocabulary_)
    assert any(len(gram) == 5 and "天気" in gram for gram in ours)  # n-grams across characters, not words
    expected = TfidfVectorizer(analyzer="char", ngram_range=(1, 5), sublinear_tf=True,
                               vocabulary={gram: i for i, gram in enumerate(ours)}).fit(texts).transform(texts)
    features, present = wide_features(preprocessor, examples)
    np.testing.assert_allclose(features[:, 1:len(ours) + 1].toarray(), expected.toarray(), atol=1e-5)
    assert present.all() and features[:, 0].nnz == 0  # the out-of-vocabulary slot weighs nothing


def test_the_chosen_C_is_the_grids_best_held_out_log_loss():
    from sklearn.metrics import log_loss

    rng = np.random.default_rng(11)
    features = rng.normal(size=(200, 40))  # two features that matter, 38 to overfit on
    labels = (features[:, 0] + rng.normal(scale=1.0, size=200) > 0).astype(int) + \
        2 * (features[:, 1] + rng.normal(scale=1.0, size=200) > 0)
    folds = fold_numbers(labels, 5, seed=0)
    grid = [0.001, 0.1, 100.0]
    fitted = cross_fit(features, labels, 4, "none", grid, folds)
    for C in grid:
        held_out = np.zeros((len(labels), 4))
        for fold in range(5):
            model = LogisticRegression(C=C, max_iter=1000).fit(features[folds != fold], labels[folds != fold])
            held_out[folds == fold] = model.predict_proba(features[folds == fold])
        assert fitted.held_out_loss[C] == pytest.approx(log_loss(labels, held_out), abs=1e-3)
    assert fitted.C == min(grid, key=fitted.held_out_loss.get)
    assert fitted.C == 0.1  # too strong and too weak both lose on rows they did not see
    reference = LogisticRegression(C=fitted.C, max_iter=1000).fit(features, labels)
    logits = features @ fitted.kernel + fitted.bias
    np.testing.assert_allclose(np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True),
                               reference.predict_proba(features), atol=5e-3)


def test_the_c_grid_goes_on_past_an_edge_while_the_held_out_loss_falls():
    """Separable rows want little regularisation, noise much: the grid extends past 16, or below 1,
    until the held-out loss turns, instead of stopping at its edge."""
    from fusionapp.posthoc.linear import C_GRID, GRID_STEP, MAX_EXTENSIONS, cross_fit, fold_numbers

    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 5))
    clean = (x[:, 0] > 0).astype(int)
    fitted = cross_fit(x, clean, 2, "none", C_GRID, fold_numbers(clean, 5, 0))
    assert max(fitted.held_out_loss) > max(C_GRID) and fitted.C > max(C_GRID)
    assert max(fitted.held_out_loss) <= max(C_GRID) * GRID_STEP ** MAX_EXTENSIONS
    noise = rng.integers(0, 2, 300)
    fitted = cross_fit(rng.normal(size=(300, 40)), noise, 2, "none", C_GRID, fold_numbers(noise, 5, 0))
    assert min(fitted.held_out_loss) < min(C_GRID) and fitted.C < min(C_GRID)


def test_past_the_row_bound_the_c_grid_goes_on_past_its_edge_too(monkeypatch):
    """The sample fit chooses C on the validation rows, and extends its grid as the cross-fit does."""
    from fusionapp.posthoc import wide

    monkeypatch.setattr(wide, "WIDE_MAX_ROWS", 120)
    monkeypatch.setattr(wide, "C_GRID", (1e-3,))  # far too strong for rows that words separate
    train_rows, val_rows = word_examples(140, seed=1), word_examples(40, seed=2)
    model = model_for(train_rows)
    fitted = fit_wide_path(model, train_rows, val_rows, predict_examples(model, val_rows).logits, "none", seed=0)
    tried = sorted(float(C) for C in fitted.record["C_log_loss"])
    assert tried[0] == 1e-3 and len(tried) > 1 and fitted.record["C"] > 1e-3


def test_the_grid_goes_past_its_edge_only_for_a_gain_beyond_the_rows_noise():
    """A C past the edge is taken where it beats the edge by more than a standard error of the rows'
    paired loss differences; one that is lower by less is recorded and not taken."""
    from fusionapp.posthoc.linear import GRID_STEP, MAX_EXTENSIONS, extend_grid

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 400)
    truth = np.eye(3)[labels]
    logits = {1.0: rng.normal(size=(400, 3))}
    losses, chosen = extend_grid(logits, labels, (1.0,),
                                 lambda C, edge: logits[edge] + 0.002 * truth + rng.normal(scale=0.05, size=(400, 3)))
    assert chosen == 1.0 and sorted(losses) == [1.0, GRID_STEP]
    logits = {1.0: logits[1.0]}
    losses, chosen = extend_grid(logits, labels, (1.0,), lambda C, edge: logits[edge] + 0.3 * truth)
    assert chosen == GRID_STEP ** MAX_EXTENSIONS and len(losses) == MAX_EXTENSIONS + 1
