"""Parity with the authors' code: their checkpoint, their inputs, their outputs, losses and one full step.

Every sub-folder of ``$STARGAN_V2_OFFICIAL_FIXTURES`` that holds an ``io.pt`` is one case (``afhq_small``: 256
px, 2 domains, widths capped at 64; see the fixtures' README). A case of a high-pass model finds its
face-landmark network in the checkpoint's ``fan`` entry or in a ``wing.ckpt`` beside it. The tests skip, with
the reason, when the variable is unset or the folder is absent.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch

from stargan_v2.checkpoint import OfficialModel, load_official
from stargan_v2.config import Config, TrainConfig
from stargan_v2.losses import d_loss, g_loss
from stargan_v2.train import StepInputs, TrainState, make_optimizers, train_step

from .conftest import FIXTURES_ENV, official_fixtures

RTOL = 1e-5


def _cases() -> list[str]:
    root = os.environ.get(FIXTURES_ENV)
    if root and Path(root).is_dir():
        found = sorted(p.parent.name for p in Path(root).glob("*/io.pt"))
        if found:
            return found
    return ["afhq_small"]  # official_fixtures() skips with the reason when it is absent


@pytest.fixture(scope="module", params=_cases())
def case(request: pytest.FixtureRequest) -> Path:
    path = official_fixtures() / request.param
    if not (path / "io.pt").is_file():
        pytest.skip(f"{path}/io.pt is absent")
    return path


@pytest.fixture(scope="module")
def io(case: Path) -> dict[str, Any]:
    return torch.load(case / "io.pt", weights_only=True)


def _load(case: Path, name: str) -> OfficialModel:
    wing = case / "wing.ckpt"
    return load_official(case / name, fan_path=wing if wing.is_file() else None)


def _train_config(io: dict[str, Any]) -> TrainConfig:
    """The fixture's hyper-parameters, by the authors' argument names (which are our field names)."""
    c = io["config"]
    names = {f for f in TrainConfig.__dataclass_fields__ if f in c}
    return TrainConfig(**{k: type(getattr(TrainConfig(), k))(c[k]) for k in names})


def _close(got: torch.Tensor, want: torch.Tensor, rtol: float = RTOL) -> None:
    """Relative to the reference's scale, so that near-zero entries do not demand impossible precision."""
    scale = want.abs().max().clamp_min(1e-12)
    err = (got - want).abs().max() / scale
    assert err <= rtol, f"max relative error {err:.3g} > {rtol}"


def _masks(model: OfficialModel, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    if model.generator.hpf is None:
        return None
    assert model.fan is not None, "a high-pass fixture needs its face-landmark network (fan entry or wing.ckpt)"
    return model.fan.masks(x)


def test_inferred_architecture(case: Path, io: dict[str, Any]) -> None:
    model = _load(case, "000000_nets_ema.ckpt")
    for key in ("img_size", "num_domains", "latent_dim", "style_dim", "max_conv_dim", "w_hpf"):
        if key in io["config"]:
            assert getattr(model.config, key) == io["config"][key], key


def test_ema_network_outputs(case: Path, io: dict[str, Any]) -> None:
    m = _load(case, "000000_nets_ema.ckpt")
    with torch.no_grad():
        masks = _masks(m, io["x"])
        if masks is not None and "masks" in io:
            _close(masks[0], io["masks"][0])
            _close(masks[1], io["masks"][1])
        _close(m.mapping_network(io["z_trg"], io["y_trg"]), io["s_latent"])
        _close(m.style_encoder(io["x_ref"], io["y_trg"]), io["s_ref"])
        _close(m.style_encoder(io["x"], io["y_org"]), io["s_src"])
        _close(m.generator(io["x"], io["s_latent"], masks=masks), io["fake_latent"])
        _close(m.generator(io["x"], io["s_ref"], masks=masks), io["fake_ref"])


def test_discriminator_output(case: Path, io: dict[str, Any]) -> None:
    with torch.no_grad():
        _close(_load(case, "000000_nets.ckpt").discriminator(io["x"], io["y_org"]), io["d_real"])


def _check_stats(stats: dict[str, torch.Tensor], want: dict[str, float]) -> None:
    for key, value in want.items():
        assert stats[key].item() == pytest.approx(value, rel=RTOL, abs=1e-9), key


def test_losses_of_one_iteration(case: Path, io: dict[str, Any]) -> None:
    """Each objective from the same (training) nets, as the fixture computed them (no update in between)."""
    model = _load(case, "000000_nets.ckpt")
    nets, cfg = model.nets, _train_config(io)
    x, y_org, y_trg = io["x"], io["y_org"], io["y_trg"]
    masks = _masks(model, x)
    extra = {"masks": masks, "mask_fn": model.fan.masks if masks is not None else None}
    lam = cfg.lambda_ds
    losses = io["losses"]
    _check_stats(d_loss(nets, x, y_org, y_trg, cfg, z_trg=io["z_trg"], masks=masks)[1], losses["d_latent"])
    _check_stats(d_loss(nets, x, y_org, y_trg, cfg, x_ref=io["x_ref"], masks=masks)[1], losses["d_ref"])
    stats = g_loss(nets, x, y_org, y_trg, cfg, lam, z_trgs=(io["z_trg"], io["z_trg2"]), **extra)[1]
    _check_stats(stats, losses["g_latent"])
    stats = g_loss(nets, x, y_org, y_trg, cfg, lam, x_refs=(io["x_ref"], io["x_ref2"]), **extra)[1]
    _check_stats(stats, losses["g_ref"])


@pytest.mark.slow
def test_parameters_after_one_training_iteration(case: Path, io: dict[str, Any]) -> None:
    """Four updates with fresh Adam optimisers, then EMA from the fixture's EMA nets: parameters to 1e-6."""
    model = _load(case, "000000_nets.ckpt")
    nets, nets_ema = model.nets, _load(case, "000000_nets_ema.ckpt").nets
    cfg = _train_config(io)
    state = TrainState(Config(model.config, cfg), nets, nets_ema, make_optimizers(nets, cfg), fan=model.fan)
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
