"""FID: the Fréchet distance against reference computations, running statistics, and the Inception networks."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F
from torchvision.models.inception import InceptionA, InceptionC, InceptionE

from stargan_v2.metrics import fid
from stargan_v2.metrics.fid import (
    FeatureStats,
    Gaussian,
    covariance_factor,
    frechet_distance,
    frechet_distance_gaussians,
    gaussian_of,
    load_inception,
    sqrt_psd,
)

from .fake_weights import torch_home, write_inception


def _random_spd(d: int, seed: int, condition: float = 10.0) -> np.ndarray:
    """A symmetric positive definite matrix with eigenvalues spread over ``[1, condition]``."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    return (q * np.linspace(1, condition, d)) @ q.T


def _reference_fid(mu1: np.ndarray, s1: np.ndarray, mu2: np.ndarray, s2: np.ndarray) -> float:
    """The textbook formula with scipy's general matrix square root (fine for well-conditioned matrices)."""
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean.real))


def _gaussian(mu: np.ndarray, sigma: np.ndarray) -> Gaussian:
    return Gaussian(torch.from_numpy(mu), torch.from_numpy(sigma), 1000)


# ----------------------------------------------------------------------------------------------------------
# The Fréchet distance


def test_sqrt_psd_squares_back_and_handles_singular_matrices():
    s = torch.from_numpy(_random_spd(6, 0))
    root = sqrt_psd(s)
    assert torch.allclose(root @ root, s, atol=1e-10)
    assert torch.allclose(root, root.T)
    singular = torch.randn(3, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    singular = singular.T @ singular  # rank 3
    root = sqrt_psd(singular)
    assert torch.isfinite(root).all() and torch.allclose(root @ root, singular, atol=1e-8)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_frechet_distance_matches_scipy_sqrtm_on_well_conditioned_gaussians(seed):
    d = 12
    rng = np.random.default_rng(100 + seed)
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    s1, s2 = _random_spd(d, seed), _random_spd(d, seed + 10, condition=30)
    expected = _reference_fid(mu1, s1, mu2, s2)
    assert frechet_distance_gaussians(_gaussian(mu1, s1), _gaussian(mu2, s2)) == pytest.approx(expected, rel=1e-9)
    # Symmetric, and the precomputed root of one side gives the same number.
    assert frechet_distance_gaussians(_gaussian(mu2, s2), _gaussian(mu1, s1)) == pytest.approx(expected, rel=1e-9)
    # The factor of one side can be reused; the symmetric root is such a factor as well as Cholesky's.
    for factor in (covariance_factor(torch.from_numpy(s2)), sqrt_psd(torch.from_numpy(s2))):
        got = frechet_distance_gaussians(_gaussian(mu1, s1), _gaussian(mu2, s2), factor)
        assert got == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_closed_forms_for_diagonal_and_commuting_covariances():
    # Diagonal: per dimension (sqrt(a) - sqrt(b))^2, plus the squared distance of the means.
    a, b = np.array([1.0, 4.0, 0.25, 9.0]), np.array([4.0, 1.0, 0.25, 0.0])
    mu1, mu2 = np.array([0.0, 1.0, 2.0, 3.0]), np.array([1.0, 1.0, 0.0, 3.0])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    got = frechet_distance_gaussians(_gaussian(mu1, np.diag(a)), _gaussian(mu2, np.diag(b)))
    assert got == pytest.approx(expected, rel=1e-12)
    # Commuting (same eigenvectors): the same in the eigenbasis. b has a zero eigenvalue, whose square root
    # turns round-off of order 1e-16 into 1e-8: the tolerance is absolute.
    q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((4, 4)))
    got = frechet_distance_gaussians(_gaussian(mu1, (q * a) @ q.T), _gaussian(mu2, (q * b) @ q.T))
    assert got == pytest.approx(expected, abs=1e-6)


def test_frechet_distance_of_samples_of_known_gaussians():
    g = torch.Generator().manual_seed(0)
    n, d = 50_000, 4
    a = torch.randn(n, d, generator=g, dtype=torch.float64)
    m = torch.tensor([1.0, 0.0, -1.0, 0.5], dtype=torch.float64)
    b = torch.randn(n, d, generator=g, dtype=torch.float64) * 2 + m
    # N(0, I) against N(m, 4 I): |m|^2 + d * (1 - 2)^2.
    assert frechet_distance(a, b) == pytest.approx(2.25 + d, rel=0.03)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)


def test_covariance_factor_is_cholesky_when_definite_and_the_root_when_singular():
    s = torch.from_numpy(_random_spd(5, 1))
    factor = covariance_factor(s)
    assert torch.allclose(factor, torch.linalg.cholesky(s)) and torch.allclose(factor @ factor.T, s)
    singular = s.clone()
    singular[:, 0] = singular[0, :] = 0
    factor = covariance_factor(singular)
    assert torch.allclose(factor @ factor.T, singular, atol=1e-10)


def test_frechet_distance_stays_finite_where_the_general_square_root_struggles():
    # Fewer samples than dimensions: both covariances are singular.
    g = torch.Generator().manual_seed(3)
    a, b = torch.rand(10, 64, generator=g) ** 3, torch.rand(12, 64, generator=g)
    distance = frechet_distance(a, b)
    assert np.isfinite(distance) and distance > 0
    assert frechet_distance(b, a) == pytest.approx(distance, rel=1e-6)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)


def test_fid_agrees_with_an_independent_implementation_on_the_same_features():
    """Streaming float64 statistics + eigenvalues against numpy's mean/cov + scipy's sqrtm (pytorch-fid's way)."""
    g = torch.Generator().manual_seed(4)
    mix = torch.randn(32, 32, generator=g)
    real = torch.relu(torch.randn(600, 32, generator=g) @ mix) + 0.3
    fake = torch.relu(torch.randn(500, 32, generator=g) @ mix * 0.8 + 0.2) + 0.3
    stats_real, stats_fake = FeatureStats(32), FeatureStats(32)
    for chunk in real.split(77):  # uneven batches
        stats_real.update(chunk)
    for chunk in fake.split(64):
        stats_fake.update(chunk)
    ours = frechet_distance_gaussians(stats_fake.gaussian(), stats_real.gaussian())

    r, f = real.double().numpy(), fake.double().numpy()
    reference = _reference_fid(f.mean(0), np.cov(f, rowvar=False), r.mean(0), np.cov(r, rowvar=False))
    assert ours == pytest.approx(reference, rel=1e-7)


def test_running_statistics_keep_their_precision_far_from_zero():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(1000, 8, generator=g, dtype=torch.float64) + 1e4  # a mean much larger than the spread
    stats = FeatureStats(8)
    for chunk in x.split(100):
        stats.update(chunk)
    got = stats.gaussian()
    assert got.n == 1000
    assert torch.allclose(got.mu, x.mean(0), rtol=0, atol=1e-9)
    assert torch.allclose(got.sigma, torch.cov(x.T), rtol=0, atol=1e-9)
    assert torch.equal(gaussian_of(x).sigma, gaussian_of(x).sigma.T)
    with pytest.raises(ValueError, match="at least 2"):
        FeatureStats(8).gaussian()


# ----------------------------------------------------------------------------------------------------------
# The Inception networks


@pytest.mark.parametrize("block_type", [InceptionA, InceptionC, InceptionE])
def test_blocks_with_torchvisions_pooling_reproduce_torchvision(block_type):
    """The FID network differs from torchvision's only in its pooling: the branch wiring must be the same."""
    torch.manual_seed(0)
    channels = {InceptionA: 32, InceptionC: 64, InceptionE: 64}[block_type]
    block = (block_type(channels, 16) if block_type is not InceptionE else block_type(channels)).eval()
    x = torch.randn(2, channels, 9, 9)
    with torch.no_grad():
        expected = block(x)
        got = fid._mixed(block, x, lambda t: F.avg_pool2d(t, 3, stride=1, padding=1))
        assert torch.equal(got, expected)
        assert not torch.allclose(fid._mixed(block, x, fid._max_pool), expected)


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return torch_home(tmp_path_factory)


@pytest.mark.parametrize("name", ["torchvision", "pt_inception"])
def test_inception_loads_from_the_torch_cache_and_gives_2048_features(name, home, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(home))
    net = load_inception(name)
    assert net.describe()["weights_file"] == fid.FEATURE_NETS[name][0]
    state = torch.load(home / "hub" / "checkpoints" / fid.FEATURE_NETS[name][0], weights_only=True)
    key = "Mixed_7c.branch_pool.conv.weight"
    assert torch.equal(net.net.state_dict()[key], state[key])
    net.input_size = 75  # the smallest size Inception v3 takes: the real 299 px is slow on a CPU
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (3, 3, 32, 32), generator=g, dtype=torch.uint8)
    features = net(x)
    assert features.shape == (3, 2048) and torch.isfinite(features).all()
    assert features.std() > 1e-3  # the random weights keep a usable scale
    # The distances on a slice of the features: 2048-d eigenvalue problems take seconds on a small CPU.
    other = net(torch.randint(0, 256, (3, 3, 32, 32), generator=g, dtype=torch.uint8))
    assert frechet_distance(features[:, :128], features[:, :128]) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(features[:, :128], other[:, :128]) > 0


def test_a_weights_dir_takes_precedence_and_a_missing_file_says_where_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_home"))
    with pytest.raises(FileNotFoundError) as info:
        load_inception("pt_inception")
    message = str(info.value)
    assert "pt_inception-2015-12-05-6726825d.pth" in message
    assert str(tmp_path / "empty_home" / "hub" / "checkpoints") in message
    assert "https://github.com/mseitzer/pytorch-fid/releases" in message and "--weights-dir" in message
    with pytest.raises(FileNotFoundError, match=r"inception_v3_google-0cc3c7bd\.pth.*download\.pytorch\.org"):
        load_inception("torchvision", weights_dir=tmp_path)


def test_a_file_of_the_other_network_is_refused(tmp_path):
    # torchvision's file has 1000 classes and an auxiliary classifier; the FID network has neither.
    path = write_inception(tmp_path, "torchvision")
    path.rename(tmp_path / fid.FEATURE_NETS["pt_inception"][0])
    with pytest.raises(ValueError, match="does not hold the pt_inception Inception v3 weights"):
        load_inception("pt_inception", weights_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown FID feature network"):
        load_inception("inception_v4")


# ----------------------------------------------------------------------------------------------------------
# Preprocessing: image for image as the authors' evaluation (torchvision transforms on PIL images)


def _photo(path, width: int, height: int, seed: int):
    """A smooth random picture (so that resizing filters matter) saved at ``path``."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(height // 6, width // 6, 3), dtype=np.uint8)
    Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC).save(path)
    return path


_AUTHORS_NORMALISE = {
    "imagenet": ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
    "half": ([0.5, 0.5, 0.5], [0.5, 0.5, 0.5]),
}


def _authors_loader(img_size: int, height: int, normalise: str):
    """The transform of the authors' evaluation loader: Resize to the model's size, Resize again (to 299 for
    the FID network, or the same size), ToTensor, Normalize; written with torchvision's own transforms."""
    from torchvision import transforms as T

    mean, std = _AUTHORS_NORMALISE[normalise]
    return T.Compose([T.Resize([img_size, img_size]), T.Resize([height, height]), T.ToTensor(), T.Normalize(mean, std)])


def test_real_images_reach_the_network_as_in_the_authors_loader(tmp_path):
    from PIL import Image

    from stargan_v2.metrics.fid import InceptionFeatures, read_image_uint8

    net = InceptionFeatures("torchvision")
    assert net.resize == "pil"
    for i, (width, height) in enumerate([(70, 52), (24, 40), (32, 32)]):  # shrink, enlarge, keep
        path = _photo(tmp_path / f"{i}.png", width, height, seed=i)
        expected = _authors_loader(32, 299, "imagenet")(Image.open(path).convert("RGB"))
        got = net._normalise(net.prepare(read_image_uint8(path, 32)[None]))[0]
        assert torch.equal(got, expected)
    # The resizing matters: torch's (float, antialiased, one rounding) gives other inputs.
    x = read_image_uint8(path, 32)[None].float() / 255
    other = F.interpolate(x, size=(299, 299), mode="bilinear", antialias=True)
    assert not torch.equal(net.prepare(read_image_uint8(path, 32)[None]), other)


def test_generated_images_reach_the_network_as_the_authors_png_files_do(tmp_path):
    """Their evaluation writes each output with save_image (denormalised and clipped) and reads it back."""
    from PIL import Image
    from torchvision.utils import save_image

    from stargan_v2.metrics.evaluate import to_uint8
    from stargan_v2.metrics.fid import InceptionFeatures

    g = torch.Generator().manual_seed(0)
    fakes = torch.randn(3, 3, 32, 32, generator=g) * 0.6
    fakes[0, 0, 0, :6] = torch.tensor([-1.3, 1.2, -1.0, 1.0, 1 / 255 - 1, 2 * 128.5 / 255 - 1])  # clipped, ties
    net = InceptionFeatures("torchvision")
    got = net._normalise(net.prepare(to_uint8(fakes)))
    for k in range(3):
        save_image(((fakes[k] + 1) / 2).clamp_(0, 1), tmp_path / f"{k}.png", nrow=1, padding=0)
        expected = _authors_loader(32, 299, "imagenet")(Image.open(tmp_path / f"{k}.png").convert("RGB"))
        assert torch.equal(got[k], expected)


def test_sources_are_read_as_the_authors_loader_reads_them(tmp_path):
    from PIL import Image

    from stargan_v2.metrics.evaluate import from_uint8
    from stargan_v2.metrics.fid import read_image_uint8

    path = _photo(tmp_path / "src.jpg", 60, 44, seed=5)
    expected = _authors_loader(32, 32, "half")(Image.open(path).convert("RGB"))
    assert torch.equal(from_uint8(read_image_uint8(path, 32)), expected)


def test_the_network_takes_8_bit_images_of_any_size():
    from stargan_v2.metrics.fid import InceptionFeatures

    for name in ("torchvision", "pt_inception"):
        net = InceptionFeatures(name)
        net.input_size = 40
        g = torch.Generator().manual_seed(1)
        a = torch.randint(0, 256, (3, 30, 50), generator=g, dtype=torch.uint8)
        b = torch.randint(0, 256, (3, 40, 40), generator=g, dtype=torch.uint8)
        mixed = net.prepare([a, b])
        assert mixed.shape == (2, 3, 40, 40) and mixed.dtype == torch.float32
        assert torch.equal(mixed[1:], net.prepare(b[None]))  # at the input size: unchanged
        assert torch.equal(mixed[1] * 255, b.float())
        with pytest.raises(ValueError, match="8-bit"):
            net.prepare(torch.rand(1, 3, 40, 40))
    with pytest.raises(ValueError, match="unknown resize"):
        InceptionFeatures("torchvision", resize="lanczos")
