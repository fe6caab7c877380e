"""The built-in demo data set, made so that neither modality alone can solve it.

Rule: label = "<shape family>_<condition>". The image shows one shape on a noisy background;
its family is `round` (circle, ring) or `angular` (square, triangle). The text is a short listing
whose single condition word says `new` (new, unused, sealed, ...) or `used` (used, worn, ...).
So an image-only model can at best tell the family (50% of 4 classes), a text-only model the
condition (50%), and only a model that fuses both can reach ~100%. `price` is weakly tied to
the condition and `seller` is noise, to exercise the tabular branch.
"""

from __future__ import annotations

import csv
import os

import numpy as np

SHAPES = {"round": ("circle", "ring"), "angular": ("square", "triangle")}
CONDITION_WORDS = {
    "new": ("new", "unused", "sealed", "mint", "unopened", "pristine"),
    "used": ("used", "worn", "secondhand", "scratched", "refurbished", "preowned"),
}
OPENERS = ("selling a", "for sale:", "listing one", "offering a", "got a", "here is a")
ITEMS = ("gadget", "lamp", "toy", "mug", "clock", "speaker", "vase", "badge", "coaster", "frame")
FILLERS = ("great price", "ships fast", "pick up only", "no returns", "from a smoke free home",
           "works well", "open to offers", "cash only", "bundle deals", "see photo")
SELLERS = ("north", "south", "east", "west")
BOXED_PHRASES = ("with original box", "still boxed", "in its box", "box included")


def make_demo(out: str = "data/demo", rows: int = 3000, seed: int = 0, image_size: int = 40,
              multi_label: bool = False) -> str:
    """Write the synthetic demo set, whose label needs both the image and the text.

    Args:
        out: Folder to write `images/*.png` and `demo.csv` (with a split column) into.
        rows: Number of examples, at least 40.
        seed: Seed of everything drawn.
        image_size: Side of the square images, in pixels.
        multi_label: Label each pair with a set of tags joined by `|` instead of one class.

    Returns:
        The path of `demo.csv`.

    Raises:
        ValueError: For fewer than 40 rows.
    """
    from PIL import Image

    if rows < 40:
        raise ValueError("the demo needs at least 40 rows")
    rng = np.random.default_rng(seed)
    image_dir = os.path.join(out, "images")
    os.makedirs(image_dir, exist_ok=True)
    records = []
    splits = _splits(rows, rng)
    for i in range(rows):
        family = rng.choice(list(SHAPES))
        condition = rng.choice(list(CONDITION_WORDS))
        shape = rng.choice(SHAPES[family])
        pixels = _draw(shape, image_size, rng)
        name = f"images/{i:05d}.png"
        Image.fromarray(pixels).save(os.path.join(out, name))
        price = rng.normal(60 if condition == "new" else 45, 20)
        text, label = _sentence(condition, rng), f"{family}_{condition}"
        if multi_label:
            boxed = rng.random() < 0.4
            text = f"{text}, {rng.choice(BOXED_PHRASES)}" if boxed else text
            label = "|".join([family, condition] + (["boxed"] if boxed else [])
                             + (["collectible"] if family == "round" and condition == "new" else []))
        records.append({
            "id": f"demo-{i:05d}",
            "image": name,
            "text": text,
            "price": "" if rng.random() < 0.05 else f"{max(price, 1.0):.2f}",
            "seller": str(rng.choice(SELLERS)),
            "label": label,
            "split": splits[i],
        })
    table = os.path.join(out, "demo.csv")
    temporary = table + ".tmp"
    with open(temporary, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(records[0]))
        writer.writeheader()
        writer.writerows(records)
    os.replace(temporary, table)
    return table


def _splits(rows: int, rng) -> list[str]:
    n_val = n_test = rows * 15 // 100
    splits = ["val"] * n_val + ["test"] * n_test + ["train"] * (rows - n_val - n_test)
    return [str(split) for split in rng.permutation(splits)]


def _sentence(condition: str, rng) -> str:
    words = [rng.choice(OPENERS), rng.choice(CONDITION_WORDS[condition]), rng.choice(ITEMS)]
    fillers = rng.choice(FILLERS, size=rng.integers(1, 3), replace=False)
    return " ".join(words) + ", " + ", ".join(fillers)


def _draw(shape: str, size: int, rng) -> np.ndarray:
    """A shape in a random colour, size and place over coloured noise."""
    background = rng.integers(0, 256, 3)
    noise = rng.normal(0, 25, (size, size, 3))
    image = np.clip(background * 0.6 + 50 + noise, 0, 255)
    color = rng.integers(0, 256, 3)
    # Keep the shape distinct from its background, or some images would be unreadable by design.
    while np.abs(color - (background * 0.6 + 50)).sum() < 200:
        color = rng.integers(0, 256, 3)
    radius = rng.uniform(0.22, 0.36) * size
    cy, cx = rng.uniform(radius + 1, size - radius - 1, 2)
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    dy, dx = yy - cy, xx - cx
    distance = np.sqrt(dy**2 + dx**2)
    if shape == "circle":
        mask = distance <= radius
    elif shape == "ring":
        mask = (distance <= radius) & (distance >= radius * 0.55)
    elif shape == "square":
        half = radius * 0.85
        mask = (np.abs(dy) <= half) & (np.abs(dx) <= half)
    else:  # triangle pointing up
        top, bottom = cy - radius, cy + radius * 0.8
        width_at = (yy - top) / (bottom - top) * radius
        mask = (yy >= top) & (yy <= bottom) & (np.abs(dx) <= width_at)
    image[mask] = color
    return image.astype(np.uint8)
