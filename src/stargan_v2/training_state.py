"""The complete training state as a checkpoint: nets, EMA nets, optimisers, step, RNG states and config.

It lives on the training side (it builds a ``TrainState`` and its optimisers); the file format itself, its
metadata and the other formats are ``stargan_v2.checkpoint``'s, which imports nothing from training. A
training-state file is written to a temporary file and renamed into place, so a crash mid-write never leaves a
truncated checkpoint under the final name.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import Tensor

from ._version import __version__
from .checkpoint import (
    FORMAT_VERSION,
    TRAINING_FORMAT,
    CheckpointError,
    PathLike,
    _atomic_save,
    _domains_metadata,
    _prefixed,
    _read,
    _take,
    load_net_state,
    read_config,
)
from .fan import FAN
from .model import build_nets
from .train import TrainState, make_optimizers

# ----------------------------------------------------------------------------------------------------------
# RNG state
# ----------------------------------------------------------------------------------------------------------


def _rng_state() -> tuple[dict[str, Tensor], dict[str, str]]:
    tensors = {"rng/torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng/cuda/{i}"] = s
    version, state, gauss = random.getstate()
    np_state = cast(tuple[Any, ...], np.random.get_state())  # the legacy tuple (a dict only if asked for)
    meta = {
        "rng_python": json.dumps([version, list(state), gauss]),
        "rng_numpy": json.dumps([np_state[0], np_state[1].tolist(), *map(_plain, np_state[2:])]),
    }
    return tensors, meta


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _set_rng_state(tensors: Mapping[str, Tensor], meta: Mapping[str, str]) -> None:
    torch.set_rng_state(tensors["rng/torch"])
    cuda = [tensors[k] for k in sorted(t for t in tensors if t.startswith("rng/cuda/"))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])
    version, state, gauss = json.loads(meta["rng_python"])
    random.setstate((version, tuple(state), gauss))
    name, keys, pos, has_gauss, cached = json.loads(meta["rng_numpy"])
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))


# ----------------------------------------------------------------------------------------------------------
# Optimisers and the state
# ----------------------------------------------------------------------------------------------------------


def _optimizer_state(name: str, opt: torch.optim.Optimizer) -> tuple[dict[str, Tensor], dict[str, Any]]:
    sd = opt.state_dict()
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, Any] = {}
    for index, entry in sd["state"].items():
        for key, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"optim/{name}/{index}/{key}"] = value
            else:
                scalars.setdefault(str(index), {})[key] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _restore_optimizer(
    name: str, opt: torch.optim.Optimizer, tensors: Mapping[str, Tensor], meta: Mapping[str, Any]
) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, value in _take(f"optim/{name}/", tensors).items():
        index, field = key.split("/", 1)
        state.setdefault(int(index), {})[field] = value
    for index, entry in meta["scalars"].items():
        state.setdefault(int(index), {}).update(entry)
    # JSON has no tuples; give settings such as Adam's betas back their original type.
    groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in meta["param_groups"]]
    opt.load_state_dict({"state": state, "param_groups": groups})


def save_training_state(state: TrainState, path: PathLike, domains: Sequence[str] | None = None) -> Path:
    """Write the complete training state to ``path`` atomically; returns the path.

    ``domains`` names the domains in label order (the sorted folder names), stored as the ``domains``
    metadata key so that synthesis can refer to them by name. Call it from one process only (rank 0) in
    multi-process training.
    """
    tensors: dict[str, Tensor] = {}
    for prefix, nets in (("nets", state.nets), ("nets_ema", state.nets_ema)):
        for name, module in nets.items():
            tensors.update(_prefixed(f"{prefix}/{name}/", module.state_dict()))
    optim_meta = {}
    for name, opt in state.optimizers.items():
        t, m = _optimizer_state(name, opt)
        tensors.update(t)
        optim_meta[name] = m
    rng_tensors, rng_meta = _rng_state()
    tensors.update(rng_tensors)
    metadata = {
        "format": TRAINING_FORMAT,
        "format_version": FORMAT_VERSION,
        "package_version": __version__,
        "step": str(state.step),
        "config": state.config.to_json(),
        "optimizers": json.dumps(optim_meta),
        **rng_meta,
        **_domains_metadata(domains, state.config.model.num_domains),
    }
    _atomic_save(tensors, metadata, path)
    return Path(path)


def load_training_state(
    path: PathLike,
    device: torch.device | str = "cpu",
    fan: FAN | None = None,
    restore_rng: bool = True,
) -> TrainState:
    """Read a file written by ``save_training_state`` and rebuild the state on ``device``.

    ``fan`` is the face-landmark network, needed to continue training a high-pass (``w_hpf > 0``) model.
    ``restore_rng=True`` also puts back the torch, CUDA, Python and NumPy random states, so that training
    continues exactly as it would have without the interruption.
    """
    tensors, meta = _read(path, TRAINING_FORMAT)
    config = read_config(path, meta)
    missing = [k for k in ("step", "optimizers", "rng_python", "rng_numpy") if k not in meta]
    if missing or "rng/torch" not in tensors:
        raise CheckpointError(f"{path} is an incomplete training state: no {', '.join(missing) or 'rng/torch'}")
    nets = build_nets(config.model, init=False)
    nets_ema = build_nets(config.model, discriminator=False, init=False)
    for prefix, group in (("nets", nets), ("nets_ema", nets_ema)):
        for name, module in group.items():
            load_net_state(module, _take(f"{prefix}/{name}/", tensors), f"{path} [{prefix}/{name}]")
            module.to(device)
    for _, module in nets_ema.items():
        module.requires_grad_(False)
    optimizers = make_optimizers(nets, config.train)
    optim_meta = json.loads(meta["optimizers"])
    for name, opt in optimizers.items():
        _restore_optimizer(name, opt, tensors, optim_meta[name])
    if restore_rng:
        _set_rng_state(tensors, meta)
    return TrainState(config, nets, nets_ema, optimizers, int(meta["step"]), fan)


__all__ = ["load_training_state", "save_training_state"]
