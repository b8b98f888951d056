"""The built-in procedural dataset: three animal-head domains drawn from known parameters.

StarGAN v2 (Choi et al., CVPR 2020, Section 2) translates an image into another *domain* while taking its
*style* from a latent code or a reference image and keeping the rest of the image. This module draws a
dataset in which those three factors are explicit, so that every feature of the package can be run and
checked on a laptop CPU with no download:

* **Domain = geometry.** ``cat`` (round face, small pointed ears, whiskers, slit pupils), ``dog`` (long face,
  long floppy ears hanging at the sides, a big muzzle and nose) and ``fox`` (a V-shaped face with flared
  cheeks, a pointed snout and very tall ears). A translation must change the outline of the head, not
  only its colours; the shapes are bold enough to tell apart at 32 px.
* **Content = pose and the background's layout**, shared by all domains and kept by a good translation: head
  centre (``cx``, ``cy``, fractions of the image), ``scale``, in-plane rotation ``angle`` (degrees, positive
  turns the head counter-clockwise on screen), the ``horizon`` height and the sun's position (``sun_x``,
  ``sun_y``). The sky and the ground have one colour in every image (see below).
* **Style = the colours of the animal**: ``fur_rgb``, ``eye_rgb``, ``nose_rgb`` and ``muzzle_rgb``, and its
  markings: a ``pattern`` (one of ``PATTERNS``) with ``pattern_rgb``, ``pattern_scale``, ``pattern_angle`` and
  ``pattern_phase``. Markings are drawn only in datasets made with ``markings=True``; by default every head
  is ``solid`` (the marking values are still drawn, and invisible). Every style can occur in every domain, so
  reference-guided synthesis can copy a reference's style onto another domain's shape.

Why one background colour and no markings by default (version 2; docs/quality.md, sixth round, has the
measurements): StarGAN v2's generator normalises every feature map (instance norm) and takes each map's
scale and offset from the style code (AdaIN), so the colours that fill most of an image belong to the style.
With sky and ground hues that varied, the demo's style encoder read mostly the background (swapping a
reference's background moved its code three times as far as swapping its fur), and the demo model copied the
reference's sky instead of its fur. With markings, a 10-minute model drew every head's inside as a mottled
patchwork whatever the style. Without either, the same 1,200 steps copy the reference's fur colour.

An image is a pure function of its parameters (``render``). ``make_dataset`` writes them in the layout of a
user's data (``split/domain/*.png``), each image with a JSON file of its parameters, so that translations can
be scored against the truth (does the output have the target's silhouette, the source's pose and the
reference's fur colour?).
"""

from __future__ import annotations

import colorsys
import json
import math
import os
import secrets
import shutil
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

#: Domain names, sorted alphabetically because labels come from sorted folder names.
DOMAINS: tuple[str, ...] = ("cat", "dog", "fox")
#: Fur markings; the one categorical style attribute.
PATTERNS: tuple[str, ...] = ("solid", "spots", "stripes")
#: ``kind`` written into ``dataset.json``; ``is_procedural_dataset`` looks for it.
KIND = "stargan-v2/procedural"
#: 2: one sky and one ground colour for all images (``sky_hue`` and ``ground_hue`` left the content) and
#: markings only on request. Version 1 datasets still render: their hues are read when present.
VERSION = 2
SPLITS: tuple[str, ...] = ("train", "val")

# Images are drawn at this multiple of the output size and box-filtered down, which anti-aliases every edge.
_SUPERSAMPLE = 4
# The head's radius in fractions of the image at scale 1. Every shape below lies within the unit disc of the
# head's frame, so a head of scale <= 1 centred in [0.4, 0.6]^2 stays inside the image at any rotation.
_HEAD_RADIUS = 0.38
_SUN_RADIUS = 0.07
_SUN_RGB = (1.0, 0.96, 0.78)
# The sky's and the ground's hue in every image (version 1 drew them per image as content).
_SKY_HUE = 0.6
_GROUND_HUE = 0.25
# Outline and line widths, in head radii.
_OUTLINE = 0.045
_LINE = 0.03
# Brightness of "fur_dark" parts (the dog's ears) relative to the rest of the fur, for depth.
_DARK_FUR = 0.78


# ----------------------------------------------------------------------------------------------------------
# Geometry of the three domains, in the head's frame: x to the right, y down, unit = head radius.


def _ellipse(cx: float, cy: float, rx: float, ry: float, rot: float = 0.0, n: int = 48) -> np.ndarray:
    """``n`` points on an ellipse rotated by ``rot`` degrees, as an ``(n, 2)`` array."""
    t = np.linspace(0.0, 2.0 * math.pi, n, endpoint=False)
    x, y = rx * np.cos(t), ry * np.sin(t)
    c, s = math.cos(math.radians(rot)), math.sin(math.radians(rot))
    return np.stack([cx + c * x - s * y, cy + s * x + c * y], axis=1)


def _chaikin(points: Sequence[tuple[float, float]], iterations: int = 3) -> np.ndarray:
    """Round the corners of a closed polygon by Chaikin corner cutting."""
    p = np.asarray(points, dtype=np.float64)
    for _ in range(iterations):
        q = np.roll(p, -1, axis=0)
        p = np.stack([0.75 * p + 0.25 * q, 0.25 * p + 0.75 * q], axis=1).reshape(-1, 2)
    return p


def _mirror(points: np.ndarray) -> np.ndarray:
    """The left-right mirror image of a shape (drawn on the other side of the face)."""
    return points * np.array([-1.0, 1.0])


def _pair(points: Sequence[tuple[float, float]] | np.ndarray) -> list[np.ndarray]:
    """A shape given for the left side of the face, and its mirror image."""
    p = np.asarray(points, dtype=np.float64)
    return [p, _mirror(p)]


def _closed(half: Sequence[tuple[float, float]]) -> np.ndarray:
    """A left-right symmetric outline from its right half, listed top to bottom along x >= 0."""
    right = np.asarray(half, dtype=np.float64)
    return np.concatenate([right, _mirror(right[::-1])])


# An operation is (kind, points, colour role[, line width]). "part" is a patch of the silhouette: an outlined
# polygon filled with the fur texture ("fur", "fur_dark") or a plain colour. "fill" is a plain polygon, "line"
# an open polyline; both are drawn on top of the parts.
Op = tuple[Any, ...]


def _cat_ops() -> list[Op]:
    """A round, wide face with small pointed ears, whiskers and slit pupils."""
    ops: list[Op] = []
    for ear in _pair([(-0.66, -0.06), (-0.55, -0.66), (-0.17, -0.36)]):
        ops.append(("part", ear, "fur"))
    ops.append(("part", _ellipse(0.0, 0.16, 0.68, 0.52), "fur"))
    for inner in _pair([(-0.56, -0.14), (-0.52, -0.54), (-0.29, -0.34)]):
        ops.append(("fill", inner, "inner_ear"))
    for side in (-1.0, 1.0):
        ops.append(("fill", _ellipse(0.1 * side, 0.38, 0.13, 0.11), "muzzle"))
        ops.append(("fill", _ellipse(0.27 * side, 0.06, 0.14, 0.13), "eye"))
        ops.append(("fill", _ellipse(0.27 * side, 0.06, 0.04, 0.11), "pupil"))
        ops.append(("fill", _ellipse(0.27 * side + 0.05, 0.01, 0.03, 0.03, n=12), "white"))
        for end_y in (0.24, 0.36, 0.48):
            ops.append(("line", np.array([(0.22 * side, 0.36), (0.84 * side, end_y)]), "outline", _LINE))
    ops.append(("fill", _chaikin([(-0.09, 0.24), (0.09, 0.24), (0.0, 0.33)], 2), "nose"))
    mouth = [(-0.12, 0.45), (-0.05, 0.46), (0.0, 0.41), (0.05, 0.46), (0.12, 0.45)]
    ops.append(("line", np.array([(0.0, 0.31), (0.0, 0.41)]), "outline", _LINE))
    ops.append(("line", np.array(mouth), "outline", _LINE))
    return ops


def _dog_ops() -> list[Op]:
    """A long face with floppy ears hanging at its sides, a big muzzle and a big nose; nothing above the head."""
    ops: list[Op] = [("part", _ellipse(0.0, 0.0, 0.5, 0.58), "fur")]
    ear_outline = [(-0.14, -0.54), (-0.5, -0.52), (-0.72, -0.26), (-0.82, 0.12), (-0.76, 0.5), (-0.6, 0.6)]
    ear = _chaikin([*ear_outline, (-0.48, 0.44), (-0.44, 0.05), (-0.32, -0.3)], 3)
    for e in _pair(ear):
        ops.append(("part", e, "fur_dark"))
    ops.append(("part", _ellipse(0.0, 0.4, 0.31, 0.25), "muzzle"))
    for side in (-1.0, 1.0):
        ops.append(("fill", _ellipse(0.2 * side, -0.1, 0.11, 0.11), "eye"))
        ops.append(("fill", _ellipse(0.2 * side, -0.1, 0.06, 0.06), "pupil"))
        ops.append(("fill", _ellipse(0.2 * side + 0.04, -0.14, 0.03, 0.03, n=12), "white"))
    ops.append(("fill", _chaikin([(-0.15, 0.24), (0.15, 0.24), (0.0, 0.37)], 3), "nose"))
    ops.append(("line", np.array([(0.0, 0.34), (0.0, 0.46)]), "outline", _LINE))
    ops.append(
        ("line", np.array([(-0.15, 0.47), (-0.07, 0.5), (0.0, 0.46), (0.07, 0.5), (0.15, 0.47)]), "outline", _LINE)
    )
    return ops


def _fox_ops() -> list[Op]:
    """A V-shaped face with flared cheeks, a pointed snout in a light mask, slanted eyes and very tall ears."""
    ops: list[Op] = []
    for ear in _pair([(-0.6, -0.12), (-0.46, -0.86), (-0.1, -0.38)]):
        ops.append(("part", ear, "fur"))
    cheek = [(0.0, -0.36), (0.3, -0.33), (0.52, -0.2), (0.62, 0.0), (0.8, 0.22), (0.5, 0.31), (0.27, 0.5)]
    face = _closed([*cheek, (0.1, 0.7), (0.0, 0.76)])
    ops.append(("part", face, "fur"))
    for inner in _pair([(-0.5, -0.2), (-0.44, -0.7), (-0.22, -0.38)]):
        ops.append(("fill", inner, "inner_ear"))
    mask = _closed(
        [(0.0, 0.26), (0.24, 0.2), (0.46, 0.1), (0.78, 0.22), (0.5, 0.31), (0.27, 0.5), (0.1, 0.7), (0.0, 0.76)]
    )
    ops.append(("fill", mask, "muzzle"))
    for side in (-1.0, 1.0):
        ops.append(("fill", _ellipse(0.25 * side, -0.02, 0.14, 0.075, rot=-22 * side), "eye"))
        ops.append(("fill", _ellipse(0.25 * side, -0.02, 0.03, 0.07, rot=-22 * side), "pupil"))
        ops.append(("fill", _ellipse(0.25 * side + 0.04, -0.05, 0.022, 0.022, n=12), "white"))
    ops.append(("fill", _ellipse(0.0, 0.68, 0.08, 0.06), "nose"))
    return ops


# Every point lies within 0.98 head radii of the centre (a test checks it): with the outline, a head of scale 1
# then reaches at most 0.385 of the image from its centre, so it stays inside the image for every pose.
_OPS: dict[str, list[Op]] = {"cat": _cat_ops(), "dog": _dog_ops(), "fox": _fox_ops()}


# ----------------------------------------------------------------------------------------------------------
# Parameters.


def _check_size(size: int) -> None:
    """Refuse sizes the generator cannot be built for (and that would make the supersampled canvas huge)."""
    if not isinstance(size, int) or isinstance(size, bool) or not 32 <= size <= 256 or size & (size - 1):
        raise ValueError(f"size must be a power of two between 32 and 256 (32, 64, 128 or 256), got {size!r}")


def _hsv(h: float, s: float, v: float) -> list[float]:
    """An HSV colour as a rounded RGB list (colours are drawn in HSV to control brightness and contrast)."""
    return [round(c, 4) for c in colorsys.hsv_to_rgb(h, s, v)]


def _u(rng: np.random.Generator, low: float, high: float, digits: int = 4) -> float:
    # Values are rounded so that the JSON files are short and readable; the rounded value is the truth.
    return round(float(rng.uniform(low, high)), digits)


def sample_params(rng: np.random.Generator, domain: int, markings: bool = False) -> dict[str, Any]:
    """Draw the parameters of one image of ``domain`` (an index into ``DOMAINS``) from ``rng``.

    The domain does not change which numbers are drawn, so the same generator state gives the same content
    and style in every domain. ``markings`` draws the ``pattern`` from ``PATTERNS``; without it every head is
    ``solid`` (the same numbers are drawn either way, so the colours do not change). The result is
    JSON-ready: ``content`` holds only floats, ``style`` holds ``pattern`` (one of ``PATTERNS``), RGB triples
    in [0, 1] and floats.
    """
    if not isinstance(domain, (int, np.integer)) or isinstance(domain, bool) or not 0 <= domain < len(DOMAINS):
        raise ValueError(f"domain must be an index in 0..{len(DOMAINS) - 1} (one of {DOMAINS}), got {domain!r}")
    content = {
        "cx": _u(rng, 0.4, 0.6),
        "cy": _u(rng, 0.4, 0.6),
        "scale": _u(rng, 0.75, 1.0),
        "angle": _u(rng, -20.0, 20.0, 2),
        "horizon": _u(rng, 0.55, 0.85),
        "sun_x": _u(rng, 0.1, 0.9),
        "sun_y": _u(rng, 0.08, 0.3),
    }
    fur_v = float(rng.uniform(0.3, 0.95))
    fur = _hsv(float(rng.uniform()), float(rng.uniform(0.1, 0.85)), fur_v)
    # The pattern colour is kept at least 0.3 away from the fur in brightness so that markings stay visible.
    t = float(rng.uniform())
    pattern_v = fur_v + 0.3 + t * (0.7 - fur_v) if fur_v < 0.6 else t * (fur_v - 0.3)
    pattern_rgb = _hsv(float(rng.uniform()), float(rng.uniform(0.0, 0.8)), pattern_v)
    drawn_pattern = PATTERNS[int(rng.integers(len(PATTERNS)))]  # drawn either way: the later draws stay put
    pattern = drawn_pattern if markings else "solid"
    eye = _hsv(float(rng.uniform()), float(rng.uniform(0.5, 1.0)), float(rng.uniform(0.55, 1.0)))
    # Noses are either dark or pink, with everything in between possible through the continuous draws.
    pink = float(rng.uniform())
    nose = _hsv(0.95 + 0.05 * pink, 0.2 + 0.4 * pink, 0.08 + 0.8 * pink * float(rng.uniform(0.5, 1.0)))
    lighten = float(rng.uniform(0.35, 0.95))
    muzzle = [round(c + lighten * (1.0 - c), 4) for c in fur]
    style = {
        "fur_rgb": fur,
        "pattern": pattern,
        "pattern_rgb": pattern_rgb,
        "pattern_scale": _u(rng, 0.0, 1.0),
        "pattern_angle": _u(rng, -60.0, 60.0, 2),
        "pattern_phase": _u(rng, 0.0, 1.0),
        "eye_rgb": eye,
        "nose_rgb": nose,
        "muzzle_rgb": muzzle,
    }
    return {"domain": DOMAINS[domain], "domain_index": int(domain), "content": content, "style": style}


# ----------------------------------------------------------------------------------------------------------
# Rendering.


def _rgb(c: Sequence[float], shade: float = 1.0) -> tuple[int, ...]:
    """Floats in [0, 1], times ``shade``, as the 8-bit colour Pillow draws with."""
    return tuple(round(255 * min(max(float(v) * shade, 0.0), 1.0)) for v in c)


def _domain_name(params: Mapping[str, Any]) -> str:
    name = params.get("domain")
    if name not in DOMAINS:
        raise ValueError(f"params['domain'] must be one of {DOMAINS}, got {name!r}")
    return name


def _background(content: Mapping[str, Any], s: int) -> Image.Image:
    """The sky, the ground below the horizon and the sun, at canvas size ``s`` (a version 1 image's own hues)."""
    sky = _rgb(colorsys.hsv_to_rgb(float(content.get("sky_hue", _SKY_HUE)), 0.35, 0.95))
    ground = _rgb(colorsys.hsv_to_rgb(float(content.get("ground_hue", _GROUND_HUE)), 0.55, 0.62))
    img = Image.new("RGB", (s, s), sky)
    draw = ImageDraw.Draw(img)
    x, y, r = float(content["sun_x"]) * s, float(content["sun_y"]) * s, _SUN_RADIUS * s
    draw.ellipse((x - r, y - r, x + r, y + r), fill=_rgb(_SUN_RGB))
    draw.rectangle((0, float(content["horizon"]) * s, s, s), fill=ground)
    return img


def _transform(points: np.ndarray, content: Mapping[str, Any], s: int) -> list[tuple[float, float]]:
    """Map points from the head's frame to canvas pixels: scale, rotate, then move to the head's centre."""
    a = math.radians(float(content["angle"]))
    c, sn = math.cos(a), math.sin(a)
    radius = _HEAD_RADIUS * float(content["scale"]) * s
    x, y = points[:, 0], points[:, 1]
    # With y pointing down, this matrix turns the head counter-clockwise on screen for a positive angle.
    px = float(content["cx"]) * s + radius * (c * x + sn * y)
    py = float(content["cy"]) * s + radius * (-sn * x + c * y)
    return list(zip(px.tolist(), py.tolist(), strict=True))


def _pattern_shapes(style: Mapping[str, Any]) -> list[np.ndarray]:
    """The markings of the fur as polygons in the head's frame (they move and turn with the head)."""
    pattern = style["pattern"]
    if pattern not in PATTERNS:
        raise ValueError(f"style['pattern'] must be one of {PATTERNS}, got {pattern!r}")
    if pattern == "solid":
        return []
    a = math.radians(float(style["pattern_angle"]))
    u = np.array([math.cos(a), math.sin(a)])  # across the stripes / along a lattice row
    v = np.array([-math.sin(a), math.cos(a)])
    phase = float(style["pattern_phase"])
    shapes = []
    if pattern == "stripes":
        period = 0.24 + 0.18 * float(style["pattern_scale"])
        half = 0.22 * period
        for k in range(-8, 9):
            t = (k + phase) * period
            if abs(t) > 1.0 + period:
                continue
            corners = [(t - half, -1.2), (t + half, -1.2), (t + half, 1.2), (t - half, 1.2)]
            shapes.append(np.array([a_ * u + b_ * v for a_, b_ in corners]))
    else:
        spacing = 0.26 + 0.2 * float(style["pattern_scale"])
        radius = 0.3 * spacing
        row_step = spacing * math.sqrt(3) / 2
        for j in range(-6, 7):
            for i in range(-6, 7):
                # A hexagonal lattice, shifted by the phase along both lattice directions.
                offset = (i + phase + 0.5 * (j % 2)) * spacing * u + (j + phase) * row_step * v
                if np.hypot(*offset) < 1.1:
                    shapes.append(_ellipse(offset[0], offset[1], radius, radius, n=16))
    return shapes


def _render_canvas(params: Mapping[str, Any], size: int) -> Image.Image:
    """Draw ``params`` at ``_SUPERSAMPLE`` times ``size``."""
    _check_size(size)
    name = _domain_name(params)
    content, style = params["content"], params["style"]
    s = size * _SUPERSAMPLE
    img = _background(content, s)
    draw = ImageDraw.Draw(img)
    radius = _HEAD_RADIUS * float(content["scale"]) * s

    fur = style["fur_rgb"]
    colours = {
        "fur": _rgb(fur),
        "outline": _rgb(fur, 0.4),
        "muzzle": _rgb(style["muzzle_rgb"]),
        "eye": _rgb(style["eye_rgb"]),
        "nose": _rgb(style["nose_rgb"]),
        "inner_ear": _rgb([0.5 * (m + n) for m, n in zip(style["muzzle_rgb"], style["nose_rgb"], strict=True)]),
        "pupil": (15, 12, 12),
        "white": (255, 255, 255),
    }
    # The fur texture: the fur colour with the markings drawn over it, pasted through each fur part's mask.
    texture = Image.new("RGB", (s, s), colours["fur"])
    tdraw = ImageDraw.Draw(texture)
    for shape in _pattern_shapes(style):
        tdraw.polygon(_transform(shape, content, s), fill=_rgb(style["pattern_rgb"]))
    textures = {"fur": texture}

    outline_w = max(1, round(2 * _OUTLINE * radius))
    for op in _OPS[name]:
        kind, points, role = op[0], op[1], op[2]
        xy = _transform(points, content, s)
        if kind == "part":
            # A centred stroke twice the outline width, then the fill on top, leaves the outline outside.
            draw.line([*xy, xy[0], xy[1]], fill=colours["outline"], width=outline_w, joint="curve")
            if role in ("fur", "fur_dark"):
                if role not in textures:
                    textures[role] = texture.point(lambda v: int(v * _DARK_FUR))
                mask = Image.new("L", (s, s), 0)
                ImageDraw.Draw(mask).polygon(xy, fill=255)
                img.paste(textures[role], (0, 0), mask)
            else:
                draw.polygon(xy, fill=colours[role])
        elif kind == "fill":
            draw.polygon(xy, fill=colours[role])
        else:
            draw.line(xy, fill=colours[role], width=max(1, round(op[3] * radius)), joint="curve")
    return img


def render(params: Mapping[str, Any], size: int = 64) -> Image.Image:
    """Draw the image described by ``params`` (from ``sample_params``) as an RGB ``size`` x ``size`` image.

    A pure function of its arguments: the same parameters always give the same pixels.
    """
    return _render_canvas(params, size).reduce(_SUPERSAMPLE)


def render_batch(params_list: Sequence[Mapping[str, Any]], size: int = 64) -> torch.Tensor:
    """Render many parameter sets as a ``(N, 3, size, size)`` float tensor in [-1, 1] (the networks' range)."""
    _check_size(size)
    if not params_list:
        return torch.empty(0, 3, size, size)
    arrays = np.stack([np.asarray(render(p, size)) for p in params_list])  # (N, size, size, 3) uint8
    return torch.from_numpy(arrays).permute(0, 3, 1, 2).float().div(127.5).sub(1.0).contiguous()


# ----------------------------------------------------------------------------------------------------------
# Dataset on disk.


def _image_rng(seed: int, split: str, domain: int, index: int) -> np.random.Generator:
    """The generator of one image: a function of (seed, split, domain, index) only, so that writing more
    images per domain, or fewer, leaves the earlier ones unchanged."""
    return np.random.default_rng(np.random.SeedSequence([seed, SPLITS.index(split), domain, index]))


def _write_images(job: tuple[str, str, int, int, int, int, int, int, bool]) -> None:
    """Write images ``start..stop-1`` of one split and domain into ``root`` (one unit of work for a pool)."""
    root, split, domain, start, stop, size, seed, digits, markings = job
    folder = Path(root) / split / DOMAINS[domain]
    for i in range(start, stop):
        params = sample_params(_image_rng(seed, split, domain, i), domain, markings)
        stem = folder / f"{i:0{digits}d}"
        render(params, size).save(stem.with_suffix(".png"), format="PNG")
        record = {**params, "size": size, "seed": seed, "split": split, "index": i}
        stem.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")


def _read_manifest(path: Path) -> dict[str, Any] | None:
    try:
        manifest = json.loads((path / "dataset.json").read_text())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def _check_count(name: str, value: int, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def make_dataset(
    out: str | os.PathLike,
    size: int = 64,
    per_domain: int = 1000,
    val_per_domain: int = 100,
    seed: int = 0,
    workers: int = 0,
    markings: bool = False,
) -> Path:
    """Write the procedural dataset into the folder ``out`` and return it as a ``Path``.

    Layout, the same as a user's data: ``out/train/<domain>/00000.png`` with ``00000.json`` beside it (the
    image's parameters plus ``size``, ``seed``, ``split`` and ``index``), the same under ``out/val`` when
    ``val_per_domain > 0``, and ``out/dataset.json`` describing the whole. The same arguments give
    byte-identical files, and each image depends only on (seed, split, domain, index, markings). ``markings``
    draws spots and stripes on the fur (see ``sample_params``). ``workers > 0`` draws with that many processes.
    If ``out`` already holds a dataset made with the same arguments (and this ``VERSION``) it is returned as it
    is; any other non-empty ``out`` is refused with ``FileExistsError``.
    """
    if not isinstance(markings, bool):
        raise ValueError(f"markings must be True or False, got {markings!r}")
    _check_size(size)
    _check_count("per_domain", per_domain, 1)
    _check_count("val_per_domain", val_per_domain, 0)
    _check_count("seed", seed, 0)
    _check_count("workers", workers, 0)
    out = Path(out)
    manifest = {
        "kind": KIND,
        "version": VERSION,
        "size": size,
        "seed": seed,
        "domains": list(DOMAINS),
        "per_domain": per_domain,
        "val_per_domain": val_per_domain,
        "markings": markings,
    }
    if out.exists():
        if out.is_dir() and _read_manifest(out) == manifest:
            return out  # Made with identical arguments, hence identical files: nothing to redo.
        if not out.is_dir() or any(out.iterdir()):
            raise FileExistsError(
                f"{out} exists and is not a procedural dataset made with these arguments "
                f"(size={size}, per_domain={per_domain}, val_per_domain={val_per_domain}, seed={seed}, "
                f"markings={markings}, version {VERSION}); "
                "choose a new or empty folder, or delete this one"
            )

    # Everything is written into a hidden sibling and renamed at the end, so an interrupted run never leaves
    # a half-written dataset under the final name.
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    tmp.mkdir()
    try:
        jobs = []
        for split, count in zip(SPLITS, (per_domain, val_per_domain), strict=True):
            if count == 0:
                continue
            digits = max(5, len(str(count - 1)))
            for d, name in enumerate(DOMAINS):
                (tmp / split / name).mkdir(parents=True)
                for start in range(0, count, 200):
                    jobs.append((str(tmp), split, d, start, min(start + 200, count), size, seed, digits, markings))
        if workers > 0:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                list(pool.map(_write_images, jobs))
        else:
            for job in jobs:
                _write_images(job)
        (tmp / "dataset.json").write_text(json.dumps(manifest, indent=2) + "\n")
        if out.exists():
            out.rmdir()  # Checked empty above; rename cannot replace a folder on every platform.
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def is_procedural_dataset(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder written by ``make_dataset`` (it holds a ``dataset.json`` of this kind)."""
    manifest = _read_manifest(Path(path))
    return manifest is not None and manifest.get("kind") == KIND
