"""Parity with the authors' code: their checkpoint, their inputs, their outputs, losses and one full step.

The fixture (``afhq_small``: 256 px, 2 domains, widths capped at 64) was computed by the authors' code; see its
README. The tests find it through ``STARGAN_V2_OFFICIAL_FIXTURES`` and skip with the reason when it is absent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from stargan_v2.checkpoint import load_official
from stargan_v2.config import Config, TrainConfig
from stargan_v2.losses import d_loss, g_loss
from stargan_v2.model import Nets
from stargan_v2.train import StepInputs, TrainState, make_optimizers, train_step

from .conftest import official_fixtures

RTOL = 1e-5


@pytest.fixture(scope="module")
def fixture_dir() -> Path:
    return official_fixtures() / "afhq_small"


@pytest.fixture(scope="module")
def io(fixture_dir: Path) -> dict[str, Any]:
    return torch.load(fixture_dir / "io.pt", weights_only=True)


def _train_config(io: dict[str, Any]) -> TrainConfig:
    c = io["config"]
    names = ("lambda_reg", "lambda_sty", "lambda_ds", "lambda_cyc", "ds_iter", "lr", "f_lr", "beta1", "beta2")
    return TrainConfig(**{k: c[k] for k in names}, weight_decay=c["weight_decay"], ema_beta=c["ema_beta"])


def _close(got: torch.Tensor, want: torch.Tensor, rtol: float = RTOL) -> None:
    """Relative to the reference's scale, so that near-zero entries do not demand impossible precision."""
    scale = want.abs().max().clamp_min(1e-12)
    err = (got - want).abs().max() / scale
    assert err <= rtol, f"max relative error {err:.3g} > {rtol}"


def _training_nets(fixture_dir: Path) -> Nets:
    return load_official(fixture_dir / "000000_nets.ckpt").nets


def test_inferred_architecture(fixture_dir: Path, io: dict[str, Any]) -> None:
    model = load_official(fixture_dir / "000000_nets_ema.ckpt")
    c = io["config"]
    for key in ("img_size", "num_domains", "latent_dim", "style_dim", "max_conv_dim", "w_hpf"):
        assert getattr(model.config, key) == c[key], key


def test_ema_network_outputs(fixture_dir: Path, io: dict[str, Any]) -> None:
    m = load_official(fixture_dir / "000000_nets_ema.ckpt")
    with torch.no_grad():
        s_latent = m.mapping_network(io["z_trg"], io["y_trg"])
        s_ref = m.style_encoder(io["x_ref"], io["y_trg"])
        _close(s_latent, io["s_latent"])
        _close(s_ref, io["s_ref"])
        _close(m.style_encoder(io["x"], io["y_org"]), io["s_src"])
        _close(m.generator(io["x"], io["s_latent"]), io["fake_latent"])
        _close(m.generator(io["x"], io["s_ref"]), io["fake_ref"])


def test_discriminator_output(fixture_dir: Path, io: dict[str, Any]) -> None:
    with torch.no_grad():
        _close(_training_nets(fixture_dir).discriminator(io["x"], io["y_org"]), io["d_real"])


def _check_stats(stats: dict[str, torch.Tensor], want: dict[str, float]) -> None:
    for key, value in want.items():
        assert stats[key].item() == pytest.approx(value, rel=RTOL, abs=1e-9), key


def test_losses_of_one_iteration(fixture_dir: Path, io: dict[str, Any]) -> None:
    """Each objective from the same (training) nets, as the fixture computed them (no update in between)."""
    nets, cfg = _training_nets(fixture_dir), _train_config(io)
    x, y_org, y_trg = io["x"], io["y_org"], io["y_trg"]
    lam = io["config"]["lambda_ds"]
    losses = io["losses"]
    _check_stats(d_loss(nets, x, y_org, y_trg, cfg, z_trg=io["z_trg"])[1], losses["d_latent"])
    _check_stats(d_loss(nets, x, y_org, y_trg, cfg, x_ref=io["x_ref"])[1], losses["d_ref"])
    _check_stats(g_loss(nets, x, y_org, y_trg, cfg, lam, z_trgs=(io["z_trg"], io["z_trg2"]))[1], losses["g_latent"])
    _check_stats(g_loss(nets, x, y_org, y_trg, cfg, lam, x_refs=(io["x_ref"], io["x_ref2"]))[1], losses["g_ref"])


@pytest.mark.slow
def test_parameters_after_one_training_iteration(fixture_dir: Path, io: dict[str, Any]) -> None:
    """Four updates with fresh Adam optimisers, then EMA from the fixture's EMA nets: parameters to 1e-6."""
    nets = _training_nets(fixture_dir)
    nets_ema = load_official(fixture_dir / "000000_nets_ema.ckpt").nets
    cfg = _train_config(io)
    model_cfg = load_official(fixture_dir / "000000_nets_ema.ckpt").config
    state = TrainState(Config(model_cfg, cfg), nets, nets_ema, make_optimizers(nets, cfg))
    inputs = StepInputs(io["x"], io["y_org"], io["y_trg"], io["z_trg"], io["z_trg2"], io["x_ref"], io["x_ref2"])
    train_step(state, inputs)

    checked = 0
    for group, group_nets in (("nets", state.nets), ("nets_ema", state.nets_ema)):
        for name, module in group_nets.items():
            params = module.state_dict()
            for key, ref in io["after_step"][group][name].items():
                flat = params[key].detach().flatten().double()
                got = flat[ref["idx"]]
                assert torch.allclose(got, ref["vals"], rtol=0, atol=1e-6), f"{group}/{name}/{key}"
                assert flat.sum().item() == pytest.approx(ref["sum"], abs=1e-6 * max(1, flat.numel()) ** 0.5)
                assert flat.abs().sum().item() == pytest.approx(ref["abssum"], rel=1e-6, abs=1e-5)
                checked += 1
    assert checked > 100
