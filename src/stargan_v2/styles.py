"""Style codes for translation (Choi et al., CVPR 2020, Section 2): latent-guided ``F_y(z)`` from seeds or
latents, with the truncation trick, and reference-guided ``E_y(x_ref)``; and which of them a call asks for."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from .batching import Images, gather_images, is_single
from .config import ModelConfig
from .domains import Domain, DomainNames
from .model import Nets
from .synthesis import MEAN_STYLE_LATENTS, fit_square, latents_from_seeds, mean_style, truncate

#: A seed argument: an int for ``n`` consecutive seeds from it, a list of seeds, or ``None`` for a random first seed.
Seeds = int | Sequence[int] | None


def seed_list(seed: Seeds, n: int) -> list[int]:
    """The seeds a ``seed`` argument stands for (see ``StyleCodes.from_latent``)."""
    if seed is None:
        seed = int(torch.randint(0, 2**31 - 1, ()).item())
    if isinstance(seed, int):
        return list(range(seed, seed + n))
    seeds = [int(k) for k in seed]
    if n != 1 and n != len(seeds):
        raise ValueError(f"n={n} does not match the {len(seeds)} seeds given")
    return seeds


def parse_seeds(text: str) -> list[int]:
    """Seeds from the command line: ``"7"``, ``"0-9"``, ``"0,3,5"`` or ``"0-4,10"``."""
    seeds: list[int] = []
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part[1:]:
                cut = part.index("-", 1)
                low, high = int(part[:cut]), int(part[cut + 1 :])
                if high < low:
                    raise ValueError
                seeds.extend(range(low, high + 1))
            else:
                seeds.append(int(part))
    except ValueError:
        raise ValueError(f"--seeds {text!r}: expected seeds like 7, 0-9, 0,3,5 or 0-4,10") from None
    return seeds


@dataclass(frozen=True)
class StyleRequest:
    """How a translate call asks for its styles: given codes, references, or a domain with seeds or latents."""

    domain: Domain | None = None
    reference: Images | None = None
    seed: Seeds = None
    n: int = 1
    psi: float = 1.0
    z: Tensor | None = None
    style: Tensor | None = None


class StyleCodes:
    """The style codes of a model: its mapping network and style encoder, on its device, with named domains."""

    def __init__(self, nets: Nets, config: ModelConfig, domains: DomainNames, device: torch.device) -> None:
        self.nets, self.config, self.domains, self.device = nets, config, domains, device
        self._mean_styles: dict[int, Tensor] = {}

    @torch.no_grad()
    def mean(self, domain: Domain) -> Tensor:
        """The domain's average latent-guided style over 10,000 fixed latents, ``(1, style_dim)`` (cached)."""
        k = self.domains.index(domain)
        if k not in self._mean_styles:
            self._mean_styles[k] = mean_style(self.nets.mapping_network, k, self.config.latent_dim, MEAN_STYLE_LATENTS)
        return self._mean_styles[k]

    @torch.no_grad()
    def from_latent(
        self, domain: Domain, seed: Seeds = None, n: int = 1, psi: float = 1.0, z: Tensor | None = None
    ) -> Tensor:
        """Latent-guided styles ``F_y(z)``, ``(m, style_dim)`` (see ``StarGANv2.style_from_latent``)."""
        k = self.domains.index(domain)
        if z is None:
            z = latents_from_seeds(seed_list(seed, n), self.config.latent_dim)
        z = z.reshape(-1, z.shape[-1]) if z.dim() == 1 else z
        if z.dim() != 2 or z.shape[1] != self.config.latent_dim:
            raise ValueError(f"z must have shape (m, {self.config.latent_dim}), got {tuple(z.shape)}")
        z = z.to(self.device, torch.float32)
        s = self.nets.mapping_network(z, torch.full((z.shape[0],), k, dtype=torch.long, device=self.device))
        return truncate(s, self.mean(k), psi) if psi != 1.0 else s

    @torch.no_grad()
    def from_reference(
        self, reference: Images, domain: Domain | Sequence[Domain] | None = None, batch_size: int = 16
    ) -> Tensor:
        """Reference-guided styles ``E_y(x_ref)``, ``(m, style_dim)`` (see ``StarGANv2.style_from_reference``)."""
        inputs = gather_images(reference, "reference")
        labels = self.domains.labels_of(inputs.paths, domain)
        x = torch.stack([fit_square(im, self.config.img_size) for im in inputs.tensors])
        styles = []
        for i in range(0, x.shape[0], batch_size):
            xb = x[i : i + batch_size].to(self.device)
            styles.append(self.nets.style_encoder(xb, labels[i : i + batch_size].to(self.device)))
        return torch.cat(styles)

    def for_request(self, request: StyleRequest) -> tuple[Tensor, bool]:
        """The style codes ``(m, style_dim)`` of a translate call, and whether one style (not a list) was asked."""
        r = request
        if r.n < 1:
            raise ValueError(f"n must be at least 1, got {r.n}")
        if r.style is not None:
            return self._given(r)
        if r.reference is not None:
            if r.seed is not None or r.z is not None or r.n != 1 or r.psi != 1.0:
                raise ValueError("seed, z, n and psi are for latent-guided translation; a reference gives the style")
            return self.from_reference(r.reference, r.domain), is_single(r.reference)
        if r.domain is None:
            raise ValueError(
                f"pass domain=... (one of {', '.join(self.domains.names)}) for latent-guided translation, "
                "or reference=... for reference-guided translation"
            )
        single = r.n == 1 and (r.z.dim() == 1 if r.z is not None else not isinstance(r.seed, Sequence))
        return self.from_latent(r.domain, r.seed, r.n, r.psi, r.z), single

    def _given(self, r: StyleRequest) -> tuple[Tensor, bool]:
        style = r.style
        assert style is not None
        if r.reference is not None or r.z is not None or r.seed is not None:
            raise ValueError("give style=, or reference=, or a domain with seed/z: not several")
        if style.shape[-1] != self.config.style_dim or style.dim() not in (1, 2):
            raise ValueError(f"style must have shape (m, {self.config.style_dim}), got {tuple(style.shape)}")
        return style.reshape(-1, style.shape[-1]).to(self.device), style.dim() == 1
