"""Helpers shared by the training-run tests (test_run, test_reliability, test_distributed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from stargan_v2.config import Config
from stargan_v2.run import RunOptions
from stargan_v2.training_state import load_training_state


def image_folder(root: Path, domains: tuple[str, ...] = ("a", "b"), per_domain: int = 5, size: int = 40) -> Path:
    """``per_domain`` random ``size`` px pictures in one sub-folder per domain under ``root``."""
    rng = np.random.default_rng(0)
    for d in domains:
        (root / d).mkdir(parents=True, exist_ok=True)
        for i in range(per_domain):
            Image.fromarray((rng.random((size, size, 3)) * 255).astype("uint8")).save(root / d / f"{i}.png")
    return root


def run_config(tiny_config: Config, iters: int, **extra: int) -> Config:
    """``tiny_config`` for a run of ``iters`` steps at batch 2, logging every 2 steps; ``extra`` overrides more."""
    items = [f"total_iters={iters}", "print_every=2", "sample_every=1000", "save_every=1000", "batch_size=2"]
    return tiny_config.override(items + [f"{k}={v}" for k, v in extra.items()])


def run_options(run_dir: Path, data: Path, **kw: object) -> RunOptions:
    """Run options without a progress bar; ``kw`` sets other fields."""
    return RunOptions(run_dir=run_dir, data=data, progress=False, **kw)  # type: ignore[arg-type]


def run_weights(path: Path) -> dict[str, torch.Tensor]:
    """Every weight of a training-state file, keyed ``nets.<net>.<param>`` and ``ema.<net>.<param>``."""
    state = load_training_state(path, restore_rng=False)
    out = {}
    for prefix, nets in (("nets", state.nets), ("ema", state.nets_ema)):
        for name, module in nets.items():
            out.update({f"{prefix}.{name}.{k}": v for k, v in module.state_dict().items()})
    return out
