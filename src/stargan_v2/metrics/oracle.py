"""An oracle for the procedural dataset: a small CNN that reads back the parameters an image was drawn from.

The paper measures quality with FID and diversity with LPIPS (Section 4, "Evaluation metrics"), both with
networks trained on natural photographs. On the built-in procedural dataset (``stargan_v2.procedural``) we
know far more: every image is a function of a domain (the head's geometry), content (pose and background)
and style (colours and markings). This module trains a compact network on freshly rendered images to
predict all three, so that ``quality.py`` can ask of a translation what the paper can only ask of a person:
is it of the target domain, did it keep the source's pose, did it copy the reference's fur? Its
penultimate layer (``FEATURE_DIM`` numbers) stands in for Inception features (Fréchet distance) and for
LPIPS features (diversity).

The oracle sees only real renderings, never translated images, drawn from a random stream that does not
overlap the dataset's own images (``_SEED_OFFSET``), and it is scored on the dataset's ``val`` split. It is
deterministic given the dataset's seed and cached as safetensors with a JSON file of its held-out metrics.
"""

from __future__ import annotations

import functools
import json
import math
import operator
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from .. import procedural
from ..data import load_image

#: Bump when the network, its targets or its training change: the cache key includes it.
ORACLE_VERSION = 2
#: Width of the penultimate layer, the feature vector used for diversity and the Fréchet distance.
FEATURE_DIM = 128
#: The four content values that make up the pose; the other content values are the background.
POSE_KEYS: tuple[str, ...] = ("cx", "cy", "scale", "angle")
#: Style values the oracle does not regress: a marking's phase (and, for the hexagonal lattice of spots,
#: its angle) is ambiguous by construction, since shifted or turned markings can give the same image.
_UNREGRESSED_STYLE: frozenset[str] = frozenset({"pattern_angle", "pattern_phase"})
#: The oracle's training images come from ``SeedSequence([dataset seed, _SEED_OFFSET])``; the dataset's own
#: images come from four-word sequences ``[seed, split, domain, index]``: distinct streams.
_SEED_OFFSET = 0x5EED_0AC1E

#: Training budget of a cached oracle: about a minute on two CPU cores at 32 or 64 px.
DEFAULT_NUM_IMAGES = 6144
DEFAULT_STEPS = 1000
DEFAULT_BATCH_SIZE = 64
DEFAULT_LR = 1e-3


# ----------------------------------------------------------------------------------------------------------
# The procedural dataset on disk
# ----------------------------------------------------------------------------------------------------------


def read_manifest(dataset_dir: str | os.PathLike) -> dict[str, Any]:
    """The ``dataset.json`` of a procedural dataset; a clear ValueError for any other folder."""
    path = Path(dataset_dir) / "dataset.json"
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError):
        manifest = None
    if not isinstance(manifest, dict) or manifest.get("kind") != procedural.KIND:
        raise ValueError(
            f"{dataset_dir} is not a procedural dataset (no dataset.json of kind '{procedural.KIND}'): the quality "
            "benchmark needs the built-in dataset, whose images come with their true parameters; make one with "
            "`stargan-v2 make-dataset`"
        )
    if tuple(manifest.get("domains", ())) != procedural.DOMAINS:
        raise ValueError(
            f"{dataset_dir} was made with domains {manifest.get('domains')}, but this version of the package draws "
            f"{list(procedural.DOMAINS)}; make the dataset again with `stargan-v2 make-dataset`"
        )
    if manifest.get("version") != procedural.VERSION:
        raise ValueError(
            f"{dataset_dir} was made by version {manifest.get('version')} of the procedural generator, but this "
            f"version of the package draws version {procedural.VERSION} (one background colour, markings only on "
            "request), so its images do not match the truth the oracle learns; make the dataset again with "
            "`stargan-v2 make-dataset` into a new folder"
        )
    return manifest


def dataset_markings(manifest: Mapping[str, Any]) -> bool:
    """Whether a dataset (its ``dataset.json``) was made with ``markings=True``."""
    return bool(manifest.get("markings", False))


def split_files(dataset_dir: str | os.PathLike, split: str, domain: int) -> list[Path]:
    """The sorted image files of one split (``train`` or ``val``) and domain index."""
    folder = Path(dataset_dir) / split / procedural.DOMAINS[domain]
    files = sorted(folder.glob("*.png"))
    if not files:
        raise ValueError(f"{folder} holds no images; the quality benchmark needs the dataset's '{split}' split")
    return files


def load_images(paths: Sequence[Path], img_size: int) -> Tensor:
    """``(N, 3, img_size, img_size)`` in [-1, 1], read and resized exactly as the training loader does."""
    return torch.stack([load_image(p, img_size) for p in paths])


def load_params(paths: Sequence[Path]) -> list[dict[str, Any]]:
    """The true parameters of each image, from the JSON file beside it."""
    return [json.loads(Path(p).with_suffix(".json").read_text()) for p in paths]


# ----------------------------------------------------------------------------------------------------------
# Targets: what the oracle predicts, as numbers
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TargetLayout:
    """Names of the regressed values: content (pose first, then background) and flattened style values.

    An RGB style value ``fur_rgb`` becomes three columns ``fur_rgb[0..2]``. Found from the procedural
    generator's own output, so the oracle follows it if parameters are added.
    """

    content: tuple[str, ...]
    style: tuple[str, ...]

    @classmethod
    def current(cls) -> TargetLayout:
        params = procedural.sample_params(np.random.default_rng(0), 0)
        numeric = [k for k, v in params["content"].items() if isinstance(v, (int, float))]
        content = tuple(POSE_KEYS) + tuple(k for k in numeric if k not in POSE_KEYS)
        style: list[str] = []
        for key, value in params["style"].items():
            if key in _UNREGRESSED_STYLE or key == "pattern":
                continue
            if isinstance(value, (list, tuple)):
                style += [f"{key}[{i}]" for i in range(len(value))]
            elif isinstance(value, (int, float)):
                style.append(key)
        return cls(content, tuple(style))

    def style_columns(self, key: str) -> list[int]:
        """Columns of one style value (three for an RGB triple)."""
        columns = [i for i, name in enumerate(self.style) if name == key or name.startswith(key + "[")]
        if not columns:
            raise KeyError(f"the oracle does not regress style value '{key}'; it has {self.style}")
        return columns

    def content_column(self, key: str) -> int:
        return self.content.index(key)


@dataclass
class Targets:
    """True values of a batch of images, as tensors (row ``i`` is image ``i``)."""

    domain: Tensor  # (N,) int64
    content: Tensor  # (N, C) float
    style: Tensor  # (N, S) float
    style_mask: Tensor  # (N, S) 1 where the value is visible (markings' values are invisible on solid fur)
    pattern: Tensor  # (N,) int64

    def index(self, rows: Tensor) -> Targets:
        return Targets(*(t[rows] for t in (self.domain, self.content, self.style, self.style_mask, self.pattern)))


def encode_targets(params_list: Sequence[Mapping[str, Any]], layout: TargetLayout) -> Targets:
    """Turn parameter dicts (``sample_params`` output or JSON sidecars) into target tensors."""
    domain, content, style, mask, pattern = [], [], [], [], []
    for p in params_list:
        domain.append(procedural.DOMAINS.index(p["domain"]))
        content.append([float(p["content"][k]) for k in layout.content])
        values, visible = [], []
        solid = p["style"]["pattern"] == "solid"
        for name in layout.style:
            key, _, rest = name.partition("[")
            value = p["style"][key]
            values.append(float(value[int(rest[:-1])]) if rest else float(value))
            visible.append(0.0 if solid and key.startswith("pattern_") else 1.0)
        style.append(values)
        mask.append(visible)
        pattern.append(procedural.PATTERNS.index(p["style"]["pattern"]))
    return Targets(
        domain=torch.tensor(domain, dtype=torch.int64),
        content=torch.tensor(content, dtype=torch.float32).reshape(len(params_list), len(layout.content)),
        style=torch.tensor(style, dtype=torch.float32).reshape(len(params_list), len(layout.style)),
        style_mask=torch.tensor(mask, dtype=torch.float32).reshape(len(params_list), len(layout.style)),
        pattern=torch.tensor(pattern, dtype=torch.int64),
    )


# ----------------------------------------------------------------------------------------------------------
# The network
# ----------------------------------------------------------------------------------------------------------


@dataclass
class OraclePrediction:
    """What the oracle reads from a batch of images; regressions are in the parameters' own units."""

    features: Tensor  # (N, FEATURE_DIM)
    domain_logits: Tensor  # (N, K)
    content: Tensor  # (N, C), columns named by layout.content
    style: Tensor  # (N, S), columns named by layout.style
    pattern_logits: Tensor  # (N, len(PATTERNS))
    layout: TargetLayout

    @property
    def domain(self) -> Tensor:
        return self.domain_logits.argmax(1)

    @property
    def pattern(self) -> Tensor:
        return self.pattern_logits.argmax(1)


def _conv(c_in: int, c_out: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


class Oracle(nn.Module):
    """``(B, 3, S, S)`` in [-1, 1] -> features, domain logits, content, style and pattern logits.

    The trunk works at 32 px: a larger image first passes a strided convolution. Convolutions then halve the
    maps down to 4x4 (widths 32, 64, 128), a second convolution refines the 8 and 4 px maps, and two linear
    layers give the feature vector that all heads read.
    Regression heads predict standardised values; the means and deviations of the training targets are
    buffers, so they travel with the weights.
    """

    # Buffers (registered by name in __init__): the training targets' means and deviations.
    content_mean: Tensor
    content_std: Tensor
    style_mean: Tensor
    style_std: Tensor

    def __init__(self, img_size: int, layout: TargetLayout, num_domains: int, num_patterns: int) -> None:
        super().__init__()
        if img_size < 16 or img_size & (img_size - 1):
            raise ValueError(f"img_size must be a power of two >= 16, got {img_size}")
        self.img_size = img_size
        self.layout = layout
        # The trunk runs at 32 px (or less) whatever the image size, which keeps the cost of an oracle the same
        # at every size: a larger image enters through a strided convolution whose windows overlap, so no
        # pixel is skipped.
        size = min(img_size, 32)
        patch = img_size // size
        dim = 32
        layers: list[nn.Module] = [
            nn.Conv2d(3, dim, 3 if patch == 1 else patch + 2, patch, 1, bias=False),
            nn.BatchNorm2d(dim),
            nn.ReLU(inplace=True),
        ]
        for i in range(int(math.log2(size)) - 2):
            out = min(32 * 2**i, 128)
            layers += _conv(dim, out, 2)
            size //= 2
            if size <= 8:
                layers += _conv(out, out, 1)
            dim = out
        self.trunk = nn.Sequential(*layers)
        self.embed = nn.Sequential(
            nn.Linear(dim * 16, 256), nn.ReLU(inplace=True), nn.Linear(256, FEATURE_DIM), nn.ReLU(inplace=True)
        )
        self.domain_head = nn.Linear(FEATURE_DIM, num_domains)
        self.content_head = nn.Linear(FEATURE_DIM, len(layout.content))
        self.style_head = nn.Linear(FEATURE_DIM, len(layout.style))
        self.pattern_head = nn.Linear(FEATURE_DIM, num_patterns)
        for name, n in (("content", len(layout.content)), ("style", len(layout.style))):
            self.register_buffer(f"{name}_mean", torch.zeros(n))
            self.register_buffer(f"{name}_std", torch.ones(n))
        self.info: dict[str, Any] = {}  # metadata of the cached file (training budget, held-out metrics)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """Raw outputs (standardised regressions, logits) of ``x (B, 3, S, S)``."""
        if x.shape[1:] != (3, self.img_size, self.img_size):
            raise ValueError(f"the oracle takes (B, 3, {self.img_size}, {self.img_size}) images, got {tuple(x.shape)}")
        h = self.trunk(x).flatten(1)  # (B, C, 4, 4) -> (B, 16 C)
        features = self.embed(h)
        return {
            "features": features,
            "domain_logits": self.domain_head(features),
            "content": self.content_head(features),
            "style": self.style_head(features),
            "pattern_logits": self.pattern_head(features),
        }

    @torch.no_grad()
    def predict(self, x: Tensor, batch_size: int = 256) -> OraclePrediction:
        """Read a batch of images (in eval mode), in chunks of ``batch_size``; results are float32 on CPU."""
        self.eval()
        device = self.content_mean.device
        parts = [self(x[i : i + batch_size].to(device, torch.float32)) for i in range(0, x.shape[0], batch_size)]
        out = {k: torch.cat([p[k] for p in parts]).float().cpu() for k in parts[0]} if parts else self._empty()
        return OraclePrediction(
            features=out["features"],
            domain_logits=out["domain_logits"],
            content=out["content"] * self.content_std.cpu() + self.content_mean.cpu(),
            style=out["style"] * self.style_std.cpu() + self.style_mean.cpu(),
            pattern_logits=out["pattern_logits"],
            layout=self.layout,
        )

    def _empty(self) -> dict[str, Tensor]:
        heads = {"domain_logits": self.domain_head, "content": self.content_head, "style": self.style_head}
        out = {k: torch.empty(0, m.out_features) for k, m in heads.items()}
        out["pattern_logits"] = torch.empty(0, self.pattern_head.out_features)
        out["features"] = torch.empty(0, FEATURE_DIM)
        return out


# ----------------------------------------------------------------------------------------------------------
# Errors against the truth (shared by the held-out check and the benchmark)
# ----------------------------------------------------------------------------------------------------------


def pose_errors(pred: OraclePrediction, truth: Targets) -> dict[str, Tensor]:
    """Per-image pose and background errors of the oracle's reading against ``truth``.

    ``pose_error_center`` is the distance between centres in image fractions, ``pose_error_center_rel`` the
    same in radii of the true head; ``pose_error_scale`` is ``|scale / true scale - 1|``;
    ``pose_error_angle`` is in degrees; ``background_error`` is the mean absolute error of the background
    values (horizon and sun position; all in [0, 1]).
    """
    layout = pred.layout
    col = {k: layout.content_column(k) for k in POSE_KEYS}
    p, t = pred.content, truth.content
    center = torch.hypot(p[:, col["cx"]] - t[:, col["cx"]], p[:, col["cy"]] - t[:, col["cy"]])
    background = [i for i, name in enumerate(layout.content) if name not in POSE_KEYS]
    return {
        "pose_error_center": center,
        "pose_error_center_rel": center / (procedural._HEAD_RADIUS * t[:, col["scale"]]),
        "pose_error_scale": (p[:, col["scale"]] / t[:, col["scale"]] - 1).abs(),
        "pose_error_angle": (p[:, col["angle"]] - t[:, col["angle"]]).abs(),
        "background_error": (p[:, background] - t[:, background]).abs().mean(1),
    }


def style_errors(pred: OraclePrediction, truth: Targets) -> dict[str, Tensor]:
    """Per-image fur and eye colour errors (mean absolute RGB error, colours in [0, 1]) and pattern hits."""
    fur = pred.layout.style_columns("fur_rgb")
    eye = pred.layout.style_columns("eye_rgb")
    return {
        "style_fur_error": (pred.style[:, fur] - truth.style[:, fur]).abs().mean(1),
        "style_eye_error": (pred.style[:, eye] - truth.style[:, eye]).abs().mean(1),
        "style_pattern_accuracy": (pred.pattern == truth.pattern).float(),
    }


def heldout_metrics(oracle: Oracle, dataset_dir: str | os.PathLike, batch_size: int = 256) -> dict[str, float | int]:
    """The oracle against the truth on every ``val`` image of the dataset (the floor of the benchmark)."""
    images, params = [], []
    for d in range(len(procedural.DOMAINS)):
        files = split_files(dataset_dir, "val", d)
        images.append(load_images(files, oracle.img_size))
        params += load_params(files)
    pred = oracle.predict(torch.cat(images), batch_size)
    truth = encode_targets(params, oracle.layout)
    per_image = {"domain_accuracy": (pred.domain == truth.domain).float()}
    per_image |= pose_errors(pred, truth) | style_errors(pred, truth)
    return {k: float(v.mean()) for k, v in per_image.items()} | {"num_images": len(params)}


# ----------------------------------------------------------------------------------------------------------
# Training and the cache
# ----------------------------------------------------------------------------------------------------------


def render_training_set(
    dataset_seed: int, dataset_size: int, img_size: int, num_images: int, markings: bool = False
) -> tuple[Tensor, list]:
    """``num_images`` fresh renderings (domains in turn) at the dataset's size, resized like the loader; with
    the dataset's ``markings`` setting."""
    rng = np.random.default_rng(np.random.SeedSequence([dataset_seed, _SEED_OFFSET]))
    domains = len(procedural.DOMAINS)
    params = [procedural.sample_params(rng, i % domains, markings) for i in range(num_images)]
    chunks = []
    for i in range(0, num_images, 256):
        x = procedural.render_batch(params[i : i + 256], dataset_size)  # (n, 3, size, size) in [-1, 1]
        if dataset_size != img_size:
            x = TF.resize(
                (x + 1) / 2, [img_size, img_size], interpolation=TF.InterpolationMode.BILINEAR, antialias=True
            )
            x = x * 2 - 1
        chunks.append(x)
    return torch.cat(chunks), params


#: What a left-right mirror does to the content values: the heads are symmetric, so a mirrored rendering is
#: the rendering of mirrored parameters (markings mirror too, but their angle and phase are not regressed).
_MIRROR = {"cx": lambda v: 1 - v, "sun_x": lambda v: 1 - v, "angle": lambda v: -v}


def _augment(x: Tensor, t: Targets, layout: TargetLayout, g: torch.Generator) -> tuple[Tensor, Targets]:
    """Mirror half of the images (and their targets), and add a little Gaussian noise."""
    flip = torch.rand(x.shape[0], generator=g) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    content = t.content.clone()
    for key, mirror in _MIRROR.items():
        column = layout.content_column(key)
        content[flip, column] = mirror(content[flip, column])
    x = x + torch.randn(x.shape, generator=g) * torch.rand(x.shape[0], 1, 1, 1, generator=g) * 0.05
    return x, Targets(t.domain, content, t.style, t.style_mask, t.pattern)


def _grouped_mse(pred: Tensor, target: Tensor, mask: Tensor, groups: Sequence[Sequence[int]]) -> Tensor:
    """Half the sum over groups of values (the pose, the background, each colour) of their mean squared error.

    Each group weighs the same, however many numbers it has: averaged over all values at once, the fur colour
    would be a small share of the loss and hardly learnt; summed over all values, the regressions would
    swamp the classifications.
    """
    squared = (pred - target).square() * mask
    # reduce rather than sum(): the same additions, and a Tensor (sum's start, the int 0, is never returned).
    return functools.reduce(operator.add, (squared[:, g].sum() / mask[:, g].sum().clamp_min(1) for g in groups))


def _standardise(oracle: Oracle, targets: Targets) -> None:
    """Set the oracle's target statistics from the training targets (visible values only for style)."""
    oracle.content_mean.copy_(targets.content.mean(0))
    oracle.content_std.copy_(targets.content.std(0).clamp_min(1e-6))
    weight = targets.style_mask.sum(0).clamp_min(1)
    style_mean = (targets.style * targets.style_mask).sum(0) / weight
    style_var = (((targets.style - style_mean) * targets.style_mask) ** 2).sum(0) / weight
    oracle.style_mean.copy_(style_mean)
    oracle.style_std.copy_(style_var.sqrt().clamp_min(1e-6))


def _loss_groups(layout: TargetLayout) -> tuple[list[list[int]], list[list[int]]]:
    """Columns whose errors are averaged together: the pose and the other content; each style attribute."""
    content_groups = [
        [layout.content_column(k) for k in POSE_KEYS],
        [i for i, name in enumerate(layout.content) if name not in POSE_KEYS],
    ]
    style_keys = dict.fromkeys(name.partition("[")[0] for name in layout.style)
    return content_groups, [layout.style_columns(k) for k in style_keys]


def _oracle_loss(
    oracle: Oracle,
    x: Tensor,
    t: Targets,
    content_groups: Sequence[Sequence[int]],
    style_groups: Sequence[Sequence[int]],
) -> Tensor:
    """Domain and pattern cross-entropy plus the grouped errors of the standardised content and style."""
    device = x.device
    out = oracle(x)
    content = (t.content.to(device) - oracle.content_mean) / oracle.content_std
    style = (t.style.to(device) - oracle.style_mean) / oracle.style_std
    return (
        F.cross_entropy(out["domain_logits"], t.domain.to(device))
        + 2 * F.cross_entropy(out["pattern_logits"], t.pattern.to(device))
        + _grouped_mse(out["content"], content, torch.ones_like(content), content_groups)
        + _grouped_mse(out["style"], style, t.style_mask.to(device), style_groups)
    )


def train_oracle(
    dataset_dir: str | os.PathLike,
    img_size: int,
    *,
    num_images: int = DEFAULT_NUM_IMAGES,
    steps: int = DEFAULT_STEPS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    lr: float = DEFAULT_LR,
    device: torch.device | str = "cpu",
    log: Any = None,
) -> Oracle:
    """Train an oracle for images of ``img_size`` px on fresh renderings of the dataset's generator.

    Adam with a cosine decay over ``steps`` steps of ``batch_size`` images, drawn in epochs from
    ``num_images`` renderings (fewer are rendered if the steps would not see them all). Half the images are
    mirrored (with their targets), and all get a little Gaussian noise so that the oracle is not thrown by a
    generator's grain. Deterministic given the dataset's seed and the budget; the caller's global torch RNG
    is left as it was. The held-out metrics on ``val`` are in
    ``oracle.info["heldout"]``. ``log`` is an optional ``print``-like callable.
    """
    manifest = read_manifest(dataset_dir)
    seed, size = int(manifest["seed"]), int(manifest["size"])
    if steps < 1 or num_images < 1 or batch_size < 1:
        raise ValueError(f"steps, num_images and batch_size must be >= 1 (got {steps}, {num_images}, {batch_size})")
    device = torch.device(device)
    num_images = min(num_images, steps * batch_size)
    start = time.perf_counter()
    markings = dataset_markings(manifest)
    x_all, params = render_training_set(seed, size, img_size, num_images, markings)
    layout = TargetLayout.current()
    targets = encode_targets(params, layout)
    render_s = time.perf_counter() - start

    fork_devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=fork_devices):
        torch.manual_seed(seed + _SEED_OFFSET)
        oracle = Oracle(img_size, layout, len(procedural.DOMAINS), len(procedural.PATTERNS))
        _standardise(oracle, targets)
        oracle.to(device).train()

        content_groups, style_groups = _loss_groups(layout)
        optimizer = torch.optim.Adam(oracle.parameters(), lr=lr)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
        g = torch.Generator().manual_seed(seed + _SEED_OFFSET)
        order = torch.empty(0, dtype=torch.int64)
        for step in range(steps):
            if order.numel() < batch_size:
                order = torch.cat([order, torch.randperm(num_images, generator=g)])
            rows, order = order[:batch_size], order[batch_size:]
            x, t = _augment(x_all[rows], targets.index(rows), layout, g)
            loss = _oracle_loss(oracle, x.to(device), t, content_groups, style_groups)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            if log is not None and (step + 1) % max(1, steps // 10) == 0:
                log(f"oracle step {step + 1}/{steps}: loss {loss.item():.4f}")
        oracle.eval()
    train_s = time.perf_counter() - start
    oracle.info = {
        "version": ORACLE_VERSION,
        "dataset_seed": seed,
        "dataset_size": size,
        "dataset_version": procedural.VERSION,
        "markings": markings,
        "img_size": img_size,
        "domains": list(procedural.DOMAINS),
        "patterns": list(procedural.PATTERNS),
        "content": list(layout.content),
        "style": list(layout.style),
        "train": {
            "num_images": num_images,
            "steps": steps,
            "batch_size": batch_size,
            "lr": lr,
            "render_seconds": round(render_s, 2),
            "seconds": round(train_s, 2),
        },
        "heldout": heldout_metrics(oracle, dataset_dir),
    }
    return oracle


def default_cache_dir() -> Path:
    """``$STARGAN_V2_CACHE``, else ``$XDG_CACHE_HOME/stargan-v2``, else ``~/.cache/stargan-v2``."""
    if os.environ.get("STARGAN_V2_CACHE"):
        return Path(os.environ["STARGAN_V2_CACHE"])
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "stargan-v2"
    return Path.home() / ".cache" / "stargan-v2"


def oracle_path(
    cache_dir: str | os.PathLike,
    seed: int,
    size: int,
    img_size: int,
    steps: int = DEFAULT_STEPS,
    num_images: int = DEFAULT_NUM_IMAGES,
    markings: bool = False,
) -> Path:
    """The cache file of an oracle; a non-default training budget (as in tests) gets its own file."""
    default = steps == DEFAULT_STEPS and num_images == DEFAULT_NUM_IMAGES
    budget = "" if default else f"_steps{steps}_images{num_images}"
    kind = "_markings" if markings else ""
    name = f"oracle_seed{seed}_data{size}{kind}_img{img_size}_v{ORACLE_VERSION}{budget}.safetensors"
    return Path(cache_dir) / name


def save_oracle(oracle: Oracle, path: str | os.PathLike) -> None:
    """Write the weights (safetensors) and ``info`` (JSON beside them), each atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    save_file({k: v.detach().cpu().contiguous() for k, v in oracle.state_dict().items()}, str(tmp))
    os.replace(tmp, path)
    meta = path.with_suffix(".json")
    tmp = meta.with_name(f".{meta.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(oracle.info, indent=2) + "\n")
    os.replace(tmp, meta)


def load_oracle(path: str | os.PathLike, device: torch.device | str = "cpu") -> Oracle:
    """Read an oracle written by ``save_oracle``; ValueError if it does not fit this version of the package."""
    path = Path(path)
    info = json.loads(path.with_suffix(".json").read_text())
    layout = TargetLayout(tuple(info["content"]), tuple(info["style"]))
    if (
        info.get("version") != ORACLE_VERSION
        or layout != TargetLayout.current()
        or tuple(info["domains"]) != procedural.DOMAINS
        or tuple(info["patterns"]) != procedural.PATTERNS
    ):
        raise ValueError(f"{path} was made by another version of the oracle or of the procedural generator")
    oracle = Oracle(int(info["img_size"]), layout, len(procedural.DOMAINS), len(procedural.PATTERNS))
    oracle.load_state_dict(load_file(str(path)))
    oracle.info = info
    return oracle.to(device).eval()


def load_or_train_oracle(
    dataset_dir: str | os.PathLike,
    img_size: int,
    cache_dir: str | os.PathLike | None = None,
    device: torch.device | str = "cpu",
    *,
    steps: int = DEFAULT_STEPS,
    num_images: int = DEFAULT_NUM_IMAGES,
    log: Any = None,
) -> Oracle:
    """The oracle for this dataset and image size: from the cache, or trained (and cached) on first use.

    The cache key is (dataset seed, dataset image size, markings, ``img_size``, ``ORACLE_VERSION``): the
    oracle depends on nothing else, so datasets made with the same arguments share it. ``steps`` and
    ``num_images`` change the training budget (see ``train_oracle``); a non-default budget is cached apart.
    """
    manifest = read_manifest(dataset_dir)
    seed, size = int(manifest["seed"]), int(manifest["size"])
    markings = dataset_markings(manifest)
    path = oracle_path(cache_dir or default_cache_dir(), seed, size, img_size, steps, num_images, markings)
    if path.exists() and path.with_suffix(".json").exists():
        try:
            return load_oracle(path, device)
        except (ValueError, KeyError, OSError, RuntimeError) as e:
            if log is not None:
                log(f"retraining the oracle: cannot use {path} ({e})")
    oracle = train_oracle(dataset_dir, img_size, num_images=num_images, steps=steps, device=device, log=log)
    save_oracle(oracle, path)
    return oracle
