"""What config.json records of the pretrained models a run started from. These stay plain JSON
dicts (config.json is read by people and by later versions), so each is a TypedDict: the keys and
their meanings, in one place."""

from __future__ import annotations

from typing import NotRequired, TypedDict


class FeatureCacheRecord(TypedDict, total=False):
    """How the feature cache served a run (fusionapp/pretrained/cache.py)."""

    folder: str  # this setup's folder in the cache: its key's digest under the cache root
    # rows whose features (image feature maps, or text vectors) the cache had, and those computed
    images_cached: int
    images_computed: int
    texts_cached: int
    texts_computed: int


class BackboneRecord(TypedDict):
    """config.json's "backbone": a keras.applications image backbone (--image-backbone)."""

    name: str  # as --image-backbone spells it
    weights: str  # where its weights came from: "imagenet", "file" or "none" (random, from the run's seed)
    weights_file: str | None  # the file loaded (None for "none")
    sha256: str | None  # of that file
    feature_map: NotRequired[list[int]]  # the shape of its output at the run's image size
    feature_cache: NotRequired[FeatureCacheRecord]


# config.json's "text_backbone": a KerasHub text backbone (--text-backbone). Keys:
#   name, source, folder: TextBackboneSource's given, kind and folder (where the preset was found);
#   class: the KerasHub backbone class; weights_sha256: the digest of its weights' values;
#   sequence_length: token ids per text; hidden_dim: its vector's width; pooling: how the vector is
#   made of the last layer ("mean" over the text's tokens); feature_cache.
TextBackboneRecord = TypedDict("TextBackboneRecord", {
    "name": str, "source": str, "folder": str, "class": "str | None", "weights_sha256": str,
    "sequence_length": int, "hidden_dim": int, "pooling": str, "feature_cache": NotRequired[FeatureCacheRecord]})

# One branch of a joint image-text model (CLIP, SigLIP): the model's name, source, folder, class and
# weights_sha256 (as above), with for the image branch image_size and feature_map (its embedding's
# width, in a list), and for the text branch sequence_length, hidden_dim and pooling ("projection":
# the text encoder's projected embedding); feature_cache for either.
JointBranchRecord = TypedDict("JointBranchRecord", {
    "name": str, "source": str, "folder": str, "class": "str | None", "weights_sha256": str,
    "image_size": NotRequired[int], "feature_map": NotRequired[list[int]], "sequence_length": NotRequired[int],
    "hidden_dim": NotRequired[int], "pooling": NotRequired[str], "feature_cache": NotRequired[FeatureCacheRecord]})


class ImageTextRecord(JointBranchRecord):
    """config.json's "image_text_backbone": the joint model (the keys of its branches' records, of
    the image branch's when it has one), and each branch's own record (None: no such branch)."""

    image: JointBranchRecord | None
    text: JointBranchRecord | None


class PretrainedRecords(TypedDict, total=False):
    """config.json's entries of the pretrained models a run started from, those it has."""

    backbone: BackboneRecord
    text_backbone: TextBackboneRecord
    image_text_backbone: ImageTextRecord
