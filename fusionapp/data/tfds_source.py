"""`tfds:NAME[:SPLIT]` -> Examples, with the column flags naming the data set's features.

Images stay encoded (tfds.decode.SkipDecoding) so they are decoded by the same function as
image files; the encoded bytes of the chosen splits are held in memory.
"""

from __future__ import annotations

import numpy as np

from fusionapp.settings import Columns
from fusionapp.data.examples import Examples, default_modalities
from fusionapp.errors import FusionError, one_line

# TFDS split names -> the split column's values
SPLIT_NAMES = {"train": "train", "validation": "val", "valid": "val", "val": "val", "dev": "val", "test": "test"}


def load_tfds_examples(data: str, columns: Columns, need_label: bool = True, modalities=None):
    import tensorflow_datasets as tfds

    name, _, split = data[len("tfds:"):].partition(":")
    if not name:
        raise FusionError(f"{data}: expected tfds:NAME or tfds:NAME:SPLIT")
    try:
        builder = tfds.builder(name)
        builder.download_and_prepare()
    except Exception as error:  # noqa: BLE001 - unknown names, failed downloads, missing files
        raise FusionError(f"{data}: cannot load the TFDS data set ({one_line(error)})") from error
    features = builder.info.features
    if modalities is None:
        modalities = default_modalities(columns, features)
    needed = {"image": [columns.image], "text": [columns.text], "tabular": list(columns.tabular_names)}
    wanted = [column for m in modalities for column in needed[m]] + ([columns.label] if need_label else [])
    for column in wanted:
        if column not in features:
            raise FusionError(f"{data}: no feature '{column}' (features: {', '.join(features)})")
    available = list(builder.info.splits)
    if not split and not available:
        raise FusionError(f"{data}: the data set lists no splits; name one as tfds:{name}:SPLIT")
    if split and available and split not in available:
        raise FusionError(f"{data}: no split '{split}' (splits: {', '.join(available)})")
    chosen = [split] if split else available
    decoders = {columns.image: tfds.decode.SkipDecoding()} if "image" in modalities else None
    label_feature = features[columns.label] if columns.label in features else None

    images, texts, labels, splits, ids = [], [], [], [], []
    tabular = {column: [] for column in columns.tabular_names} if "tabular" in modalities else {}
    for split_name in chosen:
        dataset = builder.as_dataset(split=split_name, decoders=decoders)
        for record in tfds.as_numpy(dataset):
            if "image" in modalities:
                images.append(bytes(record[columns.image]))
            if "text" in modalities:
                texts.append(_text(record[columns.text]))
            for column in tabular:
                tabular[column].append(_text(record[column]))
            if label_feature is not None:
                labels.append(_label(record[columns.label], label_feature))
            splits.append(SPLIT_NAMES.get(split_name, split_name))
            ids.append(_text(record[columns.id]) if columns.id in features else str(len(ids) + 1))
    if not splits:
        raise FusionError(f"{data}: the data set has no examples")
    return Examples(
        source=data,
        row_numbers=np.arange(1, len(splits) + 1),
        ids=ids,
        images=images if "image" in modalities else None,
        images_are_files=False,
        texts=texts if "text" in modalities else None,
        tabular=tabular,
        labels=labels if label_feature is not None else None,
        splits=None if split else splits,
        has_ids=columns.id in features,
    )


def _text(value) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return _text(value.item())
    return str(value)


def _label(value, feature) -> str:
    import tensorflow_datasets as tfds

    if isinstance(feature, tfds.features.ClassLabel):
        return feature.int2str(int(value))
    return _text(value)
