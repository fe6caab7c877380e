"""The pretrained text backbone a run trains with: its tokenizer and architecture for the
preprocessor, its weights (kept in the run until it ends, so --resume needs the preset folder
never), their digest, and every text's pooled vector from the feature cache."""

from __future__ import annotations

import hashlib
import json
import os

from fusionapp.data.memory import check_fits
from fusionapp.model.dtype_policy import precision_policy
from fusionapp.model.pretrained_text import check_lora_targets, text_features_extractor, transformer_stack
from fusionapp.preprocessing.configs import ImageTextConfig, TextConfig, TextInput
from fusionapp.pretrained.cache import FeatureCache, TextCacheKey
from fusionapp.pretrained.records import JointBranchRecord, TextBackboneRecord
from fusionapp.pretrained.text_backbones import (TextBackboneSource, describe_text_backbone, load_text_preset,
                                                 resolve_text_backbone)
from fusionapp.pretrained.snapshots import sentence_pooling
from fusionapp.pretrained.text_features import text_backbone_features
from fusionapp.pretrained.weights import weights_sha256
from fusionapp.runs import files, layout
from fusionapp.settings import RunSettings
from fusionapp.training.frozen_backbone import features_of_rows

# How texts are cut and normalised before the tokenizer (preprocessing.raw_values): a change invalidates cached vectors.
TEXT_NORMALIZE_VERSION = 1


def checked_text_preset(settings: RunSettings, load_weights: bool = True):
    """(source, preset) of the run's text backbone, refused in one line if the run cannot use it."""
    source = resolve_text_backbone(settings.model.text_backbone)
    preset = load_text_preset(source, settings.text.sequence_length, load_weights)
    if settings.training.fine_tune_text:
        transformer_stack(preset.backbone)
    if settings.training.text_lora:
        check_lora_targets(preset.backbone)
    return source, preset


def backbone_text_config(settings: RunSettings, say) -> tuple[TextConfig, object]:
    """(the preprocessor's text config, the tokenizer) of the run's text backbone."""
    import keras

    # The architecture and tokenizer only: the weights are loaded once, into the feature extractor.
    source, preset = checked_text_preset(settings, load_weights=False)
    length = settings.text.sequence_length
    say(f"Text backbone {settings.model.text_backbone} ({source.kind} folder {source.folder}), {length} tokens")
    # Nested configs as JSON text, as the model file keeps them.
    pooling = sentence_pooling(source.folder)
    if pooling != "mean":
        say(f"Text backbone vectors pooled as its sentence-transformers configuration says: {pooling}")
    config = TextConfig(TextInput.BACKBONE, length, backbone=json.dumps(preset.config),
                        tokenizer=json.dumps(keras.saving.serialize_keras_object(preset.tokenizer)),
                        source=source.kind, folder=source.folder, name=source.given, pooling=pooling)
    return config, preset.tokenizer


def frozen_text_backbone(preprocessor, out: str) -> tuple[object, TextBackboneRecord | None]:
    """The float32 text feature extractor with the backbone's pretrained weights, and what
    config.json records of it; (None, None) without a text backbone. A new run copies the weights
    into its resume folder; a resumed one reads them from there."""
    text = preprocessor.text
    if text is None or text.input != TextInput.BACKBONE or preprocessor.image_text:
        return None, None
    with precision_policy("float32"):
        extractor = text_features_extractor(text.backbone, text.sequence_length, text.pooling)
    source = recorded_source(text)
    keep_pretrained_weights(extractor.backbone, out, layout.TEXT_BACKBONE_WEIGHTS,
                            lambda: load_text_preset(source, text.sequence_length).backbone)
    digest = weights_sha256(extractor.backbone)
    record = describe_text_backbone(source, json.loads(text.backbone), digest, text.sequence_length,
                                    int(extractor.output_shape[-1]), text.pooling or "mean")
    return extractor, record


def recorded_source(config: TextConfig | ImageTextConfig):
    """Where the preprocessor's `config` (text or image_text) says its pretrained model was found."""
    return TextBackboneSource(config.name or "", config.source or "", config.folder or "")


def keep_pretrained_weights(model, out: str, file_name: str, pretrained) -> None:
    """`model`'s pretrained weights: those an earlier start of the run kept in its resume folder, else
    those of `pretrained()` (the preset's model, loaded only then), kept there for a resume."""
    kept = os.path.join(out, layout.RESUME_DIR, file_name)
    if os.path.exists(kept):
        model.load_weights(kept)
        return
    model.set_weights(pretrained().get_weights())
    os.makedirs(os.path.dirname(kept), exist_ok=True)
    files.save_weights(model, kept)


def cached_text_features(train_rows, val_rows, preprocessor, extractor,
                         record: TextBackboneRecord | JointBranchRecord, say):
    """Both row sets' pooled text vectors, from the feature cache where it has them; `record`
    (config.json's text_backbone entry) gains how many were cached and computed."""
    rows = len(train_rows) + len(val_rows)
    check_fits(f"a frozen text backbone's vectors of {rows} rows ({record['hidden_dim']} float16 each)",
               rows * record["hidden_dim"] * 2, "train with --no-feature-cache (texts through the backbone each step)")
    # The tokenizer's settings too (casing, special tokens); its vocabulary is the weights' embeddings'.
    key = TextCacheKey(text_backbone=record["class"], weights_sha256=record["weights_sha256"],
                       tokenizer=_settings_digest(json.loads(preprocessor.text.tokenizer)),
                       sequence_length=record["sequence_length"], max_chars=preprocessor.text.max_chars,
                       pooling=record["pooling"], normalize=TEXT_NORMALIZE_VERSION)
    cache = FeatureCache(key)
    say(f"Text backbone vectors from the cache in {cache.root} ...")
    return features_of_rows([text_backbone_features(rows.texts, preprocessor, extractor, cache)
                             for rows in (train_rows, val_rows)], cache, record, "Text backbone vectors", "texts", say)



def _settings_digest(config) -> str:
    """A digest of a serialized Keras object's settings, without the names Keras numbers per process."""
    def unnamed(value):
        if isinstance(value, dict):
            return {key: unnamed(item) for key, item in value.items() if key != "name"}
        return [unnamed(item) for item in value] if isinstance(value, list) else value

    return hashlib.sha256(json.dumps(unnamed(config), sort_keys=True).encode()).hexdigest()[:16]
