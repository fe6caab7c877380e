"""A generated corpus of hostile inputs: broken images and awkward tables, written on demand.

Each image maker writes one file (or non-file) and returns its path; the outcome each one should
get is listed in IMAGE_CASES beside it.
"""

from __future__ import annotations

import io
import os
import struct
import zlib

import numpy as np
from PIL import Image

PIXELS = (np.arange(24 * 24 * 3).reshape(24, 24, 3) % 251).astype(np.uint8)


def _save(path, image, fmt, **options):
    image.save(path, fmt, **options)
    return str(path)


def zero_byte(folder):
    path = folder / "zero.jpg"
    path.write_bytes(b"")
    return str(path)


def truncated_jpeg(folder):
    buffer = io.BytesIO()
    Image.fromarray(PIXELS).save(buffer, "JPEG")
    path = folder / "truncated.jpg"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    return str(path)


def text_named_jpg(folder):
    path = folder / "notes.jpg"
    path.write_text("this is not an image\n")
    return str(path)


def png_16_bit(folder):
    array = (np.arange(24 * 24).reshape(24, 24) * 100).astype(np.uint16)
    return _save(folder / "deep.png", Image.fromarray(array), "PNG")  # mode I;16: bit depth 16


def cmyk_jpeg(folder):
    return _save(folder / "cmyk.jpg", Image.fromarray(PIXELS).convert("CMYK"), "JPEG")


def animated_gif(folder):
    frames = [Image.fromarray(np.full((16, 16, 3), value, np.uint8)) for value in (30, 200, 90)]
    return _save(folder / "animated.gif", frames[0], "GIF", save_all=True, append_images=frames[1:], loop=0)


def one_pixel(folder):
    return _save(folder / "dot.png", Image.fromarray(np.zeros((1, 1, 3), np.uint8)), "PNG")


def huge_dimensions(folder, side=30000):
    """A 1-bit 30000x30000 PNG: ~100 KB on disk, ~2.7 GB once decoded to RGB."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    compressor = zlib.compressobj(9)
    row = b"\x00" * (1 + (side + 7) // 8)
    data = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0))
           + chunk(b"IDAT", data) + chunk(b"IEND", b""))
    path = folder / "huge.png"
    path.write_bytes(png)
    return str(path)


def directory(folder):
    path = folder / "a_folder.jpg"
    path.mkdir(exist_ok=True)
    return str(path)


def missing(folder):
    return str(folder / "never_written.jpg")


def symlink_loop(folder):
    first, second = folder / "loop_a.jpg", folder / "loop_b.jpg"
    for link, target in ((first, second), (second, first)):
        if not os.path.islink(link):
            os.symlink(target, link)
    return str(first)


# maker -> None when the image must be accepted, else a fragment of the reason it is refused
IMAGE_CASES = {
    zero_byte: "empty file",
    truncated_jpeg: "cannot be decoded",
    text_named_jpg: "not a JPEG, PNG, GIF or BMP",
    png_16_bit: None,
    cmyk_jpeg: None,
    animated_gif: None,
    one_pixel: None,
    huge_dimensions: "30000x30000 pixels",
    directory: "is a directory",
    missing: "does not exist",
    symlink_loop: "symbolic links",
}
