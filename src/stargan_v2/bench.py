"""Speed and memory benchmarks: training iterations and synthesis batches (``stargan-v2 bench train|synth``).

A benchmark warms up, then times repeated iterations and reports the median: seconds per iteration (all four
updates and the EMA), images per second, peak memory (CUDA's max allocated, or the process's peak resident
set on CPU) and the model FLOPs of one iteration (convolutions and matrix products, forward and backward,
counted by ``torch.utils.flop_counter``) with the FLOP/s achieved.

``--impl authors`` times the same iteration done the way the authors' code does its work (every update
back-propagates into all four networks' weights, the latent-guided fake is made twice, the diversity term's
second image keeps its graph, pooling and upsampling run as separate steps, the C library's allocator keeps its
defaults). It computes the same update, so it is the like-for-like baseline on any machine;
``docs/BENCHMARKS.md`` also lists timings of the authors' own code.
"""

from __future__ import annotations

import contextlib
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

from .config import Config
from .hardware import device_description
from .losses import adv_loss, ds_weight, r1_penalty, wrong_domain_loss
from .malloc import malloc_state
from .model import build_nets, select_domain, set_fused_resampling
from .speed import SpeedSettings, resolve_speed
from .train import (
    RunSettings,
    StepInputs,
    TrainState,
    apply_settings,
    ema_update,
    init_train_state,
    speed_up,
    train_step,
)

IMPLS = ("ours", "authors")
#: Where the styles of a synthesis benchmark come from: latent codes (F) or reference images (E).
SYNTH_MODES = ("latent", "reference")


@dataclass
class BenchResult:
    """One benchmark's figures; ``to_json`` gives the ``--json`` object."""

    kind: str  # "train" or "synth"
    sec_per_iter: float
    images_per_sec: float
    peak_mem_mb: float
    flops_per_iter: float | None
    flops_per_sec: float | None
    times: list[float]
    settings: dict[str, object]
    machine: dict[str, str]
    #: Seconds the warm-up iterations took together (with ``--compile``, mostly compiling).
    warmup_sec: float = 0.0

    def summary(self) -> str:
        """A few human-readable lines."""
        s = self.settings
        lines = [
            f"{self.kind}: {s['preset']} at {s['img_size']} px, batch {s['batch_size']}, {s['device']}, "
            f"{s['precision']}{', channels_last' if s.get('channels_last') else ''}"
            f"{', compiled' if s.get('compile') else ''}, impl {s.get('impl', 'ours')}"
            f"{', ' + str(s['resampling']) + ' resampling' if 'resampling' in s else ''}, {s['malloc']} malloc",
            f"  {self.sec_per_iter:.4f} s per {'iteration' if self.kind == 'train' else 'batch'} (median of "
            f"{len(self.times)}), {self.images_per_sec:.2f} images/s, peak memory {self.peak_mem_mb:.0f} MB",
        ]
        if self.flops_per_iter is not None and self.flops_per_sec is not None:
            lines.append(
                f"  {self.flops_per_iter / 1e9:.1f} GFLOP per iteration, {self.flops_per_sec / 1e12:.3f} TFLOP/s"
            )
        if s.get("compile"):
            lines.append(f"  warm-up (compiling): {self.warmup_sec:.1f} s")
        lines.append(f"  {self.machine['device_name']}, PyTorch {self.machine['torch']}")
        return "\n".join(lines)


def machine_info(device: torch.device) -> dict[str, str]:
    """The machine a figure was measured on: the GPU's name, or the CPU's model, vector extensions and threads
    (``hardware.device_description``); PyTorch and Python versions."""
    return {
        "device_name": device_description(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


# ----------------------------------------------------------------------------------------------------------
# The authors' order of work, for comparison
# ----------------------------------------------------------------------------------------------------------


def _all_grads_update(state: TrainState, stepped: list[str], loss: Tensor) -> None:
    for opt in state.optimizers.values():
        opt.zero_grad(set_to_none=False)
    loss.backward()
    for name in stepped:
        state.optimizers[name].step()


def authors_train_step(state: TrainState, inputs: StepInputs) -> None:
    """One iteration with the authors' amount of work (the same update as ``train_step``, done slower).

    Every backward pass computes the weight gradients of all four networks although only some are stepped,
    the latent-guided fake is made once for D (without gradients) and again for G, and the diversity term's
    second image is made with a graph that is then thrown away, and pooling and upsampling run as separate
    steps. The high-pass path is not supported here.
    """
    for _, module in state.nets.items():
        set_fused_resampling(module, False)
    cfg, nets = state.config.train, state.nets
    discriminator = nets.require_discriminator()
    x, y_org, y_trg = inputs.x_src, inputs.y_src, inputs.y_trg
    lambda_ds = ds_weight(state.step, cfg)

    def style(z: Tensor | None, ref: Tensor | None) -> Tensor:
        return nets.mapping_network(z, y_trg) if z is not None else nets.style_encoder(ref, y_trg)

    for z, ref in ((inputs.z_trg, None), (None, inputs.x_ref)):
        x_real = x.detach().requires_grad_(True)
        logits = discriminator(x_real, None)
        out = select_domain(logits, y_org)
        loss = adv_loss(out, 1.0) + cfg.lambda_reg * r1_penalty(out, x_real)
        if cfg.lambda_wrong_domain > 0:
            loss = loss + cfg.lambda_wrong_domain * wrong_domain_loss(logits, y_org)
        with torch.no_grad():
            x_fake = nets.generator(x, style(z, ref))
        loss = loss + adv_loss(discriminator(x_fake, y_trg), 0.0)
        _all_grads_update(state, ["discriminator"], loss)

    latent = ((inputs.z_trg, None), (inputs.z_trg2, None))
    reference = ((None, inputs.x_ref), (None, inputs.x_ref2))
    for (first, second), stepped in (
        (latent, ["generator", "mapping_network", "style_encoder"]),
        (reference, ["generator"]),
    ):
        s_trg = style(*first)
        x_fake = nets.generator(x, s_trg)
        loss_adv = adv_loss(discriminator(x_fake, y_trg), 1.0)
        loss_sty = (nets.style_encoder(x_fake, y_trg) - s_trg).abs().mean()
        x_fake2 = nets.generator(x, style(*second)).detach()
        loss_ds = (x_fake - x_fake2).abs().mean()
        loss_cyc = (nets.generator(x_fake, nets.style_encoder(x, y_org)) - x).abs().mean()
        loss = loss_adv + cfg.lambda_sty * loss_sty - lambda_ds * loss_ds + cfg.lambda_cyc * loss_cyc
        _all_grads_update(state, stepped, loss)
    ema_update(nets, state.nets_ema, cfg.ema_beta)
    state.step += 1


# ----------------------------------------------------------------------------------------------------------
# Measuring
# ----------------------------------------------------------------------------------------------------------


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_mem_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    # ru_maxrss is in kilobytes on Linux and bytes on macOS: the process's peak since it started.
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (2**20 if sys.platform == "darwin" else 2**10)


def _time(fn: Callable[[], object], device: torch.device, warmup: int, repeats: int) -> tuple[float, list[float]]:
    """Seconds the ``warmup`` calls took together, and each of the ``repeats`` timed calls."""
    t = time.perf_counter()
    for _ in range(warmup):
        fn()
    _sync(device)
    warmup_sec = time.perf_counter() - t
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t)
    return warmup_sec, times


def _count_flops(fn: Callable[[], object]) -> float:
    """FLOPs of convolutions and matrix products (forward, backward and R1's double backward) in ``fn()``.

    Uses PyTorch's own per-operator formulas (``torch.utils.flop_counter``) from a dispatch mode: its
    ``FlopCounterMode`` also tracks modules with hooks that ``autograd.grad`` (R1) does not allow.
    """
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import flop_registry

    class Counter(TorchDispatchMode):
        total = 0

        def __torch_dispatch__(
            self,
            func: Any,
            types: Any,
            args: tuple[Any, ...] = (),
            kwargs: dict[str, Any] | None = None,
        ) -> Any:
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            formula = flop_registry.get(func._overloadpacket)
            if formula is not None:
                Counter.total += int(formula(*args, **kwargs, out_val=out))
            return out

    with Counter():
        fn()
    return float(Counter.total)


def random_inputs(config: Config, batch: int, device: torch.device, channels_last: bool = False) -> StepInputs:
    """Random images in [-1, 1], labels and latents for one iteration (the content does not change the speed)."""
    m = config.model
    g = torch.Generator().manual_seed(0)
    size = (batch, 3, m.img_size, m.img_size)

    def img() -> Tensor:
        x = (torch.rand(size, generator=g) * 2 - 1).to(device)
        return x.contiguous(memory_format=torch.channels_last) if channels_last else x

    return StepInputs(
        x_src=img(),
        y_src=torch.randint(0, m.num_domains, (batch,), generator=g).to(device),
        y_trg=torch.randint(0, m.num_domains, (batch,), generator=g).to(device),
        z_trg=torch.randn(batch, m.latent_dim, generator=g).to(device),
        z_trg2=torch.randn(batch, m.latent_dim, generator=g).to(device),
        x_ref=img(),
        x_ref2=img(),
    )


@contextlib.contextmanager
def _reset_peak(device: torch.device) -> Iterator[None]:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    yield


def _setup(config: Config, device: torch.device | str, what: str) -> torch.device:
    """Checks shared by both benchmarks, and the GPU switches training uses (TF32, cuDNN autotuning)."""
    device = torch.device(device)
    if config.model.uses_hpf:
        raise ValueError(f"the {what} benchmark runs without the face network: use --set w_hpf=0")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    return device


def _measure(
    kind: str,
    timed: Callable[[], object],
    counted: Callable[[], object],
    *,
    batch_size: int,
    device: torch.device,
    warmup: int,
    repeats: int,
    count_flops: bool,
    settings: dict[str, object],
) -> BenchResult:
    """Time ``timed`` (median of ``repeats`` after ``warmup``), read the peak memory, count ``counted``'s FLOPs."""
    with _reset_peak(device):
        warmup_sec, times = _time(timed, device, warmup, repeats)
        peak = _peak_mem_mb(device)
    flops = _count_flops(counted) if count_flops else None
    sec = statistics.median(times)
    return BenchResult(
        kind=kind,
        sec_per_iter=sec,
        images_per_sec=batch_size / sec,
        peak_mem_mb=peak,
        flops_per_iter=flops,
        flops_per_sec=flops / sec if flops is not None else None,
        times=times,
        settings=settings,
        machine=machine_info(device),
        warmup_sec=warmup_sec,
    )


def _settings(config: Config, device: torch.device, **extra: object) -> dict[str, object]:
    m = config.model
    return {
        "img_size": m.img_size,
        "num_domains": m.num_domains,
        "max_conv_dim": m.max_conv_dim,
        "first_dim": m.first_dim,
        "device": str(device),
        **extra,
        "malloc": malloc_state(),
    }


def _resolve(
    impl: str, config: Config, device: torch.device | str, precision: str, resampling: str, memory_format: str
) -> SpeedSettings:
    """Our settings (``auto`` resolved as training does), or the authors' fixed fp32, separate, contiguous."""
    if impl not in IMPLS:
        raise ValueError(f"--impl {impl}: choose one of {', '.join(IMPLS)}")
    if impl == "authors":
        if (precision, resampling, memory_format) != ("auto", "auto", "auto"):
            raise ValueError(
                "--impl authors is the authors' fp32 eager iteration (separate resampling, contiguous layout): drop "
                "--precision, --resampling and --memory-format"
            )
        return SpeedSettings("fp32", "separate", channels_last=False)
    return resolve_speed(device, config.model, precision, resampling, memory_format)


def bench_train(
    config: Config,
    *,
    preset_name: str,
    batch_size: int,
    device: torch.device | str = "cpu",
    precision: str = "auto",
    memory_format: str = "auto",
    compile_nets: bool = False,
    impl: str = "ours",
    resampling: str = "auto",
    warmup: int = 1,
    repeats: int = 3,
    count_flops: bool = True,
) -> BenchResult:
    """Median time of full training iterations (four updates and the EMA) of ``config`` at ``batch_size``.

    The speed settings resolve as in training (``stargan_v2.speed``); ``impl="authors"`` fixes them to the
    authors' (fp32, separate resampling, contiguous) and refuses ``compile_nets``.
    """
    settings = _resolve(impl, config, device, precision, resampling, memory_format)
    if impl == "authors" and compile_nets:
        raise ValueError("--impl authors is the authors' eager iteration: drop --compile")
    device = _setup(config, device, "training")
    state = init_train_state(config, device=device)
    run = RunSettings.from_speed(settings, compile=compile_nets)
    apply_settings(state, run)
    channels_last = settings.channels_last
    inputs = random_inputs(config, batch_size, device, channels_last)

    def one() -> None:
        if impl == "authors":
            authors_train_step(state, inputs)
        else:
            train_step(state, inputs, run)

    return _measure(
        "train",
        one,
        one,
        batch_size=batch_size,
        device=device,
        warmup=warmup,
        repeats=repeats,
        count_flops=count_flops,
        settings=_settings(
            config,
            device,
            preset=preset_name,
            batch_size=batch_size,
            precision=settings.precision,
            channels_last=channels_last,
            compile=compile_nets,
            impl=impl,
            resampling=settings.resampling,
        ),
    )


def bench_synth(
    config: Config,
    *,
    preset_name: str,
    batch_size: int,
    device: torch.device | str = "cpu",
    precision: str = "auto",
    memory_format: str = "auto",
    compile_nets: bool = False,
    impl: str = "ours",
    mode: str = "latent",
    warmup: int = 1,
    repeats: int = 5,
    count_flops: bool = True,
) -> BenchResult:
    """Median time of one batch of latent-guided (``F`` then ``G``) or reference-guided (``E`` then ``G``) synthesis.

    Ours resamples fused, with the precision and layout resolved as in training; ``impl="authors"`` runs
    pooling and upsampling as separate steps, in fp32 and the contiguous layout.
    """
    settings = _resolve(impl, config, device, precision, "auto", memory_format)
    if impl == "authors" and compile_nets:
        raise ValueError("--impl authors is the authors' eager iteration: drop --compile")
    if mode not in SYNTH_MODES:
        raise ValueError(f"--mode {mode}: choose latent or reference")
    device = _setup(config, device, "synthesis")
    nets = build_nets(config.model, discriminator=False).to(device).eval()
    for _, module in nets.items():
        set_fused_resampling(module, settings.resampling == "fused")
    channels_last = settings.channels_last
    speed_up(nets, channels_last=channels_last, compile_nets=compile_nets)
    inputs = random_inputs(config, batch_size, device, channels_last)
    bf16 = settings.precision == "bf16"
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

    def forward() -> Tensor:
        with autocast:
            if mode == "latent":
                s = nets.mapping_network(inputs.z_trg, inputs.y_trg)
            else:
                s = nets.style_encoder(inputs.x_ref, inputs.y_trg)
            return nets.generator(inputs.x_src, s)

    # FLOPs are counted under no_grad: in inference mode composite operators reach the counter undecomposed
    # (conv2d instead of convolution), and the formulas are registered for the decomposed ones.
    return _measure(
        "synth",
        torch.inference_mode()(forward),
        torch.no_grad()(forward),
        batch_size=batch_size,
        device=device,
        warmup=warmup,
        repeats=repeats,
        count_flops=count_flops,
        settings=_settings(
            config,
            device,
            preset=preset_name,
            batch_size=batch_size,
            precision=settings.precision,
            channels_last=channels_last,
            compile=compile_nets,
            impl=impl,
            mode=mode,
        ),
    )


def to_json(result: BenchResult) -> dict[str, object]:
    """The ``--json`` object: ``sec_per_iter``, ``images_per_sec``, ``peak_mem_mb`` and the rest."""
    return asdict(result)
