"""The layout of a run directory's checkpoints, written down once.

Training (``stargan_v2.run``) writes, and resuming, synthesis and the demo read::

    checkpoints/state_{step:06d}.safetensors   the complete training state of a step
    checkpoints/ema_{step:06d}.safetensors     the EMA nets of that step (what synthesis loads)
    checkpoints/best_ema.safetensors           with --keep-best: the EMA nets with the best measured value
    checkpoints/best_ema.json                  which figure, its value and its step

Steps are compared as integers: past step 999,999 the names grow a digit (``state_1000000``), so sorting the
names as strings would put step 1,000,000 before step 999,999.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

PathLike = str | os.PathLike[str]

#: The folder of a run directory that holds its checkpoints.
CHECKPOINTS = "checkpoints"
#: The file name of a best-so-far EMA file (``--keep-best``) and of its record.
BEST_EMA = "best_ema.safetensors"
BEST_EMA_INFO = "best_ema.json"

_STATE_RE = re.compile(r"state_(\d{6,})\.safetensors")
_EMA_RE = re.compile(r"ema_(\d{6,})\.safetensors")


def checkpoint_dir(run_dir: PathLike) -> Path:
    """Where a run keeps its checkpoints."""
    return Path(run_dir) / CHECKPOINTS


def state_path(run_dir: PathLike, step: int) -> Path:
    """The training-state file of ``step``."""
    return checkpoint_dir(run_dir) / f"state_{step:06d}.safetensors"


def ema_path(run_dir: PathLike, step: int) -> Path:
    """The EMA-only file of ``step``."""
    return checkpoint_dir(run_dir) / f"ema_{step:06d}.safetensors"


def best_ema_path(run_dir: PathLike) -> Path:
    """The ``--keep-best`` EMA file (its record is the same name with ``.json``)."""
    return checkpoint_dir(run_dir) / BEST_EMA


def _listed(run_dir: PathLike, pattern: re.Pattern[str]) -> list[tuple[int, Path]]:
    folder = checkpoint_dir(run_dir)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), path) for path in folder.iterdir() if (m := pattern.fullmatch(path.name))]
    return sorted(found)


def list_states(run_dir: PathLike) -> list[tuple[int, Path]]:
    """The run's training-state files as ``(step, path)``, oldest first (by the step as an integer)."""
    return _listed(run_dir, _STATE_RE)


def list_emas(run_dir: PathLike) -> list[tuple[int, Path]]:
    """The run's EMA files of a step as ``(step, path)``, oldest first (``best_ema`` is not one of them)."""
    return _listed(run_dir, _EMA_RE)


def latest_state(run_dir: PathLike) -> Path | None:
    """The newest training-state file, or ``None`` when the run has none."""
    states = list_states(run_dir)
    return states[-1][1] if states else None


def latest_ema(run_dir: PathLike) -> Path | None:
    """The newest EMA file of a step, or ``None`` when the run has none."""
    emas = list_emas(run_dir)
    return emas[-1][1] if emas else None


__all__ = [
    "BEST_EMA",
    "BEST_EMA_INFO",
    "CHECKPOINTS",
    "best_ema_path",
    "checkpoint_dir",
    "ema_path",
    "latest_ema",
    "latest_state",
    "list_emas",
    "list_states",
    "state_path",
]
