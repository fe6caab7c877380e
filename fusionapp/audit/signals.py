"""One streaming pass over a table: what the audit keeps of each row (a few hundred bytes), so that a
table of millions of rows is audited in bounded memory.

Of an image it keeps the difference hash, a thumbnail of 157 values (4 x 4 colour, 8 x 8 grey, and
histograms of its edges' directions, whole and by quarter, which tell shapes apart wherever they
sit) and whether it is blank or cannot be read; of a text, its MinHash signature and whether it is blank.
The texts and tabular cells themselves are read again, a chunk at a time, when the probabilities are
computed (fusionapp/audit/features.py).
"""

from __future__ import annotations

import io
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from fusionapp.audit.duplicates import NO_TEXT, Fingerprints, folded_text, image_hash, text_signature
from fusionapp.data.examples import Examples
from fusionapp.errors import FusionError

THUMBNAIL_WIDTH = 157
PIXEL_VALUES = 112  # the thumbnail's pixels (4 x 4 colour, 8 x 8 grey), before its edge histograms
EDGE_BINS = 9
SEEN_IMAGES = 200_000  # image files whose signals are kept for rows that show them again (~1 KB each)
# A picture whose grey levels vary less than this (of 255) shows nothing.
BLANK_SPREAD = 2.0
IMAGE_NONE, IMAGE_OK, IMAGE_BLANK, IMAGE_UNREADABLE = 0, 1, 2, 3


@dataclass
class ImageSignal:
    state: int
    hash: int = 0
    thumbnail: np.ndarray | None = None
    reason: str = ""


@dataclass
class TableSignals:
    """What the pass keeps, row by row in the table's order."""

    source: str
    modalities: tuple[str, ...]
    row_numbers: np.ndarray  # 1-based rows of the table
    ids: list[str] | None  # the id column's values, where the table has one
    labels: list[str] | None  # raw label cells ("" where blank)
    splits: list[str] | None
    prints: Fingerprints
    thumbnails: np.ndarray  # float16 [rows, THUMBNAIL_WIDTH], zeros without an image
    image_states: np.ndarray  # int8 [rows]: IMAGE_NONE / OK / BLANK / UNREADABLE
    image_reasons: dict[int, str]  # row index -> why its image cannot be read
    texts_blank: np.ndarray  # bool [rows]: the row has a text column and its cell is blank

    def __len__(self) -> int:
        return len(self.row_numbers)


def read_image(source, is_file: bool) -> ImageSignal:
    """The signals of one image (a path or bytes); an unreadable file is a verdict, not an error."""
    from PIL import Image, UnidentifiedImageError

    if not source:
        return ImageSignal(IMAGE_NONE)
    try:
        with Image.open(source if is_file else io.BytesIO(source)) as image:
            image.draft("RGB", (64, 64))
            small = np.asarray(image.convert("RGB").resize((32, 32), Image.Resampling.BILINEAR), np.float32)
    except FileNotFoundError:
        return ImageSignal(IMAGE_UNREADABLE, reason="no such file")
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as error:
        return ImageSignal(IMAGE_UNREADABLE, reason=f"cannot be decoded ({type(error).__name__})")
    grey = small @ np.array([0.299, 0.587, 0.114], np.float32)
    colour = small.reshape(4, 8, 4, 8, 3).mean(axis=(1, 3)).ravel()
    grey8 = grey.reshape(8, 4, 8, 4).mean(axis=(1, 3)).ravel()
    thumbnail = np.concatenate([colour / 255.0, grey8 / 255.0, _edge_directions(grey)])
    grey_9x8 = np.asarray(Image.fromarray(grey.astype(np.uint8)).resize((9, 8), Image.Resampling.BILINEAR),
                          np.float32)
    state = IMAGE_BLANK if grey.std() < BLANK_SPREAD else IMAGE_OK
    return ImageSignal(state, image_hash(grey_9x8), thumbnail.astype(np.float16))


def _edge_directions(grey: np.ndarray) -> np.ndarray:
    """Histograms (EDGE_BINS directions, weighted by strength, each summing to at most 1) of the
    gradients of a 32 x 32 grey picture: the whole picture's, then each quarter's."""
    dy, dx = np.gradient(grey)
    strength = np.hypot(dx, dy)
    direction = np.minimum((np.arctan2(dy, dx) % np.pi) / np.pi * EDGE_BINS, EDGE_BINS - 1).astype(np.int64)

    def histogram(rows: slice, columns: slice) -> np.ndarray:
        counts = np.bincount(direction[rows, columns].ravel(), strength[rows, columns].ravel(), EDGE_BINS)
        return counts / max(counts.sum(), 1e-6)

    half = slice(0, 16), slice(16, 32)
    return np.concatenate([histogram(slice(None), slice(None))] + [histogram(r, c) for r in half for c in half])


def chunk_signals(examples: Examples, pool: ThreadPoolExecutor, seen: dict) -> dict:
    """The signals of one chunk of rows, as arrays; `seen` holds those of image files read before
    (a catalogue shows one photo on several rows), up to SEEN_IMAGES of them."""
    rows = len(examples)
    images = [ImageSignal(IMAGE_NONE)] * rows
    if examples.images is not None and examples.images_are_files:
        new = sorted({path for path in examples.images if path and path not in seen})
        read = dict(zip(new, pool.map(lambda path: read_image(path, True), new)))
        images = [seen.get(path) or read.get(path) or ImageSignal(IMAGE_NONE) for path in examples.images]
        if len(seen) < SEEN_IMAGES:
            seen.update(read)
    elif examples.images is not None:
        images = list(pool.map(lambda source: read_image(source, False), examples.images))
    texts = [folded_text(text) for text in examples.texts] if examples.texts is not None else None
    signatures = (np.stack([text_signature(text) for text in texts]) if texts is not None
                  else np.tile(NO_TEXT, (rows, 1)))
    thumbnails = np.zeros((rows, THUMBNAIL_WIDTH), np.float16)
    for index, image in enumerate(images):
        if image.thumbnail is not None:
            thumbnails[index] = image.thumbnail
    states = np.array([image.state for image in images], np.int8)
    return {
        "row_numbers": np.asarray(examples.row_numbers, np.int64),
        "ids": list(examples.ids) if examples.has_ids else None,
        "labels": list(examples.labels) if examples.labels is not None else None,
        "splits": list(examples.splits) if examples.splits is not None else None,
        "image_hashes": np.array([image.hash for image in images], np.uint64),
        "has_image": states == IMAGE_OK,
        "signatures": signatures,
        "has_text": np.array([bool(text) for text in texts]) if texts is not None else np.zeros(rows, bool),
        "texts_blank": np.array([not text for text in texts]) if texts is not None else np.zeros(rows, bool),
        "thumbnails": thumbnails,
        "image_states": states,
        "image_reasons": {index: image.reason for index, image in enumerate(images) if image.reason},
    }


def table_signals(chunks, say) -> TableSignals:
    """The signals of every row of `chunks` (Examples, in the table's order)."""
    parts, source, modalities, offset = [], "", (), 0
    reasons: dict[int, str] = {}
    seen: dict[str, ImageSignal] = {}
    with ThreadPoolExecutor(max(2, 2 * (os.cpu_count() or 1))) as pool:
        for examples in chunks:
            source, modalities = examples.source, examples.modalities
            part = chunk_signals(examples, pool, seen)
            reasons.update({offset + index: reason for index, reason in part.pop("image_reasons").items()})
            offset += len(examples)
            parts.append(part)
            say(f"  read {offset} rows")
    if not parts:
        raise FusionError("no rows to audit")

    def joined(name):
        # Popped, so each chunk's copy is let go once the whole is made.
        values = [part.pop(name) for part in parts]
        if values[0] is None:
            return None
        return np.concatenate(values) if isinstance(values[0], np.ndarray) else [v for part in values for v in part]

    thumbnails = joined("thumbnails")
    prints = Fingerprints(joined("image_hashes"), joined("has_image"), joined("signatures"), joined("has_text"),
                          thumbnails[:, :PIXEL_VALUES])
    return TableSignals(source, modalities, joined("row_numbers"), joined("ids"), joined("labels"), joined("splits"),
                        prints, thumbnails, joined("image_states"), reasons, joined("texts_blank"))
