"""The four networks of StarGAN v2 (Choi et al., CVPR 2020, Section 2 and Appendix A, Figure 1).

Building blocks come first, then the generator ``G``, the mapping network ``F``, the style encoder ``E`` and
the discriminator ``D`` in the paper's order. Submodule names equal the keys of the authors' released
checkpoints (``encode.0.conv1.weight`` ...), so their state dicts load here without renaming; that is a fact
about their file format, not a design choice we would otherwise make.

Modules hold no device and no path: build them, then ``.to(device)``.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import ModelConfig

_SQRT2 = math.sqrt(2.0)
_LRELU_SLOPE = 0.2


def unwrap(module: nn.Module) -> nn.Module:
    """The network inside a ``DistributedDataParallel`` (or ``torch.compile``) wrapper, else ``module`` itself."""
    inner = getattr(module, "module", None) or getattr(module, "_orig_mod", None)
    return unwrap(inner) if isinstance(inner, nn.Module) else module


def check_shape(t: Tensor, shape: Sequence[int | None], name: str) -> None:
    """Raise a ValueError naming ``name`` unless ``t`` has ``shape`` (``None`` matches any size on that axis).

    Used where a module takes its inputs, so that a wrong shape fails there, with the expected shape, rather
    than several layers later in a matrix product.
    """
    if t.dim() != len(shape) or any(want is not None and got != want for got, want in zip(t.shape, shape, strict=True)):
        expected = "(" + ", ".join("*" if d is None else str(d) for d in shape) + ")"
        raise ValueError(f"{name} must have shape {expected}, got {tuple(t.shape)}")


def select_domain(per_domain: Tensor, y: Tensor) -> Tensor:
    """Pick each sample's own domain head: ``(B, K, ...) -> (B, ...)`` with ``y`` of shape ``(B,)``."""
    if y.dim() != 1 or y.shape[0] != per_domain.shape[0]:
        raise ValueError(f"domain labels must have shape ({per_domain.shape[0]},), got {tuple(y.shape)}")
    return per_domain[torch.arange(per_domain.shape[0], device=per_domain.device), y]


# ----------------------------------------------------------------------------------------------------------
# Building blocks
# ----------------------------------------------------------------------------------------------------------

# Resampling folded into the adjacent 3x3 convolution (same function, fewer operations). A 3x3 conv followed by
# 2x2 average pooling is one stride-2 conv whose 4x4 kernel is the 3x3 kernel summed over the four pooled
# offsets, a quarter each; 2x nearest upsampling followed by a 3x3 conv is one stride-2 transposed conv whose
# 4x4 kernel sums the 3x3 taps that land on the same input pixel. Both keep padding 1 exact (the zero border of
# the large map is the zero border of the small one) and do 4/9 of the multiply-adds, without the full-size
# intermediate map. The same folding is applied to each of the two spatial axes, so each is a (4, 3) matrix,
# and the 16 taps of the 4x4 kernel are a fixed (16, 9) matrix (the Kronecker product) times the 9 of the 3x3.
_POOL_TAPS = ((1.0, 0.0, 0.0), (1.0, 1.0, 0.0), (0.0, 1.0, 1.0), (0.0, 0.0, 1.0))  # halved when used
_UPSAMPLE_TAPS = ((0.0, 0.0, 1.0), (0.0, 1.0, 1.0), (1.0, 1.0, 0.0), (1.0, 0.0, 0.0))


def _make_taps(kind: str, device: torch.device, dtype: torch.dtype) -> Tensor:
    taps = torch.tensor(_POOL_TAPS if kind == "pool" else _UPSAMPLE_TAPS, dtype=dtype, device=device)
    if kind == "pool":
        taps = taps / 2
    return torch.kron(taps, taps)  # (16, 9): row 4p+q, column 3u+v holds taps[p, u] * taps[q, v]


@functools.lru_cache(maxsize=32)
def _cached_taps(kind: str, device: torch.device, dtype: torch.dtype) -> Tensor:
    # Made outside inference mode even when first asked for inside it, so that training can save it for backward.
    with torch.inference_mode(False):
        return _make_taps(kind, device, dtype)


def _taps(kind: str, device: torch.device, dtype: torch.dtype) -> Tensor:
    """The (16, 9) folding matrix: cached per device and dtype in eager mode (no host-to-device copy in the
    step); inside ``torch.compile`` a constant of the graph."""
    if torch.compiler.is_compiling():
        return _make_taps(kind, device, dtype)
    return _cached_taps(kind, device, dtype)


def _fold(weight: Tensor, taps: Tensor) -> Tensor:
    """The 4x4 kernel ``taps @ weight`` over the 3x3 taps of each (out, in) pair, as one matrix product.

    The product runs on the weight's own memory (a view, no copy) whether it is stored NCHW or channels_last,
    and the kernel comes out in the same layout, which is the one the convolution then wants.
    """
    c_out, c_in = weight.shape[:2]
    if weight.is_contiguous():
        return (weight.reshape(c_out * c_in, 9) @ taps.t()).view(c_out, c_in, 4, 4)
    nhwc = weight.permute(0, 2, 3, 1).reshape(c_out, 9, c_in)  # a view when the weight is channels_last
    return torch.matmul(taps, nhwc).view(c_out, 4, 4, c_in).permute(0, 3, 1, 2)


def conv3x3_avgpool(x: Tensor, conv: nn.Conv2d) -> Tensor:
    """``avg_pool2d(conv(x), 2)`` for a 3x3, stride-1, padding-1 ``conv``, as one stride-2 4x4 convolution."""
    kernel = _fold(conv.weight, _taps("pool", conv.weight.device, conv.weight.dtype))
    return F.conv2d(x, kernel, conv.bias, stride=2, padding=1)


def upsample_conv3x3(x: Tensor, conv: nn.Conv2d) -> Tensor:
    """``conv(interpolate(x, scale_factor=2, mode="nearest"))`` for a 3x3 padding-1 ``conv``, in one op."""
    kernel = _fold(conv.weight, _taps("upsample", conv.weight.device, conv.weight.dtype))
    return F.conv_transpose2d(x, kernel.transpose(0, 1), conv.bias, stride=2, padding=1)  # (c_in, c_out, 4, 4)


def set_fused_resampling(module: nn.Module, enabled: bool) -> None:
    """Fold resampling into the convolutions (``True``, the default) or run them as separate steps.

    The two give the same outputs up to float rounding; the unfused form is the authors' order of work, kept
    for the benchmark's baseline.
    """
    for m in module.modules():
        if isinstance(m, (ResBlock, AdainResBlock)):
            m.fused_resampling = enabled


class ResBlock(nn.Module):
    """Pre-activation residual block of the encoder, ``E`` and ``D``, optionally with instance norm and 2x down.

    The residual path is ``[IN] -> lrelu -> conv3x3(c_in->c_in) -> [avgpool] -> [IN] -> lrelu ->
    conv3x3(c_in->c_out)``; the shortcut is a 1x1 conv when the width changes, then the same pooling. The sum
    is divided by sqrt(2) to keep unit variance. Pooling runs before the (linear, bias-free) 1x1 shortcut conv
    and is folded into the residual's first conv (``conv3x3_avgpool``) unless ``fused_resampling`` is off.
    """

    fused_resampling = True

    def __init__(self, dim_in: int, dim_out: int, normalize: bool = False, downsample: bool = False) -> None:
        super().__init__()
        self.normalize = normalize
        self.downsample = downsample
        self.conv1 = nn.Conv2d(dim_in, dim_in, 3, 1, 1)
        self.conv2 = nn.Conv2d(dim_in, dim_out, 3, 1, 1)
        if normalize:
            self.norm1 = nn.InstanceNorm2d(dim_in, affine=True)
            self.norm2 = nn.InstanceNorm2d(dim_in, affine=True)
        self.conv1x1 = nn.Conv2d(dim_in, dim_out, 1, 1, 0, bias=False) if dim_in != dim_out else None

    def _shortcut(self, x: Tensor) -> Tensor:
        if self.fused_resampling:
            if self.downsample:
                x = F.avg_pool2d(x, 2)
            return self.conv1x1(x) if self.conv1x1 is not None else x
        if self.conv1x1 is not None:
            x = self.conv1x1(x)
        return F.avg_pool2d(x, 2) if self.downsample else x

    def _residual(self, x: Tensor) -> Tensor:
        if self.normalize:
            x = self.norm1(x)
        x = F.leaky_relu(x, _LRELU_SLOPE)
        if self.downsample and self.fused_resampling:
            x = conv3x3_avgpool(x, self.conv1)
        else:
            x = self.conv1(x)
            if self.downsample:
                x = F.avg_pool2d(x, 2)
        if self.normalize:
            x = self.norm2(x)
        return self.conv2(F.leaky_relu(x, _LRELU_SLOPE))

    def forward(self, x: Tensor) -> Tensor:
        """``(B, c_in, H, W) -> (B, c_out, H', W')`` with ``H' = H/2`` when downsampling."""
        return (self._shortcut(x) + self._residual(x)) / _SQRT2


class AdaIN(nn.Module):
    """Adaptive instance norm: ``(1 + gamma) * IN(x) + beta`` with ``(gamma, beta) = fc(s)``.

    The ``1 +`` makes a zero style offset the identity, so training starts from plain instance norm.
    """

    def __init__(self, style_dim: int, num_features: int) -> None:
        super().__init__()
        self.norm = nn.InstanceNorm2d(num_features, affine=False)
        self.fc = nn.Linear(style_dim, num_features * 2)

    def forward(self, x: Tensor, s: Tensor) -> Tensor:
        """``x (B, C, H, W)``, ``s (B, style_dim)`` -> ``(B, C, H, W)``."""
        gamma, beta = self.fc(s)[:, :, None, None].chunk(2, dim=1)
        return (1 + gamma) * self.norm(x) + beta


class AdainResBlock(nn.Module):
    """Decoder block: AdaIN residual block with optional nearest-neighbour 2x upsampling.

    With the high-pass path on (``w_hpf > 0``) the released model drops the shortcut, so the block returns
    the residual alone (the skip information then arrives through the masked high-pass features). The
    upsampling is folded into the first conv (``upsample_conv3x3``) and runs after the 1x1 shortcut conv unless
    ``fused_resampling`` is off.
    """

    fused_resampling = True

    def __init__(self, dim_in: int, dim_out: int, style_dim: int, w_hpf: float = 0.0, upsample: bool = False) -> None:
        super().__init__()
        self.use_shortcut = w_hpf == 0
        self.upsample = upsample
        self.conv1 = nn.Conv2d(dim_in, dim_out, 3, 1, 1)
        self.conv2 = nn.Conv2d(dim_out, dim_out, 3, 1, 1)
        self.norm1 = AdaIN(style_dim, dim_in)
        self.norm2 = AdaIN(style_dim, dim_out)
        self.conv1x1 = nn.Conv2d(dim_in, dim_out, 1, 1, 0, bias=False) if dim_in != dim_out else None

    def _shortcut(self, x: Tensor) -> Tensor:
        if self.fused_resampling:
            if self.conv1x1 is not None:
                x = self.conv1x1(x)
            return F.interpolate(x, scale_factor=2, mode="nearest") if self.upsample else x
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.conv1x1(x) if self.conv1x1 is not None else x

    def _residual(self, x: Tensor, s: Tensor) -> Tensor:
        x = F.leaky_relu(self.norm1(x, s), _LRELU_SLOPE)
        if self.upsample and self.fused_resampling:
            x = upsample_conv3x3(x, self.conv1)
        else:
            if self.upsample:
                x = F.interpolate(x, scale_factor=2, mode="nearest")
            x = self.conv1(x)
        x = F.leaky_relu(self.norm2(x, s), _LRELU_SLOPE)
        return self.conv2(x)

    def forward(self, x: Tensor, s: Tensor) -> Tensor:
        """``(B, c_in, H, W), (B, S) -> (B, c_out, H', W')`` with ``H' = 2H`` when upsampling."""
        out = self._residual(x, s)
        if self.use_shortcut:
            out = (out + self._shortcut(x)) / _SQRT2
        return out


class HighPass(nn.Module):
    """Fixed 3x3 Laplacian applied per channel, scaled by ``1 / w_hpf`` (released CelebA-HQ model)."""

    filter: Tensor  # a buffer (register_buffer), so that it follows the module's device and dtype

    def __init__(self, w_hpf: float) -> None:
        super().__init__()
        laplacian = torch.tensor([[-1.0, -1.0, -1.0], [-1.0, 8.0, -1.0], [-1.0, -1.0, -1.0]])
        self.register_buffer("filter", laplacian / w_hpf)

    def forward(self, x: Tensor) -> Tensor:
        """Depthwise filtering, ``(B, C, H, W) -> (B, C, H, W)``."""
        channels = x.shape[1]
        kernel = self.filter.to(x.dtype).expand(channels, 1, 3, 3)
        return F.conv2d(x, kernel, padding=1, groups=channels)


def _widths(cfg: ModelConfig, num_blocks: int) -> list[tuple[int, int]]:
    """(in, out) widths of ``num_blocks`` downsampling blocks: doubling from ``first_dim``, capped."""
    pairs, dim = [], cfg.first_dim
    for _ in range(num_blocks):
        out = min(dim * 2, cfg.max_conv_dim)
        pairs.append((dim, out))
        dim = out
    return pairs


def num_generator_downsamplings(cfg: ModelConfig) -> int:
    """``log2(img_size) - 4`` down/up-sampling blocks, one more with the high-pass path (released models), or
    as many as reach ``cfg.g_bottleneck`` when it is set."""
    if cfg.g_bottleneck is not None:
        return int(math.log2(cfg.img_size // cfg.g_bottleneck))
    return int(math.log2(cfg.img_size)) - 4 + (1 if cfg.uses_hpf else 0)


# ----------------------------------------------------------------------------------------------------------
# The four networks
# ----------------------------------------------------------------------------------------------------------

#: Feature sizes at which the high-pass path adds masked encoder features to the decoder; the coarse mask is
#: used at 32 px and the fine one at 64 and 128 px (released CelebA-HQ model).
HPF_SIZES = (32, 64, 128)


class Generator(nn.Module):
    """``G(x, s)``: encoder (IN residual blocks, downsampling), 2 bottleneck blocks, AdaIN decoder.

    ``G`` is never told the target domain: the style code ``s`` carries it. ``masks`` is the (coarse, fine)
    pair of face masks (each ``(B, 1, h, w)``) from ``FAN.masks``; it is only used with the high-pass path.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.img_size = cfg.img_size
        self.style_dim = cfg.style_dim
        #: The image sides must be multiples of this (one halving per downsampling block).
        self.stride = 2 ** num_generator_downsamplings(cfg)
        dim = cfg.first_dim
        self.from_rgb = nn.Conv2d(3, dim, 3, 1, 1)
        self.encode = nn.ModuleList()
        self.decode = nn.ModuleList()
        # The decoder mirrors the encoder, so its blocks are listed deepest-first.
        for c_in, c_out in _widths(cfg, num_generator_downsamplings(cfg)):
            self.encode.append(ResBlock(c_in, c_out, normalize=True, downsample=True))
            self.decode.insert(0, AdainResBlock(c_out, c_in, cfg.style_dim, cfg.w_hpf, upsample=True))
            dim = c_out
        for _ in range(2):
            self.encode.append(ResBlock(dim, dim, normalize=True))
            self.decode.insert(0, AdainResBlock(dim, dim, cfg.style_dim, cfg.w_hpf))
        self.to_rgb = nn.Sequential(
            nn.InstanceNorm2d(cfg.first_dim, affine=True),
            nn.LeakyReLU(_LRELU_SLOPE),
            nn.Conv2d(cfg.first_dim, 3, 1, 1, 0),
        )
        self.hpf = HighPass(cfg.w_hpf) if cfg.uses_hpf else None

    def forward(self, x: Tensor, s: Tensor, masks: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """``x (B, 3, H, W)`` in [-1, 1], ``s (B, style_dim)`` -> image ``(B, 3, H, W)`` (no tanh)."""
        if masks is not None and self.hpf is None:
            raise ValueError("masks were given but this generator has no high-pass path (w_hpf=0)")
        check_shape(x, (None, 3, None, None), "G's image x")
        check_shape(s, (x.shape[0], self.style_dim), "G's style code s")
        if x.shape[2] % self.stride or x.shape[3] % self.stride:
            raise ValueError(f"G's image sides must be multiples of {self.stride}, got {tuple(x.shape[2:])}")
        x = self.from_rgb(x)
        skips: dict[int, Tensor] = {}
        for block in self.encode:
            if masks is not None and x.shape[2] in HPF_SIZES:
                skips[x.shape[2]] = x
            x = block(x)
        for block in self.decode:
            x = block(x, s)
            size = x.shape[2]
            # (hpf is never None here when masks are given: that raised a ValueError above.)
            if masks is not None and self.hpf is not None and size in HPF_SIZES:
                mask = masks[0] if size == HPF_SIZES[0] else masks[1]
                mask = F.interpolate(mask, size=size, mode="bilinear", align_corners=False)
                x = x + self.hpf(mask * skips[size])
        return self.to_rgb(x)


class MappingNetwork(nn.Module):
    """``s = F_y(z)``: a shared ReLU MLP trunk, then one MLP head per domain; each sample takes its own head."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        hidden = cfg.hidden_dim
        self.latent_dim = cfg.latent_dim
        trunk: list[nn.Module] = [nn.Linear(cfg.latent_dim, hidden), nn.ReLU()]
        for _ in range(3):
            trunk += [nn.Linear(hidden, hidden), nn.ReLU()]
        self.shared = nn.Sequential(*trunk)
        self.unshared = nn.ModuleList(
            nn.Sequential(
                nn.Linear(hidden, hidden),
                nn.ReLU(),
                nn.Linear(hidden, hidden),
                nn.ReLU(),
                nn.Linear(hidden, hidden),
                nn.ReLU(),
                nn.Linear(hidden, cfg.style_dim),
            )
            for _ in range(cfg.num_domains)
        )

    def forward(self, z: Tensor, y: Tensor) -> Tensor:
        """``z (B, latent_dim)``, ``y (B,)`` -> ``s (B, style_dim)``."""
        check_shape(z, (None, self.latent_dim), "F's latent code z")
        h = self.shared(z)
        return select_domain(torch.stack([head(h) for head in self.unshared], dim=1), y)  # (B, K, S) -> (B, S)


def _trunk(cfg: ModelConfig) -> tuple[list[nn.Module], int]:
    """Shared trunk of ``E`` and ``D``: conv, ``log2(img_size) - 2`` downsampling blocks, lrelu-conv4x4-lrelu.

    At the end the feature map is 1x1 (the 4x4 conv sees the 4 px map left after the downsamplings).
    """
    layers: list[nn.Module] = [nn.Conv2d(3, cfg.first_dim, 3, 1, 1)]
    dim = cfg.first_dim
    for c_in, c_out in _widths(cfg, int(math.log2(cfg.img_size)) - 2):
        layers.append(ResBlock(c_in, c_out, downsample=True))
        dim = c_out
    layers += [nn.LeakyReLU(_LRELU_SLOPE), nn.Conv2d(dim, dim, 4, 1, 0), nn.LeakyReLU(_LRELU_SLOPE)]
    return layers, dim


class StyleEncoder(nn.Module):
    """``s = E_y(x)``: a convolutional trunk, then one linear head per domain."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        layers, dim = _trunk(cfg)
        self.img_size = cfg.img_size
        self.shared = nn.Sequential(*layers)
        self.unshared = nn.ModuleList(nn.Linear(dim, cfg.style_dim) for _ in range(cfg.num_domains))

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """``x (B, 3, H, W)``, ``y (B,)`` -> ``s (B, style_dim)``; ``H = W = img_size``."""
        check_shape(x, (None, 3, self.img_size, self.img_size), "E's image x")
        h = self.shared(x).flatten(1)  # (B, C, 1, 1) -> (B, C)
        return select_domain(torch.stack([head(h) for head in self.unshared], dim=1), y)


class Discriminator(nn.Module):
    """``D_y(x)``: the same trunk as ``E`` and a 1x1 conv with one real/fake logit per domain."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        layers, dim = _trunk(cfg)
        self.img_size = cfg.img_size
        self.main = nn.Sequential(*layers, nn.Conv2d(dim, cfg.num_domains, 1, 1, 0))

    def forward(self, x: Tensor, y: Tensor | None) -> Tensor:
        """``x (B, 3, H, W)``, ``y (B,)`` -> logits ``(B,)``; with ``y=None`` every domain's logit ``(B, K)``."""
        check_shape(x, (None, 3, self.img_size, self.img_size), "D's image x")
        logits = self.main(x).flatten(1)  # (B, K, 1, 1) -> (B, K)
        return logits if y is None else select_domain(logits, y)


# ----------------------------------------------------------------------------------------------------------
# Construction
# ----------------------------------------------------------------------------------------------------------


def he_init(module: nn.Module) -> None:
    """He (Kaiming normal, fan_in, ReLU gain) weights and zero biases for every conv and linear layer."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


@dataclass
class Nets:
    """The networks of one model; ``discriminator`` is ``None`` for inference-only (EMA) sets."""

    generator: Generator
    mapping_network: MappingNetwork
    style_encoder: StyleEncoder
    discriminator: Discriminator | None = None

    def require_discriminator(self) -> Discriminator:
        """``discriminator``, or a ValueError for a set without one (the training losses need it)."""
        if self.discriminator is None:
            raise ValueError("these nets have no discriminator (an inference-only set); training needs one")
        return self.discriminator

    def items(self) -> list[tuple[str, nn.Module]]:
        """``(name, module)`` pairs of the networks that are present, in the paper's order."""
        names = ("generator", "mapping_network", "style_encoder", "discriminator")
        return [(n, getattr(self, n)) for n in names if getattr(self, n) is not None]

    def to(self, device: torch.device | str) -> Nets:
        """Move every network to ``device`` (in place) and return self."""
        for _, module in self.items():
            module.to(device)
        return self

    def eval(self) -> Nets:
        """Put every network in eval mode and return self."""
        for _, module in self.items():
            module.eval()
        return self


def build_nets(cfg: ModelConfig, discriminator: bool = True, init: bool = True) -> Nets:
    """Build ``G``, ``F``, ``E`` (and ``D``) for ``cfg``; ``init=True`` applies He init."""
    nets = Nets(
        generator=Generator(cfg),
        mapping_network=MappingNetwork(cfg),
        style_encoder=StyleEncoder(cfg),
        discriminator=Discriminator(cfg) if discriminator else None,
    )
    if init:
        for _, module in nets.items():
            he_init(module)
    return nets


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters (buffers such as the high-pass filter are not counted)."""
    return sum(p.numel() for p in module.parameters())


@contextlib.contextmanager
def eval_mode(nets: Nets) -> Iterator[None]:
    """Run the networks in eval mode, then give them back in the mode they came in (e.g. mid-training)."""
    modules = [m for _, m in nets.items()]
    was_training = [m.training for m in modules]
    for m in modules:
        m.eval()
    try:
        yield
    finally:
        for m, training in zip(modules, was_training, strict=True):
            m.train(training)
