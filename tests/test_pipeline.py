"""The training input pipeline: the order rows come in, and the changes it makes to inputs."""

import numpy as np
import pytest

from conftest import image_bytes
from fusionapp.settings import TextSettings
from fusionapp.data.examples import Examples
from fusionapp.data.pipeline import make_dataset
from fusionapp.preprocessing import adapt

SIZE = 8


def numbered_examples(count: int, with_text: bool = False) -> Examples:
    """Images whose pixels spell their row number (red = n % 256, green = n // 256)."""
    images = []
    for n in range(count):
        pixels = np.zeros((SIZE, SIZE, 3), np.uint8)
        pixels[..., 0], pixels[..., 1] = n % 256, n // 256
        images.append(image_bytes(pixels, "PNG"))
    return Examples(source="numbered", row_numbers=np.arange(1, count + 1), ids=[str(n) for n in range(count)],
                    images=images, images_are_files=False,
                    texts=[f"row number {n}" for n in range(count)] if with_text else None,
                    tabular={}, labels=["a" if n % 3 else "b" for n in range(count)], splits=None)


def preprocessor_for(examples: Examples):
    modalities = examples.modalities
    return adapt(examples.labels, examples.texts, {}, modalities=modalities, image_size=SIZE,
                 text=TextSettings().resolved("bag"), text_encoder="bag", tabular_kinds={})


def row_numbers(batch_images) -> list[int]:
    pixels = batch_images.numpy().astype(int)
    return list(pixels[:, 0, 0, 0] + 256 * pixels[:, 0, 0, 1])


def epoch_orders(dataset, rows: int, batch_size: int, epochs: int) -> list[list[int]]:
    """The row numbers of the first `epochs` passes of a training stream."""
    steps = -(-rows // batch_size)
    order = [n for inputs, _ in dataset.take(steps * epochs) for n in row_numbers(inputs["image"])]
    return [order[e * rows:(e + 1) * rows] for e in range(epochs)]


def test_cache_does_not_change_the_order_of_a_large_table(tmp_path):
    # more rows than the 4,096 decoded images a shuffle buffer used to hold with --cache
    examples = numbered_examples(5000)
    preprocessor = preprocessor_for(examples)
    orders = {}
    for cache in (None, "memory", str(tmp_path / "train.npy")):
        dataset = make_dataset(examples, preprocessor, batch_size=500, training=True, seed=4, pixel_cache=cache)
        orders[cache or "none"] = epoch_orders(dataset, 5000, 500, epochs=2)
    plain = orders.pop("none")
    assert all(order == plain for order in orders.values())
    first, second = plain
    assert sorted(first) == list(range(5000)) and first != sorted(first) and second != first
    # a full shuffle: the last rows of the table can come first
    assert min(first[:100]) < 200 and max(first[:100]) > 4800


def test_the_same_seed_gives_the_same_order_and_another_seed_another():
    examples = numbered_examples(300)
    preprocessor = preprocessor_for(examples)

    def order(seed):
        return epoch_orders(make_dataset(examples, preprocessor, 64, training=True, seed=seed), 300, 64, 1)[0]

    assert order(1) == order(1) != order(2)


@pytest.mark.parametrize("rate", [0.0, 0.25])
def test_modality_dropout_blanks_image_or_text_at_the_stated_rate(rate):
    examples = numbered_examples(400, with_text=True)
    for n in range(400):  # no real image is all black: a black one can only be a blanked one
        examples.images[n] = image_bytes(np.full((SIZE, SIZE, 3), 200, np.uint8), "PNG")
    dataset = make_dataset(examples, preprocessor_for(examples), 100, training=True, seed=0, modality_dropout=rate)
    blank_images = blank_texts = both = rows = 0
    for _ in range(1):
        for inputs, _ in dataset.take(12):  # three passes
            images = ~inputs["image"].numpy().reshape(len(inputs["image"]), -1).any(axis=1)
            texts = ~inputs["text"].numpy().any(axis=1)
            blank_images += images.sum()
            blank_texts += texts.sum()
            both += (images & texts).sum()
            rows += len(images)
    assert both == 0
    assert abs(blank_images / rows - rate) < 0.05 and abs(blank_texts / rows - rate) < 0.05, (blank_images, rows)


def test_augmentation_changes_most_images_and_is_seeded():
    examples = numbered_examples(200)
    for n in range(200):  # an asymmetric picture, so a flip or a shift shows
        pixels = np.zeros((SIZE, SIZE, 3), np.uint8)
        pixels[:, : SIZE // 2 - 1] = 255
        pixels[0, 0, 2] = n % 256
        examples.images[n] = image_bytes(pixels, "PNG")
    preprocessor = preprocessor_for(examples)

    def images(augment, seed=0):
        dataset = make_dataset(examples, preprocessor, 200, training=True, augment=augment, seed=seed)
        return next(iter(dataset))[0]["image"].numpy()

    plain, augmented = images(False), images(True)
    # both in the same order: the shuffle is seeded alike
    changed = np.mean([not np.array_equal(a, b) for a, b in zip(plain, augmented)])
    assert changed > 0.6
    # the white band starts on the left; a flip moves it right (a shift moves it one pixel at most)
    flipped = np.mean([image[:, SIZE // 2:].mean() > image[:, : SIZE // 2].mean() for image in augmented])
    assert 0.35 < flipped < 0.65
    np.testing.assert_array_equal(images(True), augmented)
    assert not np.array_equal(images(True, seed=1), augmented)
