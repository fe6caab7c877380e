"""Exact and near-duplicate rows, in time linear in the rows.

An image's fingerprint is its difference hash (64 bits: whether each pixel of a 9 x 8 grey
thumbnail is brighter than its right-hand neighbour), which resizing and re-encoding leave within a
few bits. A text's is a MinHash signature of its character 4-grams after case, spaces and punctuation
are folded, so it works as well on languages written without spaces; the share of equal values of
two signatures estimates the texts' Jaccard similarity.

Candidates come from buckets (locality-sensitive hashing): the image hash cut into four 16-bit
bands (two hashes within 3 bits share one), the text signature into bands of 4 values. Within a
bucket each row is compared with its WINDOW next rows in the order of its fingerprint, so a bucket
of a thousand copies costs a thousand comparisons, not half a million. Two rows are duplicates when
every input both have is near-identical (and they share at least one); the pairs are
reported as they are.
"""

from __future__ import annotations

import re
import unicodedata
import zlib
from dataclasses import dataclass

import numpy as np

IMAGE_BANDS = 4  # of 16 bits
# Near-identical images: hashes at most this many bits apart, and thumbnails (colour and grey, 0-1)
# this close (root mean square): the hash reads only the grey edges, so a product's colour
# variants share it.
IMAGE_BITS = 6
PIXEL_DIFFERENCE = 0.03
MINHASHES = 64
TEXT_BAND = 4  # MinHash values per band
TEXT_SIMILARITY = 0.7  # near-identical texts: estimated Jaccard similarity of 4-grams at least this
SHINGLE = 4
WINDOW = 8
COMPARED_AT_ONCE = 200_000
_PRIME = (1 << 61) - 1
_SEEDS = np.random.default_rng(20211).integers(1, _PRIME, size=(2, MINHASHES), dtype=np.uint64)
_FOLD = re.compile(r"[\W_]+", re.UNICODE)
_BYTE_BITS = np.array([bin(byte).count("1") for byte in range(256)], np.int64)
NO_TEXT = np.full(MINHASHES, np.iinfo(np.uint32).max, np.uint32)  # the signature of a blank text


def image_hash(grey: np.ndarray) -> int:
    """The difference hash of a 8 x 9 (rows x columns) grey thumbnail, as an unsigned 64-bit int."""
    bits = (grey[:, 1:] > grey[:, :-1]).ravel()
    return int(np.packbits(bits).view(">u8")[0])


def folded_text(text: str) -> str:
    """What text comparison reads: NFKC, lower case, runs of spaces and punctuation as one space."""
    return _FOLD.sub(" ", unicodedata.normalize("NFKC", text).lower()).strip()


def text_signature(text: str) -> np.ndarray:
    """The MinHash signature [MINHASHES] (uint32) of a folded text's character 4-grams."""
    if not text:
        return NO_TEXT
    grams = {text[i:i + SHINGLE] for i in range(max(len(text) - SHINGLE + 1, 1))}
    base = np.fromiter((zlib.crc32(gram.encode()) for gram in grams), np.uint64, len(grams))
    mixed = (base[:, None] * _SEEDS[0] + _SEEDS[1]) % np.uint64(_PRIME)
    return (mixed.min(axis=0) & np.uint64(0xFFFFFFFF)).astype(np.uint32)


@dataclass(frozen=True)
class Fingerprints:
    """Each row's fingerprints; `has_image` / `has_text` False where the row has none to compare."""

    image_hashes: np.ndarray  # uint64 [rows]
    has_image: np.ndarray  # bool [rows]
    signatures: np.ndarray  # uint32 [rows, MINHASHES]
    has_text: np.ndarray  # bool [rows]
    pixels: np.ndarray  # [rows, values]: the image thumbnails, whose distance confirms a hash's match


def duplicate_pairs(prints: Fingerprints) -> tuple[np.ndarray, np.ndarray]:
    """The near-identical pairs (first < second, each pair once), as two row index arrays. Pairs,
    not groups: joined transitively, chains of near-identical products would make one group of a
    shoe and a perfume."""
    found = []
    for candidates_first, candidates_second in _candidates(prints):
        # A slice at a time: a pair's comparison holds a few hundred bytes.
        for start in range(0, len(candidates_first), COMPARED_AT_ONCE):
            first = candidates_first[start:start + COMPARED_AT_ONCE]
            second = candidates_second[start:start + COMPARED_AT_ONCE]
            same = _same(prints, first, second)
            low, high = np.minimum(first[same], second[same]), np.maximum(first[same], second[same])
            found.append(np.unique(low.astype(np.int64) << 32 | high.astype(np.int64)))
    if not found:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    pairs = np.unique(np.concatenate(found))
    return pairs >> 32, pairs & 0xFFFFFFFF


def _candidates(prints: Fingerprints):
    """(first, second) row index arrays of pairs sharing a bucket, band by band."""
    everyone = np.arange(len(prints.has_image))
    shifts = np.arange(IMAGE_BANDS, dtype=np.uint64) * np.uint64(16)
    for shift in shifts:
        keys = (prints.image_hashes >> shift) & np.uint64(0xFFFF)
        yield from _bucket_pairs(everyone[prints.has_image], keys[prints.has_image],
                                 prints.image_hashes[prints.has_image])
    texts = everyone[prints.has_text]
    signatures = prints.signatures[prints.has_text]
    order_key = signatures[:, 0].astype(np.uint64) << np.uint64(32) | signatures[:, 1].astype(np.uint64)
    for start in range(0, MINHASHES, TEXT_BAND):
        yield from _bucket_pairs(texts, _band_keys(signatures[:, start:start + TEXT_BAND]), order_key)


def _band_keys(band: np.ndarray) -> np.ndarray:
    """One uint64 per row of a band of MinHash values (a collision only costs a comparison)."""
    keys = np.zeros(len(band), np.uint64)
    for column in band.T:
        keys = keys * np.uint64(0x100000001B3) + column.astype(np.uint64)
    return keys


def _bucket_pairs(rows: np.ndarray, keys: np.ndarray, within: np.ndarray):
    """Pairs of `rows` with equal `keys`: each row and its next WINDOW rows in the order of (key,
    `within`)."""
    if len(rows) < 2:
        return
    order = np.lexsort((within, keys))
    rows, keys = rows[order], keys[order]
    for step in range(1, WINDOW + 1):
        same = keys[step:] == keys[:-step]
        if not same.any():
            break
        yield rows[:-step][same], rows[step:][same]


def _same(prints: Fingerprints, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Whether each pair is near-identical in every input both rows have, and both have one."""
    both_images = prints.has_image[first] & prints.has_image[second]
    both_texts = prints.has_text[first] & prints.has_text[second]
    distance = bit_counts(prints.image_hashes[first] ^ prints.image_hashes[second])
    pixels = np.sqrt(np.mean((prints.pixels[first].astype(np.float32) - prints.pixels[second]) ** 2, axis=1))
    similarity = (prints.signatures[first] == prints.signatures[second]).mean(axis=1)
    images_agree = ~both_images | ((distance <= IMAGE_BITS) & (pixels <= PIXEL_DIFFERENCE))
    texts_agree = ~both_texts | (similarity >= TEXT_SIMILARITY)
    # A row with neither input is a blank, reported as one, not a duplicate of every other blank.
    return (both_images | both_texts) & images_agree & texts_agree


def bit_counts(values: np.ndarray) -> np.ndarray:
    """The number of set bits of each uint64 (NumPy before 2.0 has no bitwise_count)."""
    return _BYTE_BITS[np.ascontiguousarray(values, np.uint64).view(np.uint8)].reshape(-1, 8).sum(axis=1)
