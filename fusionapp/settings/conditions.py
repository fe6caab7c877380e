"""When settings apply: each an Applies over the whole RunSettings, named for what it requires, so a
value given where it means nothing is refused (fusionapp.settings.applicability) instead of ignored.

Which inputs the model reads is known here only where --modalities names them; otherwise every
input counts as read, and a setting of an input the data turns out not to have is not refused.
"""

from __future__ import annotations

from fusionapp.settings.options import Applies


def reads(run, modality: str) -> bool:
    return not run.model.modalities or modality in run.model.modalities


def _pretrained_text(run) -> bool:
    return bool(run.model.text_backbone or run.model.image_text_backbone)


def _own_text(run) -> bool:
    return reads(run, "text") and not _pretrained_text(run)


def _multi_kernel_blocks(run) -> bool:
    model = run.model
    return (reads(run, "image") and not model.image_text_backbone
            and (not model.pretrained or model.backbone_head == "multi-kernel"))


IMAGE = Applies("when the model reads images with its own image branch (not with --image-text-backbone)",
                lambda run: reads(run, "image") and not run.model.image_text_backbone)
IMAGES_SEEN = Applies("when the network sees images: not when a frozen backbone trains on cached features "
                      "(--no-feature-cache, or --fine-tune, trains on images)",
                      lambda run: reads(run, "image") and not run.features_only)
PIXELS_KEPT = Applies("when the network reads the images itself: not when a frozen backbone trains on cached "
                      "features, nor with --data-service, whose workers read them",
                      lambda run: reads(run, "image") and not run.features_only and not run.training.data_service)
STEM = Applies("to the multi-kernel image branch, which a pretrained backbone replaces",
               lambda run: reads(run, "image") and not run.model.pretrained and not run.model.image_text_backbone)
BLOCKS = Applies("to the multi-kernel image branch, or with --backbone-head multi-kernel", _multi_kernel_blocks)
PRETRAINED_IMAGE = Applies("with a pretrained --image-backbone, when the model reads images",
                           lambda run: reads(run, "image") and run.model.pretrained)
BOTH_INPUTS = Applies("when the model reads both images and text",
                      lambda run: reads(run, "image") and reads(run, "text"))
TEXT = Applies("when the model reads text", lambda run: reads(run, "text"))
OWN_TEXT = Applies("to the model's own text encoder, not with --text-backbone or --image-text-backbone", _own_text)
BAG = Applies("to --text-encoder bag", lambda run: _own_text(run) and run.model.text_encoder == "bag")
TOKEN_IDS = Applies("to --text-encoder cnn or mean, or a pretrained text model",
                    lambda run: reads(run, "text") and (_pretrained_text(run) or run.model.text_encoder != "bag"))
EMBEDDING = Applies("to --text-encoder cnn or mean",
                    lambda run: _own_text(run) and run.model.text_encoder in ("cnn", "mean"))
CNN = Applies("to --text-encoder cnn", lambda run: _own_text(run) and run.model.text_encoder == "cnn")
TEXT_BACKBONE = Applies("with --text-backbone, when the model reads text",
                        lambda run: reads(run, "text") and bool(run.model.text_backbone))
TABULAR = Applies("when the model reads tabular columns (--tabular-col)", lambda run: reads(run, "tabular"))
STARTS_PRETRAINED = Applies("with a pretrained --image-backbone, --text-backbone or --image-text-backbone",
                            lambda run: run.model.starts_pretrained)
FINE_TUNING = Applies("with --fine-tune, --fine-tune-text or --text-lora",
                      lambda run: bool(run.training.fine_tune or run.training.fine_tune_text or run.training.text_lora))
DATA_SERVICE = Applies("with --data-service", lambda run: bool(run.training.data_service))
SINGLE_LABEL = Applies("without --multi-label (--min-label-count drops the rare labels of label sets)",
                       lambda run: not run.model.multi_label)
MULTI_LABEL = Applies("with --multi-label", lambda run: run.model.multi_label)
