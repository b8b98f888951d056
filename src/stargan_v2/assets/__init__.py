"""Weights shipped with the package: the demo model, trained by this project's own ``train`` command.

``demo_ema.safetensors`` holds the EMA networks (G, F, E) of a longer run of the ``demo`` preset on the
built-in dataset; ``demo_ema.json`` beside it records the command, seed, steps, machine and time that made it
(``docs/quality.md`` has the same). ``stargan-v2 serve`` and ``translate`` fall back on it when no
``--checkpoint`` is given and no demo run exists, and the demo's report shows it beside a fresh model.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from ..config import Config
from ..model import Nets

#: The shipped demo model's EMA file, and the record of how it was made.
DEMO_MODEL = "demo_ema.safetensors"
DEMO_RECORD = "demo_ema.json"


def shipped_demo_path() -> Path | None:
    """Where the shipped demo model is installed, or ``None`` if this installation has none."""
    path = Path(str(resources.files(__package__) / DEMO_MODEL))
    return path if path.is_file() else None


def shipped_demo_record() -> dict[str, Any]:
    """How the shipped demo model was made (command, seed, steps, machine, time, its quality figures)."""
    path = Path(str(resources.files(__package__) / DEMO_RECORD))
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def shipped_demo_model(device: torch.device | str = "cpu") -> tuple[Nets, Config, str] | None:
    """The shipped demo model's EMA nets (eval mode), config and a one-line note of how it was made."""
    from ..checkpoint import load_ema

    path = shipped_demo_path()
    if path is None:
        return None
    nets, config = load_ema(path, device=device)
    record = shipped_demo_record()
    note = f"shipped with the package: {record.get('steps', '?')} steps"
    if "train_minutes" in record:
        note += f", {record['train_minutes']:.0f} min on {record.get('machine', 'a CPU')}"
    return nets, config, note


def example_sources(folder: Path, per_domain: int = 2, size: int = 64, seed: int = 12345) -> list[Path]:
    """A few pictures of the built-in dataset's kind (``per_domain`` of each domain, drawn from ``seed``) written
    to ``folder``, for the web demo's examples when there is no dataset on disk."""
    import numpy as np

    from .. import procedural

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for d, name in enumerate(procedural.DOMAINS):
        for k in range(per_domain):
            path = folder / f"{name}_{k}.png"
            if not path.is_file():
                params = procedural.sample_params(np.random.default_rng([seed, d, k]), d)
                procedural.render(params, size).save(path)
            paths.append(path)
    return paths
