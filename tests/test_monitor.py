"""Metrics during training: ``--eval-every`` writes metrics.jsonl and TensorBoard, ``--keep-best`` keeps the best."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import stargan_v2.metrics.monitor as monitor_module
import stargan_v2.run as run_module
from stargan_v2 import procedural
from stargan_v2.checkpoint import load_ema
from stargan_v2.config import Config, preset
from stargan_v2.metrics.monitor import OracleMonitor, higher_is_better
from stargan_v2.metrics.oracle import train_oracle
from stargan_v2.run import RunError, RunOptions, train


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return procedural.make_dataset(tmp_path_factory.mktemp("m") / "d", size=32, per_domain=6, val_per_domain=3)


@pytest.fixture
def cheap_oracle(monkeypatch: pytest.MonkeyPatch) -> None:
    """An oracle trained for two steps: the monitor's plumbing is under test here, not the oracle."""

    def load(dataset_dir: Path, img_size: int, cache_dir: object = None, device: object = "cpu") -> object:
        return train_oracle(dataset_dir, img_size, num_images=32, steps=2)

    monkeypatch.setattr(monitor_module, "load_or_train_oracle", load)


def _config(iters: int) -> Config:
    items = [f"total_iters={iters}", "print_every=2", "sample_every=1000", "save_every=1000", "batch_size=2"]
    return preset("tiny").override([*items, "num_domains=3"])


def _options(run_dir: Path, dataset: Path, **kw: object) -> RunOptions:
    return RunOptions(run_dir=run_dir, data=dataset / "train", val_data=dataset / "val", progress=False, **kw)  # type: ignore[arg-type]


def test_eval_every_writes_the_oracle_figures(tmp_path: Path, dataset: Path, cheap_oracle: None) -> None:
    run = tmp_path / "run"
    train(_config(5), _options(run, dataset, eval_every=2, eval_sources=2))
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    # Every 2 steps, and once more at the end of the run.
    assert [r["step"] for r in rows] == [2, 4, 5]
    for row in rows:
        assert 0 <= row["oracle/latent/domain_accuracy"] <= 1
        assert row["oracle/reference/style_fur_error"] >= 0
        assert row["eval_seconds"] > 0 and row["time"] > 0
        assert "oracle/latent/style_fur_error" not in row  # reference-guided only
    assert "metrics at step 4: oracle/latent/domain_accuracy=" in (run / "log.txt").read_text()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    steps = [e.step for e in events.Scalars("metrics/oracle/latent/domain_accuracy")]
    assert steps == [2, 4, 5]


class _Scripted:
    """A monitor that returns the given values in turn (to check which checkpoint --keep-best keeps)."""

    names = ("score", "error")

    def __init__(self, values: list[float]) -> None:
        self.values = iter(values)
        self.seen: list[torch.Tensor] = []

    def __call__(self, nets: object, model_config: object, mask_fn: object = None) -> dict[str, float]:
        self.seen.append(next(iter(nets.generator.parameters())).detach().clone())  # type: ignore[attr-defined]
        value = next(self.values)
        return {"score": value, "error": value}


@pytest.mark.parametrize(("metric", "best_step"), [("score", 4), ("error", 2)])
def test_keep_best_keeps_the_ema_nets_of_the_best_value(
    tmp_path: Path, dataset: Path, monkeypatch: pytest.MonkeyPatch, metric: str, best_step: int
) -> None:
    scripted = _Scripted([0.2, 0.9, 0.5])  # at steps 2, 4 and 6
    monkeypatch.setattr(run_module, "make_monitor", lambda options, img_size, device: scripted)
    monkeypatch.setattr(monitor_module, "_HIGHER_IS_BETTER", ("score",))
    run = tmp_path / "run"
    train(_config(6), _options(run, dataset, eval_every=2, keep_best=metric))
    info = json.loads((run / "checkpoints" / "best_ema.json").read_text())
    assert info["metric"] == metric and info["step"] == best_step
    assert info["value"] == pytest.approx(0.9 if metric == "score" else 0.2)
    nets, _ = load_ema(run / "checkpoints" / "best_ema.safetensors")
    kept = next(iter(nets.generator.parameters()))
    assert torch.equal(kept, scripted.seen[best_step // 2 - 1])


def test_bad_eval_options_are_refused_before_training(tmp_path: Path, dataset: Path, cheap_oracle: None) -> None:
    with pytest.raises(RunError, match="--keep-best needs --eval-every"):
        train(_config(2), _options(tmp_path / "a", dataset, keep_best="oracle/latent/domain_accuracy"))
    with pytest.raises(RunError, match="choose one of: oracle/latent/domain_accuracy"):
        train(_config(2), _options(tmp_path / "b", dataset, eval_every=1, keep_best="fid/latent"))
    with pytest.raises(RunError, match="--eval-metrics nonsense: choose from oracle, fid_lpips"):
        train(_config(2), _options(tmp_path / "c", dataset, eval_every=1, eval_metrics=("nonsense",)))
    folder = tmp_path / "plain"
    folder.mkdir()
    for split in ("train", "val"):
        (folder / split).symlink_to(dataset / split)  # the same images, but no dataset.json beside them
    with pytest.raises(RunError, match="scores the built-in dataset only"):
        train(_config(2), _options(tmp_path / "d", folder, eval_every=1, eval_metrics=("oracle",)))
    for run in "abcd":
        assert not (tmp_path / run / "checkpoints").exists() or not any((tmp_path / run / "checkpoints").iterdir())


def test_which_figures_are_better_higher() -> None:
    assert higher_is_better("oracle/latent/domain_accuracy")
    assert higher_is_better("oracle/reference/diversity_pixels")
    assert higher_is_better("lpips/latent")
    assert not higher_is_better("fid/latent")
    assert not higher_is_better("oracle/latent/pose_error_center_rel")
    assert not higher_is_better("oracle/reference/style_fur_error_vs_source")


def test_oracle_monitor_names_what_it_returns(dataset: Path, cheap_oracle: None) -> None:
    monitor = OracleMonitor(dataset, 32, sources_per_domain=2, num_outputs=2)
    nets = run_module.init_train_state(_config(1)).nets_ema
    figures = monitor(nets, _config(1).model)
    assert tuple(figures) == monitor.names


@pytest.mark.slow
def test_eval_every_measures_fid_and_lpips_on_other_data(
    tmp_path: Path, dataset: Path, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """On folders that are not the built-in dataset, --eval-every measures the paper's FID and LPIPS (here with
    random-weight networks saved under the real file names, at Inception's smallest input and 64 features)."""
    from stargan_v2.cli import main
    from stargan_v2.metrics import fid

    from .fake_weights import torch_home

    monkeypatch.setenv("TORCH_HOME", str(torch_home(tmp_path_factory)))
    monkeypatch.setattr(fid, "INCEPTION_SIZE", 75)
    monkeypatch.setattr(fid, "FEATURE_DIM", 64)
    full_forward = fid.InceptionFeatures.forward
    monkeypatch.setattr(fid.InceptionFeatures, "forward", lambda self, x: full_forward(self, x)[:, :64])
    plain = tmp_path / "plain"
    for split in ("train", "val"):
        (plain / split).mkdir(parents=True)
        for domain in procedural.DOMAINS[:2]:
            (plain / split / domain).symlink_to(dataset / split / domain)
    run = tmp_path / "run"
    argv = ["train", "--data", str(plain / "train"), "--val-data", str(plain / "val"), "--preset", "tiny"]
    argv += ["--run-dir", str(run), "--iters", "2", "--batch-size", "2", "--eval-every", "2", "--eval-sources", "2"]
    argv += ["--keep-best", "fid/latent", "--no-progress", "--device", "cpu"]
    assert main(argv) == 0
    (row,) = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert row["step"] == 2
    assert set(row) >= {"fid/latent", "lpips/latent", "lpips_per_source/latent", "fid/reference"}
    assert row["lpips/reference"] > 0 and row["fid/latent"] > 0
    assert json.loads((run / "checkpoints" / "best_ema.json").read_text())["metric"] == "fid/latent"
