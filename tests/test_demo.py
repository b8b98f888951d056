"""The demo's wiring: dataset, bounded training, figures and the report, on a tiny budget.

The quality benchmark itself is tested in test_quality.py; here it is replaced by a stand-in so that the test
stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from stargan_v2.config import preset
from stargan_v2.demo import DemoOptions, run_demo
from stargan_v2.metrics import quality


def test_demo_writes_a_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def fake_report(nets: Any, model_config: Any, dataset_dir: Any, **kw: Any) -> dict[str, Any]:
        seen.update(model_config=model_config, dataset_dir=Path(dataset_dir), **kw)
        return {"latent": {"domain_accuracy": 0.5}, "reference": {"domain_accuracy": 0.25}, "oracle": {}}

    monkeypatch.setattr(quality, "quality_report", fake_report)
    options = DemoOptions(out=tmp_path / "demo", minutes=0.0, per_domain=4, val_per_domain=2, progress=False)
    config = preset("demo").override(["dim_in=8", "max_conv_dim=16", "hidden_dim=16", "batch_size=2", "print_every=1"])
    report = run_demo(options, config)

    out = tmp_path / "demo"
    assert report == out / "report.html"
    assert seen["dataset_dir"] == out / "data" and seen["model_config"] == config.model
    assert json.loads((out / "quality.json").read_text())["latent"]["domain_accuracy"] == 0.5
    for name in ("reference.png", "latent.png", "cycle.png", "report.md"):
        assert (out / name).is_file(), name
    text = (out / "report.md").read_text()
    assert "| domain_accuracy | 0.500 |" in text and "![reference](reference.png)" in text
    assert 'src="reference.png"' in report.read_text()
    # A second demo in the same folder continues the same run.
    run_demo(options, config)
    steps = [json.loads(line)["step"] for line in (out / "run" / "stats.jsonl").read_text().splitlines()]
    assert steps == [1, 2]
