"""``stargan-v2 fid``: FID between folders of images or ``.npz`` statistics files, checked against pytorch-fid.

pytorch-fid reads the TensorFlow FID weights through ``load_state_dict_from_url``, which takes
``$TORCH_HOME/hub/checkpoints/pt_inception-2015-12-05-6726825d.pth`` when it is there: the tests put a random
network under that name, so both tools read the same file and nothing is downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stargan_v2.cli import main
from stargan_v2.metrics import fid
from stargan_v2.metrics.fid_folders import image_files, load_statistics

from .fake_weights import torch_home


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return torch_home(tmp_path_factory)


def _write(folder: Path, sizes: list[tuple[int, int]], seed: int, brightness: int = 0) -> Path:
    """Smooth random pictures of the given (width, height) sizes."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i, (w, h) in enumerate(sizes):
        coarse = rng.integers(0, 200, (max(h // 8, 1), max(w // 8, 1), 3)) + brightness
        image = Image.fromarray(coarse.clip(0, 255).astype(np.uint8)).resize((w, h), Image.Resampling.BICUBIC)
        image.save(folder / f"{i:02d}.png")
    return folder


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def small_net(home, monkeypatch):
    """The real network code and weight files, at Inception's smallest input and with 64 of its 2048 features:
    2048-d eigenvalue problems take seconds each on a small CPU."""
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.setattr(fid, "INCEPTION_SIZE", 75)
    monkeypatch.setattr(fid, "FEATURE_DIM", 64)
    full_forward = fid.InceptionFeatures.forward
    monkeypatch.setattr(fid.InceptionFeatures, "forward", lambda self, x: full_forward(self, x)[:, :64])


@pytest.fixture
def folders(tmp_path) -> tuple[Path, Path]:
    a = _write(tmp_path / "a", [(48, 40)] * 3, seed=0)
    _write(a / "nested" / "deeper", [(30, 52), (64, 64)], seed=1)  # found recursively, any size
    b = _write(tmp_path / "b", [(40, 40), (56, 44), (33, 33), (80, 60)], seed=2, brightness=50)
    return a, b


# ----------------------------------------------------------------------------------------------------------
# The command


def _common() -> list[str]:
    return ["--device", "cpu", "--workers", "0", "--no-progress", "--batch-size", "3"]


def test_fid_of_folders_and_of_statistics_files(capsys, small_net, folders, tmp_path):
    a, b = folders
    code, out, err = run(capsys, "fid", a, b, "--json", *_common())
    assert code == 0, err
    report = json.loads(out)
    assert report["num_images"] == [5, 4]  # a's nested images are counted
    assert report["fid_network"]["name"] == "pt_inception" and report["fid_network"]["resize"] == "torch"
    assert report["preprocessing"] == "resize=torch" and report["fid"] > 0
    assert "biased" in err  # fewer images than feature dimensions: said, not refused

    code, out, _ = run(capsys, "fid", a, b, *_common())
    assert code == 0 and out.strip() == f"FID: {report['fid']:.6f}"

    stats = tmp_path / "a_stats.npz"
    code, out, err = run(capsys, "fid", a, "--save-stats", stats, *_common())
    assert code == 0, err
    assert str(stats) in out
    with np.load(stats) as f:  # pytorch-fid's format: mu (D,), sigma (D, D); and what made them
        assert f["mu"].shape == (64,) and f["sigma"].shape == (64, 64)
        assert str(f["feature_net"]) == "pt_inception" and int(f["n"]) == 5
    for pair in ((stats, b), (b, stats)):
        code, out, _ = run(capsys, "fid", *pair, "--json", *_common())
        # Equal up to rounding: FID is a small difference of large traces.
        assert code == 0 and json.loads(out)["fid"] == pytest.approx(report["fid"], rel=1e-6)
    code, out, _ = run(capsys, "fid", stats, stats, "--json")  # no network needed for two statistics files
    assert code == 0 and json.loads(out)["fid"] == pytest.approx(0, abs=1e-6)
    code, out, _ = run(capsys, "fid", a, a, "--json", *_common())
    assert code == 0 and json.loads(out)["fid"] == pytest.approx(0, abs=1e-6)


def test_the_authors_network_and_the_model_size_step(capsys, small_net, folders, tmp_path):
    a, b = folders
    code, out, err = run(capsys, "fid", a, b, "--fid-net", "inception", "--img-size", "32", "--json", *_common())
    assert code == 0, err
    report = json.loads(out)
    assert report["fid_network"]["name"] == "torchvision" and report["preprocessing"] == "resize=pil;img_size=32"
    # Statistics made another way are refused, not compared.
    stats = tmp_path / "a.npz"
    assert run(capsys, "fid", a, "--save-stats", stats, "--fid-net", "inception", *_common())[0] == 0
    code, _, err = run(capsys, "fid", stats, b, "--fid-net", "inception", "--img-size", "48", *_common())
    assert code == 2 and "preprocessing" in err and "img_size=48" in err
    code, _, err = run(capsys, "fid", stats, b, *_common())  # folder side: pt_inception, the default
    assert code == 2 and "torchvision" in err and "pt_inception" in err


def _npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing", "no such folder"),
        (lambda d: (d / "empty").mkdir() or d / "empty", "holds no images"),
        (lambda d: _write(d / "one", [(20, 20)], seed=3), "1 image"),
        (lambda d: _npz(d / "no_sigma.npz", mu=np.zeros(64)), "no 'sigma' array"),
        (lambda d: _npz(d / "shapes.npz", mu=np.zeros(64), sigma=np.zeros((64, 3))), "'sigma' (D, D)"),
        (lambda d: _npz(d / "dims.npz", mu=np.zeros(768), sigma=np.eye(768)), "768-d features"),
        (lambda d: _npz(d / "nan.npz", mu=np.full(64, np.nan), sigma=np.eye(64)), "NaN"),
        (lambda d: (d / "junk.npz").write_bytes(b"not a zip") and d / "junk.npz", "not a readable .npz"),
        (lambda d: _write(d / "pics", [(20, 20)] * 2, seed=4) / "00.png", "neither a folder"),
    ],
    ids=["missing", "empty", "one-image", "no-sigma", "bad-shape", "other-dims", "nan", "not-npz", "a-file"],
)
def test_bad_inputs_are_named_with_the_fix(capsys, small_net, folders, tmp_path, make, message):
    bad = make(tmp_path)
    code, _, err = run(capsys, "fid", bad, folders[1], *_common())
    assert code == 2, err
    assert message in err and "Traceback" not in err


def test_a_corrupt_image_is_named(capsys, small_net, folders, tmp_path):
    broken = folders[1] / "broken.png"
    broken.write_bytes((folders[1] / "00.png").read_bytes()[:60])  # cut short
    code, _, err = run(capsys, "fid", folders[0], folders[1], *_common())
    assert code == 2 and "broken.png" in err and "remove or replace" in err


def test_save_stats_and_path_count_errors(capsys, small_net, folders, tmp_path):
    a, b = folders
    code, _, err = run(capsys, "fid", a, b, "--save-stats", tmp_path / "s.npz", *_common())
    assert code == 2 and "one folder" in err
    code, _, err = run(capsys, "fid", a, "--save-stats", tmp_path / "s.txt", *_common())
    assert code == 2 and ".npz" in err
    (tmp_path / "exists.npz").write_bytes(b"")
    code, _, err = run(capsys, "fid", a, "--save-stats", tmp_path / "exists.npz", *_common())
    assert code == 2 and "exists" in err
    code, _, err = run(capsys, "fid", a, *_common())
    assert code == 2 and "two paths" in err and "--save-stats" in err


def test_a_missing_weight_file_is_named(capsys, folders, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    code, _, err = run(capsys, "fid", *folders, *_common())
    assert code == 2 and "pt_inception-2015-12-05-6726825d.pth" in err and "--weights-dir" in err


def test_statistics_files_of_pytorch_fid_and_ours_read_each_other(tmp_path):
    g = np.random.default_rng(0)
    x = g.standard_normal((50, 8))
    _npz(tmp_path / "theirs.npz", mu=x.mean(0).astype(np.float32), sigma=np.cov(x, rowvar=False))
    stats = load_statistics(tmp_path / "theirs.npz")
    assert stats.feature_net is None and stats.num_images is None
    assert torch.allclose(stats.gaussian.sigma, torch.from_numpy(np.cov(x, rowvar=False)))


# ----------------------------------------------------------------------------------------------------------
# Agreement with pytorch-fid, at the real size (299 px, 2048 features)


def _pytorch_fid():
    return pytest.importorskip("pytorch_fid.fid_score", reason="pip install pytorch-fid (in the dev extra)")


def test_features_and_statistics_are_pytorch_fids(home, tmp_path, monkeypatch):
    """The same weight file through pytorch-fid and through ours: the same activations and statistics, also for a
    folder of images of several sizes (pytorch-fid takes those one per batch)."""
    fid_score = _pytorch_fid()
    from pytorch_fid.inception import InceptionV3

    monkeypatch.setenv("TORCH_HOME", str(home))
    torch.set_num_threads(1)
    folder = _write(tmp_path / "mixed", [(48, 40), (64, 64), (31, 57)], seed=5)
    files = image_files(folder)
    theirs_net = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[2048]])
    theirs = fid_score.get_activations(files, theirs_net, batch_size=1, dims=2048, device="cpu", num_workers=0)

    ours_net = fid.load_inception("pt_inception")
    ours = torch.cat([ours_net(batch) for batch in fid.image_batches(files, None, batch_size=3)]).double().numpy()
    assert np.abs(ours).max() > 1e-3  # the random network does not collapse the features
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)

    mu, sigma = fid_score.calculate_activation_statistics(
        files, theirs_net, batch_size=1, dims=2048, device="cpu", num_workers=0
    )
    stats = fid.files_statistics(files, ours_net, batch_size=3)
    np.testing.assert_allclose(stats.mu.numpy(), mu, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(stats.sigma.numpy(), sigma, rtol=1e-4, atol=1e-9)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Matrix is singular")  # pytorch-fid's sqrtm, on few images
@pytest.mark.filterwarnings("ignore:The `disp` argument is deprecated")  # pytorch-fid's call, newer scipy
def test_the_fid_command_gives_pytorch_fids_number(capsys, home, tmp_path, monkeypatch):
    """End to end: ``stargan-v2 fid A B`` and ``pytorch_fid.calculate_fid_given_paths`` on the same folders and
    weight file. (pytorch-fid's sqrtm of a 2048-d singular product takes ~20 s on one core: marked slow.)"""
    fid_score = _pytorch_fid()
    monkeypatch.setenv("TORCH_HOME", str(home))
    torch.set_num_threads(1)
    a = _write(tmp_path / "a", [(48, 40)] * 6, seed=6)
    b = _write(tmp_path / "b", [(64, 64)] * 7, seed=7, brightness=30)
    theirs = fid_score.calculate_fid_given_paths([str(a), str(b)], 50, "cpu", 2048, num_workers=0)
    capsys.readouterr()  # what pytorch-fid printed
    code, out, err = run(capsys, "fid", a, b, "--json", "--device", "cpu", "--workers", "0", "--no-progress")
    assert code == 0, err
    assert json.loads(out)["fid"] == pytest.approx(theirs, rel=1e-5)
    # Their statistics file, read by ours, against our folder: the same number again.
    fid_score.save_fid_stats([str(a), str(tmp_path / "a.npz")], 50, "cpu", 2048, num_workers=0)
    capsys.readouterr()
    code, out, err = run(capsys, "fid", tmp_path / "a.npz", b, "--json", "--device", "cpu", "--workers", "0")
    assert code == 0, err
    assert json.loads(out)["fid"] == pytest.approx(theirs, rel=1e-5)


def test_a_tasks_saved_outputs_against_the_targets_folder_give_evals_fid(capsys, small_net, tmp_path):
    """``eval --save-images`` writes the 8-bit outputs FID saw; ``fid --fid-net inception --img-size S`` on them
    and the target's training folder reads both as ``eval`` does, so it gives that task's FID."""
    from stargan_v2.checkpoint import save_ema
    from stargan_v2.config import preset
    from stargan_v2.model import build_nets

    from .eval_helpers import TRAIN, VAL, write_domain_folder

    train, val = write_domain_folder(tmp_path / "train", TRAIN, 0), write_domain_folder(tmp_path / "val", VAL, 1)
    config = preset("tiny")
    torch.manual_seed(0)
    checkpoint = save_ema(build_nets(config.model, discriminator=False), config, tmp_path / "ema.safetensors")
    argv = ["eval", "--checkpoint", checkpoint, "--train-data", train, "--val-data", val, "--mode", "latent"]
    argv += ["--out", tmp_path / "out", "--num-outs", "3", "--save-images", "--cache-dir", tmp_path / "cache"]
    code, _, err = run(capsys, *argv, *_common())
    assert code == 0, err
    expected = json.loads((tmp_path / "out" / "eval.json").read_text())["latent"]["tasks"]["apple2pear"]["fid"]
    outputs = tmp_path / "out" / "images" / "latent" / "apple2pear"
    code, out, err = run(capsys, "fid", outputs, train / "pear", "--fid-net", "inception", "--img-size", "32",
                         "--json", *_common())  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["fid"] == pytest.approx(expected, rel=1e-6)
