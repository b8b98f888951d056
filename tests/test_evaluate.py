"""The evaluation protocol: tasks, random streams, averaging, the real-statistics cache, and `stargan-v2 eval`.

Most tests use small stand-ins for the feature network and LPIPS (the protocol does not depend on which
network it asks); the command-line test runs the real Inception and AlexNet code on random weights saved
under the real file names.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from stargan_v2.checkpoint import save_ema
from stargan_v2.cli import main
from stargan_v2.config import preset
from stargan_v2.data import scan_domains
from stargan_v2.metrics import evaluate as ev
from stargan_v2.metrics import fid
from stargan_v2.metrics.fid import frechet_distance
from stargan_v2.model import Nets, build_nets

from .eval_helpers import TRAIN, VAL, write_domain_folder
from .fake_weights import torch_home

CONFIG = preset("tiny")  # 32 px, 2 domains


@pytest.fixture
def data(tmp_path) -> tuple[Path, Path]:
    return write_domain_folder(tmp_path / "train", TRAIN, 0), write_domain_folder(tmp_path / "val", VAL, 1)


class PixelFeatures(nn.Module):
    """A stand-in feature network: a fixed random projection of 4x4 average-pooled pixels; counts images."""

    name = "pixels"
    feature_dim = 6
    cache_token = "pixels:v1"

    def __init__(self) -> None:
        super().__init__()
        self.projection = torch.randn(48, self.feature_dim, generator=torch.Generator().manual_seed(0))
        self.calls = 0

    def forward(self, x: Tensor) -> Tensor:
        assert x.dtype == torch.uint8  # feature networks take 8-bit images, as read from files
        self.calls += x.shape[0]
        return F.adaptive_avg_pool2d(x.float() / 255, 4).flatten(1) @ self.projection

    def describe(self) -> dict[str, str]:
        return {"name": self.name}


class PixelDistance:
    """A stand-in for LPIPS: mean absolute pixel difference over the pairs of each group; records the groups."""

    def __init__(self) -> None:
        self.shapes: list[tuple[int, ...]] = []

    def mean_pairwise(self, x: Tensor) -> Tensor:
        self.shapes.append(tuple(x.shape))
        n = x.shape[1]
        pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
        return torch.stack([(x[:, i] - x[:, j]).abs().flatten(1).mean(1) for i, j in pairs], 1).mean(1)


class Identity(nn.Module):
    def forward(self, x: Tensor, s: Tensor, masks=None) -> Tensor:
        return x.clone()


def _nets(generator: nn.Module | None = None) -> Nets:
    torch.manual_seed(0)
    nets = build_nets(CONFIG.model, discriminator=False)
    if generator is not None:
        nets.generator = generator
    return nets


def _run(nets: Nets, data, **kwargs):
    feature_net = kwargs.pop("feature_net", PixelFeatures())
    lpips = kwargs.pop("lpips", PixelDistance())
    kwargs.setdefault("num_outputs", 3)
    return ev.evaluate(nets, CONFIG.model, data[0], data[1], feature_net, lpips, **kwargs)


# ----------------------------------------------------------------------------------------------------------
# Tasks and random streams


def test_tasks_are_every_ordered_pair_of_distinct_domains():
    assert ev.tasks(2) == [(0, 1), (1, 0)]
    three = ev.tasks(3)
    assert len(three) == 6 and len(set(three)) == 6 and all(s != t for s, t in three)


def test_each_task_has_its_own_random_stream():
    def draw(*args):
        return torch.rand(3, generator=ev.task_generator(*args))

    assert torch.equal(draw(0, "latent", 0, 1), draw(0, "latent", 0, 1))
    others = [draw(1, "latent", 0, 1), draw(0, "reference", 0, 1), draw(0, "latent", 1, 0)]
    assert all(not torch.equal(draw(0, "latent", 0, 1), o) for o in others)
    with pytest.raises(ValueError, match="mode"):
        ev.task_generator(0, "random", 0, 1)


@pytest.mark.parametrize("mode", ev.MODES)
def test_translation_does_not_depend_on_the_batch_size(mode):
    nets = _nets().eval()
    g = torch.Generator().manual_seed(0)
    sources = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    refs = torch.rand(4, 3, 32, 32, generator=g) * 2 - 1

    def outputs(batch_size: int) -> tuple[Tensor, list[Tensor]]:
        batches = list(
            ev.translate_task(
                nets,
                mode,
                sources,
                refs,
                1,
                num_outputs=3,
                latent_dim=CONFIG.model.latent_dim,
                generator=ev.task_generator(0, mode, 0, 1),
                device="cpu",
                batch_size=batch_size,
            )
        )
        assert torch.equal(torch.cat([b.rows for b in batches]), torch.arange(2))
        refs_used = [b.ref_index.view(-1, 3) for b in batches if b.ref_index is not None]
        return torch.cat([b.outputs for b in batches]), refs_used

    small, refs_small = outputs(3)  # one source per pass
    large, refs_large = outputs(100)
    assert small.shape == (6, 3, 32, 32)
    assert torch.allclose(small, large, atol=1e-5)
    if mode == "reference":  # 3 distinct references per source, out of 4
        assert all(len(set(row.tolist())) == 3 for row in torch.cat(refs_small))
        assert torch.equal(torch.cat(refs_small), torch.cat(refs_large))


def test_batched_mean_weighs_batches_not_values():
    values = torch.tensor([1.0, 2.0, 3.0, 4.0, 10.0])
    # Batches of 2: (1, 2), (3, 4), (10): the last, single value weighs a third.
    assert ev.batched_mean(values, 2) == pytest.approx((1.5 + 3.5 + 10) / 3)
    assert ev.batched_mean(values, 5) == pytest.approx(4.0) == ev.batched_mean(values, 1)
    # In a given order: (10, 1), (2, 3), (4).
    assert ev.batched_mean(values, 2, torch.tensor([4, 0, 1, 2, 3])) == pytest.approx((5.5 + 2.5 + 4) / 3)
    with pytest.raises(ValueError, match="batch"):
        ev.batched_mean(values, 0)


def test_the_second_task_stream_leaves_the_first_alone():
    first = torch.rand(4, generator=ev.task_generator(0, "latent", 0, 1))
    assert torch.equal(first, torch.rand(4, generator=ev.task_generator(0, "latent", 0, 1, stream=0)))
    assert not torch.equal(first, torch.rand(4, generator=ev.task_generator(0, "latent", 0, 1, stream=1)))


def test_mean_over_tasks_weighs_every_task_the_same():
    per_task = {"a2b": {"fid": 1.0, "lpips": 0.2}, "b2a": {"fid": 3.0, "lpips": 0.4}}
    assert ev.mean_over_tasks(per_task) == pytest.approx({"fid": 2.0, "lpips": 0.3})


# ----------------------------------------------------------------------------------------------------------
# The protocol


def test_report_structure_and_averaging(data):
    lpips = PixelDistance()
    nets = _nets()
    for _, module in nets.items():
        module.train()
    report = _run(nets, data, lpips=lpips, batch_size=6)
    report = json.loads(json.dumps(report))  # JSON-ready
    assert {"seed", "fid_network", "lpips_network", "protocol", "latent", "reference", "seconds"} <= set(report)
    assert report["fid_network"] == {"name": "pixels"}
    protocol = report["protocol"]
    assert protocol["domains"] == ["apple", "pear"] and protocol["num_tasks"] == 2
    assert protocol["sources_per_domain"] == VAL and protocol["train_images_per_domain"] == TRAIN
    for mode in ev.MODES:
        tasks = report[mode]["tasks"]
        assert list(tasks) == ["apple2pear", "pear2apple"]
        for key in ("fid", "lpips"):
            # The mean over tasks, not over outputs: the two tasks have 2 and 3 sources.
            assert report[mode]["mean"][key] == pytest.approx((tasks["apple2pear"][key] + tasks["pear2apple"][key]) / 2)
        assert all(t["fid"] > 0 and t["lpips"] > 0 for t in tasks.values())
    # LPIPS saw each source's 3 outputs as one group, 2 sources per pass (batch_size 6).
    assert {s[1] for s in lpips.shapes} == {3} and sum(s[0] for s in lpips.shapes) == 2 * (2 + 3)
    assert all(module.training for _, module in nets.items())  # given back in the mode they came in
    assert "apple2pear" in ev.format_table(report) and "mean" in ev.format_table(report)


class RecordingDistance(PixelDistance):
    """PixelDistance that keeps what it returned, so a test can recompute the averages."""

    def __init__(self) -> None:
        super().__init__()
        self.values: list[Tensor] = []

    def mean_pairwise(self, x: Tensor) -> Tensor:
        out = super().mean_pairwise(x)
        self.values.append(out)
        return out


@pytest.mark.parametrize("lpips_batch", [2, 32])
def test_lpips_is_averaged_per_batch_of_sources_as_the_authors_and_per_source_beside_it(data, lpips_batch):
    lpips = RecordingDistance()
    report = _run(_nets(), data, lpips=lpips, modes=("latent",), batch_size=100, lpips_batch=lpips_batch)
    assert report["protocol"]["lpips_averaging"]["batch"] == lpips_batch
    # One pass per task (batch_size 100): the values of the sources in order, apple2pear (2), pear2apple (3).
    for (source, target, name), values in zip(((0, 1, "apple2pear"), (1, 0, "pear2apple")), lpips.values, strict=True):
        figures = report["latent"]["tasks"][name]
        assert figures["lpips_per_source"] == pytest.approx(float(values.double().mean()))
        order = torch.randperm(len(values), generator=ev.task_generator(0, "latent", source, target, stream=1))
        expected = ev.batched_mean(values, lpips_batch, order)
        assert figures["lpips"] == pytest.approx(expected)
        # 3 sources in batches of 2 weigh the one in the last batch double: the two figures differ.
        if name == "pear2apple" and lpips_batch == 2:
            assert figures["lpips"] != pytest.approx(figures["lpips_per_source"])
        if lpips_batch >= len(values):
            assert figures["lpips"] == pytest.approx(figures["lpips_per_source"])
    mean = report["latent"]["mean"]
    assert set(mean) == {"fid", "lpips", "lpips_per_source"}
    assert "LPIPS/src" in ev.format_table(report)


def test_the_report_names_the_preprocessing(data):
    report = _run(_nets(), data, modes=("latent",))
    pre = report["protocol"]["fid_preprocessing"]
    assert "PIL" in pre["model_size"] and "save_image" in pre["model_size"]


def test_fid_and_lpips_of_an_identity_translator_against_an_independent_computation(data):
    report = _run(_nets(Identity()), data, modes=("latent",), num_outputs=4)
    features = PixelFeatures()
    train = scan_domains(data[0])
    val = scan_domains(data[1])
    for source, target, name in ((0, 1, "apple2pear"), (1, 0, "pear2apple")):
        sources = ev.read_images(val.files[source], 32)
        fakes = sources.images.repeat_interleave(4, 0)  # every output is its source
        reals = ev.read_images(train.files[target], 32).images
        expected = frechet_distance(features(fakes), features(reals))
        assert report["latent"]["tasks"][name]["fid"] == pytest.approx(expected, rel=1e-6)
        assert report["latent"]["tasks"][name]["lpips"] == 0  # no diversity at all


def test_fid_of_a_set_with_itself_is_zero(data):
    """Real statistics of the training folder against features of the same images, fed as fakes."""
    net = PixelFeatures()
    train = scan_domains(data[0])
    stats = ev.real_statistics(train.files[1], 32, net)
    fake = fid.FeatureStats(net.feature_dim)
    fake.update(net(ev.read_images(train.files[1], 32).images))
    assert fid.frechet_distance_gaussians(fake.gaussian(), stats) == pytest.approx(0.0, abs=1e-9)


def test_evaluation_is_seeded(data):
    first = _run(_nets(), data, seed=3)
    again = _run(_nets(), data, seed=3)
    other = _run(_nets(), data, seed=4)
    for mode in ev.MODES:
        assert first[mode] == again[mode]
        assert first[mode] != other[mode]


def test_real_statistics_are_cached_by_folder_contents_and_network(data, tmp_path):
    cache = tmp_path / "cache"
    net = PixelFeatures()
    _run(_nets(), data, feature_net=net, cache_dir=cache, modes=("latent",), num_outputs=2)
    fakes = 2 * (2 + 3)
    assert net.calls == fakes + sum(TRAIN.values())
    assert len(list(cache.glob("fid_stats_pixels_32px_*.safetensors"))) == 2

    net.calls = 0
    _run(_nets(), data, feature_net=net, cache_dir=cache, modes=("latent",), num_outputs=2)
    assert net.calls == fakes  # the real statistics came from the cache

    # A changed file (its modification time) changes its domain's key: only that domain is read again.
    changed = sorted((data[0] / "pear").iterdir())[0]
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))
    net.calls = 0
    _run(_nets(), data, feature_net=net, cache_dir=cache, modes=("latent",), num_outputs=2)
    assert net.calls == fakes + TRAIN["pear"]

    files = scan_domains(data[0]).files[0]
    other = PixelFeatures()
    other.cache_token = "pixels:v2"
    assert ev.stats_key(files, 32, net) != ev.stats_key(files, 32, other)
    assert ev.stats_key(files, 32, net) != ev.stats_key(files, 64, net)
    assert ev.stats_key(files, 32, net) != ev.stats_key(files[:-1], 32, net)


def test_save_images_writes_every_output(data, tmp_path):
    _run(_nets(), data, modes=("reference",), num_outputs=2, save_images=tmp_path / "images")
    written = sorted(p.relative_to(tmp_path / "images").as_posix() for p in (tmp_path / "images").rglob("*.png"))
    assert len(written) == 2 * (2 + 3)
    assert "reference/apple2pear/img0_00.png" in written and "reference/pear2apple/img2_01.png" in written
    with Image.open(tmp_path / "images" / "reference" / "apple2pear" / "img0_00.png") as image:
        assert image.size == (32, 32)


def test_wrong_domains_are_refused(data, tmp_path):
    three = write_domain_folder(tmp_path / "three", {"a": 2, "b": 2, "c": 2}, 2)
    with pytest.raises(ValueError, match="2 domains"):
        _run(_nets(), (three, three))
    with pytest.raises(ValueError, match="mode"):
        _run(_nets(), data, modes=("random",))
    with pytest.raises(ValueError, match="num_outputs"):
        _run(_nets(), data, num_outputs=1)


# ----------------------------------------------------------------------------------------------------------
# The command


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return torch_home(tmp_path_factory)


def test_eval_command_with_the_real_networks(data, tmp_path, home, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(home))
    # The real network code and weight files, at the smallest input Inception v3 takes and with 64 of its
    # 2048 features: 2048-d eigenvalue problems take seconds each on a small CPU.
    monkeypatch.setattr(fid, "INCEPTION_SIZE", 75)
    monkeypatch.setattr(fid, "FEATURE_DIM", 64)
    full_forward = fid.InceptionFeatures.forward
    monkeypatch.setattr(fid.InceptionFeatures, "forward", lambda self, x: full_forward(self, x)[:, :64])
    checkpoint = save_ema(_nets(), CONFIG, tmp_path / "ema.safetensors", step=7)
    argv = ["eval", "--checkpoint", str(checkpoint), "--train-data", str(data[0]), "--val-data", str(data[1])]
    argv += ["--out", str(tmp_path / "out"), "--num-outs", "2", "--workers", "0", "--device", "cpu"]
    argv += ["--cache-dir", str(tmp_path / "cache"), "--no-progress", "--seed", "5", "--mode", "latent"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "apple2pear" in out and "mean" in out and "eval.json" in out
    report = json.loads((tmp_path / "out" / "eval.json").read_text())
    assert report["checkpoint"] == str(checkpoint) and report["seed"] == 5
    assert report["fid_network"]["name"] == "torchvision" and report["fid_network"]["resize"] == "pil"
    assert "authors" in report["protocol"]["fid_preprocessing"]["to_inception_input"]
    assert report["fid_network"]["weights_file"] == "inception_v3_google-0cc3c7bd.pth"
    assert "README" in report["fid_network"]["comparable_with"]
    assert report["lpips_network"]["trunk_weights_file"] == "alexnet-owt-7be5be79.pth"
    assert "reference" not in report  # --mode latent
    assert set(report["latent"]["tasks"]) == {"apple2pear", "pear2apple"}
    assert np.isfinite(report["latent"]["mean"]["fid"]) and report["latent"]["mean"]["lpips"] > 0


def test_eval_command_names_a_missing_weight_file(data, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    argv = ["eval", "--checkpoint", str(tmp_path / "missing.safetensors"), "--train-data", str(data[0])]
    argv += ["--val-data", str(data[1]), "--fid-net", "pt_inception", "--device", "cpu"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "pt_inception-2015-12-05-6726825d.pth" in err and str(tmp_path / "torch" / "hub" / "checkpoints") in err


@pytest.mark.slow
def test_eval_runs_end_to_end_on_the_built_in_dataset(tmp_path, home, monkeypatch, capsys):
    """The whole command on the procedural dataset (3 domains, 6 tasks, both modes) with the real network code
    on random weights; the JSON holds every task of both modes and their means."""
    from stargan_v2.procedural import make_dataset

    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.setattr(fid, "INCEPTION_SIZE", 75)
    monkeypatch.setattr(fid, "FEATURE_DIM", 64)
    full_forward = fid.InceptionFeatures.forward
    monkeypatch.setattr(fid.InceptionFeatures, "forward", lambda self, x: full_forward(self, x)[:, :64])
    data = make_dataset(tmp_path / "animals", size=32, per_domain=4, val_per_domain=2, seed=0, workers=1)
    config = preset("tiny").override(["num_domains=3"])
    torch.manual_seed(0)
    nets = build_nets(config.model, discriminator=False)
    checkpoint = save_ema(nets, config, tmp_path / "ema.safetensors", domains=["cat", "dog", "fox"])
    argv = ["eval", "--checkpoint", str(checkpoint), "--train-data", str(data / "train"), "--val-data"]
    argv += [str(data / "val"), "--out", str(tmp_path / "out"), "--num-outs", "2", "--device", "cpu", "--no-progress"]
    argv += ["--cache-dir", str(tmp_path / "cache")]
    assert main(argv) == 0
    report = json.loads((tmp_path / "out" / "eval.json").read_text())
    tasks = {f"{a}2{b}" for a in ("cat", "dog", "fox") for b in ("cat", "dog", "fox") if a != b}
    for mode in ("latent", "reference"):
        assert set(report[mode]["tasks"]) == tasks
        values = report[mode]["tasks"].values()
        assert report[mode]["mean"]["fid"] == pytest.approx(np.mean([t["fid"] for t in values]))
        assert report[mode]["mean"]["lpips"] == pytest.approx(np.mean([t["lpips"] for t in values]))
    assert report["protocol"]["num_tasks"] == 6 and report["protocol"]["num_outputs"] == 2
