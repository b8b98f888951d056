"""The StarGAN v2 objective (Choi et al., CVPR 2020, Section 2.2, Eq. 1-5), as pure functions.

Each loss takes the networks, a batch and the loss settings and returns ``(loss, stats)``: ``loss`` is the
scalar to differentiate, ``stats`` holds detached scalar tensors of its components. Nothing here steps an
optimiser or calls ``.item()`` (a device synchronisation per call); ``stargan_v2.train`` does the updates.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from .config import TrainConfig
from .model import Nets, select_domain, unwrap

Masks = tuple[Tensor, Tensor]
#: Turns images into the (coarse, fine) face-mask pair of the high-pass path (``FAN.masks``).
MaskFn = Callable[[Tensor], Masks]
Stats = dict[str, Tensor]


def adv_loss(logits: Tensor, target: float) -> Tensor:
    """Non-saturating adversarial loss: binary cross-entropy of ``logits`` against a constant ``target``."""
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


def r1_penalty(d_out: Tensor, x_real: Tensor) -> Tensor:
    """Zero-centred gradient penalty on real images: ``0.5 * mean_batch(sum ||dD/dx||^2)``.

    ``create_graph=True`` keeps the penalty differentiable with respect to D's parameters.
    """
    (grad,) = torch.autograd.grad(d_out.sum(), x_real, create_graph=True, allow_unused=True)
    if grad is None:  # D ignores its input, so its gradient with respect to the input is zero.
        return d_out.new_zeros(())
    return 0.5 * grad.pow(2).flatten(1).sum(1).mean()


def ds_weight(step: int, cfg: TrainConfig) -> float:
    """Weight of the diversity term at ``step`` (0-based): linear decay from ``lambda_ds`` to 0 over ``ds_iter``.

    A function of the step, so resuming at any step gives the same value as an uninterrupted run.
    """
    return cfg.lambda_ds * max(0.0, 1.0 - step / cfg.ds_iter)


def _target_style(nets: Nets, y_trg: Tensor, z: Tensor | None, x_ref: Tensor | None) -> Tensor:
    """``s~ = F_y~(z)`` for latent guidance, ``s~ = E_y~(x_ref)`` for reference guidance."""
    if (z is None) == (x_ref is None):
        raise ValueError("give exactly one of a latent code (z) or a reference image (x_ref)")
    return nets.mapping_network(z, y_trg) if z is not None else nets.style_encoder(x_ref, y_trg)


def d_loss(
    nets: Nets,
    x_real: Tensor,
    y_org: Tensor,
    y_trg: Tensor,
    cfg: TrainConfig,
    *,
    z_trg: Tensor | None = None,
    x_ref: Tensor | None = None,
    x_fake: Tensor | None = None,
    masks: Masks | None = None,
) -> tuple[Tensor, Stats]:
    """Discriminator objective: real vs. one fake (latent- or reference-guided), plus R1 on the reals.

    The fake is made without gradients (this update trains D only), or passed in as ``x_fake`` when the caller
    already has it; it is detached either way.
    """
    discriminator = nets.require_discriminator()
    x_real = x_real.detach().requires_grad_(True)
    logits = discriminator(x_real, None)  # every domain's head: (B, K)
    out = select_domain(logits, y_org)
    loss_real = adv_loss(out, 1.0)
    loss_reg = r1_penalty(out, x_real)

    if x_fake is None:
        with torch.no_grad():
            s_trg = _target_style(nets, y_trg, z_trg, x_ref)
            x_fake = nets.generator(x_real, s_trg, masks=masks)
    loss_fake = adv_loss(discriminator(x_fake.detach(), y_trg), 0.0)

    loss = loss_real + loss_fake + cfg.lambda_reg * loss_reg
    stats = {"real": loss_real.detach(), "fake": loss_fake.detach(), "reg": loss_reg.detach()}
    if cfg.lambda_wrong_domain > 0:
        loss_wrong = wrong_domain_loss(logits, y_org)
        loss = loss + cfg.lambda_wrong_domain * loss_wrong
        stats["wrong_domain"] = loss_wrong.detach()
    stats["total"] = loss.detach()
    return loss, stats


def wrong_domain_loss(logits: Tensor, y: Tensor) -> Tensor:
    """Real images scored by the heads of the domains they are not from should be called fake: the mean
    binary cross-entropy towards 0 of ``logits (B, K)`` off each sample's own domain ``y (B,)``."""
    wrong = torch.ones_like(logits, dtype=torch.bool)
    wrong[torch.arange(logits.shape[0], device=logits.device), y] = False
    return adv_loss(logits[wrong], 0.0)


def g_loss(
    nets: Nets,
    x_real: Tensor,
    y_org: Tensor,
    y_trg: Tensor,
    cfg: TrainConfig,
    lambda_ds: float,
    *,
    z_trgs: tuple[Tensor, Tensor] | None = None,
    x_refs: tuple[Tensor, Tensor] | None = None,
    masks: Masks | None = None,
    mask_fn: MaskFn | None = None,
    fake: tuple[Tensor, Tensor] | None = None,
) -> tuple[Tensor, Stats]:
    """Generator objective ``L_adv + lambda_sty L_sty - lambda_ds L_ds + lambda_cyc L_cyc``.

    Styles come from two latents (``z_trgs``) or two references (``x_refs``) of the target domain; the second
    one only feeds the diversity term, whose second image is detached. With the high-pass path, ``masks``
    are the source's face masks and ``mask_fn`` recomputes masks of the fake for the cycle term.

    ``fake = (s_trg, x_fake)`` hands in the first style and translation, made with gradients by the caller
    from the first latent or reference with the current nets (``train_step`` re-uses the latent-guided fake it
    already made for the discriminator's update); the first latent or reference is then not used again.
    """
    if (z_trgs is None) == (x_refs is None):
        raise ValueError("give exactly one of two latent codes (z_trgs) or two reference images (x_refs)")
    discriminator = nets.require_discriminator()
    z1, z2 = z_trgs if z_trgs is not None else (None, None)
    r1, r2 = x_refs if x_refs is not None else (None, None)

    # Adversarial term: fool D into calling the translation real for the target domain.
    if fake is None:
        s_trg = _target_style(nets, y_trg, z1, r1)
        x_fake = nets.generator(x_real, s_trg, masks=masks)
    else:
        s_trg, x_fake = fake
    loss_adv = adv_loss(discriminator(x_fake, y_trg), 1.0)

    # Style reconstruction: the style encoder must recover the style the image was made with.
    s_pred = nets.style_encoder(x_fake, y_trg)
    loss_sty = (s_pred - s_trg).abs().mean()

    # Diversity sensitive term (maximised): two styles should give two different images.
    # The second image is a constant of this update, so it is made without building a graph.
    with torch.no_grad():
        s_trg2 = _target_style(nets, y_trg, z2, r2)
        x_fake2 = nets.generator(x_real, s_trg2, masks=masks)
    loss_ds = (x_fake - x_fake2).abs().mean()

    # Cycle consistency: translating back with the source's own style must return the source.
    if unwrap(nets.generator).hpf is not None:
        if mask_fn is None:
            raise ValueError("the high-pass path (w_hpf > 0) needs mask_fn (FAN.masks) for the cycle term")
        cycle_masks = mask_fn(x_fake)
    else:
        cycle_masks = None
    s_org = nets.style_encoder(x_real, y_org)
    x_rec = nets.generator(x_fake, s_org, masks=cycle_masks)
    loss_cyc = (x_rec - x_real).abs().mean()

    loss = loss_adv + cfg.lambda_sty * loss_sty - lambda_ds * loss_ds + cfg.lambda_cyc * loss_cyc
    stats = {
        "adv": loss_adv.detach(),
        "sty": loss_sty.detach(),
        "ds": loss_ds.detach(),
        "cyc": loss_cyc.detach(),
        "total": loss.detach(),
    }
    return loss, stats
