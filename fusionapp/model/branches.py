"""One function per modality: inputs -> a fixed-width feature vector for the fusion head."""

from __future__ import annotations

from keras import layers, regularizers

from fusionapp.settings import ModelSettings
from fusionapp.model.backbones import backbone_image_features
from fusionapp.model.blocks import BN_MOMENTUM, multi_kernel_block


def image_branch(images, settings: ModelSettings, backbone=None):
    """uint8 RGB images -> (features, the feature map they pool): stem conv, multi-kernel blocks,
    global pooling, projection.

    With a pretrained backbone (`backbone`, built by fusionapp.model.backbones.build_backbone): the
    backbone's last feature map, a multi-kernel block over it (or not: `backbone_head`), global
    pooling, projection. With `settings.pretrained` and no `backbone`, `images` is already that
    feature map (the frozen backbone's output, computed once by the feature cache), and the branch
    has every layer of the full one except the backbone.
    """
    if settings.pretrained:
        return backbone_branch(images if backbone is None else
                               backbone_image_features(images, backbone, settings.image_backbone), settings)
    x = layers.Rescaling(1.0 / 255.0, name="image.rescale")(images)
    x = layers.Conv2D(settings.image_stem_filters, 3, strides=2, padding="same", use_bias=False,
                      name="image.stem.conv3x3")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name="image.stem.bn")(x)
    x = layers.Activation("relu", name="image.stem.relu")(x)
    last = len(settings.image_filters) - 1
    for i, filters in enumerate(settings.image_filters):
        # The last block feeds global pooling, so pooling it first would only discard detail.
        x = multi_kernel_block(x, filters, settings.image_kernels, name=f"image.block{i + 1}", pool=i < last,
                               reduction=settings.image_reduction)
    pooled = layers.GlobalAveragePooling2D(name="image.global_pool")(x)
    return layers.Dense(settings.branch_units, activation="relu", name="image.projection")(pooled), x


def backbone_branch(feature_map, settings: ModelSettings):
    """A pretrained backbone's feature map -> (features, the feature map they pool)."""
    x = feature_map
    if settings.backbone_head == "multi-kernel":
        x = multi_kernel_block(x, settings.image_filters[-1], settings.image_kernels, name="image.head", pool=False,
                               reduction=settings.image_reduction)
    pooled = layers.GlobalAveragePooling2D(name="image.global_pool")(x)
    # A thousand-odd pretrained features and a few thousand images: the projection overfits without it.
    pooled = layers.Dropout(settings.dropout, name="image.dropout")(pooled)
    return layers.Dense(settings.branch_units, activation="relu", name="image.projection")(pooled), x


def text_branch(text, settings: ModelSettings, vocabulary_size: int):
    """Text -> features. `bag`: sublinear TF-IDF vectors -> one wide dense layer; `cnn`: token ids ->
    embedding -> parallel 1-D convolutions; `mean`: token ids -> masked mean of embeddings."""
    if settings.text_encoder == "bag":
        x = layers.Dropout(settings.dropout, name="text.bag_dropout")(text)
        x = layers.Dense(settings.branch_units, activation="relu", kernel_regularizer=regularizers.L2(1e-5),
                         name="text.bag_dense")(x)
        return layers.Dropout(settings.dropout, name="text.dropout")(x)
    if settings.text_encoder == "mean":
        x = layers.Embedding(vocabulary_size, settings.text_embedding_dim, mask_zero=True,
                             name="text.embedding")(text)
        x = layers.GlobalAveragePooling1D(name="text.mean_pool")(x)
    else:
        x = layers.Embedding(vocabulary_size, settings.text_embedding_dim, name="text.embedding")(text)
        widths = []
        for width in settings.text_widths:
            y = layers.Conv1D(settings.text_filters, width, padding="same", activation="relu",
                              name=f"text.conv{width}")(x)
            widths.append(layers.GlobalMaxPooling1D(name=f"text.conv{width}.max_pool")(y))
        x = layers.Concatenate(name="text.concat")(widths) if len(widths) > 1 else widths[0]
    x = layers.Dropout(settings.dropout, name="text.dropout")(x)
    return layers.Dense(settings.branch_units, activation="relu", name="text.projection")(x)


def pretrained_vector_branch(vector, settings: ModelSettings, modality: str):
    """A pretrained model's vector of a text (or of an image, from a joint image-text model) ->
    features: dropout, projection."""
    x = layers.Dropout(settings.dropout, name=f"{modality}.dropout")(vector)
    return layers.Dense(settings.branch_units, activation="relu", name=f"{modality}.projection")(x)


def tabular_branch(values, settings: ModelSettings):
    """Encoded tabular values -> features through two dense layers."""
    x = layers.Dense(settings.tabular_units, activation="relu", name="tabular.dense")(values)
    return layers.Dense(settings.branch_units, activation="relu", name="tabular.projection")(x)
