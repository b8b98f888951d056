"""The demo's wiring: dataset, bounded training measured by the oracle, figures and the report, on a tiny budget.

The quality benchmark itself is tested in test_quality.py; here the final figures come from a stand-in and the
oracle is trained for two steps, so that the test stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import stargan_v2.metrics.monitor as monitor_module
from stargan_v2 import assets, procedural
from stargan_v2.config import preset
from stargan_v2.demo import DemoOptions, demo_folders, figures_table, run_demo
from stargan_v2.metrics import quality
from stargan_v2.metrics.oracle import train_oracle
from stargan_v2.report import MIN_CELL, _interp


def _figures(acc: float) -> dict[str, Any]:
    mode = {"domain_accuracy": acc, "pose_error_center_rel": 0.05, "diversity_pixels": 0.1, "frechet_distance": 9.0}
    return {
        "latent": dict(mode),
        "reference": {**mode, "style_fur_error": 0.1, "style_fur_error_vs_source": 0.2},
        "real": {"domain_accuracy": 1.0, "pose_error_center_rel": 0.04},
        "oracle": {},
    }


@pytest.fixture
def fast(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []

    def fake_report(nets: Any, model_config: Any, dataset_dir: Any, **kw: Any) -> dict[str, Any]:
        seen.append(dict(model_config=model_config, dataset_dir=Path(dataset_dir), **kw))
        return _figures(0.5 + 0.25 * (len(seen) - 1))

    def cheap_oracle(dataset_dir: Path, img_size: int, cache_dir: object = None, device: object = "cpu") -> object:
        return train_oracle(dataset_dir, img_size, num_images=32, steps=2)

    monkeypatch.setattr(quality, "quality_report", fake_report)
    monkeypatch.setattr(monitor_module, "load_or_train_oracle", cheap_oracle)
    return seen


def test_demo_writes_a_report(tmp_path: Path, fast: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    # The shipped model's place is taken by a tiny one saved here, so that both columns appear.
    from stargan_v2.checkpoint import save_ema
    from stargan_v2.model import build_nets

    config = preset("demo").override(["dim_in=8", "max_conv_dim=16", "hidden_dim=16", "batch_size=2", "print_every=1"])
    shipped = save_ema(build_nets(config.model, discriminator=False), config, tmp_path / "shipped.safetensors")
    monkeypatch.setattr(assets, "shipped_demo_path", lambda: shipped)
    monkeypatch.setattr(assets, "shipped_demo_record", lambda: {"steps": 123, "train_minutes": 60, "machine": "X"})
    options = DemoOptions(
        out=tmp_path / "demo", minutes=0.01, per_domain=4, val_per_domain=2, progress=False, eval_every=1
    )
    report = run_demo(options, config)

    out = tmp_path / "demo"
    assert report == out / "report.html"
    assert fast[0]["dataset_dir"] == out / "data" and fast[0]["model_config"] == config.model
    figures = json.loads((out / "quality.json").read_text())
    assert figures["this run"]["latent"]["domain_accuracy"] == 0.5
    assert figures["shipped model"]["latent"]["domain_accuracy"] == 0.75
    # The grids: cells of at least 128 px, this run's above the shipped model's.
    for name, rows in (("latent.png", 2 * 4), ("reference.png", 2 * 4)):
        width, height = Image.open(out / name).size
        assert width > 6 * MIN_CELL and height > rows * MIN_CELL, name
    # Measured during training (every step here) and plotted.
    rows = [json.loads(line) for line in (out / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows and "oracle/latent/domain_accuracy" in rows[0]
    assert (out / "training.png").is_file()
    text = (out / "report.md").read_text()
    assert "steps in " in text and "PyTorch" in text and "shipped with the package: 123 steps" in text
    assert "| domain accuracy (the oracle sees the target's head shape) | 0.500 | 0.500 | 0.750 | 0.750 |" in text
    assert "![reference](reference.png)" in text and "![training](training.png)" in text
    assert 'src="reference.png"' in report.read_text()
    # A second demo in the same folder continues the same run.
    first = json.loads((out / "run" / "stats.jsonl").read_text().splitlines()[-1])["step"]
    run_demo(options, config)
    last = json.loads((out / "run" / "stats.jsonl").read_text().splitlines()[-1])["step"]
    assert last > first


def test_the_table_has_a_column_per_model_and_mode() -> None:
    table = figures_table({"this run": _figures(0.5), "shipped model": _figures(0.9)})
    assert table[0] == [
        "figure",
        "this run: latent",
        "this run: reference",
        "shipped model: latent",
        "shipped model: reference",
        "real images",
        "target",
    ]
    fur = next(row for row in table if row[0].startswith("fur colour error against the reference"))
    assert fur[1:5] == ["", "0.100", "", "0.100"] and fur[-1] == "below the error against the source"


def test_the_minutes_axis_extends_past_the_measured_steps_instead_of_piling_up() -> None:
    """The training plot's minutes axis maps steps to minutes linearly beyond the first and last measurement, so
    ticks outside that range get their own places (clamped, they all landed on the last point)."""
    steps, minutes = [250.0, 500.0, 1760.0], [1.4, 2.8, 10.0]
    out = _interp(np.array([0.0, 250.0, 1000.0, 2000.0]), steps, minutes)
    assert out[1] == 1.4 and out[0] < 1.4 and out[3] > 10.0
    assert np.all(np.diff(out) > 0)
    back = _interp(out, minutes, steps)
    assert np.allclose(back, [0.0, 250.0, 1000.0, 2000.0])


def test_demo_replaces_an_old_dataset_and_keeps_its_run(tmp_path: Path) -> None:
    options = DemoOptions(out=tmp_path, per_domain=2, val_per_domain=1, data_size=32)
    data, run_dir = demo_folders(tmp_path, options)
    (run_dir / "checkpoints").mkdir(parents=True)
    png = data / "train" / "cat" / "00000.png"
    stamp = png.stat().st_mtime_ns
    # The same arguments: the dataset and the run are re-used as they are.
    assert demo_folders(tmp_path, options) == (data, run_dir)
    assert png.stat().st_mtime_ns == stamp and run_dir.is_dir()
    # A dataset of the generator's version 1: made again, and the run trained on it set aside, not deleted.
    manifest = json.loads((data / "dataset.json").read_text())
    (data / "dataset.json").write_text(json.dumps({**manifest, "version": 1}))
    assert demo_folders(tmp_path, options) == (data, run_dir)
    assert json.loads((data / "dataset.json").read_text())["version"] == procedural.VERSION
    assert not run_dir.exists()
    (kept,) = tmp_path.glob("run.before-*")
    assert (kept / "checkpoints").is_dir()


def test_demo_leaves_a_foreign_data_folder_alone(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "mine.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="empty folder"):
        demo_folders(tmp_path, DemoOptions(out=tmp_path, per_domain=2, val_per_domain=1, data_size=32))
    assert (tmp_path / "data" / "mine.txt").read_text() == "keep me"
