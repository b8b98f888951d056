"""The speed benchmark: its figures are there and well-formed, and its baseline computes the same update."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from stargan_v2.bench import authors_train_step, bench_synth, bench_train, to_json
from stargan_v2.cli import main
from stargan_v2.config import preset
from stargan_v2.model import AdainResBlock, ResBlock
from stargan_v2.train import RunSettings, apply_settings, init_train_state, train_step

from .conftest import make_inputs


def _authors_step(state, inputs, settings: RunSettings) -> None:
    authors_train_step(state, inputs)  # always fp32, separate resampling


def _weights(state) -> dict[str, torch.Tensor]:
    out = {}
    for prefix, nets in (("nets", state.nets), ("ema", state.nets_ema)):
        for name, module in nets.items():
            out.update({f"{prefix}.{name}.{k}": v.clone() for k, v in module.state_dict().items()})
    return out


def test_authors_order_of_work_gives_our_update() -> None:
    """The baseline does more work, not different work: the same weights after two iterations, with our
    resampling fused or separate."""
    default = torch.get_default_dtype()
    # Double precision: rounding differences of the two orders of work stay far below any real difference.
    torch.set_default_dtype(torch.float64)
    try:
        config = preset("tiny").override(["ema_beta=0.9"])
        states = []
        for step_fn, resampling in ((train_step, "fused"), (train_step, "separate"), (_authors_step, "auto")):
            torch.manual_seed(0)
            state = init_train_state(config)
            settings = RunSettings(resampling=resampling)
            apply_settings(state, settings)
            for step in range(2):
                step_fn(state, make_inputs(config, batch=3, seed=step), settings)
            blocks = [m for _, n in state.nets.items() for m in n.modules() if isinstance(m, (ResBlock, AdainResBlock))]
            assert all(m.fused_resampling == (resampling == "fused") for m in blocks)
            states.append(_weights(state))
        torch.manual_seed(0)
        initial = _weights(init_train_state(config))
    finally:
        torch.set_default_dtype(default)
    ours, ours_separate, theirs = states
    for key, value in ours.items():
        for other in (ours_separate, theirs):
            torch.testing.assert_close(other[key], value, rtol=0, atol=1e-9, msg=lambda m, k=key: f"{k}: {m}")
    assert any(not torch.equal(initial[k], ours[k]) for k in ours if k.startswith("nets.discriminator"))
    assert any(not torch.equal(initial[k], ours[k]) for k in ours if k.startswith("ema.mapping_network"))


def test_train_benchmark_reports_its_figures() -> None:
    result = bench_train(preset("tiny"), preset_name="tiny", batch_size=2, warmup=1, repeats=2)
    assert len(result.times) == 2 and all(t > 0 for t in result.times)
    assert result.warmup_sec > 0 and to_json(result)["warmup_sec"] == result.warmup_sec  # the one warm-up step
    assert result.sec_per_iter == pytest.approx(statistics.median(result.times))
    assert result.images_per_sec == pytest.approx(2 / result.sec_per_iter)
    assert result.peak_mem_mb > 0
    # Forward, backward and R1's double backward of four nets: far more than one generator forward.
    synth = bench_synth(preset("tiny"), preset_name="tiny", batch_size=2, warmup=0, repeats=1)
    assert result.flops_per_iter is not None and synth.flops_per_iter is not None
    assert result.flops_per_iter > 5 * synth.flops_per_iter > 0
    assert result.flops_per_sec == pytest.approx(result.flops_per_iter / result.sec_per_iter)


@pytest.mark.parametrize("impl", ["authors", "ours"])
def test_synth_flops_match_a_hand_count(impl: str) -> None:
    """The FLOP count is PyTorch's per-operator formula: 2 * MACs of every convolution and linear layer. With
    resampling fused (ours), each resampling block's 3x3 conv costs 4/9 and its 1x1 shortcut conv 1/4."""
    from stargan_v2.model import AdainResBlock, ResBlock, build_nets, set_fused_resampling

    config = preset("tiny")
    result = bench_synth(config, preset_name="tiny", batch_size=1, warmup=0, repeats=1, impl=impl)
    nets = build_nets(config.model, discriminator=False)
    scale: dict[torch.nn.Module, float] = {}
    for _, net in nets.items():
        set_fused_resampling(net, False)  # count on the separate form, scaling the fused blocks' convs by hand
        for m in net.modules():
            resamples = (isinstance(m, ResBlock) and m.downsample) or (isinstance(m, AdainResBlock) and m.upsample)
            if resamples and impl == "ours":
                scale[m.conv1] = 4 / 9
                if m.conv1x1 is not None:
                    scale[m.conv1x1] = 1 / 4
    macs = 0.0

    def hook(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal macs
        if isinstance(module, torch.nn.Conv2d):
            k = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
            macs += output.numel() * k * scale.get(module, 1.0)
        elif isinstance(module, torch.nn.Linear):
            macs += output.numel() * module.in_features

    for _, net in list(nets.items())[:2]:
        for m in net.modules():
            m.register_forward_hook(hook)
    with torch.no_grad():
        x = torch.zeros(1, 3, 32, 32)
        nets.generator(x, nets.mapping_network(torch.zeros(1, config.model.latent_dim), torch.zeros(1).long()))
    if impl == "authors":
        assert result.flops_per_iter == pytest.approx(2 * macs, rel=1e-6)
    else:
        # Building each 4x4 kernel from its 3x3 one (einsum, small matrix products) is counted too: 0.24% of
        # this tiny model's total, far less at real sizes.
        assert 2 * macs < result.flops_per_iter < 2 * macs * 1.005


def test_bench_command_json(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["bench", "train", "--preset", "tiny", "--batch-size", "2", "--warmup", "0", "--repeats", "1"]
    assert main([*argv, "--json", "--no-flops"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"sec_per_iter", "images_per_sec", "peak_mem_mb", "settings", "machine"} <= set(out)
    assert out["flops_per_iter"] is None and out["settings"]["batch_size"] == 2
    assert main(["bench", "synth", "--preset", "tiny", "--repeats", "1", "--json", "--mode", "reference"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["images_per_sec"] > 0 and out["settings"]["mode"] == "reference"


def test_bench_command_refuses_bad_settings(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "train", "--preset", "tiny", "--batch-size", "0"]) == 2
    assert "--batch-size" in capsys.readouterr().err
    assert main(["bench", "train", "--preset", "tiny", "--impl", "authors", "--precision", "bf16"]) == 2
    assert "--impl authors" in capsys.readouterr().err


def test_bench_reports_resampling_and_refuses_fused_authors(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["bench", "train", "--preset", "tiny", "--batch-size", "1", "--warmup", "0", "--repeats", "1"]
    assert main([*argv, "--json", "--no-flops", "--precision", "bf16"]) == 0
    settings = json.loads(capsys.readouterr().out)["settings"]
    assert settings["resampling"] == "fused" and settings["malloc"] in ("tuned", "system")
    assert main([*argv, "--json", "--no-flops", "--impl", "authors"]) == 0
    assert json.loads(capsys.readouterr().out)["settings"]["resampling"] == "separate"
    assert main([*argv, "--impl", "authors", "--resampling", "fused"]) == 2
    assert "--impl authors is the authors' fp32 eager iteration" in capsys.readouterr().err


def test_ab_script_times_each_variant_in_turns() -> None:
    """scripts/ab_step.py (the interleaved A/B timing behind BENCHMARKS.md's layout and batch-size figures) runs
    and prints one row per variant and batch size, the first variant of each size at 1.00x; a bad thread count
    is refused by name before anything is built."""
    root = Path(__file__).resolve().parents[1]
    script = str(root / "scripts" / "ab_step.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(root / "src")}
    args = ["--preset", "tiny", "--batch-size", "1", "2", "--threads", "1", "--rounds", "2", "--warmup", "1"]
    variants = ["ours", "authors", "channels-last", "all-channels-last", "contiguous"]
    done = subprocess.run(
        [sys.executable, script, *args, *variants], capture_output=True, text=True, timeout=300, env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line.split("|")[1:-1] for line in done.stdout.splitlines() if line.startswith("| ") and "x |" in line]
    assert [(r[0].strip(), int(r[1])) for r in rows] == [(v, b) for b in (1, 2) for v in variants]
    assert [r[5].strip() for r in rows if r[0].strip() == "ours"] == ["1.00x", "1.00x"]
    for r in rows:
        median, images = float(r[2]), float(r[4])
        assert median > 0 and images == pytest.approx(int(r[1]) / median, rel=0.05, abs=0.05)
    bad = subprocess.run(
        [sys.executable, script, "--threads", "0", "ours"], capture_output=True, text=True, timeout=60, env=env
    )
    assert bad.returncode == 2 and "--threads must be at least 1, got 0" in bad.stderr
