"""Batching for translation: inputs given as one image or many become a list of image tensors; every (image,
style) pair goes through the generator in batches; the results are shaped back as the inputs were given."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import torch
from PIL import Image
from torch import Tensor
from tqdm.auto import tqdm

from .images import ImageLike, image_to_tensor

#: One image, or several: a list of ``ImageLike`` or a ``(B, 3, H, W)`` tensor.
Images = ImageLike | Sequence[ImageLike]

T = TypeVar("T")


@dataclass(frozen=True)
class ImageInputs:
    """Inputs as ``(3, H, W)`` tensors (uint8, or float in [-1, 1]), the file each came from (if any), and
    whether a single image (not a list or a batch) was given."""

    tensors: list[Tensor]
    paths: list[Path | None]
    single: bool


def is_single(images: Images) -> bool:
    """Whether ``images`` is one image (not a list of them or a batch tensor)."""
    return isinstance(images, (Image.Image, str, os.PathLike)) or (isinstance(images, Tensor) and images.dim() == 3)


def gather_images(images: Images, what: str) -> ImageInputs:
    """One image or several (a list, or a ``(B, 3, H, W)`` tensor) as image tensors; ``what`` names them in errors."""
    single = is_single(images)
    items: Sequence[ImageLike] = [images] if single else images  # type: ignore[list-item, assignment]
    if isinstance(images, Tensor) and images.dim() != 3:
        if images.dim() != 4:
            raise ValueError(f"{what}: expected (3, H, W) or (B, 3, H, W) tensors, got {tuple(images.shape)}")
        items = list(images)
    if len(items) == 0:
        raise ValueError(f"{what}: no images given")
    tensors, paths = [], []
    for i, item in enumerate(items):
        tensor, path = image_to_tensor(item, what if single else f"{what}[{i}]")
        tensors.append(tensor)
        paths.append(path)
    return ImageInputs(tensors, paths, single)


def spread(items: Sequence[T], n: int | None) -> list[T]:
    """At most ``n`` items, evenly spaced over the sequence (all of them if ``n`` is ``None`` or large)."""
    if n is None or n >= len(items):
        return list(items)
    if n < 1:
        raise ValueError(f"need at least one item, got n={n}")
    return [items[(i * len(items)) // n] for i in range(n)]


def translate_pairs(
    generate: Callable[[Tensor, Tensor], Tensor], x: Tensor, styles: Tensor, batch_size: int, progress: bool = False
) -> Tensor:
    """``generate(x, s)`` for every (image, style) pair: ``(N, m, 3, S, S)`` on the CPU, in batches of pairs."""
    n, m = x.shape[0], styles.shape[0]
    out = torch.empty(n * m, *x.shape[1:])
    pairs = torch.arange(n * m)
    for start in tqdm(range(0, n * m, batch_size), desc="translate", unit="batch", disable=not progress):
        idx = pairs[start : start + batch_size]
        out[idx] = generate(x[idx // m], styles[(idx % m).to(styles.device)]).float().cpu()
    return out.view(n, m, *x.shape[1:])


def stack_grid(results: list[list[Tensor]]) -> Tensor:
    """Results per image, per style, as one ``(N, m, 3, H, W)`` tensor; they must all have one size."""
    if len({r.shape for row in results for r in row}) > 1:
        raise ValueError("paste_back with output='tensor' needs inputs of one size; use output='pil'")
    return torch.stack([torch.stack(row) for row in results])


def squeeze_tensor(stacked: Tensor, single_image: bool, single_style: bool) -> Tensor:
    """Drop the image and/or style axis of ``(N, m, 3, H, W)`` where the input was a single one."""
    if single_image and single_style:
        return stacked[0, 0]
    if single_style:
        return stacked[:, 0]
    if single_image:
        return stacked[0]
    return stacked


def squeeze_grid(grid: list[list[T]], single_image: bool, single_style: bool) -> T | list[T] | list[list[T]]:
    """Drop the image and/or style level of a per-image, per-style list where the input was a single one."""
    if single_image and single_style:
        return grid[0][0]
    if single_style:
        return [row[0] for row in grid]
    if single_image:
        return grid[0]
    return grid
