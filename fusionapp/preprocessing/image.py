"""The one image decoder: encoded bytes -> the uint8 RGB square the network takes."""

from __future__ import annotations

# Part of the feature cache's key: bump it whenever decode_image changes the pixels it returns,
# so that features computed from the old pixels are never read again.
DECODE_VERSION = 1


def decode_image(encoded, image_size: int):
    """Encoded image bytes -> uint8 RGB tensor of shape (image_size, image_size, 3).

    GIFs give their first frame; grayscale and RGBA become RGB. The image is resized without
    keeping its aspect ratio, so the whole picture is always seen.
    """
    import tensorflow as tf

    image = tf.io.decode_image(encoded, channels=3, expand_animations=False, dtype=tf.uint8)
    image.set_shape([None, None, 3])
    image = tf.image.resize(image, (image_size, image_size), antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)


def decode_or_blank(encoded, image_size: int):
    """`decode_image`, except that empty bytes (a missing image) give an all-zero image.

    The model learns what a blank image means because training blanks images at random
    (modality dropout), so a missing image is an input it knows, not an error.
    """
    import tensorflow as tf

    return tf.cond(tf.strings.length(encoded) > 0,
                   lambda: decode_image(encoded, image_size),
                   lambda: tf.zeros((image_size, image_size, 3), tf.uint8))
