"""Our own checkpoints (the training-state and EMA-only formats), telling formats apart, and loading any
checkpoint for synthesis.

Our files are safetensors (tensors) with JSON metadata (everything else), so loading one never executes
code. A training-state file holds the nets, the EMA nets, the optimisers, the step, the RNG states, the
resolved config and the package version; an EMA file only what synthesis needs. Files are written to a
temporary file and renamed into place, so a crash mid-write never leaves a truncated checkpoint under the
final name.

This module imports nothing from training: writing and reading a complete training state (which builds a
``TrainState`` and its optimisers) is ``stargan_v2.training_state``; the authors' torch files are
``stargan_v2.official``. Both are importable from here under their old names as well.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor

from . import rundir
from ._version import __version__
from .checkpoint_io import CheckpointError, PathLike, _atomic_write, load_net_state
from .config import Config, ModelConfig
from .fan import FAN
from .model import Nets, build_nets
from .official import (
    OfficialModel,
    export_official,
    export_official_optimizers,
    infer_model_config,
    load_official,
)

TRAINING_FORMAT = "stargan-v2/training-state"
EMA_FORMAT = "stargan-v2/ema"
FORMAT_VERSION = "1"
NET_NAMES = ("generator", "mapping_network", "style_encoder", "discriminator")
#: The training-state functions kept importable from here; they live in ``stargan_v2.training_state``.
_TRAINING_SIDE = ("save_training_state", "load_training_state")


def __getattr__(name: str) -> Any:
    """``save_training_state`` / ``load_training_state`` under their old address, imported only when asked for
    (so that this module never imports training code by itself)."""
    if name in _TRAINING_SIDE:
        from . import training_state

        return getattr(training_state, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ----------------------------------------------------------------------------------------------------------
# Low-level helpers
# ----------------------------------------------------------------------------------------------------------


def _atomic_save(tensors: dict[str, Tensor], metadata: dict[str, str], path: PathLike) -> None:
    """Write a safetensors file atomically (see ``_atomic_write``)."""
    contiguous = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    _atomic_write(path, lambda tmp: save_file(contiguous, tmp, metadata=metadata))


def _looks_like_safetensors(path: Path) -> bool:
    """Whether ``path`` starts as a safetensors file does (8-byte header length, then a JSON object)."""
    with open(path, "rb") as fh:
        head = fh.read(9)
    return path.suffix == ".safetensors" or (len(head) == 9 and head[8:] == b"{")


def _safetensors_problem(path: Path, exc: Exception) -> str:
    """Why a file is not a readable safetensors checkpoint, in words; a truncated file is named as such."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(9)
        header_len = int.from_bytes(head[:8], "little") if len(head) == 9 and head[8:] == b"{" else 0
        # Only a plausible header is parsed (safetensors caps it at 100 MB as well).
        fh.seek(8)
        header = fh.read(header_len) if 0 < header_len <= min(size - 8, 100_000_000) else b""
    needed = 8 + header_len
    try:
        entries = json.loads(header) if header else {}
        needed += max((e["data_offsets"][1] for k, e in entries.items() if k != "__metadata__"), default=0)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        pass  # not a valid header: say what safetensors said
    if 0 < header_len < 100_000_000 and size < needed:
        return (
            f"{path} is truncated: it holds {size:,} bytes but its header describes {needed:,}; the copy or "
            "download was probably interrupted (checkpoints are written atomically, so training does not leave "
            "such files)"
        )
    hint = ""
    if path.suffix == ".ckpt":
        hint = " It looks like one of the authors' files: use stargan_v2.load_official for those."
    return f"{path} is not a stargan-v2 safetensors checkpoint ({exc}).{hint}"


def _read(path: PathLike, expected_format: str) -> tuple[dict[str, Tensor], dict[str, str]]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as fh:
            metadata = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 (safe_open is not a dict)
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(_safetensors_problem(path, exc)) from None
    found = metadata.get("format")
    if found != expected_format:
        raise CheckpointError(
            f"{path} holds '{found or 'unknown'}' data, expected '{expected_format}'"
            + (" (an EMA-only file cannot resume training)" if found == EMA_FORMAT else "")
        )
    return tensors, metadata


def _prefixed(prefix: str, tensors: Mapping[str, Tensor]) -> dict[str, Tensor]:
    return {f"{prefix}{k}": v for k, v in tensors.items()}


def _take(prefix: str, tensors: Mapping[str, Tensor]) -> dict[str, Tensor]:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


# ----------------------------------------------------------------------------------------------------------
# Metadata
# ----------------------------------------------------------------------------------------------------------


def checkpoint_kind(path: PathLike) -> str:
    """``TRAINING_FORMAT`` or ``EMA_FORMAT`` for our files, ``"official"`` for anything else (a torch file)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        return read_metadata(path).get("format", "unknown")
    except (SafetensorError, OSError, ValueError) as exc:
        if _looks_like_safetensors(path):  # a damaged file of ours: say so, not "not a torch file" later
            raise CheckpointError(_safetensors_problem(path, exc)) from None
        return "official"  # not safetensors: the authors' torch format, checked when it is loaded


def read_metadata(path: PathLike) -> dict[str, str]:
    """The JSON-string metadata of one of our checkpoints (format, step, config, version ...)."""
    with safe_open(str(path), framework="pt") as fh:
        return dict(fh.metadata() or {})


def read_config(path: PathLike, metadata: Mapping[str, str] | None = None) -> Config:
    """The config stored in one of our checkpoints; a missing or invalid one is a CheckpointError naming the file."""
    meta = read_metadata(path) if metadata is None else metadata
    if "config" not in meta:
        raise CheckpointError(f"{path} has no 'config' metadata: it was not written by stargan-v2")
    try:
        return Config.from_json(meta["config"])
    except (ValueError, TypeError, AttributeError) as exc:  # ConfigError and JSONDecodeError are ValueErrors
        raise CheckpointError(f"{path} holds an invalid config: {exc}") from None


def _domains_metadata(domains: Sequence[str] | None, num_domains: int) -> dict[str, str]:
    """The optional ``domains`` metadata entry: a JSON list of names, one per domain label."""
    if domains is None:
        return {}
    names = [str(d) for d in domains]
    if len(names) != num_domains or len(set(names)) != len(names):
        raise CheckpointError(f"domains must be {num_domains} distinct names (one per domain label), got {names}")
    return {"domains": json.dumps(names)}


def read_domains(path: PathLike) -> tuple[str, ...] | None:
    """The domain names stored in one of our checkpoints (``domains`` metadata), or ``None`` if it has none."""
    raw = read_metadata(path).get("domains")
    if raw is None:
        return None
    names = json.loads(raw)
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise CheckpointError(f"{path}: the 'domains' metadata must be a JSON list of names, found {raw!r}")
    return tuple(names)


# ----------------------------------------------------------------------------------------------------------
# EMA-only file for synthesis
# ----------------------------------------------------------------------------------------------------------


def save_ema(
    nets_ema: Nets, config: Config, path: PathLike, step: int | None = None, domains: Sequence[str] | None = None
) -> Path:
    """Write the EMA generator, mapping network and style encoder (what synthesis needs) to ``path``.

    ``domains`` optionally names the domains in label order (stored as the ``domains`` metadata key).
    """
    tensors: dict[str, Tensor] = {}
    for name in ("generator", "mapping_network", "style_encoder"):
        tensors.update(_prefixed(f"{name}/", getattr(nets_ema, name).state_dict()))
    metadata = {
        "format": EMA_FORMAT,
        "format_version": FORMAT_VERSION,
        "package_version": __version__,
        "config": config.to_json(),
        **_domains_metadata(domains, config.model.num_domains),
    }
    if step is not None:
        metadata["step"] = str(step)
    _atomic_save(tensors, metadata, path)
    return Path(path)


def load_ema(path: PathLike, device: torch.device | str = "cpu") -> tuple[Nets, Config]:
    """Read an EMA-only file; returns the nets (eval mode, no discriminator) and the config they were made with."""
    tensors, meta = _read(path, EMA_FORMAT)
    config = read_config(path, meta)
    nets = build_nets(config.model, discriminator=False, init=False)
    for name, module in nets.items():
        load_net_state(module, _take(f"{name}/", tensors), f"{path} [{name}]")
    return nets.to(device).eval(), config


def _load_training_ema(path: PathLike, device: torch.device | str) -> tuple[Nets, Config]:
    """The EMA nets (eval mode) and the config of a training-state file, without its optimisers or RNG states."""
    tensors, meta = _read(path, TRAINING_FORMAT)
    config = read_config(path, meta)
    nets = build_nets(config.model, discriminator=False, init=False)
    for name, module in nets.items():
        load_net_state(module, _take(f"nets_ema/{name}/", tensors), f"{path} [nets_ema/{name}]")
    return nets.to(device).eval(), config


# ----------------------------------------------------------------------------------------------------------
# Any checkpoint, for synthesis
# ----------------------------------------------------------------------------------------------------------


def missing_fan_error(source: PathLike, config: ModelConfig) -> CheckpointError:
    """The error for a high-pass model loaded without its face-landmark network: names the file and the fix."""
    return CheckpointError(
        f"{source} is a high-pass model (w_hpf={config.w_hpf}): its generator needs the face masks of the "
        "face-landmark network (FAN), and the file holds none. Pass the authors' wing.ckpt with --wing "
        "PATH/wing.ckpt (fan_path=... in Python); their download.sh ('bash download.sh wing') puts it in "
        "expr/checkpoints/"
    )


@dataclass
class SynthesisModel:
    """EMA nets (eval mode) and what they need to run: the config and, for high-pass models, the FAN."""

    nets: Nets
    config: ModelConfig
    fan: FAN | None
    source: Path


def load_for_synthesis(
    path: PathLike,
    fan_path: PathLike | None = None,
    device: torch.device | str = "cpu",
    require_fan: bool = True,
) -> SynthesisModel:
    """Load the EMA nets from any checkpoint: a run directory (its newest checkpoint), one of our training-state
    or EMA files, or one of the authors' ``*_nets_ema.ckpt`` / ``*_nets.ckpt`` files.

    A high-pass model needs the face-landmark network to run: from ``fan_path``, or the ``fan`` entry of an
    authors' file. Without either a ``CheckpointError`` names ``wing.ckpt`` and ``--wing``, whatever the file's
    format; ``require_fan=False`` loads it without one (``fan`` is then ``None``), for uses that never run the
    generator's high-pass path, such as export.
    """
    path = Path(path)
    if path.is_dir():
        newest = rundir.latest_ema(path)
        if newest is None:
            expected = rundir.ema_path(path, 0).with_name("ema_NNNNNN.safetensors")
            raise CheckpointError(f"{path} is a folder without checkpoints (expected {expected})")
        path = newest
    kind = checkpoint_kind(path)
    if kind == EMA_FORMAT:
        nets, config = load_ema(path, device)
        model_config = config.model
        fan = None
    elif kind == TRAINING_FORMAT:
        nets, config = _load_training_ema(path, device)
        model_config, fan = config.model, None
    else:
        official = load_official(path, fan_path=fan_path, map_location=device)
        # An authors' file of a high-pass model may or may not hold its "fan"; without one the generator would
        # run without its masks and give other images (and other FID / LPIPS) without saying so.
        if official.config.uses_hpf and official.fan is None and require_fan:
            raise missing_fan_error(path, official.config)
        return SynthesisModel(official.nets.eval(), official.config, official.fan, path)
    if model_config.uses_hpf and (fan_path is not None or require_fan):
        if fan_path is None:
            raise missing_fan_error(path, model_config)
        from .fan import load_fan

        fan = load_fan(fan_path).to(device)
    return SynthesisModel(nets, model_config, fan, path)


__all__ = [
    "EMA_FORMAT",
    "FORMAT_VERSION",
    "NET_NAMES",
    "TRAINING_FORMAT",
    "CheckpointError",
    "OfficialModel",
    "SynthesisModel",
    "checkpoint_kind",
    "export_official",
    "export_official_optimizers",
    "infer_model_config",
    "load_ema",
    "load_for_synthesis",
    "load_net_state",
    "load_official",
    "missing_fan_error",
    "read_config",
    "read_domains",
    "read_metadata",
    "save_ema",
]
