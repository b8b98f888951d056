"""Fréchet Inception Distance: the Fréchet distance, running feature statistics, and the two Inception networks.

StarGAN v2 (Choi et al., CVPR 2020, Section 4, "Evaluation metrics"; ``docs/paper.md``, "Evaluation") measures
quality with FID (Heusel et al., 2017): the Fréchet distance between Gaussians fitted to Inception v3 pool
features (2048-d) of generated and of real images,

    ``FID = |mu_1 - mu_2|^2 + tr(S_1) + tr(S_2) - 2 tr((S_1 S_2)^(1/2))``.

Two feature networks are offered, because FID numbers are only comparable when the network is the same:

* ``"torchvision"``: torchvision's ImageNet Inception v3 (``inception_v3_google-0cc3c7bd.pth``), fed
  ImageNet-normalised 299 px images and read out before its classifier, without torchvision's
  ``transform_input``. This is what the authors' evaluation did, so numbers compare with their README.
* ``"pt_inception"``: the TensorFlow FID network ported to PyTorch (``pt_inception-2015-12-05-6726825d.pth``),
  with the pooling quirks of the TensorFlow graph, fed 299 px images scaled to [-1, 1]. Numbers compare
  with pytorch-fid (and with clean-fid up to its different resizing).

FID also moves with how images are resized, so each network takes 8-bit images (as read from files) and brings
them to 299 px the way its reference pipeline does (``RESIZES``): the authors' loader resizes with PIL
(bilinear, which averages when it shrinks) and rounds to 8 bits; pytorch-fid scales to [0, 1] and resizes
with ``F.interpolate`` (bilinear, no anti-aliasing) in floating point.

Nothing is downloaded: the weight files are read from ``$TORCH_HOME/hub/checkpoints/`` (the folder torchvision
and pytorch-fid download into, ``~/.cache/torch/hub/checkpoints`` by default) or from a given folder, and a
missing file is an error that says where to put it and where to get it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, overload

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from torchvision.models.inception import Inception3, InceptionA, InceptionC, InceptionE
from tqdm.auto import tqdm

from ..images import DECODE_ERRORS, DataError, decode_rgb

#: Feature networks by name: (weight file, where users get it, what the numbers compare with).
FEATURE_NETS: dict[str, tuple[str, str, str]] = {
    "torchvision": (
        "inception_v3_google-0cc3c7bd.pth",
        "https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth",
        "the authors' evaluation (torchvision's Inception v3): compare with the StarGAN v2 README",
    ),
    "pt_inception": (
        "pt_inception-2015-12-05-6726825d.pth",
        "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth",
        "the TensorFlow FID Inception (pytorch-fid's weights): compare with pytorch-fid / clean-fid",
    ),
}
#: Other names the commands accept: ``inception`` is the authors' network (torchvision's).
FEATURE_NET_ALIASES: dict[str, str] = {"inception": "torchvision"}
#: Every name a ``--fid-net`` flag takes.
FEATURE_NET_CHOICES: tuple[str, ...] = (*FEATURE_NETS, *FEATURE_NET_ALIASES)
FEATURE_DIM = 2048
INCEPTION_SIZE = 299
#: How an 8-bit image becomes the network's 299 px input, by name (recorded in reports and statistics files).
RESIZES: dict[str, str] = {
    "pil": "PIL bilinear resize of the 8-bit image to 299 px, rounded to 8 bits, then scaled to [0, 1] (the "
    "authors' evaluation: torchvision's transforms.Resize on PIL images)",
    "torch": "scaled to [0, 1], then F.interpolate(bilinear, align_corners=False, no anti-aliasing) to 299 px "
    "in float32 (pytorch-fid's InceptionV3 with resize_input=True)",
}
#: Each network's resizing: that of the pipeline its numbers are compared with.
DEFAULT_RESIZE: dict[str, str] = {"torchvision": "pil", "pt_inception": "torch"}
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


# ----------------------------------------------------------------------------------------------------------
# Weight files
# ----------------------------------------------------------------------------------------------------------


def default_weights_dir() -> Path:
    """``$TORCH_HOME/hub/checkpoints`` (torch's default ``~/.cache/torch/hub/checkpoints``): where torchvision,
    pytorch-fid and lpips keep the files they download."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def find_weights(file_name: str, url: str, weights_dir: str | os.PathLike | None = None) -> Path:
    """The path of a weight file, from ``weights_dir`` or else the torch cache; FileNotFoundError if absent.

    The error names the file, the folder it was looked for in, and where to download it: this package never
    downloads anything itself.
    """
    folder = Path(weights_dir) if weights_dir is not None else default_weights_dir()
    path = folder / file_name
    if path.is_file():
        return path
    where = "the given weights folder" if weights_dir is not None else "the torch cache ($TORCH_HOME/hub/checkpoints)"
    raise FileNotFoundError(
        f"weight file {file_name} not found in {where}: {folder}. Nothing is downloaded at run time: download "
        f"it from {url} and put it at {path}, or pass --weights-dir FOLDER (a folder that holds {file_name})"
    )


def load_state_file(path: Path) -> dict[str, Tensor]:
    """A state dict from a torch file, reading tensors only (``weights_only=True``)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"could not read {path} as a torch state dict ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict):
        raise ValueError(f"{path} does not hold a state dict (found {type(state).__name__})")
    return state


# ----------------------------------------------------------------------------------------------------------
# The Fréchet distance
# ----------------------------------------------------------------------------------------------------------


def sqrt_psd(matrix: Tensor) -> Tensor:
    """Square root of a symmetric positive semi-definite matrix: ``V diag(sqrt(max(l, 0))) V^T`` from ``eigh``.

    Eigenvalues are clamped at 0 because round-off makes the smallest ones of a singular covariance (fewer
    samples than dimensions) slightly negative.
    """
    values, vectors = torch.linalg.eigh(matrix)
    return (vectors * values.clamp_min(0).sqrt()) @ vectors.T


@dataclass
class Gaussian:
    """Mean ``mu (D,)`` and covariance ``sigma (D, D)`` (float64) of ``n`` feature vectors."""

    mu: Tensor
    sigma: Tensor
    n: int

    def to(self, device: torch.device | str) -> Gaussian:
        """The same statistics on ``device``."""
        return Gaussian(self.mu.to(device), self.sigma.to(device), self.n)


def covariance_factor(sigma: Tensor) -> Tensor:
    """A matrix ``F`` with ``F F^T = sigma``: the Cholesky factor when ``sigma`` is positive definite (fast),
    else the symmetric square root ``sqrt_psd(sigma)`` (singular covariances, e.g. fewer samples than
    dimensions). Computed in float64."""
    sigma = sigma.double()
    factor, info = torch.linalg.cholesky_ex(sigma)
    if int(info) == 0 and torch.isfinite(factor).all():
        return factor
    return sqrt_psd(sigma)


def frechet_distance_gaussians(a: Gaussian, b: Gaussian, factor_b: Tensor | None = None) -> float:
    """The Fréchet distance between two Gaussians, by eigenvalues of a symmetric matrix.

    ``tr((S_a S_b)^(1/2))`` is the sum of the square roots of the eigenvalues of ``S_a S_b``. That product is
    not symmetric, and the general matrix square root of it (``scipy.linalg.sqrtm``) can return complex or
    inaccurate values for singular covariances. With any ``F`` such that ``S_b = F F^T``, ``F^T S_a F`` has
    the same eigenvalues as ``S_a S_b`` and is symmetric positive semi-definite, so ``eigvalsh`` gives them
    stably. ``factor_b`` (``covariance_factor(b.sigma)``) can be passed to reuse it when one side is
    compared many times. Computed in float64, on ``b``'s device.
    """
    if a.mu.shape != b.mu.shape:
        raise ValueError(f"the two Gaussians have different dimensions: {tuple(a.mu.shape)} and {tuple(b.mu.shape)}")
    device = b.sigma.device
    mu_a, sigma_a = a.mu.double().to(device), a.sigma.double().to(device)
    mu_b, sigma_b = b.mu.double(), b.sigma.double()
    factor = covariance_factor(sigma_b) if factor_b is None else factor_b.double().to(device)
    middle = factor.T @ sigma_a @ factor
    trace_root = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp_min(0).sqrt().sum()
    distance = (mu_a - mu_b).square().sum() + sigma_a.trace() + sigma_b.trace() - 2 * trace_root
    # Exactly equal Gaussians can come out a hair below zero by round-off.
    return max(float(distance), 0.0)


def gaussian_of(features: Tensor) -> Gaussian:
    """Mean and unbiased covariance of the rows of ``features (N, D)``, in float64."""
    if features.dim() != 2:
        raise ValueError(f"expected features of shape (N, D), got {tuple(features.shape)}")
    stats = FeatureStats(features.shape[1])
    stats.update(features)
    return stats.gaussian()


def frechet_distance(a: Tensor, b: Tensor) -> float:
    """Fréchet distance between Gaussians fitted to the rows of ``a (N, D)`` and ``b (M, D)`` (see above)."""
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"expected (N, D) and (M, D) features, got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.shape[0] < 2 or b.shape[0] < 2:
        raise ValueError(f"the Fréchet distance needs at least 2 samples on each side, got {a.shape[0]}, {b.shape[0]}")
    return frechet_distance_gaussians(gaussian_of(a), gaussian_of(b))


class FeatureStats:
    """Running mean and covariance of feature vectors, fed batch by batch (no need to keep the features).

    Sums are taken in float64 around a shift (the first batch's mean): the covariance is then a difference
    of numbers of the size of the spread, not of the (larger) mean, so it keeps its precision.
    """

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.n = 0
        self._shift: Tensor | None = None
        self._sum: Tensor | None = None
        self._outer: Tensor | None = None

    def update(self, features: Tensor) -> None:
        """Add the rows of ``features (B, dim)`` (on any device; the sums stay on it)."""
        if features.dim() != 2 or features.shape[1] != self.dim:
            raise ValueError(f"expected features of shape (B, {self.dim}), got {tuple(features.shape)}")
        if features.shape[0] == 0:
            return
        f = features.detach().double()
        if self._shift is None or self._sum is None or self._outer is None:  # the first batch (all three unset)
            self._shift = f.mean(0)
            self._sum = torch.zeros_like(self._shift)
            self._outer = torch.zeros(self.dim, self.dim, dtype=torch.float64, device=f.device)
        centred = f - self._shift
        self._sum += centred.sum(0)
        self._outer += centred.T @ centred
        self.n += f.shape[0]

    def gaussian(self) -> Gaussian:
        """The mean and the unbiased covariance of everything added so far (on the CPU)."""
        if self.n < 2 or self._shift is None or self._sum is None or self._outer is None:
            raise ValueError(f"a covariance needs at least 2 feature vectors, got {self.n}")
        mean_centred = self._sum / self.n
        sigma = (self._outer - self.n * torch.outer(mean_centred, mean_centred)) / (self.n - 1)
        sigma = (sigma + sigma.T) / 2
        return Gaussian((self._shift + mean_centred).cpu(), sigma.cpu(), self.n)


# ----------------------------------------------------------------------------------------------------------
# Inception v3 features
# ----------------------------------------------------------------------------------------------------------


def _avg_pool_without_padding(x: Tensor) -> Tensor:
    # TensorFlow's average pooling divides by the number of real (not padded) pixels under the window.
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


def _max_pool(x: Tensor) -> Tensor:
    # The TensorFlow FID graph max-pools in the pool branch of its last block, where Inception v3 averages.
    return F.max_pool2d(x, kernel_size=3, stride=1, padding=1)


def _chain(block: nn.Module, names: Sequence[str], x: Tensor) -> Tensor:
    for name in names:
        x = getattr(block, name)(x)
    return x


def _mixed(block: nn.Module, x: Tensor, pool: Callable[[Tensor], Tensor]) -> Tensor:
    """A torchvision Inception A, C or E block with ``pool`` as the pooling of its pool branch.

    The weights (and so the state-dict keys) are torchvision's; only the pooling differs in the TensorFlow
    FID network. Branches are concatenated in torchvision's order: 1x1, the wide branch, the double branch,
    pool.
    """
    if isinstance(block, InceptionA):
        middle = [_chain(block, ("branch5x5_1", "branch5x5_2"), x)]
        double = [_chain(block, ("branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"), x)]
    elif isinstance(block, InceptionC):
        middle = [_chain(block, ("branch7x7_1", "branch7x7_2", "branch7x7_3"), x)]
        double = [_chain(block, [f"branch7x7dbl_{i}" for i in range(1, 6)], x)]
    elif isinstance(block, InceptionE):
        # E splits its 3x3 and double-3x3 branches into a 1x3 and a 3x1 head each.
        stem = block.branch3x3_1(x)
        middle = [torch.cat([block.branch3x3_2a(stem), block.branch3x3_2b(stem)], 1)]
        stem = _chain(block, ("branch3x3dbl_1", "branch3x3dbl_2"), x)
        double = [torch.cat([block.branch3x3dbl_3a(stem), block.branch3x3dbl_3b(stem)], 1)]
    else:
        raise TypeError(f"not an Inception A, C or E block: {type(block).__name__}")
    return torch.cat([block.branch1x1(x), *middle, *double, block.branch_pool(pool(x))], 1)


class InceptionFeatures(nn.Module):
    """Inception v3 pool features of 8-bit images: uint8 ``(B, 3, H, W)`` (or a list of ``(3, H, W)`` of any
    sizes) -> ``(B, 2048)``.

    ``name`` is ``"torchvision"`` or ``"pt_inception"`` (see the module docstring). ``resize`` (``RESIZES``;
    by default the network's, ``DEFAULT_RESIZE``) says how each image is brought to 299 px: ``"pil"`` as the
    authors' evaluation, ``"torch"`` as pytorch-fid. Images already at 299 px go through it unchanged (both
    resizes are the identity there).
    """

    # Buffers (register_buffer): the ImageNet normalisation, on the network's device.
    mean: Tensor
    std: Tensor

    def __init__(self, name: str, resize: str | None = None) -> None:
        super().__init__()
        if name not in FEATURE_NETS:
            raise ValueError(f"unknown FID feature network {name!r}; choose one of {', '.join(FEATURE_NETS)}")
        resize = DEFAULT_RESIZE[name] if resize is None else resize
        if resize not in RESIZES:
            raise ValueError(f"unknown resize {resize!r}; choose one of {', '.join(RESIZES)}")
        self.name = name
        self.resize = resize
        self.weights_file = FEATURE_NETS[name][0]
        self.input_size = INCEPTION_SIZE  # the networks' native size; tests lower it to stay fast
        self.weights_signature = "unloaded"  # set by load_inception from the weight file
        self.feature_dim = FEATURE_DIM
        # The files hold these exact networks: torchvision's with its auxiliary classifier and 1000 classes;
        # the TensorFlow port with 1008 classes and no auxiliary classifier.
        if name == "torchvision":
            self.net = Inception3(num_classes=1000, aux_logits=True, init_weights=False)
        else:
            self.net = Inception3(num_classes=1008, aux_logits=False, init_weights=False)
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.eval()

    def prepare(self, images: Tensor | Sequence[Tensor]) -> Tensor:
        """8-bit images -> the network's input size, as floats in [0, 1] on its device: ``(B, 3, 299, 299)``."""
        device = self.mean.device
        size = self.input_size
        items = _uint8_images(images)
        if self.resize == "pil":
            resized = [_pil_resize(t, size) if t.shape[1:] != (size, size) else t.cpu() for t in items]
            # ToTensor's scaling: float32, divided by 255.
            return torch.stack(resized).to(device).float().div(255)
        if isinstance(images, Tensor):  # one size for all: one call, as pytorch-fid does per batch
            x = images.to(device).float().div(255)
            return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        xs = [t.to(device).float().div(255)[None] for t in items]
        return torch.cat([F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False) for t in xs])

    def _normalise(self, x01: Tensor) -> Tensor:
        if self.name == "torchvision":
            return (x01 - self.mean) / self.std  # torchvision's Normalize with the ImageNet mean and deviation
        return 2 * x01 - 1  # pytorch-fid's normalize_input

    @torch.no_grad()
    def forward(self, images: Tensor | Sequence[Tensor]) -> Tensor:
        n = self.net
        x = self._normalise(self.prepare(images))  # (B, 3, 299, 299) at the native size
        x = n.maxpool1(n.Conv2d_2b_3x3(n.Conv2d_2a_3x3(n.Conv2d_1a_3x3(x))))  # (B, 64, 73, 73)
        x = n.maxpool2(n.Conv2d_4a_3x3(n.Conv2d_3b_1x1(x)))  # (B, 192, 35, 35)
        if self.name == "torchvision":
            for block in (n.Mixed_5b, n.Mixed_5c, n.Mixed_5d, n.Mixed_6a, n.Mixed_6b, n.Mixed_6c, n.Mixed_6d):
                x = block(x)
            for block in (n.Mixed_6e, n.Mixed_7a, n.Mixed_7b, n.Mixed_7c):
                x = block(x)  # (B, 2048, 8, 8) at the end
        else:
            for block in (n.Mixed_5b, n.Mixed_5c, n.Mixed_5d):
                x = _mixed(block, x, _avg_pool_without_padding)
            x = n.Mixed_6a(x)  # (B, 768, 17, 17)
            for block in (n.Mixed_6b, n.Mixed_6c, n.Mixed_6d, n.Mixed_6e):
                x = _mixed(block, x, _avg_pool_without_padding)
            x = _mixed(n.Mixed_7b, n.Mixed_7a(x), _avg_pool_without_padding)
            x = _mixed(n.Mixed_7c, x, _max_pool)  # (B, 2048, 8, 8)
        return F.adaptive_avg_pool2d(x, 1).flatten(1)  # (B, 2048)

    @property
    def cache_token(self) -> str:
        """Names the network, its resizing, input size and weight file (size, time) in the statistics cache key."""
        return f"{self.name}:{self.resize}:{self.input_size}:{self.weights_signature}"

    def describe(self) -> dict[str, str]:
        """What the JSON of an evaluation records about the network and how it resizes."""
        _, url, comparable = FEATURE_NETS[self.name]
        return {
            "name": self.name,
            "weights_file": self.weights_file,
            "source": url,
            "comparable_with": comparable,
            "resize": self.resize,
            "resize_description": RESIZES[self.resize],
        }


def load_inception(
    name: str = "torchvision",
    weights_dir: str | os.PathLike | None = None,
    device: torch.device | str = "cpu",
    resize: str | None = None,
) -> InceptionFeatures:
    """The feature network ``name`` with its weights from ``weights_dir`` or the torch cache, in eval mode.

    ``resize`` overrides the network's way to 299 px (``DEFAULT_RESIZE``); numbers then compare with neither
    reference pipeline, so the commands do not offer it.
    """
    name = FEATURE_NET_ALIASES.get(name, name)
    if name not in FEATURE_NETS:
        raise ValueError(f"unknown FID feature network {name!r}; choose one of {', '.join(FEATURE_NET_CHOICES)}")
    file_name, url, _ = FEATURE_NETS[name]
    path = find_weights(file_name, url, weights_dir)
    features = InceptionFeatures(name, resize)
    state = load_state_file(path)
    try:
        # Files saved before BatchNorm counted its batches lack num_batches_tracked; BatchNorm fills it in.
        features.net.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(f"{path} does not hold the {name} Inception v3 weights: {exc}") from None
    st = path.stat()
    features.weights_signature = f"{path.name}:{st.st_size}:{st.st_mtime_ns}"
    return features.to(device).eval()


# ----------------------------------------------------------------------------------------------------------
# 8-bit images, read and resized as the reference pipelines do
# ----------------------------------------------------------------------------------------------------------


def _uint8_images(images: Tensor | Sequence[Tensor]) -> list[Tensor]:
    """``(B, 3, H, W)`` uint8, or a list of ``(3, H, W)`` uint8 -> a list of ``(3, H, W)``; else a ValueError."""
    if isinstance(images, Tensor):
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
        items = list(images)
    else:
        items = list(images)
        if any(not isinstance(t, Tensor) or t.dim() != 3 or t.shape[0] != 3 for t in items):
            raise ValueError("expected a list of (3, H, W) image tensors")
    if not items:
        raise ValueError("no images given")
    if any(t.dtype != torch.uint8 for t in items):
        raise ValueError(
            "the FID networks take 8-bit images (uint8, as read from image files): round generator outputs "
            "with stargan_v2.metrics.evaluate.to_uint8 first, as writing them to PNG files would"
        )
    return items


def _pil_resize(image: Tensor, size: int) -> Tensor:
    """A ``(3, H, W)`` uint8 image resized to ``size x size`` by PIL's bilinear filter: ``(3, size, size)`` uint8.

    This is ``torchvision.transforms.Resize([size, size])`` on a PIL image, the authors' loader: PIL's filter
    widens its support when it shrinks (anti-aliasing) and rounds the result to 8 bits.
    """
    pil = Image.fromarray(image.permute(1, 2, 0).cpu().numpy())
    resized = pil.resize((size, size), Image.Resampling.BILINEAR)
    return torch.from_numpy(np.asarray(resized).copy()).permute(2, 0, 1)


def read_image_uint8(path: str | os.PathLike, size: int | None = None) -> Tensor:
    """The image file at ``path`` as ``(3, H, W)`` uint8 RGB; with ``size``, squashed to ``size x size`` by PIL's
    bilinear filter and rounded to 8 bits, as the authors' evaluation loader reads every image.

    Decoding is the training data's (``images.decode_rgb``): the allowed formats, the size limit, and a
    ``DataError`` naming a file that cannot be read. It differs from the authors' loader and pytorch-fid
    (``Image.open(path).convert("RGB")``) only on files with an EXIF orientation tag (turned upright here) and
    16-bit greyscale files (scaled here, clipped to white there).
    """
    try:
        image = decode_rgb(path)
    except DECODE_ERRORS as e:
        raise DataError(f"cannot read image {path} ({type(e).__name__}: {e}): remove or replace the file") from None
    if size is not None:
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)


class _ImageFiles(Dataset):
    def __init__(self, files: Sequence[Path], size: int | None) -> None:
        self.files, self.size = list(files), size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> Tensor:
        return read_image_uint8(self.files[i], self.size)


def _stack_if_same_size(images: list[Tensor]) -> Tensor | list[Tensor]:
    return torch.stack(images) if len({t.shape for t in images}) == 1 else images


@overload
def image_batches(
    files: Sequence[Path],
    size: int,
    batch_size: int,
    workers: int = ...,
    progress: bool = ...,
    desc: str = ...,
) -> Iterator[Tensor]: ...  # squashed to one size: always stacked


@overload
def image_batches(
    files: Sequence[Path],
    size: int | None,
    batch_size: int,
    workers: int = ...,
    progress: bool = ...,
    desc: str = ...,
) -> Iterator[Tensor | list[Tensor]]: ...


def image_batches(
    files: Sequence[Path],
    size: int | None,
    batch_size: int,
    workers: int = 0,
    progress: bool = False,
    desc: str = "images",
) -> Iterator[Tensor | list[Tensor]]:
    """The images of ``files`` in order, ``batch_size`` at a time, read by ``workers`` processes (see
    ``read_image_uint8``): a uint8 ``(B, 3, H, W)`` batch, or a list of ``(3, H, W)`` when sizes differ
    (never with ``size``, which squashes every image to ``size x size``)."""
    loader = DataLoader(
        _ImageFiles(files, size), batch_size=batch_size, num_workers=workers, shuffle=False, collate_fn=list
    )
    for batch in tqdm(loader, desc=desc, disable=not progress, leave=False, unit="batch"):
        yield _stack_if_same_size(batch)


@overload
def files_statistics(
    files: Sequence[Path],
    feature_net: Callable[[Tensor], Tensor],
    feature_dim: int = ...,
    *,
    size: int,
    batch_size: int = ...,
    workers: int = ...,
    progress: bool = ...,
    desc: str = ...,
) -> Gaussian: ...  # with ``size`` the batches are always stacked: a net of whole batches will do


@overload
def files_statistics(
    files: Sequence[Path],
    feature_net: Callable[[Tensor | list[Tensor]], Tensor],
    feature_dim: int = ...,
    *,
    size: int | None = ...,
    batch_size: int = ...,
    workers: int = ...,
    progress: bool = ...,
    desc: str = ...,
) -> Gaussian: ...


@torch.no_grad()
def files_statistics(
    files: Sequence[Path],
    feature_net: Callable[[Any], Tensor],  # see the overloads: what it takes depends on ``size``
    feature_dim: int = FEATURE_DIM,
    *,
    size: int | None = None,
    batch_size: int = 50,
    workers: int = 0,
    progress: bool = False,
    desc: str = "images",
) -> Gaussian:
    """Mean and covariance of the features of the images in ``files`` (optionally squashed to ``size`` first,
    see ``read_image_uint8``)."""
    if len(files) < 2:
        raise ValueError(f"FID needs at least 2 images on each side, got {len(files)}")
    stats = FeatureStats(feature_dim)
    for batch in image_batches(files, size, batch_size, workers, progress, desc):
        stats.update(feature_net(batch))
    return stats.gaussian()
