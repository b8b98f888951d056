"""The speed settings of training and synthesis, chosen by what the device can do.

Three settings change how fast a step runs, none what it computes beyond float rounding:

* ``precision``: ``fp32``, or ``bf16`` autocast of the forward passes (weights and optimiser states stay fp32).
  bf16 pays only where the hardware computes in it natively: GPUs from Ampere on, and CPUs with AVX-512 BF16
  or AMX. A CPU without them emulates it, 5-9x slower than fp32 (the demo preset on an AVX2-only AMD EPYC
  Zen 3: 5.1x on 2026-12-07, 8.6x in issue 13), so ``auto`` never picks it there and an explicit ``bf16``
  warns once.
* ``resampling``: ``fused`` folds each 2x2 average pooling and 2x nearest upsampling into the neighbouring 3x3
  convolution (4/9 of its multiply-adds); ``separate`` is the authors' order of operations.
* ``channels_last``: NHWC weights and feature maps of D, E and F, the CPU convolution library's own layout (G,
  whose instance norms compute in NCHW, keeps NCHW: ``train.speed_up``); ``auto`` uses it on CPUs for small
  images only (``CPU_NCHW_MIN_IMG_SIZE``).

``auto`` (every command's default) resolves each by the device and the model; ``docs/BENCHMARKS.md`` has the
measurements behind the rules.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

from .config import ModelConfig
from .hardware import cpu_info

PRECISIONS = ("auto", "fp32", "bf16")
RESAMPLINGS = ("auto", "fused", "separate")
MEMORY_FORMATS = ("auto", "channels_last", "contiguous")

#: The smallest image size at which bf16 autocast beats fp32 on a CPU with native bf16 (below it, a step is
#: bound by per-operator overhead, which bf16 does not reduce and its casts add to).
CPU_BF16_MIN_IMG_SIZE = 128
#: From this image size on, ``auto`` keeps every net NCHW on a CPU. Measured on a Zen 3 (AVX2; scripts/ab_step.py):
#: at 256 px (``max_conv_dim=64``, batch 2) NCHW is 1.06x faster than D, E and F in channels_last, at 32 px (the
#: demo) 1.07x slower; 64 and 128 px were not measured.
CPU_NCHW_MIN_IMG_SIZE = 128


class SlowSettingWarning(UserWarning):
    """A setting the user asked for is slow on this machine (the message says why and what is faster)."""


@dataclass(frozen=True)
class SpeedSettings:
    """Resolved settings: ``precision`` is ``fp32`` or ``bf16``, ``resampling`` ``fused`` or ``separate``."""

    precision: str
    resampling: str
    channels_last: bool

    def describe(self) -> str:
        """``"fp32, fused resampling, channels_last"``."""
        layout = ", channels_last" if self.channels_last else ""
        return f"{self.precision}, {self.resampling} resampling{layout}"


def _check(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"--{name} {value}: choose one of {', '.join(choices)}")


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes in bfloat16 natively (an Ampere or newer GPU; a CPU with AVX-512 BF16 or AMX)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return cpu_info().native_bf16
    return False


def resolve_speed(
    device: torch.device | str,
    model: ModelConfig,
    precision: str = "auto",
    resampling: str = "auto",
    memory_format: str = "auto",
) -> SpeedSettings:
    """The settings to run ``model`` with on ``device``: each ``auto`` resolved, the others checked.

    * precision ``auto``: bf16 on a GPU with native bf16; on a CPU with native bf16 for images of at least
      ``CPU_BF16_MIN_IMG_SIZE`` px; fp32 otherwise. An explicit ``bf16`` without native support warns.
    * resampling ``auto``: fused.
    * memory format ``auto``: channels_last on the CPU for images below ``CPU_NCHW_MIN_IMG_SIZE`` px;
      contiguous for larger ones and on GPUs (not measured there yet).
    """
    device = torch.device(device)
    _check("precision", precision, PRECISIONS)
    _check("resampling", resampling, RESAMPLINGS)
    _check("memory-format", memory_format, MEMORY_FORMATS)
    native = native_bf16(device)
    if precision == "auto":
        big_enough = device.type != "cpu" or model.img_size >= CPU_BF16_MIN_IMG_SIZE
        precision = "bf16" if native and big_enough else "fp32"
    elif precision == "bf16" and not native:
        what = "CPU" if device.type == "cpu" else "device"
        warnings.warn(
            f"--precision bf16 on a {what} without native bfloat16 ({_what_is_missing(device)}): it is emulated, "
            "several times slower than fp32 (5-9x on an AVX2-only CPU); leave --precision at auto or use fp32",
            SlowSettingWarning,
            stacklevel=2,
        )
    if resampling == "auto":
        resampling = "fused"
    small = model.img_size < CPU_NCHW_MIN_IMG_SIZE
    channels_last = memory_format == "channels_last" or (memory_format == "auto" and device.type == "cpu" and small)
    return SpeedSettings(precision, resampling, channels_last)


def _what_is_missing(device: torch.device) -> str:
    if device.type == "cpu":
        found = ", ".join(cpu_info().extensions) or "no AVX2"
        return f"no AVX-512 BF16 or AMX; this CPU has {found}"
    return "an Ampere or newer GPU is needed"
