"""Checkpoints: the complete training state, the small EMA-only file, and the authors' format both ways.

Our own files are safetensors (tensors) with JSON metadata (everything else), so loading one never executes
code. A training-state file holds the nets, the EMA nets, the optimisers, the step, the RNG states, the
resolved config and the package version; it is written to a temporary file and renamed into place, so a
crash mid-write never leaves a truncated checkpoint under the final name.

The authors' files (``{step:06d}_nets_ema.ckpt``, ``_nets.ckpt``, ``wing.ckpt``) are ``torch.save`` pickles;
they are read with ``weights_only=True`` and their architecture is inferred from the tensor shapes.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import random
import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from . import __version__, rundir
from .config import Config, ModelConfig
from .model import Discriminator, Generator, MappingNetwork, Nets, StyleEncoder, build_nets
from .train import TrainState, make_optimizers

TRAINING_FORMAT = "stargan-v2/training-state"
EMA_FORMAT = "stargan-v2/ema"
FORMAT_VERSION = "1"
NET_NAMES = ("generator", "mapping_network", "style_encoder", "discriminator")
PathLike = str | os.PathLike[str]


class CheckpointError(ValueError):
    """A checkpoint is missing, of another kind, or does not fit the networks; the message says which."""


# ----------------------------------------------------------------------------------------------------------
# Low-level helpers
# ----------------------------------------------------------------------------------------------------------


def _atomic_write(path: PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp)`` for a temporary file in the destination's folder, flush it, then rename it over
    ``path``; a failure leaves the old file (if any) untouched and no temporary file behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


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


def load_net_state(module: nn.Module, state: Mapping[str, Tensor], what: str) -> None:
    """Load ``state`` into ``module`` strictly, failing with a message naming every mismatching tensor."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or wrong:
        lines = [f"{what} does not fit the network:"]
        for title, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", wrong)):
            if items:
                shown = ", ".join(items[:6]) + (f" ... (+{len(items) - 6} more)" if len(items) > 6 else "")
                lines.append(f"  {title} ({len(items)}): {shown}")
        lines.append("  Check img_size, num_domains, w_hpf and the channel widths against the file.")
        raise CheckpointError("\n".join(lines))
    module.load_state_dict(state, strict=True)


# ----------------------------------------------------------------------------------------------------------
# RNG state
# ----------------------------------------------------------------------------------------------------------


def _rng_state() -> tuple[dict[str, Tensor], dict[str, str]]:
    tensors = {"rng/torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng/cuda/{i}"] = s
    version, state, gauss = random.getstate()
    np_state = np.random.get_state()
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
# Training state
# ----------------------------------------------------------------------------------------------------------


def _optimizer_state(name: str, opt: torch.optim.Optimizer) -> tuple[dict[str, Tensor], dict[str, Any]]:
    sd = opt.state_dict()
    tensors, scalars = {}, {}
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
    fan: nn.Module | None = None,
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


# ----------------------------------------------------------------------------------------------------------
# The authors' format
# ----------------------------------------------------------------------------------------------------------


@dataclass
class OfficialModel:
    """Networks read from the authors' files, all in eval mode.

    Call them as ``mapping_network(z, y)``, ``style_encoder(x, y)``, ``generator(x, s, masks=None)``,
    ``discriminator(x, y)``, ``fan.masks(x)`` and ``fan.landmarks(x)``. ``discriminator`` is ``None`` for a
    ``_nets_ema.ckpt`` file; ``fan`` is ``None`` unless the file holds one or ``fan_path`` was given.
    """

    config: ModelConfig
    generator: Generator
    mapping_network: MappingNetwork
    style_encoder: StyleEncoder
    discriminator: Discriminator | None
    fan: nn.Module | None

    @property
    def nets(self) -> Nets:
        """The networks as a ``Nets`` container."""
        return Nets(self.generator, self.mapping_network, self.style_encoder, self.discriminator)

    def to(self, device: torch.device | str) -> OfficialModel:
        """Move every network to ``device`` (in place) and return self."""
        self.nets.to(device)
        if self.fan is not None:
            self.fan.to(device)
        return self


def _torch_load(path: PathLike, map_location: torch.device | str) -> Any:
    """``torch.load`` restricted to tensors and plain containers (``weights_only=True``).

    The authors' files are pickles, and unpickling can run any code the file names. The weights-only unpickler
    refuses everything but tensors, dicts, lists and numbers before building it, so a malicious file is refused
    without running anything; so is a damaged one. Either way the error names the file and the reason.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's message advises weights_only=False, which would run the file's code: give our own advice.
        found = re.search(r"WeightsUnpickler error:\s*([^\n]*)", str(exc))
        detail = _first_sentence(found.group(1) if found else str(exc))
        raise CheckpointError(
            f"refused {path}: it holds pickled data other than tensors ({detail}). Unpickling that could run "
            "arbitrary code, so none of it was run: only plain state dicts of tensors are loaded "
            "(torch.load with weights_only=True). A file cut short reads like this too: copy or download it "
            "again; if it holds other objects and you trust its source, re-save its state dicts with torch.save."
        ) from None
    except Exception as exc:  # torch raises RuntimeError, EOFError, struct.error ... on damaged files
        raise CheckpointError(
            f"could not read {path}: it is damaged, cut short, or not a torch checkpoint "
            f"({type(exc).__name__}: {_first_sentence(str(exc))}); copy or download it again"
        ) from None


def _first_sentence(text: str, limit: int = 200) -> str:
    """The first sentence of an error message (torch's run to paragraphs), without terminal colour codes."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", text).strip()
    first = re.split(r"(?<=[.!?])\s|\n", text, maxsplit=1)[0].rstrip(".")
    return (first[: limit - 3] + "...") if len(first) > limit else (first or "no details")


def _strip_module(state: Mapping[str, Any]) -> dict[str, Any]:
    """Drop ``module.`` prefixes left by ``DataParallel``/``DistributedDataParallel`` wrappers."""
    return {(k[len("module.") :] if k.startswith("module.") else k): v for k, v in state.items()}


def _indices(state: Mapping[str, Tensor], pattern: str) -> list[int]:
    return sorted({int(m.group(1)) for k in state if (m := re.fullmatch(pattern, k))})


def _need(state: Mapping[str, Tensor], key: str, where: str) -> Tensor:
    if key not in state:
        raise CheckpointError(f"{where} has no tensor '{key}': it is not a StarGAN v2 network of the authors' format")
    return state[key]


def infer_model_config(states: Mapping[str, Mapping[str, Tensor]], where: str = "checkpoint") -> ModelConfig:
    """Read the architecture (image size, domains, widths, high-pass) off the tensor shapes of the authors' nets.

    ``states`` maps network names to state dicts (``module.`` prefixes already removed). ``w_hpf`` is read
    from the generator's ``hpf.filter`` (``8 / filter[1, 1]``) when the file has it, else 1 as released.
    """
    for name in ("generator", "mapping_network", "style_encoder"):
        if name not in states:
            raise CheckpointError(f"{where} has no '{name}' network; found {sorted(states)}")
    g, f, e = states["generator"], states["mapping_network"], states["style_encoder"]

    # The style encoder's trunk has log2(img_size) - 2 downsampling blocks.
    e_blocks = _indices(e, r"shared\.(\d+)\.conv1\.weight")
    if not e_blocks:
        raise CheckpointError(f"{where}: the style encoder has no residual blocks (keys shared.N.conv1.weight)")
    img_size = 2 ** (len(e_blocks) + 2)
    dim_in = int(_need(g, "from_rgb.weight", f"{where} [generator]").shape[0])
    latent_dim = int(_need(f, "shared.0.weight", f"{where} [mapping_network]").shape[1])
    hidden_dim = int(f["shared.0.weight"].shape[0])
    f_heads = _indices(f, r"unshared\.(\d+)\.0\.weight")
    e_heads = _indices(e, r"unshared\.(\d+)\.weight")
    if not f_heads or len(f_heads) != len(e_heads):
        raise CheckpointError(
            f"{where}: the mapping network has {len(f_heads)} domain heads but the style encoder {len(e_heads)}"
        )
    style_dim = int(_need(e, "unshared.0.weight", f"{where} [style_encoder]").shape[0])

    # The generator has log2(img_size) - 4 downsampling blocks, one more with the high-pass path, plus 2
    # bottleneck blocks.
    g_blocks = _indices(g, r"encode\.(\d+)\.conv1\.weight")
    downs = len(g_blocks) - 2
    plain = int(math.log2(img_size)) - 4
    if downs not in (plain, plain + 1):
        raise CheckpointError(
            f"{where}: the generator has {len(g_blocks)} encoder blocks, which fits neither {plain + 2} "
            f"(no high-pass) nor {plain + 3} (high-pass) for the {img_size} px style encoder"
        )
    if downs == plain + 1:
        flt = g.get("hpf.filter")
        # A shape-only (meta) tensor has no value to read; 1 is the released setting.
        w_hpf = float(8.0 / flt[1, 1]) if flt is not None and not flt.is_meta else 1.0
    else:
        w_hpf = 0.0
    # E (like D) downsamples twice more than G, so it reaches the widest layer when G stops below the cap.
    widths = [int(g[f"encode.{i}.conv2.weight"].shape[0]) for i in g_blocks]
    widths += [int(e[f"shared.{i}.conv2.weight"].shape[0]) for i in e_blocks]
    return ModelConfig(
        img_size=img_size,
        num_domains=len(f_heads),
        latent_dim=latent_dim,
        style_dim=style_dim,
        hidden_dim=hidden_dim,
        dim_in=None if dim_in == 2**14 // img_size else dim_in,
        max_conv_dim=max([dim_in, *widths]),
        w_hpf=w_hpf,
    )


def load_official(
    path: PathLike,
    fan_path: PathLike | None = None,
    config: ModelConfig | None = None,
    map_location: torch.device | str = "cpu",
) -> OfficialModel:
    """Load one of the authors' files (``*_nets_ema.ckpt`` or ``*_nets.ckpt``), both torch formats.

    The architecture is inferred from the tensor shapes unless ``config`` is given. ``fan_path`` points to
    ``wing.ckpt`` (the face-landmark network the high-pass model needs) when the file does not hold ``fan``.
    A file that does not fit fails with a ``CheckpointError`` naming the mismatching tensors.
    """
    data = _torch_load(path, map_location)
    if not isinstance(data, Mapping) or "generator" not in data:
        kind = sorted(data)[:8] if isinstance(data, Mapping) else type(data).__name__
        raise CheckpointError(
            f"{path} is not one of the authors' network files: expected a dict with 'generator', "
            f"'mapping_network', 'style_encoder' (from *_nets_ema.ckpt or *_nets.ckpt), found {kind}"
        )
    states = {k: _strip_module(v) for k, v in data.items() if isinstance(v, Mapping)}
    cfg = config if config is not None else infer_model_config(states, str(path))
    nets = build_nets(cfg, discriminator="discriminator" in states, init=False)
    for name, module in nets.items():
        state = dict(states[name])
        if name == "generator" and nets.generator.hpf is not None and "hpf.filter" not in state:
            # The released CelebA-HQ file predates the buffer; it is a constant of w_hpf.
            state["hpf.filter"] = nets.generator.hpf.filter.clone()
        load_net_state(module, state, f"{path} [{name}]")
    nets.to(map_location).eval()
    fan = None
    if fan_path is not None or "fan" in states:
        from .fan import load_fan

        fan = load_fan(fan_path if fan_path is not None else states["fan"], map_location=map_location)
        fan.to(map_location)
    return OfficialModel(cfg, nets.generator, nets.mapping_network, nets.style_encoder, nets.discriminator, fan)


def export_official(nets: Nets, path: PathLike, legacy_format: bool = False, fan: nn.Module | None = None) -> Path:
    """Write ``nets`` as the authors' code saves them: ``torch.save({name: state_dict})``.

    Pass EMA nets for a ``{step:06d}_nets_ema.ckpt`` file and training nets (with D) for ``_nets.ckpt``.
    ``legacy_format=True`` uses the pre-1.6 serialisation of the released files. For a high-pass model pass
    ``fan`` (the face-landmark network): the authors' loader looks up a ``"fan"`` entry in both files.
    """
    g = nets.generator
    released = int(math.log2(g.img_size)) - 4 + (1 if g.hpf is not None else 0)
    if len(g.encode) - 2 != released:
        raise CheckpointError(
            f"this generator downsamples {len(g.encode) - 2} times (g_bottleneck is set), but the authors' code "
            f"builds {released} at {g.img_size} px: it cannot load this model; export it as --format ema instead"
        )
    modules = list(nets.items()) + ([("fan", fan)] if fan is not None else [])
    payload = {name: {k: v.detach().cpu() for k, v in m.state_dict().items()} for name, m in modules}
    return _atomic_write(path, lambda tmp: torch.save(payload, tmp, _use_new_zipfile_serialization=not legacy_format))


#: The settings of an Adam parameter group in the authors' ``_optims.ckpt`` (PyTorch 1.4's Adam, their version).
_AUTHORS_ADAM_SETTINGS = ("lr", "betas", "eps", "weight_decay", "amsgrad")


def _authors_adam_state(name: str, opt: torch.optim.Optimizer) -> dict[str, Any]:
    """One optimiser's state dict in the form the authors' code saves and loads (see ``export_official_optimizers``)."""
    sd = opt.state_dict()
    if not isinstance(opt, torch.optim.Adam) or len(sd["param_groups"]) != 1:
        raise CheckpointError(
            f"the '{name}' optimiser is not one Adam over one parameter group, as the authors' code builds it "
            f"({type(opt).__name__}, {len(sd['param_groups'])} groups)"
        )
    group = sd["param_groups"][0]
    if group.get("amsgrad") or group.get("maximize"):
        raise CheckpointError(f"the '{name}' optimiser uses amsgrad or maximize, which the authors' Adam does not")
    settings: dict[str, Any] = {key: group[key] for key in _AUTHORS_ADAM_SETTINGS}
    settings["betas"] = [float(b) for b in group["betas"]]  # the authors pass a list
    settings["lr"] = float(group["lr"])  # a tensor learning rate is a newer PyTorch's option
    state = {}
    for index, entry in sd["state"].items():
        state[int(index)] = {
            "step": int(entry["step"]),  # an int, as PyTorch 1.4 kept it; newer versions turn it into a tensor
            "exp_avg": entry["exp_avg"].detach().cpu().clone(),
            "exp_avg_sq": entry["exp_avg_sq"].detach().cpu().clone(),
        }
    return {"state": state, "param_groups": [{**settings, "params": list(group["params"])}]}


def export_official_optimizers(
    optimizers: Mapping[str, torch.optim.Optimizer], path: PathLike, legacy_format: bool = False
) -> Path:
    """Write the optimisers as the authors' ``{step:06d}_optims.ckpt``: ``torch.save({name: state_dict})``.

    With it (and the ``_nets.ckpt`` and ``_nets_ema.ckpt`` of the same step) the authors' code resumes
    training (``--resume_iter``). Their optimisers are one ``torch.optim.Adam`` per network, over
    ``module.parameters()``; our modules have their parameter names and order, so the parameter indices of
    the state dicts mean the same tensors. Each entry holds what their PyTorch (1.4) saves: per parameter
    ``step`` (an int), ``exp_avg`` and ``exp_avg_sq``; one group with ``lr``, ``betas`` (a list, as they pass
    it), ``eps``, ``weight_decay``, ``amsgrad`` and ``params``. Newer settings (``foreach``, ``fused`` ...)
    are left out: a newer PyTorch fills in its defaults, and a fused optimiser from GPU training then loads
    on any device.
    """
    payload = {name: _authors_adam_state(name, opt) for name, opt in optimizers.items()}
    return _atomic_write(path, lambda tmp: torch.save(payload, tmp, _use_new_zipfile_serialization=not legacy_format))


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
    fan: nn.Module | None
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
        state = load_training_state(path, device=device, restore_rng=False)
        nets, model_config, fan = state.nets_ema.eval(), state.config.model, None
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
