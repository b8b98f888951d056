"""The training data pipeline: domain folders, errors that name the file, exact resume, balance, augmentation."""

from __future__ import annotations

import io
import itertools
import warnings
from collections import Counter
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageFile
from torch import Tensor

from stargan_v2.data import (
    BadImageWarning,
    DataError,
    DomainFolders,
    ImageList,
    TrainBatches,
    check_same_domains,
    crop_box,
    load_image,
    scan_domains,
    to_step_inputs,
    train_loader,
)
from stargan_v2.train import StepInputs

RGB = tuple[int, int, int]
KEYS = ("x_src", "y_src", "x_ref", "x_ref2", "y_ref", "z_trg", "z_trg2", "bad_images")


def _flat(path: Path, mode: str, rgb: RGB, size: tuple[int, int] = (40, 40)) -> None:
    """Save a flat image whose RGB conversion is exactly ``rgb`` (grey for mode L)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "P":
        image = Image.new("P", size, 0)
        image.putpalette(list(rgb) + [0] * 765)
    elif mode == "L":
        image = Image.new("L", size, rgb[0])
    elif mode == "RGBA":
        image = Image.new("RGBA", size, (*rgb, 128))
    else:
        image = Image.new("RGB", size, rgb)
    image.save(path)


def _colour(k: int, mode: str) -> RGB:
    """A distinct colour for image number ``k`` (never equal across k, also between grey and colour images)."""
    return (5 + 8 * k,) * 3 if mode == "L" else (5 + 8 * k, 250 - 8 * k, 60)


def make_dataset(root: Path, layout: dict[str, list[tuple[str, str]]]) -> dict[RGB, tuple[str, Path]]:
    """Write flat images ``root/domain/relpath`` in the given modes; return colour -> (domain, path)."""
    colours: dict[RGB, tuple[str, Path]] = {}
    for k, (domain, (rel, mode)) in enumerate((d, item) for d, items in layout.items() for item in items):
        path = root / domain / rel
        _flat(path, mode, _colour(k, mode))
        # Lossy formats (jpg, webp) may shift a flat colour a little: key by what the file decodes to.
        with Image.open(path) as image:
            colours[image.convert("RGB").getpixel((0, 0))] = (domain, path)
    assert len(colours) == k + 1, "colours must stay distinct"
    return colours


@pytest.fixture
def dataset(tmp_path: Path) -> tuple[Path, dict[RGB, tuple[str, Path]]]:
    """3 domains x 5 images of several colour modes, nested folders, upper-case extensions and decoys."""
    root = tmp_path / "train"
    modes = ("RGB", "L", "RGBA", "P", "RGB")
    layout = {
        # Written out of order: labels must come from the sorted names.
        "wild": [(f"w{i}.jpg" if m == "RGB" and i == 0 else f"w{i}.png", m) for i, m in enumerate(modes)],
        "cat": [(f"c{i}.png", m) for i, m in enumerate(modes[:4])] + [("sub/deeper/c4.PNG", "RGB")],
        "dog": [(f"d{i}.png", m) for i, m in enumerate(modes[:4])] + [("d4.webp", "RGB")],
    }
    colours = make_dataset(root, layout)
    # Files that must be ignored: sidecars, text, hidden files and folders.
    (root / "cat" / "c0.json").write_text('{"label": "cat"}')
    (root / "dog" / "notes.txt").write_text("not an image")
    (root / "dog" / ".hidden.png").write_bytes(b"garbage")
    (root / "dog" / ".ipynb_checkpoints").mkdir()
    (root / "dog" / ".ipynb_checkpoints" / "d0.png").write_bytes(b"garbage")
    (root / ".cache").mkdir()
    return root, colours


def _pixel_colours(x: Tensor) -> list[RGB]:
    """The top-left colour of each image of a ``(B, 3, H, W)`` batch in ``[-1, 1]``, as uint8 RGB."""
    values = ((x[:, :, 0, 0] + 1) / 2 * 255).round().to(torch.int64)
    return [tuple(v) for v in values.tolist()]


def _batches(folders: DomainFolders, **overrides) -> TrainBatches:
    kwargs = dict(img_size=16, batch_size=4, randcrop_prob=0.5, latent_dim=8, seed=3, rank=0)
    kwargs.update(overrides)
    return TrainBatches(folders, **kwargs)


def _assert_same(a: dict[str, Tensor], b: dict[str, Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


# ---------------------------------------------------------------------------------------------------------------
# scan_domains
# ---------------------------------------------------------------------------------------------------------------


def test_scan_sorted_domains_recursive_and_ignores_other_files(dataset) -> None:
    root, _ = dataset
    folders = scan_domains(root, num_domains=3)
    assert folders.root == root
    assert folders.domains == ("cat", "dog", "wild")
    assert folders.num_images == 15
    assert [len(f) for f in folders.files] == [5, 5, 5]
    names = [[p.name for p in files] for files in folders.files]
    assert names[0] == ["c0.png", "c1.png", "c2.png", "c3.png", "c4.PNG"]  # found in sub/deeper/
    assert names[1] == ["d0.png", "d1.png", "d2.png", "d3.png", "d4.webp"]
    assert names[2] == ["w0.jpg", "w1.png", "w2.png", "w3.png", "w4.png"]
    for files in folders.files:
        assert list(files) == sorted(files)


def test_scan_errors_name_the_folder(tmp_path: Path, dataset) -> None:
    root, _ = dataset
    with pytest.raises(DataError, match="does not exist"):
        scan_domains(tmp_path / "nope")
    with pytest.raises(DataError, match="is not a folder"):
        scan_domains(root / "cat" / "c0.png")

    flat = tmp_path / "flat"
    _flat(flat / "a.png", "RGB", (1, 2, 3))
    with pytest.raises(DataError, match=r"flat has no sub-folders: expected one sub-folder per domain.*1 image"):
        scan_domains(flat)

    with pytest.raises(DataError, match=r"config says 2 domains but .*train has 3: cat, dog, wild.*num_domains=3"):
        scan_domains(root, num_domains=2)

    (root / "empty" / "nested").mkdir(parents=True)
    (root / "empty" / "nested" / "meta.json").write_text("{}")
    with pytest.raises(DataError, match=r"train/empty contain no images"):
        scan_domains(root)


def test_check_same_domains(tmp_path: Path, dataset) -> None:
    root, _ = dataset
    train = scan_domains(root)
    make_dataset(tmp_path / "val", {"cat": [("a.png", "RGB")], "dog": [("b.png", "RGB")], "wild": [("c.png", "L")]})
    check_same_domains(train, scan_domains(tmp_path / "val"))

    make_dataset(tmp_path / "bad_val", {"cat": [("a.png", "RGB")], "wolf": [("b.png", "RGB")]})
    with pytest.raises(DataError, match=r"missing from .*bad_val: dog, wild; not in .*train: wolf"):
        check_same_domains(train, scan_domains(tmp_path / "bad_val"))


def test_min_size_names_the_file(tmp_path: Path, dataset) -> None:
    root, _ = dataset
    scan_domains(root, min_size=40)
    _flat(root / "dog" / "small.png", "RGB", (1, 2, 3), size=(50, 30))
    with pytest.raises(DataError, match=r"image size 32 px.*small\.png \(50x30\).*smaller img_size"):
        scan_domains(root, min_size=32)

    (root / "dog" / "small.png").unlink()
    (root / "cat" / "broken.jpg").write_bytes(b"\x00" * 100)
    with pytest.raises(DataError, match=r"broken\.jpg.*--skip-bad-images"):
        scan_domains(root, min_size=32)
    with pytest.warns(BadImageWarning, match=r"broken\.jpg"):
        folders = scan_domains(root, min_size=32, skip_bad_images=True)
    assert root / "cat" / "broken.jpg" in folders.files[0]


# ---------------------------------------------------------------------------------------------------------------
# load_image and ImageList
# ---------------------------------------------------------------------------------------------------------------


def test_load_image_shape_range_and_modes(dataset) -> None:
    _, colours = dataset
    for rgb, (_, path) in colours.items():
        x = load_image(path, 16)
        assert x.shape == (3, 16, 16) and x.dtype == torch.float32
        assert x.min() >= -1 and x.max() <= 1
        assert _pixel_colours(x[None]) == [rgb], path.name


def _noise_image(fmt: str) -> bytes:
    g = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (64, 64, 3), dtype=torch.uint8, generator=g).numpy()
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("random.png", bytes(range(256)) * 4),
        ("half.png", _noise_image("PNG")[: len(_noise_image("PNG")) // 2]),
        ("half.jpg", _noise_image("JPEG")[: len(_noise_image("JPEG")) // 2]),
    ],
)
def test_load_image_bad_file_names_it(tmp_path: Path, name: str, content: bytes) -> None:
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False  # truncated files must fail
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError, match=rf"{name}.*--skip-bad-images"):
        load_image(path, 16)


def test_image_list_order_and_labels(dataset) -> None:
    root, colours = dataset
    folders = scan_domains(root)
    images = ImageList(folders, 16)
    assert len(images) == 15
    expected = [(p, label) for label, files in enumerate(folders.files) for p in files]
    for i, (path, label) in enumerate(expected):
        x, y = images[i]
        assert y == label and x.shape == (3, 16, 16)
        assert colours[_pixel_colours(x[None])[0]][1] == path


# ---------------------------------------------------------------------------------------------------------------
# TrainBatches: contents, determinism, resume
# ---------------------------------------------------------------------------------------------------------------


def test_batch_shapes_dtypes_ranges(dataset) -> None:
    folders = scan_domains(dataset[0])
    item = _batches(folders, batch_size=5, img_size=32)[7]
    assert set(item) == set(KEYS)
    for key in ("x_src", "x_ref", "x_ref2"):
        assert item[key].shape == (5, 3, 32, 32) and item[key].dtype == torch.float32
        assert item[key].min() >= -1 and item[key].max() <= 1
    for key in ("y_src", "y_ref"):
        assert item[key].shape == (5,) and item[key].dtype == torch.int64
        assert item[key].min() >= 0 and item[key].max() < 3
    for key in ("z_trg", "z_trg2"):
        assert item[key].shape == (5, 8) and item[key].dtype == torch.float32
    assert not torch.equal(item["z_trg"], item["z_trg2"])
    assert item["bad_images"].shape == () and item["bad_images"].dtype == torch.int64 and item["bad_images"] == 0

    inputs = to_step_inputs(item, "cpu")
    assert isinstance(inputs, StepInputs)
    assert torch.equal(inputs.y_trg, item["y_ref"]) and torch.equal(inputs.x_ref2, item["x_ref2"])


def test_batches_are_a_pure_function_of_seed_rank_step(dataset) -> None:
    folders = scan_domains(dataset[0])
    a, b = _batches(folders), _batches(folders)
    _assert_same(a[5], b[5])
    _assert_same(a[5], a[5])  # no hidden state between calls
    for other in (a[6], _batches(folders, rank=1)[5], _batches(folders, seed=4)[5]):
        assert not torch.equal(a[5]["z_trg"], other["z_trg"])
        assert not torch.equal(a[5]["x_src"], other["x_src"])


def test_loader_workers_and_resume_give_the_same_batches(dataset) -> None:
    batches = _batches(scan_domains(dataset[0]))
    direct = [batches[step] for step in range(6)]
    serial = list(train_loader(batches, 0, 6, num_workers=0))
    parallel = list(train_loader(batches, 0, 6, num_workers=2))
    resumed = list(train_loader(batches, 4, 6, num_workers=2))
    assert len(serial) == len(parallel) == 6 and len(resumed) == 2
    for step in range(6):
        _assert_same(direct[step], serial[step])
        _assert_same(direct[step], parallel[step])
    for got, want in zip(resumed, direct[4:], strict=True):
        _assert_same(got, want)
    with pytest.raises(ValueError, match="start_step"):
        train_loader(batches, 7, 6)


# ---------------------------------------------------------------------------------------------------------------
# Sampling: class balance and reference pairs
# ---------------------------------------------------------------------------------------------------------------


def test_sampling_is_class_balanced_and_reference_pairs_share_a_domain(tmp_path: Path) -> None:
    layout = {"one": [("only.png", "RGB")], "many": [(f"{i:02d}.png", "RGB") for i in range(20)]}
    colours = make_dataset(tmp_path, layout)
    folders = scan_domains(tmp_path)
    assert folders.domains == ("many", "one")
    batches = _batches(folders, batch_size=16, randcrop_prob=0.0)
    y_src, y_ref, seen = Counter(), Counter(), Counter()
    for step in range(100):
        item = batches[step]
        y_src.update(item["y_src"].tolist())
        y_ref.update(item["y_ref"].tolist())
        src = [colours[c] for c in _pixel_colours(item["x_src"])]
        ref = [colours[c] for c in _pixel_colours(item["x_ref"])]
        ref2 = [colours[c] for c in _pixel_colours(item["x_ref2"])]
        for b in range(16):
            assert src[b][0] == folders.domains[item["y_src"][b]]
            assert ref[b][0] == ref2[b][0] == folders.domains[item["y_ref"][b]]
            if ref[b][0] == "many":
                assert ref[b][1] != ref2[b][1]  # two different images when the domain has several
        seen.update(path for domain, path in src + ref + ref2 if domain == "many")
    for counts in (y_src, y_ref):
        assert 0.4 < counts[1] / 1600 < 0.6  # the 1-image domain is drawn as often as the 20-image one
    assert len(seen) == 20 and min(seen.values()) > 0.4 * max(seen.values())


# ---------------------------------------------------------------------------------------------------------------
# Augmentation
# ---------------------------------------------------------------------------------------------------------------


def _structured(path: Path) -> None:
    """A 48x40 image with a horizontal and a vertical ramp, so flips and crops show."""
    ramp_x = torch.linspace(0, 255, 40).round().to(torch.uint8)
    ramp_y = torch.linspace(255, 0, 48).round().to(torch.uint8)
    pixels = torch.stack(
        [ramp_x.expand(48, 40), ramp_y[:, None].expand(48, 40), torch.full((48, 40), 100, dtype=torch.uint8)], -1
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.numpy()).save(path)


def test_flat_images_stay_flat(tmp_path: Path) -> None:
    colours = make_dataset(tmp_path, {"a": [("x.png", "RGB")], "b": [("y.png", "L")]})
    folders = scan_domains(tmp_path)
    for prob in (0.0, 1.0):
        item = _batches(folders, randcrop_prob=prob, batch_size=8)[0]
        for key in ("x_src", "x_ref", "x_ref2"):
            rgb = torch.tensor(_pixel_colours(item[key]), dtype=torch.float32) / 255 * 2 - 1
            assert torch.allclose(item[key], rgb[:, :, None, None].expand_as(item[key]), atol=1e-5)
            assert all(c in colours for c in _pixel_colours(item[key]))


def test_crops_and_flips(tmp_path: Path) -> None:
    _structured(tmp_path / "a" / "ramp.png")
    folders = scan_domains(tmp_path)
    base = load_image(folders.files[0][0], 16)
    flipped = base.flip(-1)
    no_crop = _batches(folders, randcrop_prob=0.0, batch_size=8)
    crop = _batches(folders, randcrop_prob=1.0, batch_size=8)
    flips = 0
    for step in range(10):
        plain = no_crop[step]
        for x in itertools.chain(plain["x_src"], plain["x_ref"], plain["x_ref2"]):
            is_base, is_flip = torch.allclose(x, base, atol=1e-6), torch.allclose(x, flipped, atol=1e-6)
            assert is_base != is_flip
            flips += is_flip
        # Same step, same flip coins: only the crop differs.
        assert not torch.allclose(crop[step]["x_src"], plain["x_src"], atol=1e-3)
    assert 0.3 < flips / 240 < 0.7


def test_crop_box_follows_the_recipe() -> None:
    g = torch.Generator().manual_seed(0)
    for height, width in ((40, 40), (48, 40), (30, 90)):
        for _ in range(50):
            top, left, h, w = crop_box(height, width, torch.rand(40, generator=g).tolist())
            assert top >= 0 and top + h <= height and left >= 0 and left + w <= width
            if (height, width) != (30, 90):  # a 3:1 image never fits the ratio range: central fallback
                assert 0.8 * height * width * 0.95 <= h * w <= height * width
                assert 0.9 * 0.95 <= w / h <= 1.1 * 1.05
    assert crop_box(30, 90, [0.5] * 40) == (0, 28, 30, 33)  # the central crop of ratio 1.1


# ---------------------------------------------------------------------------------------------------------------
# Unreadable files
# ---------------------------------------------------------------------------------------------------------------


def test_bad_images_fail_or_are_skipped(tmp_path: Path) -> None:
    make_dataset(tmp_path, {"a": [(f"{i}.png", "RGB") for i in range(3)], "b": [("0.png", "RGB"), ("1.png", "L")]})
    (tmp_path / "a" / "3_bad.png").write_bytes(bytes(range(256)))
    folders = scan_domains(tmp_path)
    strict = _batches(folders, batch_size=8, skip_bad_images=False)
    for step in range(50):
        try:
            strict[step]
        except DataError as e:
            assert "3_bad.png" in str(e) and "--skip-bad-images" in str(e)
            break
    else:
        pytest.fail("the bad file was never drawn")
    with pytest.raises(DataError, match=r"3_bad\.png"):  # also from a worker process
        list(train_loader(strict, step, step + 1, num_workers=1))

    lenient = _batches(folders, batch_size=8, skip_bad_images=True)
    with pytest.warns(BadImageWarning, match=r"3_bad\.png"):
        item = lenient[step]
    assert item["bad_images"] > 0
    assert item["x_src"].shape == item["x_ref"].shape == item["x_ref2"].shape == (8, 3, 16, 16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # known bad: not warned about again, but still counted
        _assert_same(lenient[step], item)
    with pytest.warns(BadImageWarning):  # a fresh process (another worker) gives the same batch
        _assert_same(_batches(folders, batch_size=8, skip_bad_images=True)[step], item)


def test_an_unreadable_domain_is_an_error(tmp_path: Path) -> None:
    make_dataset(tmp_path, {"a": [("0.png", "RGB")]})
    (tmp_path / "b").mkdir()
    for i in range(2):
        (tmp_path / "b" / f"{i}.png").write_bytes(b"not a png")
    batches = _batches(scan_domains(tmp_path), batch_size=8, skip_bad_images=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BadImageWarning)
        with pytest.raises(DataError, match=r"none of the 2 image\(s\) of domain 'b'"):
            for step in range(20):
                batches[step]
