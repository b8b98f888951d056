"""One StarGAN v2 training iteration (Choi et al., CVPR 2020, Section 2.2 and Appendix B).

Every iteration makes four updates, in this order:

1. D with a latent-guided fake (``s~ = F_y~(z)``);
2. D with a reference-guided fake (``s~ = E_y~(x_ref)``);
3. G, F and E with latent-guided styles;
4. G alone with reference-guided styles (the authors leave F and E out of this step on purpose;
   ``TrainConfig.ref_step_updates_all`` steps them too);

then the running averages (EMA) of G, F and E used for all synthesis and evaluation. ``train_step`` receives
every random input of the iteration explicitly, so the same inputs always give the same update.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import inspect
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .config import Config, TrainConfig
from .fan import FAN
from .losses import MaskFn, Stats, d_loss, ds_weight, g_loss
from .model import Nets, build_nets, set_fused_resampling
from .speed import RESAMPLINGS, SpeedSettings


@dataclass
class StepInputs:
    """The random inputs of one iteration.

    ``x_src (B,3,H,W)`` with domains ``y_src (B,)``; target domains ``y_trg (B,)``; latents ``z_trg`` and
    ``z_trg2 (B, latent_dim)``; references ``x_ref`` and ``x_ref2 (B,3,H,W)``, both of domain ``y_trg``.
    """

    x_src: Tensor
    y_src: Tensor
    y_trg: Tensor
    z_trg: Tensor
    z_trg2: Tensor
    x_ref: Tensor
    x_ref2: Tensor

    def to(self, device: torch.device | str) -> StepInputs:
        """A copy with every tensor on ``device`` (asynchronous from pinned memory to a GPU)."""
        return StepInputs(**{k: v.to(device, non_blocking=True) for k, v in vars(self).items()})


def make_optimizers(nets: Nets, cfg: TrainConfig) -> dict[str, torch.optim.Adam]:
    """One Adam per network: ``lr`` for G, E, D and ``f_lr`` for the mapping network; plain L2 decay.

    The fused implementation (one kernel per update, on CPUs and GPUs) computes the same update as the
    authors' per-parameter loop up to float rounding, at a fraction of the cost for small networks (the
    parity tests replay Adam in float64 on our gradients: docs/RELIABILITY.md).
    """
    return {
        name: torch.optim.Adam(
            module.parameters(),
            lr=cfg.f_lr if name == "mapping_network" else cfg.lr,
            betas=(float(cfg.beta1), float(cfg.beta2)),
            weight_decay=cfg.weight_decay,
            fused=True,
        )
        for name, module in nets.items()
    }


@torch.no_grad()
def ema_update(nets: Nets, nets_ema: Nets, beta: float) -> None:
    """``ema <- beta * ema + (1 - beta) * param`` for every parameter of G, F and E."""
    for name in ("generator", "mapping_network", "style_encoder"):
        ema_params = list(getattr(nets_ema, name).parameters())
        params = list(getattr(nets, name).parameters())
        torch._foreach_lerp_(ema_params, params, 1.0 - beta)


@contextlib.contextmanager
def frozen(*modules: nn.Module) -> Iterator[None]:
    """Stop parameter gradients of ``modules`` for a while (gradients still flow through them).

    An update that steps only some networks need not compute weight gradients for the others; this saves
    their backward convolutions and leaves the stepped networks' gradients unchanged.
    """
    saved = [(p, p.requires_grad) for m in modules for p in m.parameters()]
    for p, _ in saved:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in saved:
            p.requires_grad_(flag)


@dataclass
class TrainState:
    """Everything training needs to continue, and what a checkpoint holds: nets, EMA nets, optimisers, the step
    and the config.

    ``fan`` is the frozen face-landmark network of the high-pass path (``None`` when ``w_hpf == 0``); it is not
    trained and not part of a checkpoint (it comes from its own file, ``wing.ckpt``). How the step runs (precision,
    resampling, memory layout, DDP) is not part of the state either: see ``RunSettings``.
    """

    config: Config
    nets: Nets
    nets_ema: Nets
    optimizers: dict[str, torch.optim.Adam]
    step: int = 0
    fan: FAN | None = field(default=None)

    @property
    def mask_fn(self) -> MaskFn | None:
        """``FAN.masks`` when the high-pass path is on, else ``None``."""
        return self.fan.masks if self.fan is not None else None


@dataclass(frozen=True)
class RunSettings:
    """How ``train_step`` runs, as opposed to what it computes (which is the ``TrainState``): none of it is saved
    in a checkpoint, so a run keeps its settings across a resume or a rollback by applying them again
    (``apply_settings``) to the loaded state.

    The defaults are the plain form: fp32, fused resampling (the blocks' default), contiguous, one process.
    """

    #: ``fp32``, or ``bf16`` for bfloat16 autocast of the forward passes (weights and optimisers stay fp32).
    precision: str = "fp32"
    #: How the training nets resample (``stargan_v2.speed.RESAMPLINGS``): ``fused`` (also what ``auto`` means)
    #: folds pooling and upsampling into the convolutions; ``separate`` is the authors' order of operations.
    resampling: str = "fused"
    #: Channels_last weights of D, E and F (G stays NCHW: ``speed_up``) and input images (``train_step``).
    channels_last: bool = False
    #: Compile G, F and E in place when the settings are applied (``speed_up``).
    compile: bool = False
    #: ``DistributedDataParallel`` wrappers of the four nets when many processes train together (see
    #: ``wrap_ddp``); ``None`` in one process.
    ddp: dict[str, nn.Module] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"precision={self.precision!r}: choose fp32 or bf16")
        if self.resampling not in RESAMPLINGS:
            raise ValueError(f"resampling={self.resampling!r}: choose one of {', '.join(RESAMPLINGS)}")

    @classmethod
    def from_speed(cls, speed: SpeedSettings, compile: bool = False) -> RunSettings:
        """The settings of a resolved ``stargan_v2.speed.SpeedSettings``."""
        return cls(speed.precision, speed.resampling, speed.channels_last, compile)

    def describe(self) -> str:
        """``"fp32, fused resampling, channels_last"``."""
        return SpeedSettings(self.precision, self.resampling, self.channels_last).describe()

    @property
    def fused_resampling(self) -> bool:
        """Whether the training nets fold resampling into their convolutions."""
        return self.resampling != "separate"

    def view(self, nets: Nets, *stepped: str) -> Nets:
        """The nets as one update uses them: the ``stepped`` ones through their DDP wrappers (whose backward
        averages gradients over the processes), the others as plain modules (no gradient exchange for nets
        that the update does not step). In one process this is ``nets`` itself.
        """
        if self.ddp is None:
            return nets
        # A DDP wrapper stands in for the network it wraps (same call); typed Any, as it is not that class.
        wrapped: dict[str, Any] = {name: self.ddp[name] for name in stepped if name in self.ddp}
        return dataclasses.replace(nets, **wrapped)

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager[None]:
        """The forward passes' precision context: bfloat16 autocast for ``bf16``, nothing for ``fp32``."""
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=torch.bfloat16)


def apply_settings(state: TrainState, settings: RunSettings) -> None:
    """Put ``settings`` into effect on ``state``'s nets, once (after building, loading or rolling back a state):
    the training nets' resampling mode, the memory layout of the nets, the EMA nets and Adam's moments
    (``match_optimizer_layout``), and compilation. DDP wrappers are made separately (``wrap_ddp``)."""
    for _, module in state.nets.items():
        set_fused_resampling(module, settings.fused_resampling)
    speed_up(state.nets, channels_last=settings.channels_last, compile_nets=settings.compile)
    speed_up(state.nets_ema, channels_last=settings.channels_last)
    match_optimizer_layout(state.optimizers)


#: Nets kept in NCHW when the others are channels_last: those with instance norms (see ``speed_up``).
NCHW_NETS = ("generator",)


def speed_up(nets: Nets, *, channels_last: bool = False, compile_nets: bool = False) -> None:
    """Make ``nets`` faster in place without changing what they compute (up to float rounding).

    ``channels_last`` stores the convolution weights of D, E and F as NHWC, the layout the CPU and GPU
    convolution libraries work in, so no feature map is reordered before and after each convolution (the caller
    passes images in that layout too: ``RunSettings.channels_last``). G keeps NCHW (``NCHW_NETS``): PyTorch's
    instance norm computes in NCHW, so in NHWC each of G's norms copied its input to NCHW and the next
    convolution copied it back (measured on an AVX2-only Zen 3: G in NCHW makes the demo's step 1.02-1.07x and
    the 256 px step 1.33-1.36x faster; docs/BENCHMARKS.md). ``compile_nets`` compiles the forward of G, F and E in place
    (``nn.Module.compile``: the modules, their state dict keys and checkpoints stay as they are); D stays eager,
    because R1 differentiates its input gradient again (``create_graph=True``), which compiled graphs do not
    support. The first steps then take longer while the graphs compile.
    """
    for name, module in nets.items():
        if channels_last:
            module.to(memory_format=torch.contiguous_format if name in NCHW_NETS else torch.channels_last)
        if compile_nets and name != "discriminator":
            module.compile()


def match_optimizer_layout(optimizers: Mapping[str, torch.optim.Optimizer]) -> None:
    """Give every per-parameter optimiser tensor (Adam's moments) its parameter's memory layout, in place.

    A checkpoint stores the moments contiguous; after ``speed_up(channels_last=True)`` the parameters are
    NHWC. PyTorch's fused Adam on the CPU walks the parameter, its gradient and its moments as flat memory, so
    moments in another layout than their parameter are updated against the wrong elements, silently (found as
    a resumed run that drifted from an uninterrupted one). Call it after loading a state and after changing
    the parameters' layout.
    """
    for opt in optimizers.values():
        for group in opt.param_groups:
            for p in group["params"]:
                for key, value in opt.state.get(p, {}).items():
                    if isinstance(value, torch.Tensor) and value.shape == p.shape and value.stride() != p.stride():
                        opt.state[p][key] = torch.empty_like(p, dtype=value.dtype).copy_(value)


def as_memory_format(inputs: StepInputs, channels_last: bool) -> StepInputs:
    """``inputs`` with the images in channels_last layout when asked for (labels and latents are unchanged)."""
    if not channels_last:
        return inputs
    fmt = torch.channels_last
    return dataclasses.replace(
        inputs,
        x_src=inputs.x_src.contiguous(memory_format=fmt),
        x_ref=inputs.x_ref.contiguous(memory_format=fmt),
        x_ref2=inputs.x_ref2.contiguous(memory_format=fmt),
    )


def wrap_ddp(nets: Nets) -> dict[str, nn.Module]:
    """``DistributedDataParallel`` wrappers of the four nets (the process group must exist), for
    ``RunSettings.ddp``.

    Every process starts from rank 0's weights (DDP broadcasts them). Buffers are not broadcast on every
    forward: the only one is the high-pass filter, a constant.
    """
    from torch.nn.parallel import DistributedDataParallel

    device = next(nets.generator.parameters()).device
    ids = [device.index] if device.type == "cuda" else None
    # Newer PyTorch renamed the switch (and still syncs buffers once at construction, which is what we want).
    params = inspect.signature(DistributedDataParallel.__init__).parameters
    no_sync: dict[str, Any] = (
        {"forward_sync_buffers": False} if "forward_sync_buffers" in params else {"broadcast_buffers": False}
    )
    return {name: DistributedDataParallel(module, device_ids=ids, **no_sync) for name, module in nets.items()}


def init_train_state(config: Config, device: torch.device | str = "cpu", fan: FAN | None = None) -> TrainState:
    """Fresh He-initialised nets, EMA copies of G, F, E, and fresh optimisers (uses the global torch RNG)."""
    if config.model.uses_hpf and fan is None:
        raise ValueError(
            f"w_hpf={config.model.w_hpf} turns on the high-pass path, which needs the face-landmark network: "
            "pass fan=stargan_v2.fan.load_fan('wing.ckpt') or set w_hpf=0"
        )
    nets = build_nets(config.model).to(device)
    # The EMA nets start from the He-initialised nets (the authors' start from PyTorch's default init; after a
    # few thousand steps the difference is gone).
    nets_ema = Nets(
        generator=copy.deepcopy(nets.generator),
        mapping_network=copy.deepcopy(nets.mapping_network),
        style_encoder=copy.deepcopy(nets.style_encoder),
    )
    for _, module in nets_ema.items():
        module.requires_grad_(False)
    return TrainState(config, nets, nets_ema, make_optimizers(nets, config.train), 0, fan)


def _update(optimizers: list[torch.optim.Optimizer], loss: Tensor) -> Tensor:
    """Back-propagate ``loss`` and step ``optimizers``; returns the stepped weights' gradient norm.

    The norm is a device tensor (no host sync): it is non-finite exactly when some gradient is, which is how
    the run notices a numerical fault in the step it happened (``stargan_v2.run`` reads it at log intervals).
    """
    for opt in optimizers:
        opt.zero_grad(set_to_none=True)
    loss.backward()
    grads = [p.grad for opt in optimizers for group in opt.param_groups for p in group["params"] if p.grad is not None]
    norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))) if grads else loss.new_zeros(())
    for opt in optimizers:
        opt.step()
    return norm.detach()


def train_step(state: TrainState, inputs: StepInputs, settings: RunSettings | None = None) -> Stats:
    """Run one iteration (four updates, then EMA) in place and return its loss components.

    ``settings`` (default: ``RunSettings()``, fp32 in one process) says how: its precision, DDP wrappers and
    input layout are used here; its resampling mode and weight layout must already be in effect on the nets
    (``apply_settings``). Returns detached scalar tensors keyed ``D/latent_real`` ... ``G/ref_cyc``, the gradient
    norm of each update (``D/latent_grad_norm`` ... ``G/ref_grad_norm``) and ``G/lambda_ds``.
    """
    run = settings if settings is not None else RunSettings()
    cfg = state.config.train
    nets, opt = state.nets, state.optimizers
    if nets.generator.hpf is not None and state.fan is None:
        raise ValueError(
            "this model uses the high-pass path (w_hpf > 0), which needs the face-landmark network: "
            "set TrainState.fan = stargan_v2.fan.load_fan('wing.ckpt')"
        )
    inputs = as_memory_format(inputs, run.channels_last)
    device = next(nets.generator.parameters()).device
    x, y_src, y_trg = inputs.x_src, inputs.y_src, inputs.y_trg
    lambda_ds = ds_weight(state.step, cfg)
    # The source's face masks do not change within the iteration, so compute them once.
    masks = state.fan.masks(x) if state.fan is not None else None
    stats: Stats = {}
    latent_nets = run.view(nets, "generator", "mapping_network", "style_encoder")

    # 0. The latent-guided fake G(x, F_y~(z)) of update 1 is also the first fake of update 3: updates 1 and 2
    #    step D alone, so G and F are the same in both. It is made once, with its graph kept for update 3.
    with run.autocast(device):
        s_latent = latent_nets.mapping_network(inputs.z_trg, y_trg)
        x_latent = latent_nets.generator(x, s_latent, masks=masks)

    # 1-2. Discriminator: the latent-guided fake, then a reference-guided one; R1 on the reals in both.
    d_nets = run.view(nets, "discriminator")
    for kind, guide in (("latent", {"x_fake": x_latent}), ("ref", {"x_ref": inputs.x_ref})):
        with run.autocast(device):
            loss, parts = d_loss(d_nets, x, y_src, y_trg, cfg, masks=masks, **guide)
        parts["grad_norm"] = _update([opt["discriminator"]], loss)
        stats.update({f"D/{kind}_{k}": v for k, v in parts.items()})

    # 3. Generator, mapping network and style encoder with latent-guided styles (D is only a critic here).
    with frozen(nets.require_discriminator()):
        with run.autocast(device):
            loss, parts = g_loss(
                latent_nets, x, y_src, y_trg, cfg, lambda_ds,
                z_trgs=(inputs.z_trg, inputs.z_trg2), masks=masks, mask_fn=state.mask_fn,
                fake=(s_latent, x_latent),
            )  # fmt: skip
        parts["grad_norm"] = _update([opt["generator"], opt["mapping_network"], opt["style_encoder"]], loss)
    stats.update({f"G/latent_{k}": v for k, v in parts.items()})
    del x_latent, s_latent

    # 4. Generator alone with reference-guided styles (F is unused; E only passes gradients through).
    stepped = ["generator", "mapping_network", "style_encoder"] if cfg.ref_step_updates_all else ["generator"]
    idle: list[nn.Module] = [nets.require_discriminator()]
    idle += [] if cfg.ref_step_updates_all else [nets.style_encoder]
    with frozen(*idle):
        with run.autocast(device):
            loss, parts = g_loss(
                run.view(nets, *stepped), x, y_src, y_trg, cfg, lambda_ds,
                x_refs=(inputs.x_ref, inputs.x_ref2), masks=masks, mask_fn=state.mask_fn,
            )  # fmt: skip
        parts["grad_norm"] = _update([opt[name] for name in stepped], loss)
    stats.update({f"G/ref_{k}": v for k, v in parts.items()})

    # 5. Running averages of G, F and E.
    ema_update(nets, state.nets_ema, cfg.ema_beta)
    state.step += 1
    stats["G/lambda_ds"] = torch.tensor(lambda_ds)
    return stats
