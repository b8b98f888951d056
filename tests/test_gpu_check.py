"""The prepared GPU check runs end to end on the CPU (--dry-run), so that it is ready whenever a GPU is lent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_gpu_check_runs_dry_on_the_cpu(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gpu_check.py"), "--out", str(tmp_path), "--dry-run"],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    kinds = {(r["kind"], r["impl"], r["precision"], r["channels_last"]) for r in report["speed"]}
    assert ("train", "authors", "fp32", False) in kinds and ("train", "ours", "bf16", True) in kinds
    assert ("synth", "ours", "fp32", True) in kinds
    assert all(r["sec_per_iter"] > 0 and r["vs_authors"] > 0 for r in report["speed"])
    assert report["ddp"]["returncode"] == 0 and report["ddp"]["finished"], report["ddp"]["stderr_tail"]
    assert report["determinism"]["identical"], report["determinism"]
    assert any("compiling takes minutes" in s for s in report["skipped"])
    table = (tmp_path / "gpu_check.md").read_text()
    assert "| train | authors | fp32 | NCHW | no |" in table and "Determinism" in table


def test_without_a_gpu_it_says_so() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gpu_check.py"), "--out", "unused"],
        capture_output=True,
        text=True,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(ROOT / "src")},
    )
    assert done.returncode == 2 and "--dry-run" in done.stderr
