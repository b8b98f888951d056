"""Hostile and broken image files: each one is used correctly or reported by name, and never crashes a run.

Every file is made here with Pillow (or by hand, byte by byte, where Pillow will not write it). A case is either
*used* (``load_image`` gives the right ``(3, S, S)`` picture in ``[-1, 1]``) or *refused* (a ``DataError`` naming
the file, and with ``skip_bad_images`` a warning naming it and a replacement image). A seeded mutation fuzzer
then checks the same promise on files damaged at random. docs/RELIABILITY.md lists the cases.
"""

from __future__ import annotations

import io
import random
import re
import struct
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from stargan_v2.api import read_image
from stargan_v2.cli import main
from stargan_v2.config import preset
from stargan_v2.data import (
    MAX_IMAGE_PIXELS,
    BadImageWarning,
    DataError,
    TrainBatches,
    _read_rgb,
    load_image,
    scan_domains,
)
from stargan_v2.run import RunOptions, train

# Pillow warns about damaged EXIF blocks (and then ignores them, as the loader does).
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:PIL.TiffImagePlugin")

S = 32  # the tiny preset's image size: every used image is at least this large, as training requires
RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


# ---------------------------------------------------------------------------------------------------------------
# Writing the files
# ---------------------------------------------------------------------------------------------------------------


def _save(image: Image.Image, fmt: str, **kw: object) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        image.save(path, format=fmt, **kw)

    return write


def _bytes(data: bytes) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(data)


def _encoded(image: Image.Image, fmt: str, **kw: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kw)
    return buffer.getvalue()


def _halves(size: tuple[int, int], left: tuple[int, ...], right: tuple[int, ...], mode: str = "RGB") -> Image.Image:
    """An image whose left half is ``left`` and right half ``right``."""
    image = Image.new(mode, size, left)
    image.paste(Image.new(mode, (size[0] - size[0] // 2, size[1]), right), (size[0] // 2, 0))
    return image


def _noise(size: int = 48, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray((rng.random((size, size, 3)) * 255).astype(np.uint8))


def _png(width: int, height: int, bit_depth: int, colour_type: int, idat: bytes) -> bytes:
    """A PNG file from its parts, for what Pillow cannot write (16-bit colour) or would refuse (huge sizes)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _png16(samples: tuple[int, ...], colour_type: int, size: int = 48) -> bytes:
    """A solid 16-bit PNG (colour type 2: RGB, 6: RGBA, 4: grey + alpha)."""
    row = b"\x00" + struct.pack(f">{len(samples)}H", *samples) * size
    return _png(size, size, 16, colour_type, zlib.compress(row * size))


def _gray16(top: int, bottom: int, size: int = 48) -> Image.Image:
    """A 16-bit greyscale image (mode I;16): ``top`` in the upper half, ``bottom`` in the lower."""
    levels = np.full((size, size), top, dtype=np.uint16)
    levels[size // 2 :] = bottom
    return Image.fromarray(levels)


def _zlib_bomb(side: int) -> bytes:
    """A greyscale PNG of ``side`` x ``side`` zero pixels: ~100 KB on disk, ``side**2`` bytes once decoded."""
    packer = zlib.compressobj(9)
    row = bytes(side + 1)  # filter byte + pixels
    idat = b"".join(packer.compress(row * 500) for _ in range(side // 500)) + packer.flush()
    return _png(side, side, 8, 0, idat)


def _orientation(value: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = value  # the Orientation tag
    return exif


def _with_exif(image: Image.Image, fmt: str, orientation: int) -> Callable[[Path], None]:
    return _save(image, fmt, exif=_orientation(orientation))


def _palette(transparency: int | bytes | None) -> Image.Image:
    image = Image.new("P", (48, 48), 0)
    image.paste(1, (24, 0, 48, 48))
    image.putpalette([*RED, *GREEN, *BLUE] + [0] * (256 * 3 - 9))
    if transparency is not None:
        image.info["transparency"] = transparency
    return image


def _cut(data: bytes) -> bytes:
    return data[: len(data) // 2]


# ---------------------------------------------------------------------------------------------------------------
# The cases
# ---------------------------------------------------------------------------------------------------------------


def _rgb_at(x: torch.Tensor, row: int, col: int) -> tuple[int, ...]:
    """The pixel of a ``(3, S, S)`` image in ``[-1, 1]`` as 0..255 integers."""
    return tuple(int(v) for v in ((x[:, row, col] + 1) / 2 * 255).round())


def _close(a: tuple[int, ...], b: tuple[int, ...], tol: int = 0) -> bool:
    return all(abs(p - q) <= tol for p, q in zip(a, b, strict=True))


def _solid(colour: tuple[int, ...], tol: int = 0) -> Callable[[torch.Tensor], None]:
    def check(x: torch.Tensor) -> None:
        for row, col in ((0, 0), (S // 2, S // 2), (S - 1, S - 1)):
            assert _close(_rgb_at(x, row, col), colour, tol), (_rgb_at(x, row, col), colour)

    return check


def _left_right(left: tuple[int, ...], right: tuple[int, ...], tol: int = 0) -> Callable[[torch.Tensor], None]:
    def check(x: torch.Tensor) -> None:
        assert _close(_rgb_at(x, S // 2, 2), left, tol), (_rgb_at(x, S // 2, 2), left)
        assert _close(_rgb_at(x, S // 2, S - 3), right, tol), (_rgb_at(x, S // 2, S - 3), right)

    return check


def _top_bottom(top: tuple[int, ...], bottom: tuple[int, ...], tol: int = 0) -> Callable[[torch.Tensor], None]:
    def check(x: torch.Tensor) -> None:
        assert _close(_rgb_at(x, 2, S // 2), top, tol), (_rgb_at(x, 2, S // 2), top)
        assert _close(_rgb_at(x, S - 3, S // 2), bottom, tol), (_rgb_at(x, S - 3, S // 2), bottom)

    return check


def _gray(level: int) -> tuple[int, int, int]:
    return (level, level, level)


_COLOUR = (10, 200, 30)
_CORRUPT_EXIF = b"Exif\x00\x00MM\x00\x2a\x00\x00\x00\x08\x00\x05\x01\x12\x00\x03\xff\xff\xff\xff" + bytes(range(40))

#: Files that must be used, with what the loaded picture must show. JPEG is lossy: a tolerance of a few levels.
USED: dict[str, tuple[Callable[[Path], None], Callable[[torch.Tensor], None]]] = {
    "rgb.png": (_save(Image.new("RGB", (48, 48), _COLOUR), "PNG"), _solid(_COLOUR)),
    # Content decides the decoder, not the extension.
    "png_named.jpg": (_save(Image.new("RGB", (48, 48), _COLOUR), "PNG"), _solid(_COLOUR)),
    "jpeg_named.png": (_save(Image.new("RGB", (48, 48), _COLOUR), "JPEG", quality=95), _solid(_COLOUR, 4)),
    "baseline.jpg": (_save(_halves((48, 48), RED, BLUE), "JPEG", quality=95), _left_right(RED, BLUE, 8)),
    "progressive.jpg": (_save(_halves((48, 48), RED, BLUE), "JPEG", progressive=True), _left_right(RED, BLUE, 12)),
    "grey.jpg": (_save(Image.new("L", (48, 48), 90), "JPEG", quality=95), _solid(_gray(90), 2)),
    # Some cameras write MPO (several JPEGs in one file) under .jpg: the first picture is used.
    "mpo_camera.jpg": (
        _save(Image.new("RGB", (48, 48), RED), "MPO", save_all=True, append_images=[Image.new("RGB", (48, 48), BLUE)]),
        _solid(RED, 4),
    ),
    "lossless.webp": (_save(_halves((48, 48), RED, GREEN), "WEBP", lossless=True), _left_right(RED, GREEN)),
    "lossy.webp": (_save(_halves((48, 48), RED, GREEN), "WEBP", quality=90), _left_right(RED, GREEN, 16)),
    "rgb.bmp": (_save(_halves((48, 48), GREEN, BLUE), "BMP"), _left_right(GREEN, BLUE)),
    "grey_L.png": (_save(Image.new("L", (48, 48), 100), "PNG"), _solid(_gray(100))),
    "one_bit.png": (_save(_halves((48, 48), 0, 1, mode="1"), "PNG"), _left_right(_gray(0), _gray(255))),
    # 16-bit greyscale is scaled to 8 bits (v / 257), not clipped at 255 (which would make it white).
    "grey16_mid.png": (_save(_gray16(32768, 32768), "PNG"), _solid(_gray(128))),
    "grey16_dark_light.png": (_save(_gray16(0x1000, 0xC000), "PNG"), _top_bottom(_gray(16), _gray(191))),
    "rgb16.png": (_bytes(_png16((0x8000, 0x4000, 0xFFFF), 2)), _solid((128, 64, 255))),
    "rgba16.png": (_bytes(_png16((0x8000, 0x4000, 0xFFFF, 0x1000), 6)), _solid((128, 64, 255))),
    "grey_alpha16.png": (_bytes(_png16((0x8000, 0x0000), 4)), _solid(_gray(128))),
    # CMYK (0, 255, 255, 0) is red.
    "cmyk.jpg": (_save(Image.new("CMYK", (48, 48), (0, 255, 255, 0)), "JPEG", quality=95), _solid(RED, 6)),
    "palette.png": (_save(_palette(None), "PNG"), _left_right(RED, GREEN)),
    # Alpha is dropped, as in the authors' loader: the colour under a transparent pixel is kept.
    "palette_transparent.png": (_save(_palette(None), "PNG", transparency=0), _left_right(RED, GREEN)),
    "palette_alpha_table.png": (_save(_palette(None), "PNG", transparency=b"\x00\x80"), _left_right(RED, GREEN)),
    "rgba_transparent.png": (_save(Image.new("RGBA", (48, 48), (*BLUE, 0)), "PNG"), _solid(BLUE)),
    "rgba_half.webp": (_save(Image.new("RGBA", (48, 48), (*GREEN, 128)), "WEBP", lossless=True), _solid(GREEN)),
    "grey_alpha.png": (_save(Image.new("LA", (48, 48), (200, 0)), "PNG"), _solid(_gray(200))),
    # EXIF orientation 6 means "rotate 90 degrees clockwise to view": the stored left half is the top.
    "exif_rotate_90.jpg": (
        _with_exif(_halves((64, 32), RED, BLUE), "JPEG", 6),
        _top_bottom(RED, BLUE, 8),
    ),
    # Orientation 8 ("rotate 90 counter-clockwise"): the stored left half is the bottom. PNG keeps colours exact.
    "exif_rotate_270.png": (_with_exif(_halves((64, 32), RED, BLUE), "PNG", 8), _top_bottom(BLUE, RED)),
    "exif_mirror.png": (_with_exif(_halves((48, 48), RED, BLUE), "PNG", 2), _left_right(BLUE, RED)),
    # A malformed EXIF block is ignored, as viewers do; the pixels are fine.
    "corrupt_exif.jpg": (_save(Image.new("RGB", (48, 48), _COLOUR), "JPEG", exif=_CORRUPT_EXIF), _solid(_COLOUR, 4)),
}

_PNG = _encoded(_noise(), "PNG")
_JPEG = _encoded(_noise(), "JPEG")
_WEBP = _encoded(_noise(), "WEBP", quality=80)

_UNIDENTIFIED = "not a BMP, JPEG, PNG or WEBP image, or damaged before its first pixel"

#: Files that must be refused, with a pattern the error must contain besides the file's name.
REFUSED: dict[str, tuple[Callable[[Path], None], str]] = {
    "zero_bytes.png": (_bytes(b""), _UNIDENTIFIED),
    "text.png": (_bytes(b"this is a text file, not a picture\n" * 10), _UNIDENTIFIED),
    "random_bytes.jpg": (_bytes(random.Random(0).randbytes(3000)), _UNIDENTIFIED),
    "truncated.png": (_bytes(_cut(_PNG)), "truncated|OSError|SyntaxError"),
    "truncated.jpg": (_bytes(_cut(_JPEG)), "truncated|OSError"),
    "truncated.webp": (_bytes(_cut(_WEBP)), "OSError|truncated|not a"),
    "header_only.png": (_bytes(_PNG[:33]), _UNIDENTIFIED),
    # Formats outside IMAGE_FORMATS are refused, whatever the name: EPS would start Ghostscript.
    "gif_named.png": (_save(Image.new("RGB", (48, 48), _COLOUR), "GIF"), _UNIDENTIFIED),
    "eps_named.png": (
        _bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 48 48\n0 0 moveto 48 48 lineto stroke\n"),
        _UNIDENTIFIED,
    ),
    # Decompression bombs: a header declaring 60000 x 60000 pixels, and a real 9500 x 9500 zlib bomb (90M
    # pixels: Pillow itself would only warn). Both are refused from the header, before any decoding.
    "bomb_header.png": (_bytes(_png(60000, 60000, 8, 2, zlib.compress(b"\x00" * 100))), "pixels"),
    "bomb_zlib.png": (lambda path: path.write_bytes(_zlib_bomb(9500)), "more than the limit"),
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every case, written once into one folder."""
    root = tmp_path_factory.mktemp("corpus")
    for name, (write, _) in {**USED, **REFUSED}.items():
        write(root / name)
    return root


# ---------------------------------------------------------------------------------------------------------------
# One file at a time
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(USED))
def test_used_correctly(corpus: Path, name: str) -> None:
    x = load_image(corpus / name, S)
    assert x.shape == (3, S, S) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1
    USED[name][1](x)


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused_by_name(corpus: Path, name: str) -> None:
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    with pytest.raises(DataError, match=REFUSED[name][1]) as info:
        load_image(corpus / name, S)
    assert str(corpus / name) in str(info.value) and "--skip-bad-images" in str(info.value)


def test_translation_reads_images_as_training_does(corpus: Path) -> None:
    """``stargan_v2.api.read_image`` (translate, video, the web demo) decodes with the same rules."""
    for name in USED:
        x = read_image(corpus / name)
        assert torch.equal(x, _read_rgb(corpus / name)), name
    assert read_image(corpus / "exif_rotate_270.png").shape == (3, 64, 32)  # upright: taller than wide
    for name in REFUSED:
        with pytest.raises(DataError, match=re.escape(str(corpus / name))):
            read_image(corpus / name)


@pytest.mark.parametrize("name", ["bomb_header.png", "bomb_zlib.png"])
def test_bombs_are_never_decoded(corpus: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The size check reads only the header, and holds even if other code lifted Pillow's own limit."""

    def no_decoding(self: ImageFile.ImageFile) -> None:
        raise AssertionError("the pixels were decoded")

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    with pytest.raises(DataError, match=f"{MAX_IMAGE_PIXELS:,}"):
        load_image(corpus / name, S)


def _domain_folder(root: Path, corpus: Path, name: str) -> Path:
    """Domain ``a``: the case and two good images; domain ``b``: two good images."""
    for domain in ("a", "b"):
        (root / domain).mkdir(parents=True)
        for i in range(2):
            _noise(S + 8, seed=i).save(root / domain / f"good{i}.png")
    (root / "a" / name).write_bytes((corpus / name).read_bytes())
    return root


def _batches(root: Path, skip: bool) -> TrainBatches:
    return TrainBatches(scan_domains(root), S, 4, 0.5, 8, seed=0, skip_bad_images=skip)


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused_file_is_named_in_training_or_skipped(tmp_path: Path, corpus: Path, name: str) -> None:
    """Without skipping, the scan (unreadable header) or the first batch that draws the file names it; with
    ``skip_bad_images`` the scan warns, batches replace the file, warn naming it, and count it."""
    root = _domain_folder(tmp_path / "data", corpus, name)
    bad = root / "a" / name
    try:
        scan_domains(root, min_size=S)
    except DataError as e:
        assert str(bad) in str(e)  # found from the header alone
    else:
        with pytest.raises(DataError, match=str(bad)):
            strict = _batches(root, skip=False)
            for step in range(50):  # 12 draws a step from 5 files: the bad one is drawn early
                strict[step]

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scan_domains(root, min_size=S, skip_bad_images=True)
        lenient = _batches(root, skip=True)
        skipped = 0
        for step in range(50):
            batch = lenient[step]
            assert all(torch.isfinite(batch[k]).all() for k in ("x_src", "x_ref", "x_ref2"))
            skipped += int(batch["bad_images"])
    assert skipped > 0
    assert any(issubclass(w.category, BadImageWarning) and str(bad) in str(w.message) for w in caught)


# ---------------------------------------------------------------------------------------------------------------
# Random damage
# ---------------------------------------------------------------------------------------------------------------

FUZZ_CASES = 2000
FUZZ_SEED = 20240601


def _fuzz_seeds() -> dict[str, bytes]:
    noise = _noise()
    return {
        "png": _encoded(noise, "PNG"),
        "jpg": _encoded(noise, "JPEG", quality=90),
        "progressive.jpg": _encoded(noise, "JPEG", progressive=True),
        "exif.jpg": _encoded(noise, "JPEG", exif=_orientation(6)),
        "webp": _encoded(noise, "WEBP", quality=80),
        "lossless.webp": _encoded(noise, "WEBP", lossless=True),
        "bmp": _encoded(noise, "BMP"),
        "palette.png": _encoded(_palette(0), "PNG", transparency=0),
        "grey16.png": _encoded(_gray16(1000, 60000), "PNG"),
        "rgba16.png": _png16((1, 2, 3, 4), 6),
        "cmyk.jpg": _encoded(noise.convert("CMYK"), "JPEG"),
    }


def _mutate(data: bytes, r: random.Random) -> tuple[str, bytes]:
    """One random damage: cut short, flip one bit, overwrite bytes, insert bytes, or zero a run."""
    out = bytearray(data)
    op = r.choice(("cut", "flip", "overwrite", "insert", "zero"))
    where = r.randrange(len(out))
    if op == "cut":
        del out[where:]
    elif op == "flip":
        out[where] ^= 1 << r.randrange(8)
    elif op == "overwrite":
        for _ in range(r.randint(2, 20)):
            out[r.randrange(len(out))] = r.randrange(256)
    elif op == "insert":
        out[where:where] = r.randbytes(r.randint(1, 16))
    else:
        out[where : where + r.randint(1, 64)] = bytes(64)
    return op, bytes(out)


def test_fuzzed_files_are_used_or_refused_by_name(tmp_path: Path) -> None:
    """FUZZ_CASES damaged files: each loads as a finite (3, S, S) image in [-1, 1] or is a DataError naming it.

    Nothing else may happen: no other exception, no crash. (During development 50,000 more cases of this
    mutator, seeds 100-109, and 43,000 of an earlier one gave no other outcome either.)
    """
    r = random.Random(FUZZ_SEED)
    seeds = _fuzz_seeds()
    outcomes: dict[str, int] = {"used": 0, "refused": 0}
    for i in range(FUZZ_CASES):
        kind = r.choice(sorted(seeds))
        op, data = _mutate(seeds[kind], r)
        path = tmp_path / f"case{i:04d}_{op}.{kind.rsplit('.', 1)[-1]}"
        path.write_bytes(data)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow warns about some damaged metadata
            try:
                x = load_image(path, S)
            except DataError as e:
                assert str(path) in str(e), e
                outcomes["refused"] += 1
            else:
                assert x.shape == (3, S, S) and torch.isfinite(x).all(), path.name
                assert x.min() >= -1 and x.max() <= 1, path.name
                outcomes["used"] += 1
        path.unlink()
    # Both outcomes occur, so the fuzzer reaches the decoders rather than only their signature checks.
    assert min(outcomes.values()) > FUZZ_CASES // 10, outcomes


# ---------------------------------------------------------------------------------------------------------------
# A training run over the whole corpus
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus_data(tmp_path_factory: pytest.TempPathFactory, corpus: Path) -> Path:
    """Domain ``a``: the whole corpus; domain ``b``: five good images."""
    root = tmp_path_factory.mktemp("corpus_data")
    (root / "a").mkdir()
    (root / "b").mkdir()
    for path in corpus.iterdir():
        (root / "a" / path.name).write_bytes(path.read_bytes())
    for i in range(5):
        _noise(S + 8, seed=i).save(root / "b" / f"{i}.png")
    return root


def _argv(data: Path, run_dir: Path, *extra: str) -> list[str]:
    argv = ["train", "--data", str(data), "--run-dir", str(run_dir), "--preset", "tiny", "--iters", "2"]
    return [*argv, "--batch-size", "4", "--device", "cpu", "--no-progress", *extra]


def test_run_without_skipping_names_a_bad_file(
    tmp_path: Path, corpus_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_argv(corpus_data, tmp_path / "run")) == 2
    err = capsys.readouterr().err
    assert "--skip-bad-images" in err
    assert any(str(corpus_data / "a" / name) in err for name in REFUSED)
    assert not (tmp_path / "run" / "checkpoints").exists()


def _good_val(root: Path) -> Path:
    for domain in ("a", "b"):
        (root / domain).mkdir(parents=True)
        _noise(S, seed=7).save(root / domain / "v.png")
    return root


def test_run_with_skipping_finishes_and_counts(
    tmp_path: Path, corpus_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two steps over the corpus with --skip-bad-images: it finishes, and reports how many draws were skipped.

    The sample grids come from a clean validation folder here; the next test covers grids from the corpus.
    """
    val = _good_val(tmp_path / "val")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code = main(_argv(corpus_data, tmp_path / "run", "--skip-bad-images", "--val-data", str(val)))
    assert code == 0
    assert any(issubclass(w.category, BadImageWarning) for w in caught)
    out = capsys.readouterr().out
    assert "finished at step 2" in out
    assert "unreadable images" in out  # "skipped N unreadable images"
    assert (tmp_path / "run" / "checkpoints").is_dir()


def test_run_with_skipping_and_grids_from_the_corpus(tmp_path: Path, corpus_data: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BadImageWarning)
        result = train(
            preset("tiny").override(["total_iters=2", "batch_size=4", "sample_every=1000", "save_every=1000"]),
            RunOptions(run_dir=tmp_path / "run", data=corpus_data, skip_bad_images=True, progress=False),
        )
    assert result.step == 2 and result.bad_images > 0
