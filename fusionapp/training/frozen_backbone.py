"""The frozen pretrained backbone a run trains on: its weights, their digest (a resumed run must keep
them) and every image's features from the feature cache."""

from __future__ import annotations

import numpy as np

from fusionapp.data.memory import check_fits
from fusionapp.preprocessing.image import DECODE_VERSION
from fusionapp.pretrained.cache import FeatureCache, ImageCacheKey, enforce_limit
from fusionapp.pretrained.features import backbone_features
from fusionapp.pretrained.records import BackboneRecord, JointBranchRecord, TextBackboneRecord
from fusionapp.pretrained.weights import describe, load_extractor, resolve_weights
from fusionapp.settings import RunSettings


def frozen_backbone(settings: RunSettings, preprocessor) -> tuple[object, BackboneRecord | None]:
    """The frozen backbone as a float32 feature extractor with its weights, and what config.json
    records of it; (None, None) without a pretrained backbone."""
    if not settings.model.pretrained or "image" not in preprocessor.modalities:
        return None, None
    name = settings.model.image_backbone
    weights = resolve_weights(name, settings.training.backbone_weights)
    if weights.path is None:
        import keras

        # Random weights drawn from the run's seed alone, so a resumed run gets the same backbone.
        keras.utils.set_random_seed(settings.training.seed)
    extractor = load_extractor(name, preprocessor.image_size, weights)
    record = describe(name, weights)
    record["feature_map"] = [int(d) for d in extractor.output_shape[1:]]
    return extractor, record


def cached_features(train_rows, val_rows, preprocessor, extractor, weights_digest: str,
                    record: BackboneRecord | JointBranchRecord, say):
    """Both row sets' feature maps, from the feature cache where it has them; `record` (config.json's
    backbone entry) gains how many were cached and computed."""
    key = ImageCacheKey(backbone=record["name"], image_size=preprocessor.image_size, decode=DECODE_VERSION,
                        weights_sha256=weights_digest)
    rows = len(train_rows) + len(val_rows)
    check_fits(f"a frozen backbone's feature maps of {rows} rows ({'x'.join(map(str, record['feature_map']))} "
               "float16 each)", rows * int(np.prod(record["feature_map"])) * 2,
               "train with --no-feature-cache (images through the backbone each step)")
    cache = FeatureCache(key)
    say(f"Backbone features ({record['name']}, {preprocessor.image_size} px) from the cache in {cache.root} ...")
    features = [backbone_features(rows, preprocessor, extractor, cache) for rows in (train_rows, val_rows)]
    return features_of_rows(features, cache, record, "Backbone features", "images", say)


def features_of_rows(features: list, cache, record: BackboneRecord | TextBackboneRecord | JointBranchRecord, what: str,
                     unit: str, say) -> list:
    """`features` (of the training and validation rows) as they are, with `record` (config.json's entry
    of the backbone) given the cache's counts as `{unit}_cached` / `{unit}_computed`, said, and the
    cache held to its size limit."""
    record["feature_cache"] = {"folder": cache.folder, f"{unit}_cached": sum(f.cached for f in features),
                               f"{unit}_computed": sum(f.computed for f in features)}
    say(f"{what}: {record['feature_cache'][f'{unit}_cached']} {unit} from the cache, "
        f"{record['feature_cache'][f'{unit}_computed']} computed")
    enforce_limit(cache.root)
    return features
