"""``StarGANv2``: translate images with a trained model in a few lines (Choi et al., CVPR 2020, Section 2).

The class wraps the EMA networks of a checkpoint (ours or the authors'), knows its domains by name, and does
the chores around the networks: it reads PIL images, file paths and tensors of any size (the centred square
is resized to the model, and the result can be pasted back at the original size), draws latents from seeds,
applies the truncation trick, batches the work and moves it to the device.

Example (``model.img_size`` is 256 for the released models)::

    >>> from stargan_v2 import StarGANv2
    >>> model = StarGANv2.from_checkpoint("afhq.safetensors", device="cpu")
    >>> model.domains
    ('cat', 'dog', 'wild')
    >>> dog = model.translate("cat.jpg", domain="dog", seed=0)        # latent-guided: one PIL image
    >>> dog.size == (model.img_size, model.img_size)
    True
    >>> dogs = model.translate("cat.jpg", domain="dog", seed=0, n=4)  # four styles, seeds 0..3
    >>> len(dogs)
    4
    >>> like_ref = model.translate(["cat.jpg", "wild.jpg"], reference="refs/dog/rex.jpg")  # domain from folder
    >>> [im.size for im in like_ref] == [(model.img_size, model.img_size)] * 2
    True
    >>> full = model.translate("wide.jpg", domain="wild", seed=1, paste_back=True)  # keeps the photo's size
    >>> full.size
    (96, 64)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, overload

import torch
from PIL import Image
from torch import Tensor

from . import synthesis
from .batching import ImageInputs, Images, gather_images, spread, squeeze_grid, squeeze_tensor, stack_grid
from .batching import translate_pairs as _translate_pairs
from .checkpoint import CheckpointError, load_for_synthesis, missing_fan_error
from .config import ModelConfig
from .domains import (
    RELEASED_DOMAINS,
    Domain,
    DomainNames,
    checkpoint_domains,
    default_domains,
    find_references,
)
from .fan import FAN
from .images import ImageLike, PathLike, list_images, read_image, to_pil
from .model import Nets
from .styles import Seeds, StyleCodes, StyleRequest, parse_seeds
from .synthesis import fit_square

#: What :meth:`StarGANv2.translate` returns with ``output="pil"``: one picture for one image and one style, a
#: list over images or over styles, or a list (per image) of lists (per style).
PilResult = Image.Image | list[Image.Image] | list[list[Image.Image]]

__all__ = [
    "RELEASED_DOMAINS",
    "Domain",
    "ImageLike",
    "Images",
    "PathLike",
    "PilResult",
    "StarGANv2",
    "checkpoint_domains",
    "default_domains",
    "find_references",
    "list_images",
    "parse_seeds",
    "read_image",
    "spread",
]


class StarGANv2:
    """A trained StarGAN v2 model, ready to translate images (EMA networks in eval mode, no gradients).

    Build it with :meth:`from_checkpoint` (any checkpoint) or directly from networks. ``domains`` names the
    domain labels ``0..K-1``; wherever a domain is asked for, its name or its index works.

    Inputs to :meth:`translate` are PIL images, image file paths, or tensors: ``(3, H, W)`` / ``(B, 3, H, W)``,
    uint8 in [0, 255] or float in [-1, 1] (the networks' range). Any size works: the centred square is resized
    to the model's ``img_size``. Outputs are PIL images, or float tensors in [-1, 1] with ``output="tensor"``.

    The work is shared out: ``stargan_v2.domains`` resolves domain names, ``stargan_v2.styles`` builds the
    style codes, ``stargan_v2.batching`` gathers the inputs and batches the (image, style) pairs, and
    ``stargan_v2.images`` reads and converts the pictures.
    """

    def __init__(
        self,
        nets: Nets,
        config: ModelConfig,
        domains: Sequence[str] | None = None,
        fan: FAN | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        self.device = torch.device(device) if device is not None else _default_device()
        self.nets = nets.to(self.device).eval()
        self.config = config
        self.fan = fan.to(self.device).eval() if fan is not None else None
        self._names = DomainNames(domains if domains is not None else default_domains(config), config.num_domains)
        self.domains: tuple[str, ...] = self._names.names
        self._styles = StyleCodes(self.nets, config, self._names, self.device)

    @classmethod
    def from_checkpoint(
        cls,
        path: PathLike,
        device: torch.device | str | None = None,
        fan_path: PathLike | None = None,
        domains: Sequence[str] | None = None,
    ) -> StarGANv2:
        """Load any checkpoint: a run directory (its newest EMA file), our EMA or training-state files, or the
        authors' ``*_nets_ema.ckpt``.

        ``device`` defaults to CUDA when available. ``fan_path`` is the authors' ``wing.ckpt``, which
        high-pass (CelebA-HQ) models need for their face masks. Domain names come from ``domains`` if given,
        else from the checkpoint (the ``domains`` metadata of our files), else from :func:`default_domains`.
        """
        device = torch.device(device) if device is not None else _default_device()
        loaded = load_for_synthesis(path, fan_path=fan_path, device=device)
        if loaded.config.uses_hpf and loaded.fan is None:  # load_for_synthesis refuses this already
            raise missing_fan_error(loaded.source, loaded.config)
        names = checkpoint_domains(loaded.source, loaded.config, domains)
        return cls(loaded.nets, loaded.config, names, loaded.fan, device)

    # ------------------------------------------------------------------------------------------------------
    # Properties and domains
    # ------------------------------------------------------------------------------------------------------

    @property
    def img_size(self) -> int:
        """The side of the square images the networks take and make."""
        return self.config.img_size

    @property
    def num_domains(self) -> int:
        """The number of domains."""
        return self.config.num_domains

    def domain_index(self, domain: Domain) -> int:
        """The label of a domain given by name (exact, else case-insensitive) or by label (``1`` or ``"1"``);
        a ValueError lists the valid names otherwise."""
        return self._names.index(domain)

    def __repr__(self) -> str:
        c = self.config
        return (
            f"StarGANv2(img_size={c.img_size}, domains={list(self.domains)}, w_hpf={c.w_hpf}, device='{self.device}')"
        )

    # ------------------------------------------------------------------------------------------------------
    # Style codes
    # ------------------------------------------------------------------------------------------------------

    def mean_style(self, domain: Domain) -> Tensor:
        """The domain's average latent-guided style over 10,000 fixed latents, ``(1, style_dim)`` (cached)."""
        return self._styles.mean(domain)

    def style_from_latent(
        self, domain: Domain, seed: Seeds = None, n: int = 1, psi: float = 1.0, z: Tensor | None = None
    ) -> Tensor:
        """Latent-guided styles ``F_y(z)``, ``(m, style_dim)`` on the model's device.

        The latents are ``z`` (``(m, latent_dim)``) if given; else one per seed, where an int ``seed`` stands
        for the seeds ``seed, seed + 1, ..., seed + n - 1`` and ``None`` for a random first seed. Each seed's
        latent is fixed (see ``synthesis.latents_from_seeds``). ``psi < 1`` pulls the styles towards the
        domain's mean style (the truncation trick): ``s = mean + psi * (s - mean)``.
        """
        return self._styles.from_latent(domain, seed, n, psi, z)

    def style_from_reference(
        self, reference: Images, domain: Domain | Sequence[Domain] | None = None, batch_size: int = 16
    ) -> Tensor:
        """Reference-guided styles ``E_y(x_ref)``, ``(m, style_dim)`` on the model's device.

        The style encoder needs each reference's domain ``y``: ``domain`` (one for all, or one per reference),
        or else the name of the folder a reference file lies in (``refs/dog/rex.jpg`` is a dog).
        """
        return self._styles.from_reference(reference, domain, batch_size)

    # ------------------------------------------------------------------------------------------------------
    # Translation
    # ------------------------------------------------------------------------------------------------------

    def prepare(self, images: Images) -> Tensor:
        """Inputs as the networks take them: ``(N, 3, img_size, img_size)`` float in [-1, 1] on the CPU."""
        return self._fit(gather_images(images, "images"))

    def _fit(self, inputs: ImageInputs) -> Tensor:
        return torch.stack([fit_square(t, self.img_size) for t in inputs.tensors])

    @torch.no_grad()
    def masks(self, x: Tensor) -> tuple[Tensor, Tensor] | None:
        """The high-pass masks of prepared images ``x`` (from the FAN), or ``None`` for models without the path."""
        if not self.config.uses_hpf:
            return None
        if self.fan is None:
            raise CheckpointError(
                "this is a high-pass model: its generator needs the face masks of wing.ckpt; load it with "
                "fan_path='PATH/wing.ckpt' (--wing on the command line) to translate"
            )
        return self.fan.masks(x)

    @torch.no_grad()
    def generate(self, x: Tensor, s: Tensor, masks: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """``G(x, s)`` for prepared images ``x`` ``(B, 3, S, S)`` and styles ``s`` ``(B, style_dim)`` or one
        ``(style_dim,)`` for all; masks are computed when the model needs them and none are given."""
        x = x.to(self.device)
        s = s.to(self.device).expand(x.shape[0], -1) if s.dim() == 1 else s.to(self.device)
        if masks is None:
            masks = self.masks(x)
        return self.nets.generator(x, s, masks=masks)

    @overload
    def translate(
        self,
        images: Images,
        domain: Domain | None = None,
        *,
        reference: Images | None = None,
        seed: Seeds = None,
        n: int = 1,
        psi: float = 1.0,
        z: Tensor | None = None,
        style: Tensor | None = None,
        paste_back: bool = False,
        output: Literal["pil"] = "pil",
        batch_size: int = 16,
        progress: bool = False,
    ) -> PilResult: ...

    @overload
    def translate(
        self,
        images: Images,
        domain: Domain | None = None,
        *,
        reference: Images | None = None,
        seed: Seeds = None,
        n: int = 1,
        psi: float = 1.0,
        z: Tensor | None = None,
        style: Tensor | None = None,
        paste_back: bool = False,
        output: Literal["tensor"],
        batch_size: int = 16,
        progress: bool = False,
    ) -> Tensor: ...

    def translate(
        self,
        images: Images,
        domain: Domain | None = None,
        *,
        reference: Images | None = None,
        seed: Seeds = None,
        n: int = 1,
        psi: float = 1.0,
        z: Tensor | None = None,
        style: Tensor | None = None,
        paste_back: bool = False,
        output: Literal["pil", "tensor"] = "pil",
        batch_size: int = 16,
        progress: bool = False,
    ) -> PilResult | Tensor:
        """Translate ``images`` with latent-guided, reference-guided or given styles.

        - latent-guided: ``domain`` names the target; ``seed`` (an int for ``n`` seeds from it, or a list of
          seeds), or ``z`` ``(m, latent_dim)``, picks the styles; ``psi`` truncates them (1 = none).
        - reference-guided: ``reference`` is one image or several; ``domain`` is then the references' domain
          (by default the name of the folder each reference file is in).
        - ``style``: style codes ``(style_dim,)`` or ``(m, style_dim)`` used as they are.

        The result follows the inputs' shape: one image for one image and one style; a list over images, or
        over styles (several seeds, ``n > 1``, several references); a list (per image) of lists (per style)
        for several of both. ``output="tensor"`` gives float tensors in [-1, 1] instead, stacked the same way
        (``(3, H, W)``, ``(N, ...)``, ``(m, ...)``, ``(N, m, ...)``). ``paste_back=True`` puts each result
        back into the centred square of its input, so it keeps the input's size and aspect. Work is done in
        batches of ``batch_size`` (image, style) pairs on the model's device. :meth:`translate_grid` always
        gives the list of lists.
        """
        if output not in ("pil", "tensor"):
            raise ValueError(f"output must be 'pil' or 'tensor', got {output!r}")
        request = StyleRequest(domain, reference, seed, n, psi, z, style)
        results, single_image, single_style = self._translate(images, request, paste_back, batch_size, progress)
        if output == "tensor":
            return squeeze_tensor(stack_grid(results), single_image, single_style)
        return squeeze_grid([[to_pil(r) for r in row] for row in results], single_image, single_style)

    def translate_grid(
        self,
        images: Images,
        domain: Domain | None = None,
        *,
        reference: Images | None = None,
        seed: Seeds = None,
        n: int = 1,
        psi: float = 1.0,
        z: Tensor | None = None,
        style: Tensor | None = None,
        paste_back: bool = False,
        batch_size: int = 16,
        progress: bool = False,
    ) -> list[list[Image.Image]]:
        """:meth:`translate` with the result always a list (per image) of lists (per style) of pictures, whether
        one image or one style was given or several."""
        request = StyleRequest(domain, reference, seed, n, psi, z, style)
        results, _, _ = self._translate(images, request, paste_back, batch_size, progress)
        return [[to_pil(r) for r in row] for row in results]

    @torch.no_grad()
    def _translate(
        self, images: Images, request: StyleRequest, paste_back: bool, batch_size: int, progress: bool
    ) -> tuple[list[list[Tensor]], bool, bool]:
        """The results per image, per style (float in [-1, 1] on the CPU), and whether one image and whether
        one style was given."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        inputs = gather_images(images, "images")
        styles, single_style = self._styles.for_request(request)
        fakes = _translate_pairs(self.generate, self._fit(inputs), styles, batch_size, progress)  # (N, m, 3, S, S)
        if paste_back:
            results = [[synthesis.paste_back(t, f) for f in row] for t, row in zip(inputs.tensors, fakes, strict=True)]
        else:
            results = [list(row) for row in fakes]
        return results, inputs.single, single_style


def _default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
