"""Synthesis with a trained model (Choi et al., CVPR 2020, Section 2 and Figures 1, 4, 5).

- latent-guided: ``G(x, F_y(z))`` for random ``z``, many outputs per source and target domain;
- reference-guided: ``G(x, E_y(x_ref))``: the output takes the reference's style and keeps the source's content;
- cycle: the translation, then back with the source's own style ``E_y(x)``.

The grid functions return an image grid as a ``(3, H, W)`` tensor in [-1, 1]; ``save_image`` writes one. All
of them run without gradients and leave the networks' modes alone (pass EMA nets in eval mode). Below them are
the pieces of translating single images: latents from seeds, the truncation trick, and fitting an image of
any size to the model (and pasting the result back); ``stargan_v2.api.StarGANv2`` puts them together.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torchvision.transforms.v2.functional as TF
from torch import Tensor, nn
from torchvision.utils import make_grid

from .images import save_image as save_image  # re-exported: writing grids is part of synthesis
from .images import to_pil as to_pil
from .model import Nets

MaskFn = Callable[[Tensor], tuple[Tensor, Tensor]]


def _masks(nets: Nets, mask_fn: MaskFn | None, x: Tensor) -> tuple[Tensor, Tensor] | None:
    if nets.generator.hpf is None:
        return None
    if mask_fn is None:
        raise ValueError(
            "this generator uses the high-pass path: pass mask_fn=fan.masks (the face-landmark network of the "
            "authors' wing.ckpt; --wing on the command line)"
        )
    return mask_fn(x)


def _grid(rows: list[Tensor], ncol: int) -> Tensor:
    """Stack equally long rows of images ``(ncol, 3, H, W)`` into one picture with a thin border."""
    images = torch.cat(rows, dim=0).float().cpu()
    return make_grid(images, nrow=ncol, padding=1, pad_value=1.0)


@torch.no_grad()
def latent_grid(
    nets: Nets,
    x_src: Tensor,
    num_domains: int,
    latent_dim: int,
    styles_per_domain: int = 3,
    seed: int = 0,
    mask_fn: MaskFn | None = None,
    psi: float = 1.0,
) -> Tensor:
    """Sources across the top; then, per target domain, ``styles_per_domain`` rows of latent-guided outputs.

    Each row uses one latent ``z`` for every source, so a row shows one style applied to different contents.
    ``psi < 1`` truncates styles towards the domain's mean style (estimated from 1000 latents).
    """
    device = x_src.device
    n = x_src.shape[0]
    g = torch.Generator().manual_seed(seed)
    masks = _masks(nets, mask_fn, x_src)
    rows = [x_src]
    for domain in range(num_domains):
        y = torch.full((n,), domain, dtype=torch.long, device=device)
        mean_style = None
        if psi != 1.0:
            z_many = torch.randn(1000, latent_dim, generator=g).to(device)
            y_many = torch.full((1000,), domain, dtype=torch.long, device=device)
            mean_style = nets.mapping_network(z_many, y_many).mean(0, keepdim=True)
        for _ in range(styles_per_domain):
            z = torch.randn(1, latent_dim, generator=g).to(device).expand(n, -1)
            s = nets.mapping_network(z, y)
            if mean_style is not None:
                s = torch.lerp(mean_style, s, psi)
            rows.append(nets.generator(x_src, s, masks=masks))
    return _grid(rows, n)


@torch.no_grad()
def reference_grid(nets: Nets, x_src: Tensor, x_ref: Tensor, y_ref: Tensor, mask_fn: MaskFn | None = None) -> Tensor:
    """The paper's reference-guided figure: sources across the top, one row per reference (shown on the left).

    Cell (i, j) is source ``j`` translated with the style of reference ``i`` (into reference ``i``'s domain).
    """
    n = x_src.shape[0]
    masks = _masks(nets, mask_fn, x_src)
    blank = torch.ones_like(x_src[:1])
    rows = [torch.cat([blank, x_src])]
    for i in range(x_ref.shape[0]):
        s = nets.style_encoder(x_ref[i : i + 1], y_ref[i : i + 1]).expand(n, -1)
        rows.append(torch.cat([x_ref[i : i + 1], nets.generator(x_src, s, masks=masks)]))
    return _grid(rows, n + 1)


@torch.no_grad()
def cycle_grid(
    nets: Nets,
    x_src: Tensor,
    y_src: Tensor,
    x_ref: Tensor,
    y_ref: Tensor,
    mask_fn: MaskFn | None = None,
) -> Tensor:
    """Three rows: the sources, their translations with the references' styles, and the way back."""
    masks = _masks(nets, mask_fn, x_src)
    fake = nets.generator(x_src, nets.style_encoder(x_ref, y_ref), masks=masks)
    back_masks = _masks(nets, mask_fn, fake)
    rec = nets.generator(fake, nets.style_encoder(x_src, y_src), masks=back_masks)
    return _grid([x_src, fake, rec], x_src.shape[0])


# ----------------------------------------------------------------------------------------------------------
# Translating single images: latents, truncation, fitting images of any size
# ----------------------------------------------------------------------------------------------------------

#: Latents averaged for a domain's mean style (the truncation trick's centre), as the authors do for psi.
MEAN_STYLE_LATENTS = 10_000


def latents_from_seeds(seeds: Sequence[int], latent_dim: int) -> Tensor:
    """One latent per seed, ``(len(seeds), latent_dim)``: row ``k`` is ``randn`` of a CPU generator seeded with
    ``seeds[k]``, so an output's latent depends on its seed alone (not on batch size, order or device)."""
    if not seeds:
        raise ValueError("at least one seed is needed")
    return torch.cat([torch.randn(1, latent_dim, generator=torch.Generator().manual_seed(int(k))) for k in seeds])


@torch.no_grad()
def mean_style(
    mapping_network: nn.Module, domain: int, latent_dim: int, num: int = MEAN_STYLE_LATENTS, seed: int = 0
) -> Tensor:
    """The average style ``mean_z F_y(z)`` of one domain over ``num`` random latents: ``(1, style_dim)``."""
    device = next(mapping_network.parameters()).device
    z = torch.randn(num, latent_dim, generator=torch.Generator().manual_seed(seed)).to(device)
    y = torch.full((num,), domain, dtype=torch.long, device=device)
    return mapping_network(z, y).mean(0, keepdim=True)


def truncate(s: Tensor, mean: Tensor, psi: float) -> Tensor:
    """The truncation trick, ``mean + psi * (s - mean)``: ``psi = 1`` keeps ``s``, ``psi = 0`` gives the mean."""
    return torch.lerp(mean.to(s), s, psi)


def square_box(height: int, width: int) -> tuple[int, int, int]:
    """``(top, left, side)`` of the centred square of a ``height x width`` image (the part the model sees)."""
    side = min(height, width)
    return (height - side) // 2, (width - side) // 2, side


def as_signed_unit(image: Tensor) -> Tensor:
    """An image as float32 in [-1, 1]: uint8 images are scaled from [0, 255], float ones are taken as they are."""
    if image.dtype == torch.uint8:
        return image.to(torch.float32) / 127.5 - 1
    return image.to(torch.float32)


def fit_square(image: Tensor, size: int) -> Tensor:
    """A ``(3, H, W)`` image (uint8, or float in [-1, 1]) -> its centred square resized to ``(3, size, size)``
    float in [-1, 1].

    Cropping (rather than stretching) keeps the content's proportions, which the model was trained on.
    """
    top, left, side = square_box(image.shape[1], image.shape[2])
    x = as_signed_unit(image[:, top : top + side, left : left + side])
    if side != size:
        x = TF.resize(x, [size, size], interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
    return x


def paste_back(original: Tensor, output: Tensor) -> Tensor:
    """Put a model-size ``output`` (``(3, S, S)`` in [-1, 1]) back into the centred square of ``original`` (the
    ``(3, H, W)`` image ``fit_square`` was given); returns the original-size image as float in [-1, 1]."""
    top, left, side = square_box(original.shape[1], original.shape[2])
    x = output.detach().float().cpu().clamp(-1, 1)
    if x.shape[-1] != side:
        x = TF.resize(x, [side, side], interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
    result = as_signed_unit(original.detach().cpu()).clone()
    result[:, top : top + side, left : left + side] = x
    return result
