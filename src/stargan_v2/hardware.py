"""What the machine can do: the CPU's model and vector extensions, native bfloat16, the accelerator.

Figures are named with the machine that measured them (the demo's report, ``bench``), and some defaults depend
on it: bfloat16 autocast is only fast where the CPU computes in bfloat16 natively (AVX-512 BF16 or AMX); an
AVX2-only CPU emulates it, several times slower than float32.
"""

from __future__ import annotations

import functools
import os
import platform
from dataclasses import dataclass

import torch

#: Vector extensions worth naming, in the order they are listed (``/proc/cpuinfo`` flag, name to show).
_EXTENSIONS: tuple[tuple[str, str], ...] = (
    ("avx2", "AVX2"),
    ("fma", "FMA"),
    ("avx512f", "AVX-512"),
    ("avx512_vnni", "AVX-512 VNNI"),
    ("avx512_bf16", "AVX-512 BF16"),
    ("amx_bf16", "AMX-BF16"),
    ("asimd", "NEON"),
    ("sve", "SVE"),
)


@dataclass(frozen=True)
class CpuInfo:
    """The CPU as the operating system reports it."""

    model: str
    flags: frozenset[str]

    @property
    def extensions(self) -> tuple[str, ...]:
        """The vector extensions present, by name (``("AVX2", "FMA", "AVX-512", ...)``)."""
        return tuple(name for flag, name in _EXTENSIONS if flag in self.flags)

    @property
    def native_bf16(self) -> bool:
        """Whether the CPU computes in bfloat16 natively (AVX-512 BF16 or AMX), so bf16 autocast can pay."""
        return bool({"avx512_bf16", "amx_bf16"} & self.flags)

    def describe(self, threads: int | None = None) -> str:
        """``"AMD EPYC (AVX2, FMA, AVX-512, AVX-512 BF16), 2 threads"``."""
        threads = torch.get_num_threads() if threads is None else threads
        extensions = ", ".join(self.extensions) or "no AVX2"
        return f"{self.model} ({extensions}), {threads} thread{'s' if threads != 1 else ''}"


def _read_cpuinfo(text: str) -> CpuInfo:
    model, flags = "", frozenset[str]()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("model name", "Model", "cpu model") and not model:
            model = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = frozenset(value.split())
    return CpuInfo(model or platform.processor() or platform.machine(), flags)


@functools.lru_cache(maxsize=1)
def cpu_info() -> CpuInfo:
    """This machine's CPU (from ``/proc/cpuinfo`` on Linux; elsewhere the model only, from ``platform``).

    ``STARGAN_V2_CPU_FLAGS`` (space-separated ``/proc/cpuinfo`` flags) replaces the flags read, to try the
    defaults of another CPU kind.
    """
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            info = _read_cpuinfo(fh.read())
    except OSError:
        info = CpuInfo(platform.processor() or platform.machine(), frozenset())
    override = os.environ.get("STARGAN_V2_CPU_FLAGS")
    if override is not None:
        info = CpuInfo(info.model, frozenset(override.split()))
    return info


def device_description(device: torch.device | str) -> str:
    """The device a figure was measured on: the GPU's name, or the CPU's model, extensions and threads."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_info().describe()
