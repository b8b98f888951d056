"""LPIPS: loaded offline from torchvision's AlexNet file and the lpips package's heads; pairwise means."""

from __future__ import annotations

from pathlib import Path

import lpips as lpips_package
import pytest
import torch

from stargan_v2.metrics.lpips import ALEXNET_FILE, load_lpips

from .fake_weights import torch_home


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return torch_home(tmp_path_factory)


@pytest.fixture
def metric(home, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(home))
    return load_lpips()


def _images(n: int, seed: int, size: int = 48) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_weights_come_from_the_files_the_trunk_from_torchvisions_and_the_heads_from_the_package(metric, home):
    alexnet = torch.load(home / "hub" / "checkpoints" / ALEXNET_FILE, weights_only=True)
    trunk = metric.model.net.state_dict()
    for index, slice_name in ((0, "slice1"), (3, "slice2"), (6, "slice3"), (8, "slice4"), (10, "slice5")):
        assert torch.equal(trunk[f"{slice_name}.{index}.weight"], alexnet[f"features.{index}.weight"])
    heads_file = Path(lpips_package.__file__).parent / "weights" / "v0.1" / "alex.pth"
    heads = torch.load(heads_file, map_location="cpu", weights_only=True)
    for k in range(5):
        assert torch.equal(metric.model.state_dict()[f"lin{k}.model.1.weight"], heads[f"lin{k}.model.1.weight"])


def test_lpips_of_an_image_with_itself_is_zero(metric):
    x = _images(3, 0)
    assert torch.equal(metric(x, x), torch.zeros(3))
    assert (metric(x, _images(3, 1)) > 0).all()


def test_lpips_is_the_packages_forward(metric):
    x0, x1 = _images(4, 2), _images(4, 3)
    expected = metric.model(x0, x1).flatten()  # lpips.LPIPS.forward, inputs in [-1, 1]
    assert torch.allclose(metric(x0, x1), expected, rtol=1e-5, atol=1e-7)


def test_mean_pairwise_is_the_mean_over_all_pairs_within_each_group(metric):
    groups = torch.stack([_images(4, 10), _images(4, 11)])  # (G=2, n=4, 3, H, W)
    expected = []
    for group in groups:
        pairs = [(i, j) for i in range(4) for j in range(i + 1, 4)]
        d = metric(group[[i for i, _ in pairs]], group[[j for _, j in pairs]])
        expected.append(d.mean())
    # A pass of 2 pairs at a time checks that the chunking adds up to the same.
    for max_pairs in (2, 64):
        got = metric.mean_pairwise(groups, max_pairs_per_pass=max_pairs)
        assert torch.allclose(got, torch.stack(expected), rtol=1e-5)
    same = _images(1, 12).expand(3, -1, -1, -1)[None]  # three identical outputs: no diversity
    assert torch.equal(metric.mean_pairwise(same), torch.zeros(1))


def test_a_missing_alexnet_file_names_it_and_where_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError) as info:
        load_lpips()
    message = str(info.value)
    assert ALEXNET_FILE in message and str(tmp_path / "hub" / "checkpoints") in message
    assert "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth" in message
