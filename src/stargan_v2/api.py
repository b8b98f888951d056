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

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image
from torch import Tensor, nn
from tqdm.auto import tqdm

from . import synthesis
from .checkpoint import (
    EMA_FORMAT,
    TRAINING_FORMAT,
    CheckpointError,
    checkpoint_kind,
    load_for_synthesis,
    missing_fan_error,
    read_domains,
)
from .config import ModelConfig, preset
from .data import _DECODE_ERRORS, IMAGE_EXTENSIONS, DataError, _find_images, decode_rgb
from .model import Nets
from .synthesis import MEAN_STYLE_LATENTS, fit_square, latents_from_seeds, mean_style, to_pil, truncate

PathLike = str | os.PathLike[str]
#: One image: a PIL image, a file path, or a ``(3, H, W)`` tensor (uint8, or float in [-1, 1]).
ImageLike = Image.Image | str | os.PathLike[str] | Tensor
#: One image, or several: a list of ``ImageLike`` or a ``(B, 3, H, W)`` tensor.
Images = ImageLike | Sequence[ImageLike]
Domain = str | int

#: The domain names of the released models, used when a checkpoint has the released architecture and no names.
RELEASED_DOMAINS: dict[str, tuple[str, ...]] = {"afhq": ("cat", "dog", "wild"), "celeba_hq": ("female", "male")}


def default_domains(config: ModelConfig) -> tuple[str, ...]:
    """Names for a model whose checkpoint stores none: the released models' (``cat, dog, wild`` for the AFHQ
    architecture, ``female, male`` for CelebA-HQ's), otherwise ``domain0, domain1, ...``."""
    for name, domains in RELEASED_DOMAINS.items():
        if config == preset(name).model:
            return domains
    return tuple(f"domain{k}" for k in range(config.num_domains))


def checkpoint_domains(path: PathLike, config: ModelConfig, domains: Sequence[str] | None = None) -> tuple[str, ...]:
    """The domain names of a checkpoint: ``domains`` if given, else the names stored in the file (the ``domains``
    metadata of our files), else ``default_domains(config)``."""
    if domains is not None:
        return tuple(domains)
    if checkpoint_kind(path) in (EMA_FORMAT, TRAINING_FORMAT):
        stored = read_domains(path)
        if stored is not None:
            return stored
    return default_domains(config)


def find_references(path: PathLike, domains: Sequence[str], domain: str | None = None) -> tuple[list[Path], list[int]]:
    """Reference images and their domain labels from a file or folder, sorted by domain, then by name.

    A folder with one sub-folder per domain (like training data) labels each image by its sub-folder: by name
    when the sub-folders are named after the model's domains, else by sorted position as in training. With
    ``domain`` given, only that domain's sub-folder is used if there is one, else every image under ``path``
    is taken to be of that domain. A single file needs ``domain`` unless its folder is named after a domain.
    """
    path = Path(path)
    index = {name: k for k, name in enumerate(domains)}

    def label(name: str, where: Path) -> int:
        if name in index:
            return index[name]
        raise ValueError(f"unknown domain '{name}' for references in {where}: the domains are {', '.join(domains)}")

    if domain is not None:
        k = label(domain, path)
        if path.is_dir() and (path / domain).is_dir():
            path = path / domain
        files = list_images(path)
        return files, [k] * len(files)
    if path.is_dir():
        subdirs = sorted(d.name for d in path.iterdir() if d.is_dir() and not d.name.startswith("."))
        if not subdirs:
            raise ValueError(
                f"{path} has no domain sub-folders: pass the references' domain (--domain NAME / domain=...) "
                f"or sort them into sub-folders named {', '.join(domains)}"
            )
        if all(d in index for d in subdirs):
            labels = {d: index[d] for d in subdirs}
        elif len(subdirs) == len(domains):
            labels = {d: k for k, d in enumerate(subdirs)}  # training's rule: sorted folder names give the labels
        else:
            raise ValueError(
                f"the sub-folders of {path} ({', '.join(subdirs)}) are neither the model's domains "
                f"({', '.join(domains)}) nor as many: rename them, or pass --domain NAME for a single domain"
            )
        files, ks = [], []
        for d in sorted(subdirs, key=lambda d: labels[d]):
            found = _find_images(path / d)
            files += found
            ks += [labels[d]] * len(found)
        if not files:
            raise DataError(f"{path} holds no images (searched recursively for {', '.join(IMAGE_EXTENSIONS)})")
        return files, ks
    files = list_images(path)  # a single file
    if path.parent.name not in index:
        raise ValueError(
            f"reference {path}: the style encoder needs the reference's domain; pass --domain NAME (domain=...), "
            f"one of {', '.join(domains)}, or keep references in folders named after their domains"
        )
    return files, [index[path.parent.name]]


def spread(items: Sequence[Any], n: int | None) -> list[Any]:
    """At most ``n`` items, evenly spaced over the sequence (all of them if ``n`` is ``None`` or large)."""
    if n is None or n >= len(items):
        return list(items)
    if n < 1:
        raise ValueError(f"need at least one item, got n={n}")
    return [items[(i * len(items)) // n] for i in range(n)]


def list_images(path: PathLike) -> list[Path]:
    """The images a path stands for: a file is itself (read later, so a non-image fails naming it); a folder
    gives its images, recursively and sorted (hidden files skipped)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file or folder: {path}")
    if path.is_file():
        return [path]
    found = _find_images(path)
    if not found:
        raise DataError(f"{path} holds no images (searched recursively for {', '.join(IMAGE_EXTENSIONS)})")
    return found


def read_image(path: PathLike) -> Tensor:
    """The image file at ``path`` as ``(3, H, W)`` uint8 RGB; errors name the file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"image not found: {path}")
    if path.is_dir():
        raise DataError(f"{path} is a folder, not an image (list its images with stargan_v2.api.list_images)")
    try:
        # As in training: upright by EXIF, 16-bit scaled, size-limited, BMP/JPEG/PNG/WebP only; a truncated file fails.
        rgb = decode_rgb(path)
    except _DECODE_ERRORS as e:
        raise DataError(f"{path} is not a readable image ({type(e).__name__}: {e})") from None
    return TF.pil_to_tensor(rgb)


def _as_image_tensor(image: ImageLike, what: str) -> tuple[Tensor, Path | None]:
    """One input as a ``(3, H, W)`` tensor (uint8, or float in [-1, 1]) and its path, if it came from a file."""
    if isinstance(image, Image.Image):
        return TF.pil_to_tensor(image.convert("RGB")), None
    if isinstance(image, (str, os.PathLike)):
        return read_image(image), Path(image)
    if isinstance(image, Tensor):
        if image.dim() != 3 or image.shape[0] not in (1, 3):
            raise ValueError(f"{what}: expected an image tensor of shape (3, H, W), got {tuple(image.shape)}")
        if image.dtype != torch.uint8:
            if not image.is_floating_point():
                raise ValueError(f"{what}: expected a uint8 or float tensor, got {image.dtype}")
            low, high = image.aminmax()
            if low < -1.001 or high > 1.001:
                raise ValueError(
                    f"{what}: float image tensors must be in [-1, 1] (found [{low:.3g}, {high:.3g}]); "
                    "pass uint8 for [0, 255] or use x * 2 - 1 for [0, 1]"
                )
        return image.detach().cpu().expand(3, -1, -1), None
    raise TypeError(f"{what}: expected a PIL image, a file path or a tensor, got {type(image).__name__}")


def _is_single(images: Images) -> bool:
    """Whether ``images`` is one image (not a list of them or a batch tensor)."""
    return isinstance(images, (Image.Image, str, os.PathLike)) or (isinstance(images, Tensor) and images.dim() == 3)


def _gather(images: Images, what: str) -> tuple[list[Tensor], list[Path | None], bool]:
    """Inputs as a list of image tensors and paths, and whether a single image (not a list) was given."""
    single = _is_single(images)
    items: Sequence[ImageLike] = [images] if single else images  # type: ignore[list-item, assignment]
    if isinstance(images, Tensor) and images.dim() != 3:
        if images.dim() != 4:
            raise ValueError(f"{what}: expected (3, H, W) or (B, 3, H, W) tensors, got {tuple(images.shape)}")
        items = list(images)
    if len(items) == 0:
        raise ValueError(f"{what}: no images given")
    tensors, paths = [], []
    for i, item in enumerate(items):
        tensor, path = _as_image_tensor(item, what if single else f"{what}[{i}]")
        tensors.append(tensor)
        paths.append(path)
    return tensors, paths, single


class StarGANv2:
    """A trained StarGAN v2 model, ready to translate images (EMA networks in eval mode, no gradients).

    Build it with :meth:`from_checkpoint` (any checkpoint) or directly from networks. ``domains`` names the
    domain labels ``0..K-1``; wherever a domain is asked for, its name or its index works.

    Inputs to :meth:`translate` are PIL images, image file paths, or tensors: ``(3, H, W)`` / ``(B, 3, H, W)``,
    uint8 in [0, 255] or float in [-1, 1] (the networks' range). Any size works: the centred square is resized
    to the model's ``img_size``. Outputs are PIL images, or float tensors in [-1, 1] with ``output="tensor"``.
    """

    def __init__(
        self,
        nets: Nets,
        config: ModelConfig,
        domains: Sequence[str] | None = None,
        fan: nn.Module | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        self.device = torch.device(device) if device is not None else _default_device()
        self.nets = nets.to(self.device).eval()
        self.config = config
        self.fan = fan.to(self.device).eval() if fan is not None else None
        names = tuple(domains) if domains is not None else default_domains(config)
        if len(names) != config.num_domains or len(set(names)) != len(names):
            raise ValueError(
                f"domains must be {config.num_domains} distinct names (the model has {config.num_domains} "
                f"domains), got {list(names)}"
            )
        self.domains: tuple[str, ...] = names
        self._mean_styles: dict[int, Tensor] = {}

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
        if isinstance(domain, bool) or not isinstance(domain, (int, str)):
            raise TypeError(f"a domain is a name or an index, got {type(domain).__name__}")
        if isinstance(domain, int):
            if not 0 <= domain < self.num_domains:
                raise ValueError(f"domain index {domain} is out of range: this model has {self.num_domains} domains")
            return domain
        if domain in self.domains:
            return self.domains.index(domain)
        folded = [d.lower() for d in self.domains]
        if folded.count(domain.lower()) == 1:
            return folded.index(domain.lower())
        if domain.isdigit():  # a label typed on the command line
            return self.domain_index(int(domain))
        raise ValueError(f"unknown domain '{domain}': this model's domains are {', '.join(self.domains)}")

    def __repr__(self) -> str:
        c = self.config
        return (
            f"StarGANv2(img_size={c.img_size}, domains={list(self.domains)}, w_hpf={c.w_hpf}, device='{self.device}')"
        )

    # ------------------------------------------------------------------------------------------------------
    # Style codes
    # ------------------------------------------------------------------------------------------------------

    @torch.no_grad()
    def mean_style(self, domain: Domain) -> Tensor:
        """The domain's average latent-guided style over 10,000 fixed latents, ``(1, style_dim)`` (cached)."""
        k = self.domain_index(domain)
        if k not in self._mean_styles:
            self._mean_styles[k] = mean_style(self.nets.mapping_network, k, self.config.latent_dim, MEAN_STYLE_LATENTS)
        return self._mean_styles[k]

    @torch.no_grad()
    def style_from_latent(
        self,
        domain: Domain,
        seed: int | Sequence[int] | None = None,
        n: int = 1,
        psi: float = 1.0,
        z: Tensor | None = None,
    ) -> Tensor:
        """Latent-guided styles ``F_y(z)``, ``(m, style_dim)`` on the model's device.

        The latents are ``z`` (``(m, latent_dim)``) if given; else one per seed, where an int ``seed`` stands
        for the seeds ``seed, seed + 1, ..., seed + n - 1`` and ``None`` for a random first seed. Each seed's
        latent is fixed (see ``synthesis.latents_from_seeds``). ``psi < 1`` pulls the styles towards the
        domain's mean style (the truncation trick): ``s = mean + psi * (s - mean)``.
        """
        k = self.domain_index(domain)
        if z is None:
            z = latents_from_seeds(_seed_list(seed, n), self.config.latent_dim)
        z = z.reshape(-1, z.shape[-1]) if z.dim() == 1 else z
        if z.dim() != 2 or z.shape[1] != self.config.latent_dim:
            raise ValueError(f"z must have shape (m, {self.config.latent_dim}), got {tuple(z.shape)}")
        z = z.to(self.device, torch.float32)
        s = self.nets.mapping_network(z, torch.full((z.shape[0],), k, dtype=torch.long, device=self.device))
        return truncate(s, self.mean_style(k), psi) if psi != 1.0 else s

    @torch.no_grad()
    def style_from_reference(
        self, reference: Images, domain: Domain | Sequence[Domain] | None = None, batch_size: int = 16
    ) -> Tensor:
        """Reference-guided styles ``E_y(x_ref)``, ``(m, style_dim)`` on the model's device.

        The style encoder needs each reference's domain ``y``: ``domain`` (one for all, or one per reference),
        or else the name of the folder a reference file lies in (``refs/dog/rex.jpg`` is a dog).
        """
        images, paths, _ = _gather(reference, "reference")
        labels = self._reference_domains(paths, domain)
        x = torch.stack([fit_square(im, self.img_size) for im in images])
        styles = []
        for i in range(0, x.shape[0], batch_size):
            xb = x[i : i + batch_size].to(self.device)
            styles.append(self.nets.style_encoder(xb, labels[i : i + batch_size].to(self.device)))
        return torch.cat(styles)

    def _reference_domains(self, paths: list[Path | None], domain: Domain | Sequence[Domain] | None) -> Tensor:
        if domain is not None:
            given = [domain] * len(paths) if isinstance(domain, (str, int)) else list(domain)
            if len(given) != len(paths):
                raise ValueError(f"got {len(given)} reference domains for {len(paths)} references")
            return torch.tensor([self.domain_index(d) for d in given], dtype=torch.long)
        labels = []
        for i, path in enumerate(paths):
            folder = path.parent.name if path is not None else None
            if folder is not None and folder in self.domains:
                labels.append(self.domains.index(folder))
            elif self.num_domains == 1:
                labels.append(0)
            else:
                where = f"reference {path}" if path is not None else f"reference {i}"
                raise ValueError(
                    f"{where}: the style encoder needs the reference's domain; pass domain=... (one of "
                    f"{', '.join(self.domains)}) or keep references in folders named after their domains"
                )
        return torch.tensor(labels, dtype=torch.long)

    # ------------------------------------------------------------------------------------------------------
    # Translation
    # ------------------------------------------------------------------------------------------------------

    def prepare(self, images: Images) -> Tensor:
        """Inputs as the networks take them: ``(N, 3, img_size, img_size)`` float in [-1, 1] on the CPU."""
        tensors, _, _ = _gather(images, "images")
        return torch.stack([fit_square(t, self.img_size) for t in tensors])

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

    @torch.no_grad()
    def translate(
        self,
        images: Images,
        domain: Domain | None = None,
        *,
        reference: Images | None = None,
        seed: int | Sequence[int] | None = None,
        n: int = 1,
        psi: float = 1.0,
        z: Tensor | None = None,
        style: Tensor | None = None,
        paste_back: bool = False,
        output: Literal["pil", "tensor"] = "pil",
        batch_size: int = 16,
        progress: bool = False,
    ) -> Any:
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
        batches of ``batch_size`` (image, style) pairs on the model's device.
        """
        if output not in ("pil", "tensor"):
            raise ValueError(f"output must be 'pil' or 'tensor', got {output!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        tensors, _, single_image = _gather(images, "images")
        styles, single_style = self._styles(domain, reference, seed, n, psi, z, style)
        x = torch.stack([fit_square(t, self.img_size) for t in tensors])
        fakes = self._translate_pairs(x, styles, batch_size, progress)  # (N, m, 3, S, S) on the CPU
        if paste_back:
            results: list[list[Tensor]] = [
                [synthesis.paste_back(t, f) for f in row] for t, row in zip(tensors, fakes, strict=True)
            ]
        else:
            results = [list(row) for row in fakes]
        if output == "tensor":
            sizes = {r.shape for row in results for r in row}
            if len(sizes) > 1:
                raise ValueError("paste_back with output='tensor' needs inputs of one size; use output='pil'")
            stacked = torch.stack([torch.stack(row) for row in results])  # (N, m, 3, H, W)
            return _shape(stacked, single_image, single_style)
        pil = [[to_pil(r) for r in row] for row in results]
        if single_image and single_style:
            return pil[0][0]
        if single_style:
            return [row[0] for row in pil]
        if single_image:
            return pil[0]
        return pil

    def _styles(
        self,
        domain: Domain | None,
        reference: Images | None,
        seed: int | Sequence[int] | None,
        n: int,
        psi: float,
        z: Tensor | None,
        style: Tensor | None,
    ) -> tuple[Tensor, bool]:
        """The style codes ``(m, style_dim)`` of a translate call, and whether one style (not a list) was asked."""
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        if style is not None:
            if reference is not None or z is not None or seed is not None:
                raise ValueError("give style=, or reference=, or a domain with seed/z: not several")
            if style.shape[-1] != self.config.style_dim or style.dim() not in (1, 2):
                raise ValueError(f"style must have shape (m, {self.config.style_dim}), got {tuple(style.shape)}")
            return style.reshape(-1, style.shape[-1]).to(self.device), style.dim() == 1
        if reference is not None:
            if seed is not None or z is not None or n != 1 or psi != 1.0:
                raise ValueError("seed, z, n and psi are for latent-guided translation; a reference gives the style")
            return self.style_from_reference(reference, domain), _is_single(reference)
        if domain is None:
            raise ValueError(
                f"pass domain=... (one of {', '.join(self.domains)}) for latent-guided translation, "
                "or reference=... for reference-guided translation"
            )
        single = n == 1 and (z.dim() == 1 if z is not None else not isinstance(seed, Sequence))
        return self.style_from_latent(domain, seed, n, psi, z), single

    def _translate_pairs(self, x: Tensor, styles: Tensor, batch_size: int, progress: bool) -> Tensor:
        """``G`` for every (image, style) pair: ``(N, m, 3, S, S)`` on the CPU, computed in batches of pairs."""
        n, m = x.shape[0], styles.shape[0]
        out = torch.empty(n * m, *x.shape[1:])
        pairs = torch.arange(n * m)
        for start in tqdm(range(0, n * m, batch_size), desc="translate", unit="batch", disable=not progress):
            idx = pairs[start : start + batch_size]
            out[idx] = self.generate(x[idx // m], styles[(idx % m).to(styles.device)]).float().cpu()
        return out.view(n, m, *x.shape[1:])


def _default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _seed_list(seed: int | Sequence[int] | None, n: int) -> list[int]:
    """The seeds a ``seed`` argument stands for (see ``StarGANv2.style_from_latent``)."""
    if seed is None:
        seed = int(torch.randint(0, 2**31 - 1, ()).item())
    if isinstance(seed, int):
        return list(range(seed, seed + n))
    seeds = [int(k) for k in seed]
    if n != 1 and n != len(seeds):
        raise ValueError(f"n={n} does not match the {len(seeds)} seeds given")
    return seeds


def _shape(stacked: Tensor, single_image: bool, single_style: bool) -> Tensor:
    """Drop the image and/or style axis of ``(N, m, 3, H, W)`` where the input was a single one."""
    if single_image and single_style:
        return stacked[0, 0]
    if single_style:
        return stacked[:, 0]
    if single_image:
        return stacked[0]
    return stacked


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
