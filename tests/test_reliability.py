"""A run survives faults: SIGKILL at any moment, SIGTERM, NaNs, a full disk; and reruns are deterministic.

docs/RELIABILITY.md lists each guarantee with the test here that checks it.
"""

from __future__ import annotations

import errno
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import stargan_v2.checkpoint as checkpoint_module
import stargan_v2.run as run_module
import stargan_v2.train as train_module
from stargan_v2.checkpoint import load_ema
from stargan_v2.config import Config
from stargan_v2.run import NonFiniteError, RunError, list_states, train
from stargan_v2.training_state import load_training_state

from .run_helpers import image_folder, run_config, run_options, run_weights


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return image_folder(tmp_path / "data")


def _cli(run_dir: Path, data: Path, iters: int, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "stargan_v2", "train", "--data", str(data), "--preset", "tiny",
        "--run-dir", str(run_dir), "--iters", str(iters), "--batch-size", "2", "--device", "cpu", "--no-progress",
        "--set", "save_every=1", "--set", "print_every=1", "--set", "sample_every=100000", *extra,
    ]  # fmt: skip


#: One thread per process: the result must not depend on how busy the machine is, and it is faster here.
_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _assert_all_checkpoints_readable(run_dir: Path) -> None:
    for path in sorted((run_dir / "checkpoints").glob("*.safetensors")):
        if path.name.startswith("state_"):
            load_training_state(path, restore_rng=False)
        else:
            load_ema(path)


def _saved_steps(run_dir: Path) -> int:
    return len(list((run_dir / "checkpoints").glob("ema_*.safetensors"))) if (run_dir / "checkpoints").is_dir() else 0


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_nothing(tmp_path: Path, data: Path) -> None:
    """At least 10 SIGKILLs, some of them while a checkpoint is being written: every checkpoint on disk always
    reads back, ``--resume`` always continues, and the final weights equal an uninterrupted run's, bit for bit.
    """
    iters, run_dir = 24, tmp_path / "killed"
    rng = random.Random(0)
    kills = kills_during_write = 0
    while True:
        resume = ["--resume"] if list_states(run_dir) else []
        before = _saved_steps(run_dir)
        proc = subprocess.Popen(
            _cli(run_dir, data, iters, *resume), env=_ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        if kills >= 12:
            _, err = proc.communicate(timeout=600)
            assert proc.returncode == 0, err.decode()
            break
        # Wait for this life to make progress, then kill it: half the time the moment a checkpoint's temporary
        # file appears (a kill in the middle of a write), otherwise after a random delay.
        aim_at_write = kills % 2 == 0
        deadline = time.monotonic() + 300
        while proc.poll() is None and _saved_steps(run_dir) <= before and time.monotonic() < deadline:
            time.sleep(0.01)
        if aim_at_write:
            while proc.poll() is None and not list((run_dir / "checkpoints").glob(".*.tmp")):
                time.sleep(0.0005)
        else:
            time.sleep(rng.uniform(0.0, 0.3))
        if proc.poll() is not None:  # finished before the kill: start over is not needed, the run is done
            assert proc.returncode == 0, proc.stderr.read().decode() if proc.stderr else ""
            break
        had_tmp = bool(list((run_dir / "checkpoints").glob(".*.tmp")))
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        kills += 1
        kills_during_write += had_tmp
        _assert_all_checkpoints_readable(run_dir)
    assert kills >= 10
    assert kills_during_write >= 3
    print(f"\n{kills} SIGKILLs survived, {kills_during_write} of them during a checkpoint write")

    straight = tmp_path / "straight"
    done = subprocess.run(_cli(straight, data, iters), env=_ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    a = run_weights(straight / "checkpoints" / f"state_{iters:06d}.safetensors")
    b = run_weights(run_dir / "checkpoints" / f"state_{iters:06d}.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # The next start cleared what the killed writes left behind.
    assert not list((run_dir / "checkpoints").glob(".*.tmp"))
    assert [s for s, _ in list_states(run_dir)] == [iters - 2, iters - 1, iters]


@pytest.mark.slow
def test_sigterm_saves_and_exits_cleanly(tmp_path: Path, data: Path) -> None:
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(_cli(run_dir, data, 100_000), env=_ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while _saved_steps(run_dir) < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err.decode()
    assert b"interrupted at step" in out
    log = (run_dir / "log.txt").read_text()
    step = int(log.rsplit("stopped at step ", 1)[1].split(":")[0])
    assert "interrupted" in log.rsplit("stopped at step ", 1)[1]
    assert list_states(run_dir)[-1][0] == step
    assert load_training_state(list_states(run_dir)[-1][1], restore_rng=False).step == step


def _nan_from(monkeypatch: pytest.MonkeyPatch, step: int, times: int = 10**9) -> None:
    """Make the discriminator's latent-guided loss NaN from iteration ``step`` (1-based) on, ``times`` times."""
    calls = {"n": 0, "injected": 0}
    original = train_module.d_loss

    def d_loss(*args, **kwargs):  # type: ignore[no-untyped-def]
        loss, parts = original(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] >= 2 * (step - 1) + 1 and calls["injected"] < times and "x_fake" in kwargs:
            calls["injected"] += 1
            return loss * float("nan"), {**parts, "total": loss.detach() * float("nan")}
        return loss, parts

    monkeypatch.setattr(train_module, "d_loss", d_loss)


def test_a_nan_stops_the_run_and_the_last_good_checkpoint_stays_newest(
    tmp_path: Path, data: Path, tiny_config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    _nan_from(monkeypatch, step=5)
    run_dir = tmp_path / "run"
    config = run_config(tiny_config, 12, print_every=6, save_every=2)
    with pytest.raises(NonFiniteError, match=r"non-finite D/latent_total at step 5") as info:
        train(config, run_options(run_dir, data))
    assert "state_000004.safetensors" in str(info.value) and "--on-nan rollback" in str(info.value)
    # Step 6 was due for a checkpoint: the fault was found before it, so nothing after step 4 was written.
    assert [s for s, _ in list_states(run_dir)] == [2, 4]
    weights = run_weights(run_dir / "checkpoints" / "state_000004.safetensors")
    assert all(torch.isfinite(v).all() for v in weights.values())
    assert "non-finite D/latent_total" in (run_dir / "log.txt").read_text()


def test_a_nonfinite_gradient_is_named(
    tmp_path: Path, data: Path, tiny_config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A finite loss whose gradient is not finite is caught by the update's gradient norm."""
    original = train_module.g_loss

    def g_loss(*args, **kwargs):  # type: ignore[no-untyped-def]
        loss, parts = original(*args, **kwargs)
        if kwargs.get("x_refs") is not None:
            # sqrt at 0 has an infinite derivative: the value stays finite, the gradient does not.
            loss = loss + torch.sqrt((loss - loss.detach()).abs())
        return loss, parts

    monkeypatch.setattr(train_module, "g_loss", g_loss)
    with pytest.raises(NonFiniteError, match=r"non-finite G/ref_grad_norm at step 1"):
        train(run_config(tiny_config, 4), run_options(tmp_path / "run", data))


def test_rollback_lowers_the_learning_rate_and_finishes(
    tmp_path: Path, data: Path, tiny_config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    _nan_from(monkeypatch, step=5, times=1)
    run_dir = tmp_path / "run"
    config = run_config(tiny_config, 8, print_every=1, save_every=2)
    result = train(config, run_options(run_dir, data, on_nan="rollback"))
    assert result.reason == "finished" and result.step == 8
    log = (run_dir / "log.txt").read_text()
    assert "non-finite D/latent_total at step 5" in log and "rolled back to step 4" in log
    state = load_training_state(result.state_path, restore_rng=False)
    assert state.config.train.lr == tiny_config.train.lr / 2
    assert all(torch.isfinite(p).all() for _, m in state.nets.items() for p in m.parameters())


def test_a_full_disk_keeps_the_previous_checkpoint(
    tmp_path: Path, data: Path, tiny_config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second checkpoint's write fails half-way with ENOSPC: the error says so and the first is intact."""
    original = checkpoint_module.save_file
    calls = {"n": 0}

    def save_file(tensors, filename, metadata=None):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] >= 3:  # the first save writes a state and an EMA file
            Path(filename).write_bytes(b"\0" * 100)  # half a file, as a full disk leaves it
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(tensors, filename, metadata=metadata)

    monkeypatch.setattr(checkpoint_module, "save_file", save_file)
    run_dir = tmp_path / "run"
    with pytest.raises(RunError, match="disk is full") as info:
        train(run_config(tiny_config, 6, save_every=2), run_options(run_dir, data))
    assert "state_000002.safetensors, is intact" in str(info.value)
    assert [s for s, _ in list_states(run_dir)] == [2]
    _assert_all_checkpoints_readable(run_dir)
    assert not list((run_dir / "checkpoints").glob(".*.tmp"))
    # And the run continues from it once there is space again.
    monkeypatch.setattr(checkpoint_module, "save_file", original)
    result = train(run_config(tiny_config, 6, save_every=2), run_options(run_dir, data, resume=True))
    assert result.step == 6


def test_an_unwritable_run_directory_is_refused_before_training(
    tmp_path: Path, data: Path, tiny_config: Config
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(RunError, match="cannot write to the run directory"):
        train(run_config(tiny_config, 2), run_options(blocker / "run", data))


def test_keep_prunes_only_older_complete_checkpoints(tmp_path: Path, data: Path, tiny_config: Config) -> None:
    run_dir = tmp_path / "run"
    train(run_config(tiny_config, 6, save_every=1), run_options(run_dir, data, keep=2))
    assert [s for s, _ in list_states(run_dir)] == [5, 6]
    # EMA files (for synthesis and for following quality over training) are all kept.
    assert len(list((run_dir / "checkpoints").glob("ema_*.safetensors"))) == 6
    with pytest.raises(RunError, match="--keep"):
        train(run_config(tiny_config, 6), run_options(tmp_path / "other", data, keep=0))


def test_deterministic_reruns_are_bit_identical(tmp_path: Path, data: Path, tiny_config: Config) -> None:
    previous = torch.are_deterministic_algorithms_enabled()
    try:
        for name in ("a", "b"):
            train(run_config(tiny_config, 3), run_options(tmp_path / name, data, deterministic=True))
    finally:
        torch.use_deterministic_algorithms(previous)
    a = run_weights(tmp_path / "a" / "checkpoints" / "state_000003.safetensors")
    b = run_weights(tmp_path / "b" / "checkpoints" / "state_000003.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_signal_handlers_are_restored(tmp_path: Path, data: Path, tiny_config: Config) -> None:
    before = signal.getsignal(signal.SIGTERM)
    train(run_config(tiny_config, 1), run_options(tmp_path / "run", data))
    assert signal.getsignal(signal.SIGTERM) is before
    assert run_module.NonFiniteError is NonFiniteError
