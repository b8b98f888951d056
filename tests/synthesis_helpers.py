"""Tiny checkpoints and image files for the tests of translation, video and export."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from stargan_v2.checkpoint import save_ema
from stargan_v2.config import Config, preset
from stargan_v2.model import build_nets


def tiny_checkpoint(
    path: Path, num_domains: int = 2, domains: Sequence[str] | None = None, w_hpf: float = 0.0, seed: int = 0
) -> Path:
    """An EMA file of randomly initialised tiny nets (32 px); ``domains`` are stored as names when given."""
    config: Config = preset("tiny").override([f"num_domains={num_domains}", f"w_hpf={w_hpf}"])
    with torch.random.fork_rng(devices=[]):  # seeded weights, without resetting the other tests' random stream
        torch.manual_seed(seed)
        nets = build_nets(config.model, discriminator=False)
    return save_ema(nets, config, path, domains=domains)


def write_image(path: Path, width: int = 48, height: int = 40, seed: int = 0) -> Path:
    """A random RGB picture (smooth enough that resizing it matters) saved at ``path``."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(max(height // 8, 1), max(width // 8, 1), 3), dtype=np.uint8)
    image = Image.fromarray(coarse).resize((width, height), Image.BILINEAR)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path
