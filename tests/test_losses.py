"""The objective's pieces: adversarial loss, R1, the diversity schedule, and what each loss differentiates."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from stargan_v2.config import Config, ModelConfig, TrainConfig
from stargan_v2.losses import adv_loss, d_loss, ds_weight, g_loss, r1_penalty, wrong_domain_loss
from stargan_v2.model import build_nets
from stargan_v2.train import StepInputs


def test_adv_loss_is_binary_cross_entropy() -> None:
    assert adv_loss(torch.zeros(4), 1.0).item() == pytest.approx(math.log(2))
    assert adv_loss(torch.full((3,), 2.0), 0.0).item() == pytest.approx(math.log(1 + math.e**2))
    assert adv_loss(torch.full((3,), 2.0), 1.0).item() == pytest.approx(math.log(1 + math.e**-2))


def test_r1_is_zero_for_a_discriminator_that_ignores_its_input() -> None:
    x = torch.randn(2, 3, 4, 4, requires_grad=True)
    w = torch.ones(2, requires_grad=True)
    assert r1_penalty(w * 3.0, x).item() == 0.0


def test_r1_of_a_linear_discriminator() -> None:
    """D(x) = <w, x> has gradient w everywhere, so R1 = 0.5 * ||w||^2 (per sample, averaged)."""
    w = torch.randn(3, 4, 4, requires_grad=True)
    x = torch.randn(5, 3, 4, 4, requires_grad=True)
    d_out = (x * w).flatten(1).sum(1)
    reg = r1_penalty(d_out, x)
    assert reg.item() == pytest.approx(0.5 * w.pow(2).sum().item(), rel=1e-5)
    # It stays differentiable (create_graph), so that the weights w get its gradient.
    assert reg.requires_grad


def test_ds_weight_decays_linearly_to_zero() -> None:
    cfg = TrainConfig(lambda_ds=2.0, ds_iter=100)
    assert ds_weight(0, cfg) == 2.0
    assert ds_weight(25, cfg) == pytest.approx(1.5)
    assert ds_weight(100, cfg) == 0.0
    assert ds_weight(10_000, cfg) == 0.0
    assert cfg.lambda_ds == 2.0  # never mutated


def test_d_loss_trains_only_d_and_leaves_inputs_alone(tiny_config: Config, tiny_inputs: StepInputs) -> None:
    nets = build_nets(tiny_config.model)
    i = tiny_inputs
    loss, stats = d_loss(nets, i.x_src, i.y_src, i.y_trg, tiny_config.train, z_trg=i.z_trg)
    loss.backward()
    assert not i.x_src.requires_grad
    assert all(p.grad is not None for p in nets.discriminator.parameters())
    for name in ("generator", "mapping_network", "style_encoder"):
        assert all(p.grad is None for p in getattr(nets, name).parameters()), name
    cfg = tiny_config.train
    expected = stats["real"] + stats["fake"] + cfg.lambda_reg * stats["reg"]
    assert torch.allclose(stats["total"], expected)
    assert all(not v.requires_grad for v in stats.values())
    with pytest.raises(ValueError, match="exactly one"):
        d_loss(nets, i.x_src, i.y_src, i.y_trg, cfg, z_trg=i.z_trg, x_ref=i.x_ref)


def test_g_loss_combines_its_terms(tiny_config: Config, tiny_inputs: StepInputs) -> None:
    nets = build_nets(tiny_config.model)
    i, cfg = tiny_inputs, tiny_config.train
    _, stats = g_loss(nets, i.x_src, i.y_src, i.y_trg, cfg, 0.7, x_refs=(i.x_ref, i.x_ref2))
    expected = stats["adv"] + cfg.lambda_sty * stats["sty"] - 0.7 * stats["ds"] + cfg.lambda_cyc * stats["cyc"]
    assert torch.allclose(stats["total"], expected)


def test_diversity_term_pushes_only_through_the_first_image(tiny_config: Config, tiny_inputs: StepInputs) -> None:
    """With every other weight zero, the loss is -L_ds and the second latent gets no gradient."""
    nets = build_nets(tiny_config.model)
    cfg = TrainConfig(lambda_sty=0.0, lambda_cyc=0.0)
    i = tiny_inputs
    z1 = i.z_trg.clone().requires_grad_(True)
    z2 = i.z_trg2.clone().requires_grad_(True)

    class NoCritic(nn.Module):
        def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return torch.zeros(x.shape[0]) + 0.0 * x.sum()

    nets.discriminator = NoCritic()  # type: ignore[assignment]
    loss, stats = g_loss(nets, i.x_src, i.y_src, i.y_trg, cfg, 1.0, z_trgs=(z1, z2))
    assert torch.allclose(loss, stats["adv"] - stats["ds"])
    loss.backward()
    assert z2.grad is None or torch.count_nonzero(z2.grad) == 0
    assert torch.count_nonzero(z1.grad) > 0


def test_losses_name_a_missing_discriminator(tiny_config: Config, tiny_inputs: StepInputs) -> None:
    """An inference-only set (no D) is refused with a ValueError, not 'NoneType is not callable'."""
    nets = build_nets(tiny_config.model, discriminator=False)
    i = tiny_inputs
    with pytest.raises(ValueError, match="no discriminator"):
        d_loss(nets, i.x_src, i.y_src, i.y_trg, tiny_config.train, z_trg=i.z_trg)
    with pytest.raises(ValueError, match="no discriminator"):
        g_loss(nets, i.x_src, i.y_src, i.y_trg, tiny_config.train, 1.0, z_trgs=(i.z_trg, i.z_trg2))


def test_high_pass_g_loss_needs_the_mask_function(tiny_inputs: StepInputs) -> None:
    cfg = ModelConfig(img_size=32, dim_in=8, max_conv_dim=16, hidden_dim=16, latent_dim=8, w_hpf=1.0)
    nets = build_nets(cfg)
    i = tiny_inputs
    z = torch.randn(4, 8)
    with pytest.raises(ValueError, match="mask_fn"):
        g_loss(nets, i.x_src, i.y_src, i.y_trg, TrainConfig(), 1.0, z_trgs=(z, z))


def test_wrong_domain_loss_scores_only_the_other_domains_heads() -> None:
    logits = torch.tensor([[3.0, -1.0, 0.5], [0.0, 2.0, -2.0]])
    y = torch.tensor([0, 1])
    off = torch.tensor([-1.0, 0.5, 0.0, -2.0])  # every logit but each sample's own domain's
    expected = F.binary_cross_entropy_with_logits(off, torch.zeros(4))
    assert torch.allclose(wrong_domain_loss(logits, y), expected)
    changed = logits.clone()
    changed[0, 0], changed[1, 1] = -9.0, 9.0  # the own heads do not count
    assert torch.allclose(wrong_domain_loss(changed, y), expected)


def test_d_loss_adds_the_wrong_domain_term_only_when_weighted(tiny_config: Config) -> None:
    torch.manual_seed(0)
    nets = build_nets(tiny_config.model)
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    y_org, y_trg, z = torch.tensor([0, 1, 0, 1]), torch.tensor([1, 0, 0, 1]), torch.randn(4, 8)
    paper, stats = d_loss(nets, x, y_org, y_trg, tiny_config.train, z_trg=z)
    assert "wrong_domain" not in stats
    cfg = dataclasses.replace(tiny_config.train, lambda_wrong_domain=0.5)
    torch.manual_seed(1)
    with_term, stats = d_loss(nets, x, y_org, y_trg, cfg, z_trg=z)
    expected = wrong_domain_loss(nets.discriminator(x, None), y_org)
    assert torch.allclose(stats["wrong_domain"], expected)
    assert torch.allclose(with_term, paper + 0.5 * expected, atol=1e-6)
