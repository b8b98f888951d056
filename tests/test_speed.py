"""The speed settings: ``auto`` chooses by what the device can do; a slow explicit choice warns."""

from __future__ import annotations

import warnings

import pytest

from stargan_v2 import hardware
from stargan_v2.config import ModelConfig, preset
from stargan_v2.speed import (
    CPU_BF16_MIN_IMG_SIZE,
    CPU_NCHW_MIN_IMG_SIZE,
    SlowSettingWarning,
    SpeedSettings,
    resolve_speed,
)

ZEN4 = "avx2 fma avx512f avx512_bf16"
ZEN3 = "avx2 fma"


@pytest.fixture
def cpu_flags(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Pretend to be a CPU with the given /proc/cpuinfo flags."""

    def set_flags(flags: str) -> None:
        monkeypatch.setenv("STARGAN_V2_CPU_FLAGS", flags)
        hardware.cpu_info.cache_clear()

    yield set_flags
    monkeypatch.delenv("STARGAN_V2_CPU_FLAGS", raising=False)
    hardware.cpu_info.cache_clear()


def test_auto_on_a_cpu_with_native_bf16(cpu_flags) -> None:  # type: ignore[no-untyped-def]
    cpu_flags(ZEN4)
    big = ModelConfig(img_size=CPU_BF16_MIN_IMG_SIZE)
    assert resolve_speed("cpu", big) == SpeedSettings("bf16", "fused", channels_last=False)
    # Small models are bound by per-operator overhead, which bf16 does not reduce.
    assert resolve_speed("cpu", preset("demo").model).precision == "fp32"


def test_auto_on_an_avx2_cpu_never_picks_bf16_and_an_explicit_bf16_warns(cpu_flags) -> None:  # type: ignore[no-untyped-def]
    cpu_flags(ZEN3)
    assert resolve_speed("cpu", preset("afhq").model) == SpeedSettings("fp32", "fused", channels_last=False)
    # channels_last (for D, E and F) only below CPU_NCHW_MIN_IMG_SIZE: at 256 px NCHW measured faster.
    assert resolve_speed("cpu", preset("demo").model) == SpeedSettings("fp32", "fused", channels_last=True)
    assert not resolve_speed("cpu", ModelConfig(img_size=CPU_NCHW_MIN_IMG_SIZE)).channels_last
    assert resolve_speed("cpu", ModelConfig(img_size=CPU_NCHW_MIN_IMG_SIZE // 2)).channels_last
    with pytest.warns(SlowSettingWarning, match=r"no AVX-512 BF16 or AMX; this CPU has AVX2, FMA.*use fp32"):
        settings = resolve_speed("cpu", preset("afhq").model, precision="bf16")
    assert settings.precision == "bf16"  # asked for: done, with the warning


def test_explicit_settings_are_kept_and_bad_ones_named(cpu_flags) -> None:  # type: ignore[no-untyped-def]
    cpu_flags(ZEN4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # native bf16: no warning
        got = resolve_speed("cpu", preset("afhq").model, "bf16", "separate", "contiguous")
    assert got == SpeedSettings("bf16", "separate", channels_last=False)
    assert got.describe() == "bf16, separate resampling"
    assert resolve_speed("cpu", preset("demo").model, "fp32", "fused", "channels_last").describe() == (
        "fp32, fused resampling, channels_last"
    )
    for kwargs, flag in (({"precision": "fp16"}, "--precision fp16"), ({"memory_format": "nhwc"}, "--memory-format")):
        with pytest.raises(ValueError, match=flag):
            resolve_speed("cpu", preset("demo").model, **kwargs)
