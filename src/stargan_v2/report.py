"""The demo's report: sample grids a person can look at, one table of the figures, and their curve.

A model of the built-in dataset makes 32 px images; shown at that size they are blurs. Grids here enlarge every
cell with nearest-neighbour upscaling to at least ``MIN_CELL`` pixels (each pixel becomes a block, nothing is
invented) and label the rows. The figures come from the quality benchmark (``metrics.quality``) and, over
training, from ``metrics.jsonl`` (``train --eval-every``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from torch import Tensor

from .model import Nets, eval_mode
from .synthesis import latents_from_seeds, to_pil

#: The smallest side of a grid cell, in pixels.
MIN_CELL = 128
_GAP = 4
_LABEL_WIDTH = 112
_WHITE = (255, 255, 255)
_INK = (40, 40, 40)


def upscale(x: Tensor, min_cell: int = MIN_CELL) -> Tensor:
    """Images ``(B, 3, S, S)`` enlarged by the smallest whole factor that makes them at least ``min_cell`` wide
    (nearest neighbour: every pixel becomes a square block)."""
    factor = max(1, math.ceil(min_cell / x.shape[-1]))
    return F.interpolate(x.float(), scale_factor=factor, mode="nearest") if factor > 1 else x.float()


def _compose(rows: Sequence[tuple[str, Sequence[Tensor | None]]], header: str | None = None) -> Image.Image:
    """A labelled table of images: each row is (label, cells), a cell ``(3, H, W)`` in [-1, 1] or ``None``."""
    cell = next(c for _, cells in rows for c in cells if c is not None).shape[-1]
    ncol = max(len(cells) for _, cells in rows)
    top = 24 if header else 0
    width = _LABEL_WIDTH + ncol * (cell + _GAP)
    canvas = Image.new("RGB", (width, top + len(rows) * (cell + _GAP)), _WHITE)
    draw = ImageDraw.Draw(canvas)
    if header:
        draw.text((_LABEL_WIDTH, 6), header, fill=_INK)
    for r, (label, cells) in enumerate(rows):
        y = top + r * (cell + _GAP)
        for i, line in enumerate(label.split("\n")):
            draw.text((6, y + cell // 2 - 8 + 12 * i), line, fill=_INK)
        for c, image in enumerate(cells):
            if image is not None:
                canvas.paste(to_pil(image), (_LABEL_WIDTH + c * (cell + _GAP), y))
    return canvas


@torch.no_grad()
def latent_table(
    nets: Nets, x_src: Tensor, domains: Sequence[str], latent_dim: int, seeds: Sequence[int] = (0, 1)
) -> Image.Image:
    """Sources across the top; below, for every target domain, one row per seed (a latent code, the same style
    for every source). EMA nets in eval mode are expected; their modes are restored."""
    n = x_src.shape[0]
    device = x_src.device
    rows: list[tuple[str, Sequence[Tensor | None]]] = [("source", list(upscale(x_src)))]
    with eval_mode(nets):
        for d, name in enumerate(domains):
            y = torch.full((n,), d, dtype=torch.long, device=device)
            for seed in seeds:
                z = latents_from_seeds([seed], latent_dim).to(device).expand(n, -1)
                out = nets.generator(x_src, nets.mapping_network(z, y))
                rows.append((f"to {name}\nseed {seed}", list(upscale(out))))
    return _compose(rows)


@torch.no_grad()
def reference_table(nets: Nets, x_src: Tensor, x_ref: Tensor, y_ref: Tensor, domains: Sequence[str]) -> Image.Image:
    """The paper's reference-guided figure: sources across the top, one row per reference (first cell), whose
    domain and style each output should take while keeping its source's pose."""
    n = x_src.shape[0]
    rows: list[tuple[str, Sequence[Tensor | None]]] = [("source", [None, *upscale(x_src)])]
    with eval_mode(nets):
        for i in range(x_ref.shape[0]):
            s = nets.style_encoder(x_ref[i : i + 1], y_ref[i : i + 1]).expand(n, -1)
            out = nets.generator(x_src, s)
            rows.append((f"reference\n({domains[int(y_ref[i])]})", [upscale(x_ref[i : i + 1])[0], *upscale(out)]))
    return _compose(rows)


def stacked(images: Sequence[tuple[str, Image.Image]]) -> Image.Image:
    """Several labelled pictures one above the other (e.g. this run's grid, then the shipped model's), so that
    each keeps its full size in a browser window."""
    gap, title = 16, 22
    width = max(im.width for _, im in images)
    height = sum(title + im.height for _, im in images) + gap * (len(images) - 1)
    canvas = Image.new("RGB", (width, height), _WHITE)
    draw = ImageDraw.Draw(canvas)
    y = 0
    for label, im in images:
        draw.text((6, y + 4), label, fill=_INK)
        canvas.paste(im, (0, y + title))
        y += title + im.height + gap
    return canvas


def read_metrics(path: Path) -> list[dict[str, float]]:
    """The rows of a run's ``metrics.jsonl`` (empty when there is none)."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def plot_metrics(rows: Sequence[Mapping[str, float]], path: Path, targets: Mapping[str, float]) -> Path | None:
    """Domain accuracy and centre error of the oracle against training step (and minutes), as a PNG."""
    rows = [r for r in rows if "oracle/latent/domain_accuracy" in r]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in rows]
    fig, (acc, err) = plt.subplots(1, 2, figsize=(10, 3.6), dpi=100)
    for mode, style in (("latent", "-o"), ("reference", "-s")):
        acc.plot(steps, [r[f"oracle/{mode}/domain_accuracy"] for r in rows], style, ms=3, label=f"{mode}-guided")
        err.plot(steps, [r[f"oracle/{mode}/pose_error_center_rel"] for r in rows], style, ms=3, label=f"{mode}-guided")
    acc.axhline(targets["domain_accuracy"], color="grey", ls="--", lw=1, label="target")
    err.axhline(targets["pose_error_center_rel"], color="grey", ls="--", lw=1, label="target (at most)")
    acc.set(xlabel="training step", ylim=(0, 1.02))
    acc.set_title("domain accuracy (oracle)", pad=30)
    err.set(xlabel="training step", ylim=(0, None))
    err.set_title("head centre error, in head radii", pad=30)
    if all("time" in r for r in rows) and rows[-1]["time"] > 0:
        # A second axis with the wall time, read off the measured (step, seconds) pairs.
        minutes = [r["time"] / 60 for r in rows]
        for ax in (acc, err):
            top = ax.secondary_xaxis(
                "top",
                functions=(
                    lambda s: _interp(s, steps, minutes),
                    lambda m: _interp(m, minutes, steps),
                ),
            )
            top.set_xlabel("minutes of training")
    for ax in (acc, err):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _interp(x: Any, xs: Sequence[float], ys: Sequence[float]) -> Any:
    import numpy as np

    if len(xs) < 2:
        return np.asarray(x, dtype=float) * (ys[0] / xs[0] if xs[0] else 1.0)
    # Linear inside the measured points and along the end segments outside them: clamping would put every tick
    # beyond the last measurement on the last point, labels on top of each other.
    xv = np.asarray(x, dtype=float)
    out = np.interp(xv, xs, ys)
    lo = (ys[1] - ys[0]) / (xs[1] - xs[0]) if xs[1] != xs[0] else 0.0
    hi = (ys[-1] - ys[-2]) / (xs[-1] - xs[-2]) if xs[-1] != xs[-2] else 0.0
    out = np.where(xv < xs[0], ys[0] + (xv - xs[0]) * lo, out)
    return np.where(xv > xs[-1], ys[-1] + (xv - xs[-1]) * hi, out)
