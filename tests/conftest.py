"""Tiny synthetic fixtures shared by the tests; nothing here downloads anything."""

from __future__ import annotations

import io
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest

# Small enough for a 2-core CI machine: 32 px images and narrow blocks.
TINY_MODEL = {"image_size": 32, "image_filters": (16, 32), "image_stem_filters": 16, "text_filters": 16,
              "text_embedding_dim": 16, "branch_units": 32, "fusion_units": 32}


def run_cli(capsys, *args):
    """Run `fusionapp ARGS` in-process; return (exit code, stdout, stderr)."""
    from fusionapp.cli import main

    try:
        main([str(arg) for arg in args])
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def image_bytes(array: np.ndarray, fmt: str, mode: str | None = None) -> bytes:
    from PIL import Image

    image = Image.fromarray(array)
    if mode:
        image = image.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory):
    from fusionapp.data.demo import make_demo

    out = tmp_path_factory.mktemp("demo")
    make_demo(str(out), rows=160, seed=1)
    return out


@pytest.fixture(scope="session")
def demo_table(demo_dir):
    return str(demo_dir / "demo.csv")


@pytest.fixture(scope="session")
def trained_run(demo_table, tmp_path_factory):
    """One tiny run on the demo table shared by the evaluate/predict tests."""
    from fusionapp import train

    out = tmp_path_factory.mktemp("runs") / "tiny"
    return train(demo_table, str(out), epochs=2, tabular_col=("price", "seller"), verbose=0, **TINY_MODEL)
