"""Where a pretrained text backbone comes from (--text-backbone NAME|PATH), found or refused before
anything is written, and what a run takes from it: the tokenizer and architecture (kept in the run's
preprocessor) and the weights.

PATH is a local KerasHub preset folder (`save_to_preset`), or a local Hugging Face snapshot folder of
an architecture KerasHub converts (BERT, DistilBERT, RoBERTa, XLM-RoBERTa). NAME is a KerasHub preset
name, read from KerasHub's download cache (kagglehub's) or downloaded where a network exists.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from fusionapp.compat import builtin_presets, preset_config_file
from fusionapp.errors import FusionError, one_line
from fusionapp.model.dtype_policy import precision_policy
from fusionapp.pretrained.records import TextBackboneRecord
from fusionapp.pretrained.snapshots import loadable_folder
from fusionapp.pretrained.weights import OFFLINE_ENV



@dataclass(frozen=True)
class TextBackboneSource:
    given: str  # as --text-backbone spells it
    kind: str  # "keras_hub" (a preset folder), "huggingface" (a snapshot folder) or "preset" (a name)
    folder: str  # the local folder it loads from


def resolve_text_backbone(given: str, flag: str = "--text-backbone") -> TextBackboneSource:
    """The local folder of `given`: the folder itself, or a named preset's copy in KerasHub's cache
    (downloaded there first if allowed and possible); else a one-line FusionError naming `flag`."""
    CONFIG_FILE = preset_config_file()  # the preset's own config.json, not a run's

    path = os.path.abspath(os.path.expanduser(given))
    if os.path.isdir(path):
        config = os.path.join(path, CONFIG_FILE)
        try:
            with open(config, encoding="utf-8") as stream:
                kind = "keras_hub" if "registered_name" in json.load(stream) else "huggingface"
        except (OSError, ValueError) as error:
            raise FusionError(f"{flag} {given}: not a KerasHub preset or Hugging Face snapshot folder "
                              f"(cannot read its {CONFIG_FILE}: {one_line(error)[:100]})") from None
        return TextBackboneSource(given, kind, path)
    if os.sep in given or given.startswith(".") or os.path.exists(path):
        raise FusionError(f"{flag} {given}: no such folder")
    return TextBackboneSource(given, "preset", _preset_folder(given, flag))


def _preset_folder(name: str, flag: str) -> str:
    BUILTIN_PRESETS, CONFIG_FILE = builtin_presets(), preset_config_file()

    if name not in BUILTIN_PRESETS:
        raise FusionError(f"{flag} {name}: no such folder, and not a KerasHub preset name (e.g. "
                          "bert_base_en_uncased, xlm_roberta_base_multi, clip_vit_base_patch16)")
    handle = BUILTIN_PRESETS[name]["kaggle_handle"].removeprefix("kaggle://")
    folder = os.path.join(kagglehub_cache(), "models", *handle.split("/"))
    if os.path.isfile(os.path.join(folder, CONFIG_FILE)):
        return folder
    if os.environ.get(OFFLINE_ENV) == "1":
        downloaded, why = None, "downloads are off (FUSIONAPP_OFFLINE=1)"
    else:
        downloaded, why = _download(handle)
    if downloaded is not None:
        return downloaded
    raise FusionError(f"the KerasHub preset {name} is not on this machine and {why}: KerasHub looks for it in "
                      f"{folder}; fetch it there on a connected machine (README, 'Pretrained text models "
                      f"offline'), or pass {flag} PATH with a local preset folder")


def kagglehub_cache() -> str:
    """Where KerasHub's presets are downloaded: $KAGGLEHUB_CACHE, ~/.cache/kagglehub by default."""
    return os.environ.get("KAGGLEHUB_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "kagglehub")


def _download(handle: str) -> tuple[str | None, str | None]:
    """Let kagglehub fetch the preset into its cache: (its folder, None), or (None, why it could not)."""
    try:
        import kagglehub

        return kagglehub.model_download(handle), None
    except Exception as error:  # noqa: BLE001 - any failure to fetch means the same to the user
        return None, f"cannot be downloaded ({one_line(error)[:120]})"


@dataclass
class TextPreset:
    """What a run takes from a text backbone's folder."""

    backbone: object  # the KerasHub backbone, its pretrained weights loaded
    tokenizer: object  # the KerasHub text preprocessor: strings -> token ids and padding mask
    config: dict  # the backbone's serialized architecture (no weights)


def load_text_preset(source: TextBackboneSource, sequence_length: int, load_weights: bool = True) -> TextPreset:
    """The backbone and its tokenizer, packing texts to `sequence_length` tokens (`load_weights`
    False: the architecture alone, randomly initialised, to check a folder before a run starts)."""
    import keras
    import keras_hub

    folder = loadable_folder(source.folder, "--text-backbone") if source.kind == "huggingface" else source.folder
    try:
        with precision_policy("float32"):
            backbone = keras_hub.models.Backbone.from_preset(folder, load_weights=load_weights)
            tokenizer = keras_hub.models.TextClassifierPreprocessor.from_preset(folder,
                                                                               sequence_length=sequence_length)
    except Exception as error:  # noqa: BLE001 - a folder of another kind of model, said in one line
        raise FusionError(f"--text-backbone {source.given}: cannot load it as a KerasHub text model "
                          f"({one_line(error)[:160]})") from None
    if not isinstance(backbone.input, dict) or "token_ids" not in backbone.input:
        raise FusionError(f"--text-backbone {source.given}: {type(backbone).__name__} is not a text model "
                          "(it takes no token ids)")
    check_sequence_length(backbone, sequence_length)
    return TextPreset(backbone, tokenizer, keras.saving.serialize_keras_object(backbone))


def check_sequence_length(text_model, sequence_length: int) -> None:
    """A text model's position embeddings end at its max_sequence_length: longer inputs are refused."""
    longest = getattr(text_model, "max_sequence_length", None)
    if longest and sequence_length > longest:
        raise FusionError(f"--sequence-length {sequence_length}: {type(text_model).__name__} reads at most "
                          f"{longest} tokens")


# The joint image-text families and their preprocessors (which hold the tokenizer).
JOINT_PREPROCESSORS = {"CLIPBackbone": "CLIPPreprocessor", "SigLIPBackbone": "SigLIPPreprocessor"}


@dataclass
class ImageTextPreset:
    """What a run takes from a joint image-text model's folder."""

    backbone: object  # the KerasHub backbone (vision and text encoders), its pretrained weights loaded
    tokenizer: object  # its preprocessor without the image converter: strings -> token ids
    config: dict  # the backbone's serialized architecture
    image_size: int  # the side its vision encoder reads
    scale: list  # pixel (0-255) x scale + offset, per channel, as its image converter computes
    offset: list


def load_image_text_preset(source: TextBackboneSource, sequence_length: int,
                           load_weights: bool = True) -> ImageTextPreset:
    """The joint model, its tokenizer (texts packed to `sequence_length` tokens) and its pixel scaling."""
    import keras
    import keras_hub

    flag = "--image-text-backbone"
    try:
        with precision_policy("float32"):
            backbone = keras_hub.models.Backbone.from_preset(source.folder, load_weights=load_weights)
            family = JOINT_PREPROCESSORS.get(type(backbone).__name__)
            if family is None:
                raise FusionError(f"{flag} {source.given}: {type(backbone).__name__} is not a joint image-text "
                                  f"model ({', '.join(JOINT_PREPROCESSORS)})")
            converter = keras_hub.layers.ImageConverter.from_preset(source.folder).get_config()
            tokenizer = getattr(keras_hub.models, family).from_preset(
                source.folder, sequence_length=sequence_length, image_converter=None)
    except FusionError:
        raise
    except Exception as error:  # noqa: BLE001 - a folder of another kind of model, said in one line
        raise FusionError(f"{flag} {source.given}: cannot load it as a KerasHub image-text model "
                          f"({one_line(error)[:160]})") from None
    check_sequence_length(backbone.text_encoder, sequence_length)
    scale = converter.get("scale")
    offset = converter.get("offset")
    return ImageTextPreset(backbone, tokenizer, keras.saving.serialize_keras_object(backbone),
                           int(converter["image_size"][0]), _per_channel(1 / 255 if scale is None else scale),
                           _per_channel(0.0 if offset is None else offset))


def _per_channel(value) -> list[float]:
    return [float(v) for v in (value if isinstance(value, (list, tuple)) else [value] * 3)]


def describe_text_backbone(source: TextBackboneSource, preset_config: dict, digest: str, sequence_length: int,
                           hidden_dim: int, pooling: str) -> TextBackboneRecord:
    """What config.json records of the text backbone."""
    return {"name": source.given, "source": source.kind, "folder": source.folder,
            "class": preset_config.get("class_name"), "weights_sha256": digest, "sequence_length": sequence_length,
            "hidden_dim": hidden_dim, "pooling": pooling}
