"""A training run: run directory, exact resume, Ctrl-C, time budget, and the errors a user can hit."""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path

import pytest
import torch
from PIL import Image

from stargan_v2.checkpoint import load_for_synthesis
from stargan_v2.cli import main
from stargan_v2.config import Config
from stargan_v2.data import DataError
from stargan_v2.run import RunError, list_states, train
from stargan_v2.training_state import load_training_state

from .run_helpers import image_folder, run_config, run_options, run_weights


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return image_folder(tmp_path / "data")


def test_run_directory_is_auditable(tmp_path: Path, data: Path, tiny_config: Config) -> None:
    result = train(run_config(tiny_config, 4), run_options(tmp_path / "run", data))
    run = tmp_path / "run"
    assert result.step == 4 and result.reason == "finished"
    assert Config.from_json((run / "config.json").read_text()) == run_config(tiny_config, 4)
    rows = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4]
    assert {"D/latent_real", "G/ref_cyc", "G/lambda_ds"} <= set(rows[0])
    assert sorted(p.name for p in (run / "samples").iterdir()) == [
        "000004_cycle.png",
        "000004_latent.png",
        "000004_reference.png",
    ]
    assert [s for s, _ in list_states(run)] == [4]
    assert (run / "checkpoints" / "ema_000004.safetensors").is_file()
    assert "stopped at step 4: finished" in (run / "log.txt").read_text()
    assert any((run / "tensorboard").iterdir())


@pytest.mark.slow
def test_resumed_run_is_bit_identical(tmp_path: Path, data: Path, tiny_config: Config) -> None:
    """2N steps in one go and N steps resumed for N more give the same weights, bit for bit."""
    train(run_config(tiny_config, 6), run_options(tmp_path / "straight", data))
    train(run_config(tiny_config, 3), run_options(tmp_path / "resumed", data))
    train(run_config(tiny_config, 6), run_options(tmp_path / "resumed", data, resume=True), explicit={"total_iters"})
    a = run_weights(tmp_path / "straight" / "checkpoints" / "state_000006.safetensors")
    b = run_weights(tmp_path / "resumed" / "checkpoints" / "state_000006.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    straight = (tmp_path / "straight" / "stats.jsonl").read_text().splitlines()
    resumed = (tmp_path / "resumed" / "stats.jsonl").read_text().splitlines()

    def losses(lines: list[str]) -> dict[int, dict[str, float]]:
        rows = [json.loads(line) for line in lines]
        return {row.pop("step"): row for row in rows if row.pop("time") is not None}

    # The first leg of the resumed run also logged its last step (3); every step both logged must agree.
    a_rows, b_rows = losses(straight), losses(resumed)
    assert sorted(a_rows) == [2, 4, 6] and sorted(b_rows) == [2, 3, 4, 6]
    assert all(a_rows[step] == b_rows[step] for step in a_rows)


def test_ctrl_c_saves_a_checkpoint_and_resume_continues(tmp_path: Path, data: Path, tiny_config: Config) -> None:
    run = tmp_path / "run"
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        result = train(run_config(tiny_config, 100_000), run_options(run, data))
    finally:
        timer.cancel()
    assert result.reason == "interrupted"
    assert 0 < result.step < 100_000
    assert [s for s, _ in list_states(run)] == [result.step]
    # The default Ctrl-C behaviour is back once the run has ended.
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    state = load_training_state(run / "checkpoints" / f"state_{result.step:06d}.safetensors", restore_rng=False)
    assert state.step == result.step
    again = train(run_config(tiny_config, result.step + 2), run_options(run, data, resume=True), {"total_iters"})
    assert again.step == result.step + 2


def test_time_budget(tmp_path: Path, data: Path, tiny_config: Config) -> None:
    result = train(run_config(tiny_config, 1000), run_options(tmp_path / "run", data, minutes=0.0))
    assert result.reason == "time budget" and result.step == 1
    assert result.state_path.is_file() and result.ema_path.is_file()


def test_a_time_budget_prints_its_plan_after_a_measured_warm_up(
    tmp_path: Path, data: Path, tiny_config: Config, capsys: pytest.CaptureFixture[str]
) -> None:
    """After 5 + 20 steps the run says what a step costs and how many steps the budget gives, on screen and in
    the log."""
    result = train(run_config(tiny_config, 40), run_options(tmp_path / "run", data, minutes=30.0))
    assert result.reason == "finished"
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("plan: ")]
    assert len(printed) == 1 and "s per step (measured over steps 5-25), so about " in printed[0]
    expected = int(printed[0].split("so about ")[1].split()[0])
    assert expected > 40  # 30 minutes are far more than 40 steps of the tiny model
    assert printed[0] in (tmp_path / "run" / "log.txt").read_text()


def test_existing_run_is_not_overwritten(tmp_path: Path, data: Path, tiny_config: Config) -> None:
    run = tmp_path / "run"
    train(run_config(tiny_config, 2), run_options(run, data))
    before = {p.name: p.read_bytes() for p in (run / "checkpoints").iterdir()}
    with pytest.raises(RunError, match="--resume"):
        train(run_config(tiny_config, 2), run_options(run, data))
    assert {p.name: p.read_bytes() for p in (run / "checkpoints").iterdir()} == before


def test_resume_refuses_a_changed_architecture(tmp_path: Path, data: Path, tiny_config: Config) -> None:
    run = tmp_path / "run"
    train(run_config(tiny_config, 2), run_options(run, data))
    with pytest.raises(RunError, match="style_dim"):
        train(
            run_config(tiny_config, 4, style_dim=8), run_options(run, data, resume=True), {"style_dim", "total_iters"}
        )


def test_domain_count_comes_from_the_folder(tmp_path: Path, tiny_config: Config) -> None:
    data = image_folder(tmp_path / "three", domains=("x", "y", "z"), per_domain=2)
    result = train(run_config(tiny_config, 1), run_options(tmp_path / "run", data))
    assert load_training_state(result.state_path).config.model.num_domains == 3
    with pytest.raises(RunError, match="num_domains=3"):
        train(run_config(tiny_config, 1), run_options(tmp_path / "run2", data), explicit={"num_domains"})


def test_bad_data_is_reported(tmp_path: Path, data: Path, tiny_config: Config) -> None:
    with pytest.raises(DataError, match="nowhere"):
        train(run_config(tiny_config, 1), run_options(tmp_path / "run", tmp_path / "nowhere"))
    val = image_folder(tmp_path / "val", domains=("a", "c"), per_domain=1)
    with pytest.raises(DataError):
        train(run_config(tiny_config, 1), run_options(tmp_path / "run", data, val_data=val))
    with pytest.raises(DataError, match=r"0\.png"):
        train(run_config(tiny_config, 1).override(["img_size=64"]), run_options(tmp_path / "run", data))
    hpf = tiny_config.override(["img_size=64", "w_hpf=1", "total_iters=1"])
    with pytest.raises(RunError, match="--wing"):
        train(hpf, run_options(tmp_path / "run", data))
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_train_and_sample_commands(tmp_path: Path, data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    argv = ["train", "--data", str(data), "--run-dir", str(run), "--preset", "tiny", "--iters", "2"]
    assert main([*argv, "--batch-size", "2", "--no-progress"]) == 0
    assert main([*argv, "--no-progress"]) == 2
    assert "--resume" in capsys.readouterr().err
    for checkpoint in (run, run / "checkpoints" / "state_000002.safetensors"):
        out = tmp_path / "samples"
        code = main(
            ["sample", "--checkpoint", str(checkpoint), "--src", str(data), "--ref", str(data), "--out", str(out)]
        )
        assert code == 0
        assert (out / "reference.png").is_file() and (out / "latent.png").is_file()
        with Image.open(out / "reference.png") as im:
            # Sources across the top (up to 8; the folder has 10), plus the reference column, 32 px each.
            assert im.width == 9 * 33 + 1
    model = load_for_synthesis(run)
    assert model.config.num_domains == 2 and not model.nets.generator.training


class _FakeWandb:
    """Stands in for the ``wandb`` package: records what the run sends."""

    def __init__(self) -> None:
        self.inits: list[dict[str, object]] = []
        self.logged: list[tuple[dict[str, object], int]] = []
        self.finished = 0
        self.util = type("util", (), {"generate_id": staticmethod(lambda: "abc123")})

    def init(self, **kwargs: object) -> _FakeWandb:
        self.inits.append(kwargs)
        return self

    def log(self, values: dict[str, object], step: int) -> None:
        self.logged.append((values, step))

    def finish(self) -> None:
        self.finished += 1

    class Image:
        def __init__(self, pixels: object) -> None:
            self.pixels = pixels


def test_wandb_logging_is_optional_and_resumes_the_same_run(
    tmp_path: Path, data: Path, tiny_config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    fake = _FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    run = tmp_path / "run"
    train(run_config(tiny_config, 2), run_options(run, data, wandb="my-project"))
    assert fake.inits[0]["project"] == "my-project" and fake.inits[0]["id"] == "abc123"
    assert fake.inits[0]["config"] == run_config(tiny_config, 2).to_dict()
    scalars = [(v, s) for v, s in fake.logged if "D/latent_real" in v]
    assert [s for _, s in scalars] == [2]
    images = [v["samples/latent"] for v, _ in fake.logged if "samples/latent" in v]
    assert len(images) == 1 and images[0].pixels.dtype.name == "uint8" and images[0].pixels.shape[2] == 3
    assert fake.finished == 1
    # A resumed run continues the same W&B run.
    train(run_config(tiny_config, 4), run_options(run, data, resume=True, wandb="my-project"), {"total_iters"})
    assert fake.inits[1]["id"] == "abc123" and fake.inits[1]["resume"] == "allow"
    # Without the package, asking for it is a clear error; without asking, nothing needs it.
    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(RunError, match="pip install wandb"):
        train(run_config(tiny_config, 2), run_options(tmp_path / "other", data, wandb="p"))
    train(run_config(tiny_config, 1), run_options(tmp_path / "plain", data))


def test_newest_checkpoint_is_chosen_by_step_past_six_digits(tmp_path: Path, data: Path, tiny_config: Config) -> None:
    """``state_1000000`` sorts before ``state_999999`` as a string; resume and synthesis both take 1,000,000."""
    from stargan_v2 import rundir
    from stargan_v2.checkpoint import save_ema
    from stargan_v2.train import init_train_state
    from stargan_v2.training_state import save_training_state

    run = tmp_path / "run"
    config = run_config(tiny_config, 1_000_001)
    state = init_train_state(config)
    for step in (999_999, 1_000_000):
        state.step = step
        save_training_state(state, rundir.state_path(run, step), domains=("a", "b"))
        save_ema(state.nets_ema, config, rundir.ema_path(run, step), step=step, domains=("a", "b"))
    assert [step for step, _ in list_states(run)] == [999_999, 1_000_000]
    assert rundir.latest_state(run) == rundir.state_path(run, 1_000_000)
    assert load_for_synthesis(run).source == rundir.ema_path(run, 1_000_000)

    result = train(config, run_options(run, data, resume=True), explicit={"total_iters"})
    assert result.step == 1_000_001
    assert "resumed at step 1000000 " in (run / "log.txt").read_text()
