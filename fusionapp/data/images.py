"""Image files and bytes before decoding: the cheap header checks, one full decode pass that finds
the corrupt ones, and reading files for the input pipeline. (Decoding itself is the preprocessor's:
fusionapp.preprocessing.image.)"""

from __future__ import annotations

import os
import stat
import struct

# File signatures of the formats tf.io.decode_image reads.
_SIGNATURES = {
    b"\xff\xd8\xff": "JPEG",
    b"\x89PNG\r\n\x1a\n": "PNG",
    b"GIF87a": "GIF",
    b"GIF89a": "GIF",
    b"BM": "BMP",
}


# Decoding a 30000x30000 PNG (a few KB on disk) would need gigabytes; such files are refused
# from their header before any pixel is decoded.
MAX_PIXELS = 64_000_000


def check_image_file(path: str) -> str | None:
    """Return why `path` is not a usable image file, or None if it looks like one.

    Only the header is read, so this is cheap enough to run on every row before training; a file
    that passes can still be corrupt inside, which `find_undecodable` catches.
    """
    if not path:
        return "no image given"
    try:
        info = os.stat(path)
        if stat.S_ISDIR(info.st_mode):
            return f"{path} is a directory, not an image"
        if not stat.S_ISREG(info.st_mode):
            return f"{path} is not a regular file"
        with open(path, "rb") as handle:
            head = handle.read(HEADER_BYTES)
    except FileNotFoundError:
        return f"{path} does not exist"
    except OSError as error:
        return f"{path} cannot be read ({error.strerror or error})"
    return check_image_bytes(head, path)


HEADER_BYTES = 256 * 1024  # enough to reach a JPEG's frame header past large EXIF blocks


def check_image_bytes(head: bytes, name: str = "image") -> str | None:
    """Why these leading bytes are not a usable image, or None: format and pixel count."""
    if not head:
        return f"{name} is an empty file"
    kind = next((kind for signature, kind in _SIGNATURES.items() if head.startswith(signature)), None)
    if kind is None:
        return f"{name} is not a JPEG, PNG, GIF or BMP image"
    size = image_dimensions(head, kind)
    if size is not None:
        width, height = size
        if width <= 0 or height <= 0:
            return f"{name} has an invalid size ({width}x{height})"
        if width * height > MAX_PIXELS:
            return (f"{name} is {width}x{height} pixels, more than the {MAX_PIXELS // 1_000_000} megapixels "
                    "fusionapp decodes")
    return None


def encoded_dimensions(data: bytes) -> tuple[int, int] | None:
    """(width, height) of an encoded image, read from its header; None if it cannot be told."""
    kind = next((kind for signature, kind in _SIGNATURES.items() if data.startswith(signature)), None)
    return image_dimensions(data, kind) if kind else None


def image_dimensions(head: bytes, kind: str) -> tuple[int, int] | None:
    """(width, height) from a file's header, or None when the header does not say."""
    if kind == "PNG" and len(head) >= 24:
        return struct.unpack(">II", head[16:24])
    if kind == "GIF" and len(head) >= 10:
        return struct.unpack("<HH", head[6:10])
    if kind == "BMP" and len(head) >= 26:
        width, height = struct.unpack("<ii", head[18:26])
        return width, abs(height)
    if kind == "JPEG":
        return _jpeg_dimensions(head)
    return None


def _jpeg_dimensions(head: bytes) -> tuple[int, int] | None:
    position = 2
    while position + 9 <= len(head):
        if head[position] != 0xFF:
            return None
        marker = head[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", head[position + 5:position + 9])
            return width, height
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            position += 2
            continue
        (length,) = struct.unpack(">H", head[position + 2:position + 4])
        position += 2 + length
    return None


def read_or_blank(path):
    """The bytes of `path`, or empty bytes for an empty path (a missing image)."""
    import tensorflow as tf

    return tf.cond(tf.strings.length(path) > 0, lambda: tf.io.read_file(path), lambda: tf.constant(b""))


def find_undecodable(images, from_files: bool, threads: int | None = None) -> dict[int, str]:
    """Decode every image once, in parallel, and return {index: reason} for those that fail.

    tf.data stops at the first failing element, so the bad ones are found by dropping errors and
    noticing which indices did not come through; only those few are decoded again to say why.
    """
    import numpy as np
    import tensorflow as tf

    if len(images) == 0:
        return {}
    if len(images) <= 4:
        # A request or a single pair: decoding directly is far cheaper than starting a pipeline.
        return {i: reason for i, image in enumerate(images) if (reason := _why_undecodable(image, from_files))}
    if not from_files and len(images) <= _IN_MEMORY_AT_ONCE:
        # The server's batches: one call of a function traced once is far cheaper than building a
        # pipeline per batch, and only a batch holding a bad image is looked at image by image.
        try:
            _decode_all()(tf.constant(list(images)))
            return {}
        except tf.errors.OpError:
            return {i: reason for i, image in enumerate(images) if (reason := _why_undecodable(image, False))}

    def decodes(index, image):
        encoded = tf.io.read_file(image) if from_files else image
        decoded = tf.io.decode_image(encoded, channels=3, expand_animations=False)
        # Touch the pixels so the decode cannot be optimised away.
        return index, tf.shape(decoded)[0]

    dataset = tf.data.Dataset.from_tensor_slices((np.arange(len(images)), list(images)))
    dataset = dataset.map(decodes, num_parallel_calls=threads or tf.data.AUTOTUNE)
    dataset = dataset.ignore_errors().batch(1024)
    seen = np.zeros(len(images), dtype=bool)
    for indices, _ in dataset.as_numpy_iterator():
        seen[indices] = True
    # A decode that failed in the pipeline fails again here; "cannot be decoded" covers the odd one
    # that does not.
    return {int(index): _why_undecodable(images[index], from_files) or f"{_name(images[index], from_files)} "
            "cannot be decoded" for index in np.flatnonzero(~seen)}


_IN_MEMORY_AT_ONCE = 1024
_DECODE_ALL = []


def _decode_all():
    """A function decoding every image of a batch of encoded bytes, traced once per process."""
    import tensorflow as tf

    if not _DECODE_ALL:
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def decode_all(images):
            return tf.map_fn(lambda image: tf.shape(tf.io.decode_image(image, channels=3, expand_animations=False))[0],
                             images, fn_output_signature=tf.int32)

        _DECODE_ALL.append(decode_all)
    return _DECODE_ALL[0]


def _name(image, from_files: bool) -> str:
    return image if from_files else "image"


def _why_undecodable(image, from_files: bool) -> str | None:
    """Why the image cannot be decoded, or None when it can."""
    import tensorflow as tf

    name = _name(image, from_files)
    try:
        encoded = tf.io.read_file(image) if from_files else image
        tf.io.decode_image(encoded, channels=3, expand_animations=False)
    except Exception as error:  # noqa: BLE001 - any decoder failure is the user's file, not our bug
        return undecodable_reason(name, error)
    return None


def undecodable_reason(name: str, error: BaseException) -> str:
    """`NAME cannot be decoded (why)`, keeping TensorFlow's last line without its op prefix."""
    text = str(error).strip()
    detail = text.splitlines()[-1].split("}}")[-1].strip() if text else type(error).__name__
    return f"{name} cannot be decoded ({detail})"
