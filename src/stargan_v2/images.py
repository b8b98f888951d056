"""Image files and image values: finding, decoding, converting and saving pictures, with errors that name the file.

Every part of the package reads images the same way (training, translation, the web demo, alignment, FID):

- files are found by extension (``IMAGE_EXTENSIONS``, hidden files skipped) with :func:`find_images` /
  :func:`list_images`;
- they are read by content with the PNG, JPEG, BMP and WebP decoders only (``IMAGE_FORMATS``), refused above
  ``MAX_IMAGE_PIXELS`` before any pixel is decoded, turned upright by their EXIF orientation and converted to
  8-bit RGB (:func:`decode_rgb`, :func:`read_image`);
- an image given as a PIL image, a file path or a tensor becomes a ``(3, H, W)`` tensor with
  :func:`image_to_tensor`, and a ``(3, H, W)`` tensor in [-1, 1] becomes a picture again with :func:`to_pil`
  and :func:`save_image`.

What cannot be used is a :class:`DataError` (a ``ValueError``) whose message names the file and the problem.
"""

from __future__ import annotations

import contextlib
import os
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image, ImageOps
from torch import Tensor

PathLike = str | os.PathLike[str]
#: One image: a PIL image, a file path, or a ``(3, H, W)`` tensor (uint8, or float in [-1, 1]).
ImageLike = Image.Image | str | os.PathLike[str] | Tensor

IMAGE_EXTENSIONS: tuple[str, ...] = (".bmp", ".jpeg", ".jpg", ".png", ".webp")

#: What Pillow raises on a file it cannot decode (corrupt headers, truncated data, broken compressed streams).
DECODE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    struct.error,
    zlib.error,
    Image.DecompressionBombError,
)

#: The decoders an image file may use, whatever its extension (content is sniffed, so a PNG named .jpg is read as
#: the PNG it is). These are the formats of ``IMAGE_EXTENSIONS`` (JPEG includes the MPO variant some cameras
#: write). Every other Pillow decoder is refused: some, such as EPS (which runs Ghostscript), are an attack surface
#: that a folder of training images never needs.
IMAGE_FORMATS: tuple[str, ...] = ("BMP", "JPEG", "PNG", "WEBP")

#: The most pixels an image may have: 8192 x 8192. A larger one is refused by name before it is decoded, so a
#: decompression bomb (a small file declaring a huge image) never allocates memory. This holds even if other code
#: lifts Pillow's own limit (``Image.MAX_IMAGE_PIXELS``, which only warns between 89M and 179M pixels). Training
#: converts the decoded image to float before resizing, so this is about 0.8 GB at most per image in flight.
MAX_IMAGE_PIXELS = 8192 * 8192


class DataError(ValueError):
    """Bad data: the message names the file or folder and the fix."""


# ---------------------------------------------------------------------------------------------------------------
# Finding image files
# ---------------------------------------------------------------------------------------------------------------


def is_image_name(name: str) -> bool:
    """Whether a file name is an image's by its extension (hidden files, such as macOS ``._x.jpg``, are not)."""
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def find_images(folder: PathLike) -> list[Path]:
    """Image files under ``folder``, recursively (following links, skipping hidden folders), sorted."""
    found: list[Path] = []
    visited: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in visited:  # a symbolic link loop
            dirnames[:] = []
            continue
        visited.add(real)
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        found.extend(Path(dirpath, name) for name in filenames if is_image_name(name))
    return sorted(found)


def no_images_error(path: PathLike) -> DataError:
    """The error for a folder without images, saying what was looked for."""
    return DataError(f"{path} holds no images (searched recursively for {', '.join(IMAGE_EXTENSIONS)})")


def list_images(path: PathLike) -> list[Path]:
    """The images a path stands for: a file is itself (read later, so a non-image fails naming it); a folder
    gives its images, recursively and sorted (hidden files skipped)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file or folder: {path}")
    if path.is_file():
        return [path]
    found = find_images(path)
    if not found:
        raise no_images_error(path)
    return found


# ---------------------------------------------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------------------------------------------


def open_image(path: PathLike) -> Image.Image:
    """Open ``path`` lazily (only the header is read) with the decoders of ``IMAGE_FORMATS``.

    Raises one of ``DECODE_ERRORS``: ``DecompressionBombError`` for an image of more than ``MAX_IMAGE_PIXELS``.
    """
    with warnings.catch_warnings():
        # Pillow warns about images above 89M pixels; those are refused below anyway, with the file's name.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        image = Image.open(path, formats=IMAGE_FORMATS)
    width, height = image.size
    if width * height > MAX_IMAGE_PIXELS:
        image.close()
        raise Image.DecompressionBombError(
            f"{width}x{height} is {width * height:,} pixels, more than the limit of {MAX_IMAGE_PIXELS:,} "
            "(a decompression bomb, or a photo far larger than training needs: downscale it)"
        )
    return image


def to_rgb(image: Image.Image) -> Image.Image:
    """Decode ``image`` and return it as 8-bit RGB, upright.

    - The EXIF orientation is applied, so a phone photo stored sideways with a "rotate 90" tag is used upright.
      A malformed EXIF block is ignored (as image viewers do): the pixels are then used as stored.
    - 16-bit greyscale is scaled to 8 bits (``v / 257``). Pillow's ``convert`` would clip it at 255 instead,
      turning all but the darkest images white. 16-bit colour PNGs are already reduced to 8 bits by Pillow.
    - Alpha is dropped and the colour under it is kept, as in the authors' loader (``convert('RGB')``).
      Palette images go through RGBA so that Pillow does not warn about their transparency.
    - CMYK, 1-bit, greyscale and palette images are converted by Pillow.
    """
    image.load()  # decode every pixel now: a truncated file fails here
    with contextlib.suppress(Exception):
        # in_place: the pixels are turned before the metadata is rewritten, the step that malformed EXIF breaks.
        ImageOps.exif_transpose(image, in_place=True)
    if image.mode.startswith("I"):  # I;16, I;16B, I;16L (and "I" from older Pillow): 16-bit greyscale
        levels = np.asarray(image).astype(np.uint32).clip(0, 65535)
        image = Image.fromarray(((levels * 255 + 32767) // 65535).astype(np.uint8))
    elif image.mode == "P":
        image = image.convert("RGBA")
    return image if image.mode == "RGB" else image.convert("RGB")


def decode_rgb(path: PathLike) -> Image.Image:
    """The image at ``path`` as an upright 8-bit RGB Pillow image, decoded exactly as training reads images.

    Raises one of ``DECODE_ERRORS`` for a file that cannot be used (see :func:`open_image` and :func:`to_rgb`);
    callers turn it into a ``DataError`` naming the file (see :func:`decode_problem`).
    """
    with open_image(Path(path)) as image:
        return to_rgb(image)


def decode_problem(error: BaseException) -> str:
    """What went wrong decoding a file, in words (Pillow's messages alone do not say which formats are allowed)."""
    if isinstance(error, Image.UnidentifiedImageError):  # every allowed decoder refused the header
        formats = f"{', '.join(IMAGE_FORMATS[:-1])} or {IMAGE_FORMATS[-1]}"
        return f"not a {formats} image, or damaged before its first pixel"
    return f"{type(error).__name__}: {error}"


def read_image(path: PathLike) -> Tensor:
    """The image file at ``path`` as ``(3, H, W)`` uint8 RGB; errors name the file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"image not found: {path}")
    if path.is_dir():
        raise DataError(f"{path} is a folder, not an image (list its images with stargan_v2.api.list_images)")
    try:
        # As in training: upright by EXIF, 16-bit scaled, size-limited, BMP/JPEG/PNG/WebP only; a truncated file fails.
        rgb = decode_rgb(path)
    except DECODE_ERRORS as e:
        raise DataError(f"{path} is not a readable image ({type(e).__name__}: {e})") from None
    return TF.pil_to_tensor(rgb)


# ---------------------------------------------------------------------------------------------------------------
# Images as tensors and back
# ---------------------------------------------------------------------------------------------------------------


def _check_image_tensor(image: Tensor, what: str) -> None:
    """Refuse a tensor that is not one ``(3, H, W)`` (or ``(1, H, W)``) image: uint8, or float in [-1, 1]."""
    if image.dim() != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"{what}: expected an image tensor of shape (3, H, W), got {tuple(image.shape)}")
    if image.dtype == torch.uint8:
        return
    if not image.is_floating_point():
        raise ValueError(f"{what}: expected a uint8 or float tensor, got {image.dtype}")
    low, high = image.aminmax()
    if low < -1.001 or high > 1.001:
        raise ValueError(
            f"{what}: float image tensors must be in [-1, 1] (found [{low:.3g}, {high:.3g}]); "
            "pass uint8 for [0, 255] or use x * 2 - 1 for [0, 1]"
        )


def image_to_tensor(image: ImageLike, what: str = "image") -> tuple[Tensor, Path | None]:
    """One image as a ``(3, H, W)`` tensor on the CPU (uint8, or float in [-1, 1]) and its path, if it came from
    a file. ``what`` names the input in errors (``"reference[2]"``)."""
    if isinstance(image, Image.Image):
        return TF.pil_to_tensor(image.convert("RGB")), None
    if isinstance(image, (str, os.PathLike)):
        return read_image(image), Path(image)
    if isinstance(image, Tensor):
        _check_image_tensor(image, what)
        return image.detach().cpu().expand(3, -1, -1), None
    raise TypeError(f"{what}: expected a PIL image, a file path or a tensor, got {type(image).__name__}")


def to_pil(image: Tensor) -> Image.Image:
    """A ``(3, H, W)`` tensor in [-1, 1] as an 8-bit RGB picture."""
    array = ((image.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return Image.fromarray(array.permute(1, 2, 0).numpy())


def save_image(image: Tensor, path: PathLike) -> Path:
    """Write a ``(3, H, W)`` tensor in [-1, 1] (PNG or JPEG by the suffix), creating the folder; the file appears
    whole or not at all (written beside it, then renamed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    to_pil(image).save(tmp, format=_format(path), quality=95)
    os.replace(tmp, path)
    return path


def _format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".jpg", ".jpeg"):
        return "JPEG"
    if suffix == ".png":
        return "PNG"
    raise ValueError(f"cannot write {path}: use a .png or .jpg file name")
