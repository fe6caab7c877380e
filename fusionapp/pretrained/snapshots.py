"""Hugging Face snapshot folders as KerasHub reads them: many current snapshots ship their tokenizer
only as `tokenizer.json`, where KerasHub's converters expect `vocab.txt` (WordPiece: BERT,
DistilBERT), `vocab.json` + `merges.txt` (BPE: RoBERTa) or `sentencepiece.bpe.model` (Unigram:
XLM-RoBERTa). Such a folder is read through a shadow of it: a temporary folder of links to its files
and the missing tokenizer files, written from `tokenizer.json`. The user's folder is never written.

And how a sentence-transformers snapshot pools its vectors (`1_Pooling/config.json`: mean, CLS or
max) and whether it scales them to unit length (a `Normalize` module in `modules.json`).
"""

from __future__ import annotations

import atexit
import base64
import json
import os
import shutil
import tempfile

from fusionapp.compat import preset_config_file
from fusionapp.errors import FusionError, one_line

# What each architecture's KerasHub converter reads, by the snapshot's config.json model_type.
TOKENIZER_FILES = {"bert": ("vocab.txt",), "distilbert": ("vocab.txt",), "roberta": ("vocab.json", "merges.txt"),
                   "xlm-roberta": ("sentencepiece.bpe.model",)}
_SHADOWS: dict[str, str] = {}


def loadable_folder(folder: str, flag: str) -> str:
    """`folder`, or a shadow of it holding the tokenizer files its converter reads, made from its
    `tokenizer.json`; a one-line FusionError naming `flag` where neither is there."""
    # the snapshot's own config.json (KerasHub's name for it), not a run's
    model_type = _read_json(folder, preset_config_file(), flag).get("model_type", "")
    needed = [name for name in TOKENIZER_FILES.get(model_type, ()) if not os.path.exists(os.path.join(folder, name))]
    if not needed:
        return folder
    if folder in _SHADOWS:
        return _SHADOWS[folder]
    if not os.path.exists(os.path.join(folder, "tokenizer.json")):
        raise FusionError(f"{flag} {folder}: a {model_type} snapshot needs {' and '.join(needed)}, or a "
                          "tokenizer.json to read them from; it has neither")
    tokenizer = _read_json(folder, "tokenizer.json", flag)
    shadow = tempfile.mkdtemp(prefix="fusionapp-snapshot-")
    atexit.register(shutil.rmtree, shadow, True)
    for name in os.listdir(folder):
        os.symlink(os.path.join(folder, name), os.path.join(shadow, name))
    try:
        _WRITERS[model_type](tokenizer, folder, shadow)
    except (KeyError, TypeError, ValueError) as error:
        raise FusionError(f"{flag} {folder}: its tokenizer.json is not the {model_type} tokenizer KerasHub reads "
                          f"({one_line(error)[:120]})") from None
    _SHADOWS[folder] = shadow
    return shadow


def sentence_pooling(folder: str) -> str:
    """How a sentence-transformers snapshot makes one vector of a text: "mean", "cls" or "max", with
    "+l2" when it scales the vector to unit length; "mean" for any other folder."""
    pooling = "mean"
    config_path = os.path.join(folder, "1_Pooling", preset_config_file())
    if os.path.isfile(config_path):
        with open(config_path, encoding="utf-8") as handle:
            config = json.load(handle)
        if config.get("pooling_mode_cls_token"):
            pooling = "cls"
        elif config.get("pooling_mode_max_tokens"):
            pooling = "max"
    modules_path = os.path.join(folder, "modules.json")
    if os.path.isfile(modules_path):
        with open(modules_path, encoding="utf-8") as handle:
            modules = json.load(handle)
        if any("Normalize" in str(module.get("type", "")) for module in modules):
            pooling += "+l2"
    return pooling


def _read_json(folder: str, name: str, flag: str) -> dict:
    try:
        with open(os.path.join(folder, name), encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError) as error:
        raise FusionError(f"{flag} {folder}: cannot read its {name} ({one_line(error)[:100]})") from None


def _vocabulary(tokenizer: dict) -> list[str]:
    """The model's tokens in id order, added tokens (special ones) in their places too."""
    vocab = dict(tokenizer["model"]["vocab"])
    for added in tokenizer.get("added_tokens", []):
        vocab.setdefault(added["content"], added["id"])
    tokens = [None] * (max(vocab.values()) + 1)
    for token, index in vocab.items():
        tokens[index] = token
    if None in tokens:
        raise ValueError(f"no token has id {tokens.index(None)}")
    return tokens


def _wordpiece(tokenizer: dict, folder: str, shadow: str) -> None:
    if tokenizer["model"]["type"] != "WordPiece":
        raise ValueError(f"a {tokenizer['model']['type']} model, not WordPiece")
    with open(os.path.join(shadow, "vocab.txt"), "w", encoding="utf-8") as handle:
        handle.write("".join(f"{token}\n" for token in _vocabulary(tokenizer)))
    # The BERT converters read the casing from tokenizer_config.json's do_lower_case.
    config_path = os.path.join(folder, "tokenizer_config.json")
    config = {}
    if os.path.isfile(config_path):
        with open(config_path, encoding="utf-8") as handle:
            config = json.load(handle)
    if "do_lower_case" not in config:
        normalizer = tokenizer.get("normalizer") or {}
        config["do_lower_case"] = bool(normalizer.get("lowercase", False))
        target = os.path.join(shadow, "tokenizer_config.json")
        if os.path.lexists(target):
            os.remove(target)
        with open(target, "w", encoding="utf-8") as handle:
            json.dump(config, handle)


def _bpe(tokenizer: dict, folder: str, shadow: str) -> None:
    model = tokenizer["model"]
    if model["type"] != "BPE":
        raise ValueError(f"a {model['type']} model, not BPE")
    with open(os.path.join(shadow, "vocab.json"), "w", encoding="utf-8") as handle:
        json.dump({token: index for index, token in enumerate(_vocabulary(tokenizer))}, handle, ensure_ascii=False)
    merges = [merge if isinstance(merge, str) else " ".join(merge) for merge in model["merges"]]
    with open(os.path.join(shadow, "merges.txt"), "w", encoding="utf-8") as handle:
        handle.write("#version: 0.2\n" + "".join(f"{merge}\n" for merge in merges))


def _unigram(tokenizer: dict, folder: str, shadow: str) -> None:
    """A SentencePiece model of a Unigram tokenizer.json. Hugging Face's XLM-RoBERTa vocabulary is
    fairseq's: <s> <pad> </s> <unk>, then SentencePiece's pieces from its id 3 on, then <mask>;
    SentencePiece's own order is <unk> <s> </s> and those pieces, which KerasHub maps back."""
    from sentencepiece import sentencepiece_model_pb2 as proto

    model = tokenizer["model"]
    if model["type"] != "Unigram":
        raise ValueError(f"a {model['type']} model, not Unigram")
    pieces = [(piece, score) for piece, score in model["vocab"][4:] if piece != "<mask>"]
    spm = proto.ModelProto()
    for piece, score, kind in [("<unk>", 0.0, 2), ("<s>", 0.0, 3), ("</s>", 0.0, 3)]:
        spm.pieces.add(piece=piece, score=score, type=kind)
    for piece, score in pieces:
        spm.pieces.add(piece=piece, score=float(score), type=1)
    spm.trainer_spec.model_type = proto.TrainerSpec.UNIGRAM
    spm.trainer_spec.unk_id, spm.trainer_spec.bos_id, spm.trainer_spec.eos_id, spm.trainer_spec.pad_id = 0, 1, 2, -1
    spm.normalizer_spec.name = "nmt_nfkc"
    charsmap = _precompiled_charsmap(tokenizer.get("normalizer") or {})
    if charsmap:
        spm.normalizer_spec.precompiled_charsmap = base64.b64decode(charsmap)
    spm.normalizer_spec.add_dummy_prefix = True
    spm.normalizer_spec.remove_extra_whitespaces = True
    spm.normalizer_spec.escape_whitespaces = True
    with open(os.path.join(shadow, "sentencepiece.bpe.model"), "wb") as handle:
        handle.write(spm.SerializeToString())


def _precompiled_charsmap(normalizer: dict) -> str | None:
    if normalizer.get("type") == "Precompiled":
        return normalizer.get("precompiled_charsmap")
    for part in normalizer.get("normalizers", []) or []:
        found = _precompiled_charsmap(part)
        if found:
            return found
    return None


_WRITERS = {"bert": _wordpiece, "distilbert": _wordpiece, "roberta": _bpe, "xlm-roberta": _unigram}
