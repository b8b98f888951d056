"""Training data: domain folders, class-balanced sampling, reference pairs and augmentation.

StarGAN v2 (Choi et al., CVPR 2020, Section 2.2 and Appendix A) trains on images sorted into domains. Here a
dataset is a folder with one sub-folder per domain; the sorted sub-folder names give the labels ``0..K-1`` and
the images are found recursively inside each domain folder. Each training step needs

- sources ``x_src`` of domains ``y_src``;
- two references ``x_ref``, ``x_ref2`` of one target domain ``y_ref`` per sample (two different images when the
  domain has more than one), used as ``y_trg``;
- two fresh latents ``z_trg``, ``z_trg2``.

Sources and references are sampled class-balanced: a domain uniformly, then an image uniformly within it, so
a small domain is seen as often as a large one. Augmentation follows the released models: with probability
``randcrop_prob`` a random resized crop (scale 0.8-1.0, aspect ratio 0.9-1.1), a resize to ``img_size``, a
horizontal flip with probability 0.5, and scaling to ``[-1, 1]``.

Every random choice of a step (images, crop boxes, flips, latents) is drawn from a ``torch.Generator`` seeded
by a hash of ``(seed, rank, step)``. ``TrainBatches[step]`` is therefore a pure function of those three and of
the files: a run resumed at step ``N`` sees exactly the batches an uninterrupted run would, with no loader
state in the checkpoint and with any number of worker processes.

Images are read by content, not by extension, with the PNG, JPEG, BMP and WebP decoders only; they are turned
upright by their EXIF orientation and converted to 8-bit RGB (16-bit greyscale is scaled, alpha is dropped as in
the authors' loader). A file that cannot be used (not an image, truncated, more than ``MAX_IMAGE_PIXELS``) is a
``DataError`` naming it, or with ``skip_bad_images`` a warning and a replacement image. docs/RELIABILITY.md
lists the cases and their tests.
"""

from __future__ import annotations

import hashlib
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torchvision.transforms.v2.functional as TF
from PIL import ImageFile
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from .images import (
    DECODE_ERRORS,
    IMAGE_EXTENSIONS,
    DataError,
    decode_problem,
    decode_rgb,
    find_images,
    is_image_name,
    open_image,
)
from .images import IMAGE_FORMATS as IMAGE_FORMATS  # re-exported: data.py was their home before images.py
from .images import MAX_IMAGE_PIXELS as MAX_IMAGE_PIXELS

if TYPE_CHECKING:  # train.py may import this module, so StepInputs is imported lazily at run time.
    from .train import StepInputs

#: The random resized crop of the released models: area fraction and aspect ratio (width / height) ranges.
CROP_SCALE: tuple[float, float] = (0.8, 1.0)
CROP_RATIO: tuple[float, float] = (0.9, 1.1)
_CROP_TRIES = 10
#: Uniform numbers drawn per image: the crop coin, the flip coin, then 4 per crop try (scale, ratio, top, left).
_AUG_UNIFORMS = 2 + 4 * _CROP_TRIES

_SKIP_HINT = "delete or replace the file, or pass --skip-bad-images to skip unreadable files during training"


class BadImageWarning(UserWarning):
    """An unreadable image was skipped (``skip_bad_images=True``) and replaced by another of its domain."""


# ---------------------------------------------------------------------------------------------------------------
# Domain folders
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DomainFolders:
    """A dataset on disk: ``files[k]`` are the images of domain ``k`` (named ``domains[k]``), sorted."""

    root: Path
    domains: tuple[str, ...]
    files: tuple[tuple[Path, ...], ...]

    def __post_init__(self) -> None:
        if len(self.domains) != len(self.files):
            raise ValueError(f"{len(self.domains)} domain names but {len(self.files)} file lists")

    @property
    def num_images(self) -> int:
        """The number of images over all domains."""
        return sum(len(f) for f in self.files)


def _listing(names: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(str(n) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def scan_domains(
    root: str | os.PathLike,
    *,
    num_domains: int | None = None,
    min_size: int | None = None,
    skip_bad_images: bool = False,
) -> DomainFolders:
    """Find the domains (sorted sub-folders of ``root``) and their images (recursively, by extension).

    ``num_domains`` checks the number of domains against the model's. ``min_size`` checks that every image's
    smaller side is at least the model's image size (only the headers are read). An unreadable header is then
    an error naming the file, or with ``skip_bad_images`` a warning; the file stays listed and
    ``TrainBatches(skip_bad_images=True)`` replaces it whenever it is drawn. Hidden files and folders are ignored.
    """
    root = Path(root)
    if not root.exists():
        raise DataError(f"dataset folder {root} does not exist; pass the folder that holds one sub-folder per domain")
    if not root.is_dir():
        raise DataError(f"{root} is not a folder; pass the folder that holds one sub-folder per domain")
    domains = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not domains:
        loose = [p.name for p in root.iterdir() if p.is_file() and is_image_name(p.name)]
        hint = (
            f"; it holds {len(loose)} image(s) directly: move them into one sub-folder per domain "
            f"(e.g. {root / 'cat'}, {root / 'dog'})"
            if loose
            else ""
        )
        raise DataError(f"{root} has no sub-folders: expected one sub-folder per domain{hint}")
    if num_domains is not None and len(domains) != num_domains:
        raise DataError(
            f"the config says {num_domains} domains but {root} has {len(domains)}: {', '.join(domains)}; "
            f"fix the folder or --set num_domains={len(domains)}"
        )
    files = tuple(tuple(find_images(root / d)) for d in domains)
    empty = [str(root / d) for d, f in zip(domains, files, strict=True) if not f]
    if empty:
        raise DataError(
            f"domain folder(s) {', '.join(empty)} contain no images (searched recursively for "
            f"{', '.join(IMAGE_EXTENSIONS)}); add images or remove the folder(s)"
        )
    folders = DomainFolders(root, tuple(domains), files)
    if min_size is not None:
        _check_sizes(folders, min_size, skip_bad_images)
    return folders


def _check_sizes(folders: DomainFolders, min_size: int, skip_bad_images: bool) -> None:
    """Read every header (``Image.open`` is lazy) and fail on images smaller than ``min_size``.

    Files that are no image of an allowed format, and images of more than ``MAX_IMAGE_PIXELS``, are unreadable:
    an error naming them, or a warning with ``skip_bad_images``. Truncated pixel data is only found when an
    image is decoded, by ``TrainBatches``.
    """
    too_small: list[str] = []
    unreadable: list[str] = []
    for path in (p for domain in folders.files for p in domain):
        try:
            with open_image(path) as image:
                width, height = image.size
        except DECODE_ERRORS as e:
            unreadable.append(f"{path} ({decode_problem(e)})")
            continue
        if min(width, height) < min_size:
            too_small.append(f"{path} ({width}x{height})")
    if too_small:
        raise DataError(
            f"{len(too_small)} image(s) are smaller than the model's image size {min_size} px on their smaller side: "
            f"{_listing(too_small)}; use larger images or a smaller img_size (--set img_size=...)"
        )
    if unreadable and not skip_bad_images:
        raise DataError(f"{len(unreadable)} file(s) are not readable images: {_listing(unreadable)}; {_SKIP_HINT}")
    if unreadable:
        warnings.warn(
            f"{len(unreadable)} file(s) are not readable images and will be skipped: {_listing(unreadable)}",
            BadImageWarning,
            stacklevel=3,
        )


def check_same_domains(train: DomainFolders, val: DomainFolders) -> None:
    """Fail unless the validation folder has exactly the training folder's domains (so labels agree)."""
    if train.domains == val.domains:
        return
    differences = []
    missing = [d for d in train.domains if d not in val.domains]
    extra = [d for d in val.domains if d not in train.domains]
    if missing:
        differences.append(f"missing from {val.root}: {', '.join(missing)}")
    if extra:
        differences.append(f"not in {train.root}: {', '.join(extra)}")
    raise DataError(
        f"the validation folder {val.root} must have the same domain sub-folders as the training folder "
        f"{train.root} (sorted names give the labels); {'; '.join(differences)}; rename, add or remove sub-folders"
    )


# ---------------------------------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------------------------------


def _read_rgb(path: Path) -> Tensor:
    """The image at ``path`` as ``(3, H, W)`` uint8 RGB, whatever its colour mode; DataError if unreadable.

    See ``images.to_rgb`` for the conversions (EXIF orientation, 16-bit, alpha) and ``images.open_image`` for the
    formats and the size limit.
    """
    # A truncated file must fail rather than decode as a partly grey image. This module never turns Pillow's
    # lenient mode on; if other code did, say so.
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        warnings.warn(
            "PIL.ImageFile.LOAD_TRUNCATED_IMAGES is True (set by some other code): truncated images will load "
            "as partly grey instead of being reported",
            stacklevel=2,
        )
    try:
        rgb = decode_rgb(path)
    except DECODE_ERRORS as e:
        raise DataError(f"cannot read image {path} ({decode_problem(e)}); {_SKIP_HINT}") from e
    return TF.pil_to_tensor(rgb)


def load_image(path: Path, img_size: int) -> Tensor:
    """The image at ``path`` as ``(3, img_size, img_size)`` float in ``[-1, 1]``: RGB, resized, no augmentation."""
    image = TF.to_dtype(_read_rgb(Path(path)), torch.float32, scale=True)
    image = TF.resize(image, [img_size, img_size], interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
    # Resampling weights sum to 1 only up to rounding: a white pixel can come out as 1.0000002.
    return (image * 2 - 1).clamp_(-1, 1)


def crop_box(height: int, width: int, uniforms: Sequence[float]) -> tuple[int, int, int, int]:
    """``(top, left, h, w)`` of a random resized crop of a ``height x width`` image, from given uniforms.

    This is the standard random-resized-crop recipe (Szegedy et al., 2015, as in torchvision): up to 10 tries
    of an area in ``CROP_SCALE`` times the image's area and a log-uniform aspect ratio in ``CROP_RATIO``; the
    first box that fits is placed uniformly; if none fits, the largest central crop within the ratio range.
    ``uniforms`` holds 4 numbers in ``[0, 1)`` per try (area, ratio, top, left); taking them as an argument keeps
    the number of random draws per image fixed, whatever the image's size.
    """
    area = height * width
    log_lo, log_hi = math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1])
    for t in range(_CROP_TRIES):
        u_area, u_ratio, u_top, u_left = uniforms[4 * t : 4 * t + 4]
        target_area = area * (CROP_SCALE[0] + (CROP_SCALE[1] - CROP_SCALE[0]) * u_area)
        aspect = math.exp(log_lo + (log_hi - log_lo) * u_ratio)
        w = round(math.sqrt(target_area * aspect))
        h = round(math.sqrt(target_area / aspect))
        if 0 < w <= width and 0 < h <= height:
            top = min(int(u_top * (height - h + 1)), height - h)
            left = min(int(u_left * (width - w + 1)), width - w)
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < CROP_RATIO[0]:
        w, h = width, round(width / CROP_RATIO[0])
    elif in_ratio > CROP_RATIO[1]:
        w, h = round(height * CROP_RATIO[1]), height
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def step_generator(seed: int, rank: int, step: int) -> torch.Generator:
    """The generator of every random choice of one step: seeded by a hash of ``(seed, rank, step)``."""
    digest = hashlib.blake2b(f"stargan-v2/data:{seed}:{rank}:{step}".encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little"))


# ---------------------------------------------------------------------------------------------------------------
# Training batches
# ---------------------------------------------------------------------------------------------------------------


class TrainBatches(Dataset):
    """Item ``step`` is the whole batch of that training step (a pure function of seed, rank, step).

    The draws of a step, in order, from ``step_generator(seed, rank, step)``: source domains, source images,
    reference domains, reference pairs, ``z_trg``, ``z_trg2``, then augmentation numbers for every image; any
    replacements of unreadable files come last, so a skipped file changes nothing else in the batch.
    """

    def __init__(
        self,
        folders: DomainFolders,
        img_size: int,
        batch_size: int,
        randcrop_prob: float,
        latent_dim: int,
        seed: int,
        rank: int = 0,
        skip_bad_images: bool = False,
    ) -> None:
        if not folders.files or any(not f for f in folders.files):
            raise DataError(f"every domain of {folders.root} needs at least one image; use scan_domains to check")
        for name, value in (("img_size", img_size), ("batch_size", batch_size), ("latent_dim", latent_dim)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer (got {value!r})")
        if not 0 <= randcrop_prob <= 1:
            raise ValueError(f"randcrop_prob must be in [0, 1] (got {randcrop_prob!r})")
        if rank < 0:
            raise ValueError(f"rank must be >= 0 (got {rank})")
        self.folders = folders
        self.img_size = img_size
        self.batch_size = batch_size
        self.randcrop_prob = float(randcrop_prob)
        self.latent_dim = latent_dim
        self.seed = seed
        self.rank = rank
        self.skip_bad_images = skip_bad_images
        # Files found unreadable by this process: not read again, only counted again. Each worker has its own,
        # and the batches do not depend on it.
        self._known_bad: set[Path] = set()

    def __len__(self) -> int:
        return 2**62  # the sampler (``train_loader``) decides which steps are drawn

    def __getitem__(self, step: int) -> dict[str, Tensor]:
        if not 0 <= step < len(self):
            raise IndexError(f"step must be in [0, 2**62) (got {step})")
        g = step_generator(self.seed, self.rank, step)
        counts = torch.tensor([len(f) for f in self.folders.files])
        num_domains, batch = len(counts), self.batch_size

        # Class-balanced sampling: a domain uniformly, then an image uniformly within it.
        y_src = torch.randint(num_domains, (batch,), generator=g)
        src = _uniform_index(torch.rand(batch, dtype=torch.float64, generator=g), counts[y_src])
        y_ref = torch.randint(num_domains, (batch,), generator=g)
        u_ref = torch.rand(2, batch, dtype=torch.float64, generator=g)
        n_ref = counts[y_ref]
        ref = _uniform_index(u_ref[0], n_ref)
        # The second reference is another image of the same domain: uniform over the other n - 1 (if any).
        others = _uniform_index(u_ref[1], (n_ref - 1).clamp(min=1))
        ref2 = torch.where(n_ref > 1, (ref + 1 + others) % n_ref, ref)
        z_trg = torch.randn(batch, self.latent_dim, generator=g)
        z_trg2 = torch.randn(batch, self.latent_dim, generator=g)
        aug = torch.rand(3, batch, _AUG_UNIFORMS, dtype=torch.float64, generator=g).tolist()

        bad = 0
        images = {}
        for name, labels, indices, params in (
            ("x_src", y_src, src, aug[0]),
            ("x_ref", y_ref, ref, aug[1]),
            ("x_ref2", y_ref, ref2, aug[2]),
        ):
            out = torch.empty(batch, 3, self.img_size, self.img_size)
            for b in range(batch):
                raw, skipped = self._read(int(labels[b]), int(indices[b]), g)
                out[b] = self._augment(raw, params[b])
                bad += skipped
            images[name] = out
        return {
            "x_src": images["x_src"],  # (B, 3, H, W) in [-1, 1]
            "y_src": y_src,  # (B,) int64
            "x_ref": images["x_ref"],
            "x_ref2": images["x_ref2"],
            "y_ref": y_ref,
            "z_trg": z_trg,  # (B, latent_dim)
            "z_trg2": z_trg2,
            "bad_images": torch.tensor(bad, dtype=torch.int64),
        }

    def _try_read(self, path: Path) -> Tensor | None:
        """The image, or ``None`` if it is unreadable and skipping is on (warned once per file and process)."""
        if not self.skip_bad_images:
            return _read_rgb(path)
        if path in self._known_bad:
            return None
        try:
            return _read_rgb(path)
        except DataError as e:
            self._known_bad.add(path)
            warnings.warn(f"skipping unreadable image {path}: {e.__cause__}", BadImageWarning, stacklevel=2)
            return None

    def _read(self, domain: int, index: int, g: torch.Generator) -> tuple[Tensor, int]:
        """Image ``index`` of ``domain`` and how many unreadable files were skipped to get an image."""
        files = self.folders.files[domain]
        image = self._try_read(files[index])
        if image is not None:
            return image, 0
        # Replacement: the domain's other images in an order drawn from the step's generator; the first
        # readable one wins. Trying each at most once bounds the search and detects a wholly unreadable domain.
        skipped = 1
        for j in torch.randperm(len(files), generator=g).tolist():
            if j == index:
                continue
            image = self._try_read(files[j])
            if image is not None:
                return image, skipped
            skipped += 1
        raise DataError(
            f"none of the {len(files)} image(s) of domain '{self.folders.domains[domain]}' "
            f"({self.folders.root / self.folders.domains[domain]}) can be read; replace the files or remove the domain"
        )

    def _augment(self, image: Tensor, params: Sequence[float]) -> Tensor:
        """uint8 ``(3, h, w)`` -> float ``(3, img_size, img_size)`` in ``[-1, 1]``; ``params`` from the step."""
        size = [self.img_size, self.img_size]
        x = TF.to_dtype(image, torch.float32, scale=True)
        if params[0] < self.randcrop_prob:
            top, left, h, w = crop_box(x.shape[-2], x.shape[-1], params[2:])
            x = TF.resized_crop(x, top, left, h, w, size, interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
        else:
            x = TF.resize(x, size, interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
        if params[1] < 0.5:
            x = TF.horizontal_flip(x)
        return (x * 2 - 1).clamp_(-1, 1)  # as in load_image: resampling can overshoot by a rounding error


def _uniform_index(u: Tensor, n: Tensor) -> Tensor:
    """``floor(u * n)`` for ``u`` uniform in ``[0, 1)``: an index uniform in ``0..n-1`` (int64)."""
    return torch.minimum((u * n).long(), n - 1)


def to_step_inputs(batch: Mapping[str, Tensor], device: torch.device | str) -> StepInputs:
    """A ``TrainBatches`` item as the ``StepInputs`` of ``train_step`` on ``device`` (target domain = ``y_ref``)."""
    from .train import StepInputs

    return StepInputs(
        x_src=batch["x_src"],
        y_src=batch["y_src"],
        y_trg=batch["y_ref"],
        z_trg=batch["z_trg"],
        z_trg2=batch["z_trg2"],
        x_ref=batch["x_ref"],
        x_ref2=batch["x_ref2"],
    ).to(device)


def train_loader(
    batches: TrainBatches, start_step: int, total_steps: int, num_workers: int = 0, pin_memory: bool = False
) -> DataLoader:
    """The batches of steps ``start_step .. total_steps - 1``, in order, loaded by ``num_workers`` processes.

    Each item is already a whole batch (``batch_size=None``: no collation). Resuming is starting at the
    checkpoint's step: the batches are the same as in an uninterrupted run. ``pin_memory`` (for CUDA) lets the
    copy to the GPU run asynchronously.
    """
    if not 0 <= start_step <= total_steps:
        raise ValueError(f"need 0 <= start_step <= total_steps (got {start_step} and {total_steps})")
    return DataLoader(
        batches,
        batch_size=None,
        sampler=range(start_step, total_steps),  # any sized iterable of indices works
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        pin_memory=pin_memory,
        prefetch_factor=2 if num_workers > 0 else None,
    )


# ---------------------------------------------------------------------------------------------------------------
# Evaluation images
# ---------------------------------------------------------------------------------------------------------------


class ImageList(Dataset):
    """Every image of ``folders``, domain by domain in sorted order, as ``(image (3,H,W) in [-1,1], label)``.

    For validation, sampling and evaluation: no augmentation, each image resized to ``img_size``.
    """

    def __init__(self, folders: DomainFolders, img_size: int) -> None:
        self.folders = folders
        self.img_size = img_size
        self.items: list[tuple[Path, int]] = [(p, label) for label, files in enumerate(folders.files) for p in files]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        path, label = self.items[index]
        return load_image(path, self.img_size), label
