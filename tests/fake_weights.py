"""Random-weight stand-ins for the pretrained files that FID and LPIPS read, saved under their real names.

The real files are not downloaded in tests. These have the same state-dict keys and shapes, with He-initialised
convolutions so that activations keep a useful scale through the deep Inception network.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torch import nn
from torchvision.models.inception import Inception3

from stargan_v2.metrics.fid import FEATURE_NETS
from stargan_v2.metrics.lpips import ALEXNET_FILE


def _he_init(module: nn.Module, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu", generator=g)
    return module


def write_inception(folder: Path, name: str, with_batch_counts: bool = True) -> Path:
    """The file of FID feature network ``name`` ("torchvision" or "pt_inception") in ``folder``."""
    if name == "torchvision":
        net = Inception3(num_classes=1000, aux_logits=True, init_weights=False)
    else:
        net = Inception3(num_classes=1008, aux_logits=False, init_weights=False)
    state = _he_init(net, seed=1 if name == "torchvision" else 2).state_dict()
    if not with_batch_counts:  # files saved by old PyTorch versions have no num_batches_tracked
        state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    path = folder / FEATURE_NETS[name][0]
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


def write_alexnet(folder: Path) -> Path:
    """torchvision's AlexNet file (``alexnet-owt-7be5be79.pth``) in ``folder``."""
    path = folder / ALEXNET_FILE
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(_he_init(torchvision.models.alexnet(weights=None), seed=3).state_dict(), path)
    return path


_cache: dict[str, Path] = {}


def torch_home(tmp_path_factory) -> Path:
    """A ``$TORCH_HOME`` with all three files in ``hub/checkpoints``, made once per test session."""
    if "home" not in _cache:
        home = tmp_path_factory.mktemp("torch_home")
        folder = home / "hub" / "checkpoints"
        write_inception(folder, "torchvision")
        write_inception(folder, "pt_inception", with_batch_counts=False)
        write_alexnet(folder)
        _cache["home"] = home
    return _cache["home"]
