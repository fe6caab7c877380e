import numpy as np
import pytest

from conftest import image_bytes
from fusionapp.data.images import check_image_file, find_undecodable
from fusionapp.preprocessing.image import decode_image

RGB = np.zeros((20, 30, 3), dtype=np.uint8)
RGB[:, :15] = (255, 0, 0)  # left half red, right half black


@pytest.mark.parametrize("fmt,mode", [("JPEG", None), ("PNG", None), ("GIF", None), ("BMP", None),
                                      ("PNG", "L"), ("PNG", "RGBA"), ("JPEG", "L"), ("GIF", "P")])
def test_decoder_gives_rgb_of_the_requested_size(fmt, mode):
    image = decode_image(image_bytes(RGB, fmt, mode), 16).numpy()
    assert image.shape == (16, 16, 3) and image.dtype == np.uint8
    left, right = image[:, :6].mean(axis=(0, 1)), image[:, 10:].mean(axis=(0, 1))
    if mode == "L":
        assert np.allclose(left, left[0], atol=3)  # gray stays gray in all three channels
        assert left.mean() > right.mean() + 40
    else:
        assert left[0] > 200 and left[1] < 60 and right.max() < 60


def test_animated_gif_gives_its_first_frame():
    from PIL import Image
    import io

    frames = [Image.fromarray(np.full((8, 8, 3), value, np.uint8)) for value in (250, 0)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])
    assert decode_image(buffer.getvalue(), 8).numpy().mean() > 200


def test_check_image_file_names_the_problem(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("not an image")
    (tmp_path / "ok.png").write_bytes(image_bytes(RGB, "PNG"))
    assert "empty file" in check_image_file(str(tmp_path / "empty.jpg"))
    assert "not a JPEG, PNG, GIF or BMP" in check_image_file(str(tmp_path / "text.jpg"))
    assert "does not exist" in check_image_file(str(tmp_path / "missing.jpg"))
    assert "is a directory" in check_image_file(str(tmp_path))
    assert check_image_file(str(tmp_path / "ok.png")) is None


def test_find_undecodable_reports_truncated_files_by_index(tmp_path):
    good = image_bytes(RGB, "JPEG")
    paths = []
    for i, data in enumerate([good, good[: len(good) // 2], good]):
        path = tmp_path / f"{i}.jpg"
        path.write_bytes(data)
        paths.append(str(path))
    failures = find_undecodable(paths, from_files=True)
    assert list(failures) == [1]
    assert "cannot be decoded" in failures[1]
