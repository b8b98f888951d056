"""The authors' checkpoint format (``{step:06d}_nets_ema.ckpt``, ``_nets.ckpt``, ``_optims.ckpt``), both ways.

Their files are ``torch.save`` pickles of ``{name: state_dict}``; they are read with ``weights_only=True`` (no
code in a file is ever run) and their architecture is inferred from the tensor shapes (``infer_model_config``).
``export_official`` and ``export_official_optimizers`` write files the authors' code loads.
"""

from __future__ import annotations

import math
import pickle
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .checkpoint_io import CheckpointError, PathLike, _atomic_write, load_net_state
from .config import ModelConfig
from .fan import FAN
from .model import Discriminator, Generator, MappingNetwork, Nets, StyleEncoder, build_nets


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
    fan: FAN | None

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


def export_official(nets: Nets, path: PathLike, legacy_format: bool = False, fan: FAN | None = None) -> Path:
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


__all__ = [
    "OfficialModel",
    "export_official",
    "export_official_optimizers",
    "infer_model_config",
    "load_official",
]
