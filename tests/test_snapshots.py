"""Hugging Face snapshots that ship their tokenizer only as tokenizer.json (WordPiece, BPE, Unigram)
read through a shadow folder with the files KerasHub's converters expect; sentence-transformers
pooling and normalisation read from the snapshot."""

import json
import os

import numpy as np
import pytest

from fusionapp.errors import FusionError
from fusionapp.pretrained.snapshots import loadable_folder, sentence_pooling
from text_presets import tiny_bert_snapshot

TEXTS = ["The cat and the dog", "a happy new round angular", "Zebra 42 quirks!", "naïve café costs 3€"]


def test_a_wordpiece_snapshot_tokenizes_as_with_its_vocab_txt(tmp_path):
    import keras_hub

    with_vocab = tiny_bert_snapshot(str(tmp_path / "vocab"))
    json_only = tiny_bert_snapshot(str(tmp_path / "json"), tokenizer_json=True)
    assert loadable_folder(with_vocab, "--text-backbone") == with_vocab
    shadow = loadable_folder(json_only, "--text-backbone")
    assert shadow != json_only and not os.path.exists(os.path.join(json_only, "vocab.txt"))
    expected = keras_hub.models.TextClassifierPreprocessor.from_preset(with_vocab, sequence_length=16)(TEXTS)
    got = keras_hub.models.TextClassifierPreprocessor.from_preset(shadow, sequence_length=16)(TEXTS)
    np.testing.assert_array_equal(got["token_ids"], expected["token_ids"])


def test_a_bpe_snapshot_tokenizes_as_its_tokenizer_json(tmp_path):
    tokenizers = pytest.importorskip("tokenizers")
    import keras_hub

    bpe = tokenizers.ByteLevelBPETokenizer()
    bpe.train_from_iterator(TEXTS * 20, vocab_size=300, min_frequency=1, special_tokens=["<s>", "<pad>", "</s>",
                                                                                       "<unk>", "<mask>"])
    folder = tmp_path / "roberta"
    folder.mkdir()
    bpe.save(str(folder / "tokenizer.json"))
    (folder / "config.json").write_text(json.dumps({"model_type": "roberta"}))
    shadow = loadable_folder(str(folder), "--text-backbone")
    ours = keras_hub.models.RobertaTokenizer(vocabulary=os.path.join(shadow, "vocab.json"),
                                             merges=os.path.join(shadow, "merges.txt"))
    for text in TEXTS:
        assert list(np.asarray(ours(text))) == bpe.encode(text).ids, text


def test_a_unigram_snapshot_becomes_the_sentencepiece_model_it_came_from(tmp_path):
    """Hugging Face writes XLM-RoBERTa's SentencePiece vocabulary in fairseq's order (<s> <pad> </s>
    <unk>, the pieces from SentencePiece's id 3, <mask>): rebuilt, it cuts texts as the original."""
    import base64
    import io

    import sentencepiece
    from sentencepiece import sentencepiece_model_pb2 as proto

    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(sentence_iterator=iter(TEXTS * 20), model_writer=model,
                                             vocab_size=60, model_type="unigram", character_coverage=1.0,
                                             hard_vocab_limit=False, minloglevel=2)
    original = proto.ModelProto.FromString(model.getvalue())
    vocabulary = ([["<s>", 0.0], ["<pad>", 0.0], ["</s>", 0.0], ["<unk>", 0.0]]
                  + [[piece.piece, piece.score] for piece in original.pieces[3:]] + [["<mask>", 0.0]])
    charsmap = base64.b64encode(original.normalizer_spec.precompiled_charsmap).decode()
    folder = tmp_path / "xlmr"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "xlm-roberta"}))
    (folder / "tokenizer.json").write_text(json.dumps({
        "model": {"type": "Unigram", "unk_id": 3, "vocab": vocabulary},
        "normalizer": {"type": "Sequence", "normalizers": [{"type": "Precompiled", "precompiled_charsmap": charsmap}]}}))
    shadow = loadable_folder(str(folder), "--text-backbone")
    rebuilt = sentencepiece.SentencePieceProcessor(model_file=os.path.join(shadow, "sentencepiece.bpe.model"))
    first = sentencepiece.SentencePieceProcessor(model_proto=model.getvalue())
    for text in TEXTS + ["unseen words 99"]:
        assert rebuilt.encode(text, out_type=str) == first.encode(text, out_type=str), text


def test_a_folder_with_neither_tokenizer_is_one_line(tmp_path):
    folder = tiny_bert_snapshot(str(tmp_path / "json"), tokenizer_json=True)
    os.remove(os.path.join(folder, "tokenizer.json"))
    with pytest.raises(FusionError, match="needs vocab.txt, or a tokenizer.json to read them from"):
        loadable_folder(folder, "--text-backbone")
    (tmp_path / "json" / "tokenizer.json").write_text(json.dumps({"model": {"type": "BPE", "vocab": {}}}))
    with pytest.raises(FusionError, match="not the bert tokenizer KerasHub reads"):
        loadable_folder(folder, "--text-backbone")


@pytest.mark.parametrize("pooling", ["mean", "cls", "max+l2", "mean+l2"])
def test_the_sentence_transformers_pooling_is_read(pooling, tmp_path):
    folder = tiny_bert_snapshot(str(tmp_path / "st"), tokenizer_json=True, pooling=pooling)
    assert sentence_pooling(folder) == pooling
    assert sentence_pooling(tiny_bert_snapshot(str(tmp_path / "plain"))) == "mean"


@pytest.mark.slow  # moved out of the default suite's 10 minutes (docs/tests.md)
@pytest.mark.integration
def test_a_tokenizer_json_snapshot_trains_and_answers_without_its_folder(demo_dir, demo_table, tmp_path, capsys):
    """Only tokenizer.json, CLS pooling and a Normalize module: the run pools as the snapshot says,
    and predict, serve and export give one answer once the folder is gone."""
    import shutil

    from conftest import TEXT_BACKBONE_SETTINGS, read_csv
    from fusionapp import train
    from fusionapp.runs.load import load_run
    from test_text_backbones import assert_one_answer

    folder = tiny_bert_snapshot(str(tmp_path / "snapshot"), tokenizer_json=True, pooling="cls+l2")
    run = train(demo_table, str(tmp_path / "run"), epochs=1, verbose=0, text_backbone=folder,
                **TEXT_BACKBONE_SETTINGS)
    shutil.rmtree(folder)
    config = json.load(open(os.path.join(run, "config.json")))
    assert config["text_backbone"]["pooling"] == "cls+l2"
    loaded = load_run(run)
    assert loaded.model.spec.text_pooling == "cls+l2"
    rows = [row for row in read_csv(demo_dir / "demo.csv") if row["split"] == "test"][:4]
    for row in rows:
        row["image"] = str(demo_dir / row["image"])
    table, _ = assert_one_answer(run, rows, tmp_path, capsys, export_in_process=False)
    from conftest import exported_outputs

    exported = exported_outputs(tmp_path / "export", rows, tmp_path, prelude="import tensorflow_text\n")
    np.testing.assert_allclose(exported["probabilities"], table, atol=1e-5)
