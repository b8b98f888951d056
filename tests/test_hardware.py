"""The machine a figure is measured on, and what the CPU can do."""

from __future__ import annotations

import pytest

from stargan_v2 import hardware
from stargan_v2.hardware import CpuInfo, _read_cpuinfo

ZEN4 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 9R14
flags\t\t: fpu sse sse2 avx fma avx2 avx512f avx512dq avx512_vnni avx512_bf16 vaes
"""
ZEN3 = "model name\t: AMD EPYC 7R13 Processor\nflags\t\t: fpu sse avx fma avx2 vaes\n"
ARM = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes sve\nCPU implementer\t: 0x41\n"


def test_cpuinfo_gives_the_model_and_the_vector_extensions() -> None:
    zen4 = _read_cpuinfo(ZEN4)
    assert zen4.model == "AMD EPYC 9R14"
    assert zen4.extensions == ("AVX2", "FMA", "AVX-512", "AVX-512 VNNI", "AVX-512 BF16")
    assert zen4.native_bf16
    zen3 = _read_cpuinfo(ZEN3)
    assert zen3.extensions == ("AVX2", "FMA") and not zen3.native_bf16
    assert zen3.describe(threads=2) == "AMD EPYC 7R13 Processor (AVX2, FMA), 2 threads"
    arm = _read_cpuinfo(ARM)
    assert arm.extensions == ("NEON", "SVE") and not arm.native_bf16 and arm.model  # the platform's name


def test_amx_counts_as_native_bf16() -> None:
    assert CpuInfo("Xeon", frozenset({"avx2", "avx512f", "amx_bf16"})).native_bf16


def test_the_flags_can_be_overridden_to_try_another_cpu_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STARGAN_V2_CPU_FLAGS", "avx2 fma")
    hardware.cpu_info.cache_clear()
    try:
        assert hardware.cpu_info().extensions == ("AVX2", "FMA")
        assert "(AVX2, FMA)" in hardware.device_description("cpu")
    finally:
        monkeypatch.delenv("STARGAN_V2_CPU_FLAGS")
        hardware.cpu_info.cache_clear()
