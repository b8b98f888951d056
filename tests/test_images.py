"""``stargan_v2.images``: the public image I/O that training, translation, the web demo and alignment share."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stargan_v2 import data, images
from stargan_v2.images import DataError, find_images, image_to_tensor, list_images, read_image, save_image, to_pil


def _png(path: Path, size: tuple[int, int] = (12, 8)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def test_data_keeps_the_names_it_exported():
    assert data.DataError is images.DataError
    assert data.IMAGE_EXTENSIONS == images.IMAGE_EXTENSIONS and data.MAX_IMAGE_PIXELS == images.MAX_IMAGE_PIXELS
    assert data.decode_rgb is images.decode_rgb


def test_finds_images_recursively_skipping_hidden_files(tmp_path):
    a = _png(tmp_path / "a" / "x.png")
    b = _png(tmp_path / "b.JPG")
    _png(tmp_path / "._b.png")
    _png(tmp_path / ".hidden" / "c.png")
    (tmp_path / "notes.txt").write_text("no image")
    assert find_images(tmp_path) == sorted([a, b])
    assert list_images(a) == [a]
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        list_images(tmp_path / "missing")
    with pytest.raises(DataError, match="holds no images"):
        list_images(_empty(tmp_path))


def _empty(tmp_path: Path) -> Path:
    (tmp_path / "empty").mkdir()
    return tmp_path / "empty"


def test_read_image_names_the_file(tmp_path):
    path = _png(tmp_path / "ok.png", (12, 8))
    assert read_image(path).shape == (3, 8, 12) and read_image(path).dtype == torch.uint8
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a picture")
    with pytest.raises(DataError, match=r"bad\.png is not a readable image"):
        read_image(bad)
    with pytest.raises(DataError, match="is a folder"):
        read_image(tmp_path)


def test_image_to_tensor_takes_pil_paths_and_tensors(tmp_path):
    path = _png(tmp_path / "x.png")
    from_path, where = image_to_tensor(path)
    from_pil, none = image_to_tensor(Image.open(path))
    assert where == path and none is None and torch.equal(from_path, from_pil)
    grey = torch.zeros(1, 4, 4)
    assert image_to_tensor(grey)[0].shape == (3, 4, 4)
    with pytest.raises(ValueError, match=r"ref\[1\]: float image tensors must be in \[-1, 1\]"):
        image_to_tensor(torch.full((3, 4, 4), 2.0), "ref[1]")
    with pytest.raises(ValueError, match="shape"):
        image_to_tensor(torch.zeros(4, 4))
    with pytest.raises(TypeError, match="expected a PIL image"):
        image_to_tensor(3)  # type: ignore[arg-type]


def test_tensor_to_picture_and_file(tmp_path):
    x = torch.linspace(-1, 1, 3 * 4 * 5).reshape(3, 4, 5)
    picture = to_pil(x)
    assert picture.size == (5, 4) and picture.mode == "RGB"
    path = save_image(x, tmp_path / "out" / "x.png")
    assert np.array_equal(np.asarray(Image.open(path)), np.asarray(picture))
    with pytest.raises(ValueError, match=r"use a \.png or \.jpg"):
        save_image(x, tmp_path / "x.gif")
