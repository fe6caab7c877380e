"""The on-disk cache of frozen backbone features: one float16 .npy file per image and backbone setup,
shared by every run on this machine, bounded in size, cleared with `fusionapp cache clear`.

An entry's key is the image content's sha256 inside a folder named by a digest of the backbone,
the input size and the weights' values; a run with other weights or another size therefore never
reads features it did not compute. Files are written whole under a temporary name and renamed, so
parallel runs and crashes leave only complete entries.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from typing import TypedDict

import numpy as np

from fusionapp.errors import FusionError

DIR_ENV = "FUSIONAPP_CACHE_DIR"
LIMIT_ENV = "FUSIONAPP_CACHE_LIMIT_GB"
DEFAULT_LIMIT_GB = 10.0


def cache_root() -> str:
    """$FUSIONAPP_CACHE_DIR, else $XDG_CACHE_HOME/fusionapp/features, else ~/.cache/fusionapp/features."""
    if os.environ.get(DIR_ENV):
        return os.path.abspath(os.path.expanduser(os.environ[DIR_ENV]))
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "fusionapp", "features")


def cache_limit_bytes() -> int:
    value = os.environ.get(LIMIT_ENV)
    if value is None or value == "":
        return int(DEFAULT_LIMIT_GB * 1e9)
    try:
        limit = float(value)
    except ValueError:
        limit = -1.0
    if not (limit >= 0 and math.isfinite(limit)):
        raise FusionError(f"{LIMIT_ENV}={value!r}: must be a number of gigabytes, 0 or more")
    return int(limit * 1e9)


class ImageCacheKey(TypedDict):
    """What an image backbone's features depend on: a change to any of them is another folder."""

    backbone: str  # its name (--image-backbone)
    image_size: int
    decode: int  # fusionapp.preprocessing.image.DECODE_VERSION: how images are decoded and resized
    weights_sha256: str  # the digest of its weights' values


class TextCacheKey(TypedDict):
    """What a text backbone's vectors depend on (a joint model's text branch's too)."""

    text_backbone: str | None  # its KerasHub class
    weights_sha256: str
    tokenizer: str  # a digest of the tokenizer's settings (its vocabulary is the weights' embeddings')
    sequence_length: int
    max_chars: int | None  # characters of a text read
    pooling: str  # how the vector is made of the last layer
    normalize: int  # how texts are cut and normalised before the tokenizer (TEXT_NORMALIZE_VERSION)


class CacheUsage(TypedDict):
    folder: str  # the cache root
    entries: int  # feature files
    bytes: int
    setups: int  # folders: one per key


class FeatureCache:
    """Features of one backbone setup, keyed by what they depend on. The folder is a digest of the
    key's JSON: renaming or adding a key's entry starts users' caches afresh."""

    def __init__(self, key: ImageCacheKey | TextCacheKey, root: str | None = None):
        self.root = root or cache_root()
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
        self.folder = os.path.join(self.root, digest)
        self.key = key

    def _path(self, image_hash: str) -> str:
        return os.path.join(self.folder, image_hash[:2], f"{image_hash}.npy")

    def get(self, image_hash: str):
        path = self._path(image_hash)
        try:
            features = np.load(path)
        except Exception:  # noqa: BLE001 - absent, truncated or damaged: recomputed, and replaced
            return None
        # Marks the entry as recently used, so size limits evict what runs stopped reading.
        try:
            os.utime(path)
        except OSError:
            pass
        return features

    def put(self, image_hash: str, features) -> None:
        path = self._path(image_hash)
        folder = os.path.dirname(path)
        try:
            os.makedirs(folder, exist_ok=True)
            if not os.path.exists(os.path.join(self.folder, "key.json")):
                _write_atomic(os.path.join(self.folder, "key.json"), json.dumps(self.key, indent=2).encode())
            handle, temporary = tempfile.mkstemp(dir=folder, prefix=".", suffix=".npy")
            try:
                with os.fdopen(handle, "wb") as stream:
                    np.save(stream, np.asarray(features, dtype=np.float16))
                os.replace(temporary, path)
            finally:
                if os.path.exists(temporary):
                    os.remove(temporary)
        except OSError as error:
            raise FusionError(f"cannot write the feature cache in {self.root} ({error.strerror}); set "
                              f"{DIR_ENV} to a writable folder or train with --no-feature-cache") from None


def _write_atomic(path: str, data: bytes) -> None:
    handle, temporary = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".")
    with os.fdopen(handle, "wb") as stream:
        stream.write(data)
    os.replace(temporary, path)


def _entries(root: str):
    """(path, size, last use) of every feature file under root."""
    for folder, _, files in os.walk(root):
        for name in files:
            if name.endswith(".npy") and not name.startswith("."):
                path = os.path.join(folder, name)
                try:
                    stat = os.stat(path)
                except OSError:
                    continue
                yield path, stat.st_size, stat.st_mtime


def cache_usage(root: str | None = None) -> CacheUsage:
    root = root or cache_root()
    entries = list(_entries(root)) if os.path.isdir(root) else []
    setups = len([name for name in os.listdir(root) if os.path.isdir(os.path.join(root, name))]) \
        if os.path.isdir(root) else 0
    return {"folder": root, "entries": len(entries), "bytes": sum(size for _, size, _ in entries), "setups": setups}


def enforce_limit(root: str | None = None, limit: int | None = None) -> int:
    """Remove the least recently used entries until the cache fits its limit; return bytes freed."""
    root = root or cache_root()
    limit = cache_limit_bytes() if limit is None else limit
    entries = sorted(_entries(root), key=lambda entry: entry[2]) if os.path.isdir(root) else []
    total = sum(size for _, size, _ in entries)
    freed = 0
    for path, size, _ in entries:
        if total - freed <= limit:
            break
        try:
            os.remove(path)
            freed += size
        except OSError:
            pass
    return freed


def clear_cache(root: str | None = None) -> int:
    """Remove every cached feature; return the bytes freed."""
    root = root or cache_root()
    freed = cache_usage(root)["bytes"]
    if os.path.isdir(root):
        for name in os.listdir(root):
            path = os.path.join(root, name)
            shutil.rmtree(path, ignore_errors=True) if os.path.isdir(path) else os.remove(path)
    return freed


def fill_from_cache(hashes: list[str], blank, store, cache) -> tuple[dict, list[int], int]:
    """Rows by content hash ("" for an empty input): each empty row gets `blank`, the first row of
    each hash its features from `cache` (a FeatureCache, or None) where it has them of `blank`'s
    shape. Returns (first row of each hash, rows still to compute, how many came from the cache);
    the rows that repeat a hash are filled by `fill_repeats` once the first ones are known."""
    first, missing, cached = {}, [], 0
    for row, content_hash in enumerate(hashes):
        if not content_hash:
            store[row] = blank
        elif content_hash not in first:
            first[content_hash] = row
            found = cache.get(content_hash) if cache is not None else None
            if found is not None and found.shape == blank.shape:
                store[row] = found
                cached += 1
            else:
                missing.append(row)
    return first, missing, cached


def fill_repeats(hashes: list[str], first: dict, store) -> None:
    """Each row whose content an earlier row has takes that row's features."""
    for row, content_hash in enumerate(hashes):
        if content_hash and first[content_hash] != row:
            store[row] = store[first[content_hash]]
