"""One training iteration: the four updates in order, what each steps, EMA, determinism, high-pass path."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import Tensor, nn

from stargan_v2.config import Config, apply_overrides
from stargan_v2.losses import d_loss, ds_weight, g_loss
from stargan_v2.model import Nets
from stargan_v2.train import (
    RunSettings,
    StepInputs,
    TrainState,
    apply_settings,
    ema_update,
    init_train_state,
    make_optimizers,
    match_optimizer_layout,
    train_step,
)

from .conftest import make_inputs


def _params(nets: Nets) -> dict[str, Tensor]:
    return {f"{n}.{k}": v.detach().clone() for n, m in nets.items() for k, v in m.state_dict().items()}


def _reference_step(state: TrainState, i: StepInputs) -> None:
    """The iteration written plainly, as the paper's Algorithm: every optimiser zeroed before every backward,
    no parameter freezing. ``train_step`` must give the same parameters."""
    cfg, nets, opt = state.config.train, state.nets, state.optimizers
    lam = ds_weight(state.step, cfg)

    def update(loss: Tensor, names: list[str]) -> None:
        for o in opt.values():
            o.zero_grad()
        loss.backward()
        for n in names:
            opt[n].step()

    update(d_loss(nets, i.x_src, i.y_src, i.y_trg, cfg, z_trg=i.z_trg)[0], ["discriminator"])
    update(d_loss(nets, i.x_src, i.y_src, i.y_trg, cfg, x_ref=i.x_ref)[0], ["discriminator"])
    loss = g_loss(nets, i.x_src, i.y_src, i.y_trg, cfg, lam, z_trgs=(i.z_trg, i.z_trg2))[0]
    update(loss, ["generator", "mapping_network", "style_encoder"])
    loss = g_loss(nets, i.x_src, i.y_src, i.y_trg, cfg, lam, x_refs=(i.x_ref, i.x_ref2))[0]
    update(loss, ["generator", "mapping_network", "style_encoder"] if cfg.ref_step_updates_all else ["generator"])
    ema_update(nets, state.nets_ema, cfg.ema_beta)
    state.step += 1


def _twin_states(config: Config) -> tuple[TrainState, TrainState]:
    torch.manual_seed(0)
    a = init_train_state(config)
    b = copy.deepcopy(a)
    b.optimizers = make_optimizers(b.nets, config.train)
    return a, b


@pytest.mark.parametrize("updates_all", [False, True])
def test_train_step_equals_the_plain_algorithm(tiny_config: Config, updates_all: bool) -> None:
    config = apply_overrides(tiny_config, [f"ref_step_updates_all={updates_all}"])
    a, b = _twin_states(config)
    for seed in range(3):
        inputs = make_inputs(config, seed=seed)
        train_step(a, inputs)
        _reference_step(b, inputs)
    assert a.step == b.step == 3
    for got, want in ((_params(a.nets), _params(b.nets)), (_params(a.nets_ema), _params(b.nets_ema))):
        for key in want:
            assert torch.allclose(got[key], want[key], rtol=0, atol=1e-6), key


def test_reference_step_leaves_f_and_e_alone(tiny_config: Config, tiny_inputs: StepInputs) -> None:
    """Compared with the variant whose reference-guided update also steps F and E, the default's E differs
    (it was not stepped there) and F is the same (F plays no part in that update, so it has no gradient)."""
    a, b2 = _twin_states(tiny_config)
    train_step(a, tiny_inputs)
    b2.config = apply_overrides(tiny_config, ["ref_step_updates_all=true"])
    train_step(b2, tiny_inputs)
    mapping_a, mapping_b = a.nets.mapping_network.state_dict(), b2.nets.mapping_network.state_dict()
    assert all(torch.equal(mapping_a[k], mapping_b[k]) for k in mapping_a)
    enc_a, enc_b = a.nets.style_encoder.state_dict(), b2.nets.style_encoder.state_dict()
    assert any(not torch.equal(enc_a[k], enc_b[k]) for k in enc_a)


def test_every_network_moves_and_step_counts(tiny_config: Config, tiny_inputs: StepInputs) -> None:
    torch.manual_seed(0)
    state = init_train_state(tiny_config)
    before, before_ema = _params(state.nets), _params(state.nets_ema)
    stats = train_step(state, tiny_inputs)
    after, after_ema = _params(state.nets), _params(state.nets_ema)
    for name in ("generator", "mapping_network", "style_encoder", "discriminator"):
        assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith(name)), name
    assert any(not torch.equal(before_ema[k], after_ema[k]) for k in before_ema)
    assert state.step == 1
    expected = {f"D/{g}_{k}" for g in ("latent", "ref") for k in ("real", "fake", "reg", "total", "grad_norm")}
    expected |= {f"G/{g}_{k}" for g in ("latent", "ref") for k in ("adv", "sty", "ds", "cyc", "total", "grad_norm")}
    assert set(stats) == expected | {"G/lambda_ds"}
    assert all(torch.isfinite(v) for v in stats.values())
    assert stats["G/lambda_ds"].item() == tiny_config.train.lambda_ds
    # No gradient bookkeeping is left switched off after the update.
    assert all(p.requires_grad for _, m in state.nets.items() for p in m.parameters())


def test_ema_is_a_running_average(tiny_config: Config) -> None:
    torch.manual_seed(0)
    state = init_train_state(tiny_config)
    ema_before = _params(state.nets_ema)
    with torch.no_grad():
        for p in state.nets.generator.parameters():
            p.add_(1.0)
    ema_update(state.nets, state.nets_ema, beta=0.9)
    now = _params(state.nets)
    for key, old in ema_before.items():
        if key.startswith("generator.") and "hpf" not in key:
            assert torch.allclose(_params(state.nets_ema)[key], 0.9 * old + 0.1 * now[key], atol=1e-6), key


def test_same_inputs_same_update(tiny_config: Config, tiny_inputs: StepInputs) -> None:
    a, b = _twin_states(tiny_config)
    sa, sb = train_step(a, tiny_inputs), train_step(b, tiny_inputs)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    pa, pb = _params(a.nets), _params(b.nets)
    assert all(torch.equal(pa[k], pb[k]) for k in pa)


def test_diversity_weight_follows_the_step(tiny_config: Config, tiny_inputs: StepInputs) -> None:
    torch.manual_seed(0)
    state = init_train_state(tiny_config)
    state.step = tiny_config.train.ds_iter // 2
    stats = train_step(state, tiny_inputs)
    assert stats["G/lambda_ds"].item() == pytest.approx(tiny_config.train.lambda_ds / 2)
    assert state.config == tiny_config


class _BlobFAN(nn.Module):
    """Stands in for the face-landmark network: fixed masks, and a record of the images it was shown."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    @torch.no_grad()
    def masks(self, x: Tensor) -> tuple[Tensor, Tensor]:
        self.calls += 1
        coarse = torch.zeros(x.shape[0], 1, 256, 256)
        coarse[:, :, 64:192, 64:192] = 1.0
        return coarse, coarse * 0.5


def test_high_pass_training_step_uses_masks(tiny_config: Config) -> None:
    config = apply_overrides(tiny_config, ["img_size=64", "w_hpf=1"])
    with pytest.raises(ValueError, match="face-landmark"):
        init_train_state(config)
    fan = _BlobFAN()
    torch.manual_seed(0)
    state = init_train_state(config, fan=fan)
    stats = train_step(state, make_inputs(config, batch=2))
    # Once for the source, once per generator update for the cycle term.
    assert fan.calls == 3
    assert all(torch.isfinite(v) for v in stats.values())
    state.fan = None
    with pytest.raises(ValueError, match="face-landmark"):
        train_step(state, make_inputs(config, batch=2))


def test_resampling_follows_the_setting(tiny_config: Config, tiny_inputs: StepInputs) -> None:
    """``auto`` folds resampling into the convolutions, ``separate`` keeps the authors' order; applying the
    settings sets it once, and the steps keep it."""
    from stargan_v2.model import AdainResBlock, ResBlock

    state = init_train_state(tiny_config)
    assert RunSettings().fused_resampling and RunSettings(resampling="auto").fused_resampling
    assert not RunSettings(resampling="separate").fused_resampling
    blocks = [m for _, net in state.nets.items() for m in net.modules() if isinstance(m, (ResBlock, AdainResBlock))]
    for resampling, fused in (("fused", True), ("separate", False), ("auto", True)):
        settings = RunSettings(resampling=resampling)
        apply_settings(state, settings)
        train_step(state, tiny_inputs, settings)
        train_step(state, tiny_inputs, settings)
        assert blocks and all(m.fused_resampling == fused for m in blocks)
    with pytest.raises(ValueError, match="auto, fused, separate"):
        RunSettings(resampling="fast")
    with pytest.raises(ValueError, match="fp32 or bf16"):
        RunSettings(precision="auto")


def test_channels_last_leaves_the_generator_nchw(tiny_config: Config, tiny_inputs: StepInputs) -> None:
    """channels_last puts D, E and F (training and EMA copies) in NHWC and keeps G, whose instance norms compute
    in NCHW, in NCHW; a step then runs and keeps both layouts."""
    state = init_train_state(tiny_config)
    settings = RunSettings(channels_last=True)
    apply_settings(state, settings)
    train_step(state, tiny_inputs, settings)
    checked = []
    for nets in (state.nets, state.nets_ema):
        for name, net in nets.items():
            # F is all linear layers; a 1x1 kernel is contiguous in both layouts.
            weights = [p for p in net.parameters() if p.dim() == 4 and p.shape[2:] != (1, 1)]
            nhwc = name != "generator"
            for p in weights:
                assert p.is_contiguous(memory_format=torch.channels_last) == nhwc, name
                assert p.is_contiguous() != nhwc, name
            checked += [name] if weights else []
    assert sorted(checked) == ["discriminator", "generator", "generator", "style_encoder", "style_encoder"]


@pytest.mark.parametrize("fused", [True, False])
def test_adam_moments_loaded_contiguous_follow_a_channels_last_parameter(fused: bool) -> None:
    """A checkpoint's moments are contiguous; once matched to the NHWC parameter, the next Adam step is the one
    an uninterrupted optimiser takes (fused Adam on the CPU would otherwise mix up elements)."""
    g = torch.Generator().manual_seed(0)
    w, g1, g2 = (torch.randn(8, 4, 3, 3, generator=g) for _ in range(3))
    nhwc = torch.channels_last

    def two_steps(reload: bool) -> torch.Tensor:
        p = torch.nn.Parameter(w.contiguous(memory_format=nhwc))
        opts = {"o": torch.optim.Adam([p], lr=1e-2, fused=fused)}
        p.grad = g1.contiguous(memory_format=nhwc)
        opts["o"].step()
        if reload:
            saved = opts["o"].state_dict()
            saved["state"][0] = {k: v.contiguous() for k, v in saved["state"][0].items()}
            opts = {"o": torch.optim.Adam([p], lr=1e-2, fused=fused)}
            opts["o"].load_state_dict(saved)
            match_optimizer_layout(opts)
            assert opts["o"].state[p]["exp_avg"].stride() == p.stride()
        p.grad = g2.contiguous(memory_format=nhwc)
        opts["o"].step()
        return p.detach().clone()

    assert torch.equal(two_steps(reload=False), two_steps(reload=True))
