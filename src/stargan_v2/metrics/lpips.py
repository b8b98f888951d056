"""LPIPS diversity: the learned perceptual distance of Zhang et al. (CVPR 2018) with AlexNet features.

StarGAN v2 (Choi et al., CVPR 2020, Section 4; ``docs/paper.md``, "Evaluation") measures diversity as the mean
LPIPS distance between the outputs made from one source image. LPIPS compares unit-normalised AlexNet
activations at five depths; a learned non-negative weight per channel (the "linear heads", version 0.1)
scales the squared differences, which are averaged over space and summed over depths.

The ``lpips`` package does the work: it defines the network and ships the linear heads. Its AlexNet trunk
comes from torchvision's ImageNet weights, which the package would fetch over the network; here the package
builds the trunk without weights and the torchvision file (``alexnet-owt-7be5be79.pth``) is read from the
torch cache or a given folder instead, so nothing is downloaded.
"""

from __future__ import annotations

import functools
import operator
import os
import warnings
from typing import Any

import torch
from torch import Tensor, nn

from .fid import find_weights, load_state_file

ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
ALEXNET_URL = "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"


class LPIPS(nn.Module):
    """LPIPS (AlexNet, v0.1) for images in [-1, 1]; wraps an ``lpips.LPIPS`` model.

    ``forward(x0, x1)`` gives one distance per pair of images, ``(B,)``; ``mean_pairwise(x)`` the mean over
    the unordered pairs within each group of images, computing each image's features only once.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        # Any: an lpips.LPIPS, from an untyped package; its net, scaling_layer and lins are used below.
        self.model: Any = model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    def describe(self) -> dict[str, str]:
        """What the JSON of an evaluation records about the network."""
        return {
            "name": "lpips-alex-v0.1",
            "trunk_weights_file": ALEXNET_FILE,
            "heads": "linear heads v0.1 shipped with the lpips package",
        }

    def features(self, x: Tensor) -> list[Tensor]:
        """Unit-normalised activations (along channels) at the five depths: ``(B, C_l, H_l, W_l)`` each."""
        import lpips as lpips_package

        outs = self.model.net(self.model.scaling_layer(x.float()))
        return [lpips_package.normalize_tensor(o) for o in outs]

    def _distance(self, f0: list[Tensor], f1: list[Tensor]) -> Tensor:
        # (B,) per depth: weighted channels, then space; summed over the depths.
        per_depth = (head((a - b).square()).mean((1, 2, 3)) for head, a, b in zip(self.model.lins, f0, f1, strict=True))
        return functools.reduce(operator.add, per_depth)

    @torch.no_grad()
    def forward(self, x0: Tensor, x1: Tensor) -> Tensor:
        """LPIPS between ``x0[i]`` and ``x1[i]``: ``(B, 3, H, W)`` twice -> ``(B,)``."""
        if x0.shape != x1.shape:
            raise ValueError(f"LPIPS compares images of one shape, got {tuple(x0.shape)} and {tuple(x1.shape)}")
        return self._distance(self.features(x0), self.features(x1))

    @torch.no_grad()
    def mean_pairwise(self, x: Tensor, max_pairs_per_pass: int = 64) -> Tensor:
        """Mean LPIPS over the ``n (n - 1) / 2`` pairs within each group: ``(G, n, 3, H, W) -> (G,)``."""
        if x.dim() != 5 or x.shape[1] < 2:
            raise ValueError(f"expected groups of at least 2 images, (G, n, 3, H, W), got {tuple(x.shape)}")
        groups, n = x.shape[:2]
        feats = [f.view(groups, n, *f.shape[1:]) for f in self.features(x.flatten(0, 1))]
        first, second = torch.triu_indices(n, n, offset=1, device=x.device)
        total = torch.zeros(groups, device=x.device)
        # Pairs are taken a few at a time: all 45 pairs of 10 outputs at once would hold 45 copies of every
        # activation map.
        step = max(1, max_pairs_per_pass // groups)
        for start in range(0, first.numel(), step):
            i, j = first[start : start + step], second[start : start + step]
            d = self._distance(
                [f[:, i].flatten(0, 1) for f in feats],
                [f[:, j].flatten(0, 1) for f in feats],
            )  # (G * pairs,)
            total += d.view(groups, -1).sum(1)
        return total / first.numel()


def load_lpips(weights_dir: str | os.PathLike | None = None, device: torch.device | str = "cpu") -> LPIPS:
    """LPIPS with AlexNet: the trunk from ``alexnet-owt-7be5be79.pth`` (torch cache or ``weights_dir``), the
    linear heads from the ``lpips`` package. Raises FileNotFoundError (naming the file and where to get it)
    when the AlexNet file is missing."""
    try:
        import lpips as lpips_package
    except ImportError as exc:  # pragma: no cover - a dependency of this package
        raise ImportError("LPIPS needs the 'lpips' package: pip install lpips") from exc
    path = find_weights(ALEXNET_FILE, ALEXNET_URL, weights_dir)
    alexnet = load_state_file(path)
    with warnings.catch_warnings():
        # The package asks torchvision for an AlexNet with the deprecated `pretrained=False` argument.
        warnings.simplefilter("ignore", UserWarning)
        # pretrained=True loads the linear heads shipped inside the package (no download); pnet_rand=True builds
        # the AlexNet trunk with random weights instead of asking torchvision to download them. The trunk's
        # weights come from the local file just below.
        model = lpips_package.LPIPS(net="alex", version="0.1", pretrained=True, pnet_rand=True, verbose=False)
    # The package's trunk splits torchvision's `features` into slices that keep the layer indices, so
    # "slice2.3.weight" is torchvision's "features.3.weight".
    trunk = {}
    for key in model.net.state_dict():
        _, index, param = key.split(".")
        source = f"features.{index}.{param}"
        if source not in alexnet:
            raise ValueError(f"{path} is not torchvision's AlexNet weight file: it has no tensor '{source}'")
        trunk[key] = alexnet[source]
    try:
        model.net.load_state_dict(trunk)
    except RuntimeError as exc:
        raise ValueError(f"{path} does not fit torchvision's AlexNet: {exc}") from None
    return LPIPS(model).to(device)
