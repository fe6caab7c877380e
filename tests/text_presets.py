"""Tiny pretrained-text-model folders built in the test itself (random weights, real formats): a
KerasHub BERT preset, a KerasHub XLM-RoBERTa preset with its SentencePiece vocabulary, and a Hugging
Face BERT snapshot written with safetensors. Nothing downloads."""

from __future__ import annotations

import io
import json
import os
import string

import numpy as np

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = ["angular", "round", "new", "used", "the", "a", "and", "of", "good", "bad", "sad", "happy", "cat", "dog"]
TINY = {"num_layers": 2, "num_heads": 2, "hidden_dim": 16, "intermediate_dim": 32, "max_sequence_length": 64}


def bert_vocabulary() -> list[str]:
    """Whole words, and every letter and digit alone and as a suffix piece, so any text tokenizes."""
    pieces = list(string.ascii_lowercase + string.digits + string.punctuation)
    return list(dict.fromkeys(SPECIAL + WORDS + pieces + [f"##{p}" for p in string.ascii_lowercase + string.digits]))


def tiny_bert_preset(folder: str, seed: int = 0) -> str:
    import keras
    import keras_hub

    keras.utils.set_random_seed(seed)
    vocabulary = bert_vocabulary()
    keras_hub.models.BertBackbone(vocabulary_size=len(vocabulary), **TINY).save_to_preset(folder)
    keras_hub.models.BertTokenizer(vocabulary=vocabulary, lowercase=True).save_to_preset(folder)
    return folder


def tiny_xlm_roberta_preset(folder: str, texts, seed: int = 0) -> str:
    """SentencePiece learnt on `texts` (any script: CJK included), and a 2-layer XLM-RoBERTa."""
    import keras
    import keras_hub
    import sentencepiece

    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(list(texts)), model_writer=model, vocab_size=120, model_type="unigram",
        character_coverage=1.0, hard_vocab_limit=False, max_sentencepiece_length=2, minloglevel=2, pad_id=0,
        unk_id=1, bos_id=2, eos_id=3)
    tokenizer = keras_hub.models.XLMRobertaTokenizer(proto=model.getvalue())
    keras.utils.set_random_seed(seed)
    keras_hub.models.XLMRobertaBackbone(vocabulary_size=tokenizer.vocabulary_size(), **TINY).save_to_preset(folder)
    tokenizer.save_to_preset(folder)
    return folder


def tiny_bert_snapshot(folder: str, seed: int = 0, tokenizer_json: bool = False, pooling: str | None = None) -> str:
    """A Hugging Face BERT snapshot: config.json, tokenizer_config.json, vocab.txt, model.safetensors.
    `tokenizer_json`: its vocabulary in tokenizer.json only (no vocab.txt, no do_lower_case), as
    current snapshots ship it; `pooling` ("cls", "max", "mean", "+l2" for a Normalize module): a
    sentence-transformers snapshot's 1_Pooling/config.json and modules.json."""
    from safetensors.numpy import save_file

    vocabulary = bert_vocabulary()
    hidden, inner, layers, positions = TINY["hidden_dim"], TINY["intermediate_dim"], TINY["num_layers"], 64
    os.makedirs(folder, exist_ok=True)
    config = {"model_type": "bert", "architectures": ["BertModel"], "vocab_size": len(vocabulary),
              "num_hidden_layers": layers, "num_attention_heads": TINY["num_heads"], "hidden_size": hidden,
              "intermediate_size": inner, "max_position_embeddings": positions, "type_vocab_size": 2}
    with open(os.path.join(folder, "config.json"), "w") as stream:
        json.dump(config, stream)
    if tokenizer_json:
        _write_json(os.path.join(folder, "tokenizer_config.json"), {"tokenizer_class": "BertTokenizer"})
        _write_json(os.path.join(folder, "tokenizer.json"), {
            "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                      "vocab": {token: i for i, token in enumerate(vocabulary)}},
            "normalizer": {"type": "BertNormalizer", "lowercase": True}})
    else:
        _write_json(os.path.join(folder, "tokenizer_config.json"),
                    {"do_lower_case": True, "tokenizer_class": "BertTokenizer"})
        with open(os.path.join(folder, "vocab.txt"), "w") as stream:
            stream.write("\n".join(vocabulary) + "\n")
    if pooling:
        kind, _, scaled = pooling.partition("+")
        os.makedirs(os.path.join(folder, "1_Pooling"), exist_ok=True)
        _write_json(os.path.join(folder, "1_Pooling", "config.json"), {
            "word_embedding_dimension": hidden, "pooling_mode_cls_token": kind == "cls",
            "pooling_mode_mean_tokens": kind == "mean", "pooling_mode_max_tokens": kind == "max"})
        modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                   {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
        if scaled:
            modules.append({"idx": 2, "name": "2", "path": "2_Normalize",
                            "type": "sentence_transformers.models.Normalize"})
        _write_json(os.path.join(folder, "modules.json"), modules)
    rng = np.random.default_rng(seed)
    shapes = {"embeddings.word_embeddings.weight": (len(vocabulary), hidden),
              "embeddings.position_embeddings.weight": (positions, hidden),
              "embeddings.token_type_embeddings.weight": (2, hidden), "pooler.dense.weight": (hidden, hidden),
              "pooler.dense.bias": (hidden,)}
    norms = ["embeddings.LayerNorm"]
    for i in range(layers):
        prefix = f"encoder.layer.{i}."
        for name in ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"):
            shapes.update({f"{prefix}{name}.weight": (hidden, hidden), f"{prefix}{name}.bias": (hidden,)})
        shapes.update({f"{prefix}intermediate.dense.weight": (inner, hidden), f"{prefix}intermediate.dense.bias": (inner,),
                       f"{prefix}output.dense.weight": (hidden, inner), f"{prefix}output.dense.bias": (hidden,)})
        norms += [f"{prefix}attention.output.LayerNorm", f"{prefix}output.LayerNorm"]
    tensors = {f"bert.{key}": (rng.normal(0, 0.05, shape)).astype(np.float32) for key, shape in shapes.items()}
    for norm in norms:
        tensors[f"bert.{norm}.weight"] = np.ones(hidden, np.float32)
        tensors[f"bert.{norm}.bias"] = np.zeros(hidden, np.float32)
    save_file(tensors, os.path.join(folder, "model.safetensors"))
    return folder


def _write_json(path: str, values) -> None:
    with open(path, "w") as stream:
        json.dump(values, stream)


def tiny_clip_preset(folder: str, seed: int = 0) -> str:
    """A 1-layer CLIP reading 32 px images: byte-level BPE over single characters (and "the"), its
    image converter's CLIP scaling, the vision and text encoders with their projections."""
    import keras
    import keras_hub

    vocabulary = {}
    # Every character of the demo's texts, as a real byte-level vocabulary has every byte: a piece
    # it lacks is the end token in eager calls (the feature cache) but -1 inside a tf.function
    # (the raw-input function), so the two would read different tokens.
    for piece in string.ascii_lowercase + string.digits + string.punctuation:
        vocabulary.setdefault(piece, len(vocabulary))
        vocabulary.setdefault(piece + "</w>", len(vocabulary))
    for piece in ("th", "the</w>", "<|startoftext|>", "<|endoftext|>"):
        vocabulary.setdefault(piece, len(vocabulary))
    tokenizer = keras_hub.models.CLIPTokenizer(vocabulary=vocabulary, merges=["t h", "th e</w>"],
                                               pad_with_end_token=True)
    converter = keras_hub.layers.CLIPImageConverter(image_size=(32, 32), scale=[1 / (255 * 0.27)] * 3,
                                                    offset=[-0.48 / 0.27] * 3)
    keras.utils.set_random_seed(seed)
    vision = keras_hub.models.CLIPVisionEncoder(patch_size=8, hidden_dim=16, num_layers=1, num_heads=2,
                                                intermediate_dim=32, image_shape=(32, 32, 3))
    text = keras_hub.models.CLIPTextEncoder(vocabulary_size=len(vocabulary), embedding_dim=16, hidden_dim=16,
                                            num_layers=1, num_heads=2, intermediate_dim=32, max_sequence_length=16)
    keras_hub.models.CLIPBackbone(vision, text, projection_dim=8).save_to_preset(folder)
    keras_hub.models.CLIPPreprocessor(tokenizer, converter, sequence_length=16).save_to_preset(folder)
    return folder


def tiny_siglip_preset(folder: str, texts, seed: int = 0) -> str:
    """A 1-layer SigLIP reading 32 px images, its SentencePiece vocabulary learnt on `texts`."""
    import keras
    import keras_hub
    import sentencepiece

    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(list(texts)), model_writer=model, vocab_size=60, model_type="unigram",
        hard_vocab_limit=False, max_sentencepiece_length=2, minloglevel=2, pad_id=-1, unk_id=0, bos_id=-1,
        eos_id=1, unk_piece="<unk>", eos_piece="</s>")
    tokenizer = keras_hub.models.SigLIPTokenizer(proto=model.getvalue())
    converter = keras_hub.layers.SigLIPImageConverter(image_size=(32, 32), scale=1 / 127.5, offset=-1.0)
    keras.utils.set_random_seed(seed)
    vision = keras_hub.models.SigLIPVisionEncoder(patch_size=8, hidden_dim=16, num_layers=1, num_heads=2,
                                                  intermediate_dim=32, image_shape=(32, 32, 3))
    text = keras_hub.models.SigLIPTextEncoder(vocabulary_size=tokenizer.vocabulary_size(), embedding_dim=16,
                                              hidden_dim=16, num_layers=1, num_heads=2, intermediate_dim=32,
                                              max_sequence_length=16, projection_dim=16)
    keras_hub.models.SigLIPBackbone(vision, text).save_to_preset(folder)
    keras_hub.models.SigLIPPreprocessor(tokenizer, converter, sequence_length=16).save_to_preset(folder)
    return folder
