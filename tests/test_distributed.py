"""Many processes (gloo on CPU) train exactly like one process with the combined batch.

R1 differentiates D's input gradient (``autograd.grad(create_graph=True)``), which DistributedDataParallel has
mishandled (pytorch/pytorch#47562); these tests show the averaged gradients, and so the weights, are right.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from stargan_v2 import distributed
from stargan_v2.config import preset
from stargan_v2.train import RunSettings, StepInputs, init_train_state, train_step, wrap_ddp
from stargan_v2.training_state import load_training_state

from .conftest import make_inputs
from .run_helpers import image_folder

WORLD = 2
PER_RANK = 2
STEPS = 2
#: Double precision, so that rounding differences stay far below any real error (GAN updates amplify them).
DTYPE = torch.float64


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _shard(inputs: StepInputs, rank: int) -> StepInputs:
    sl = slice(rank * PER_RANK, (rank + 1) * PER_RANK)
    return StepInputs(**{k: v[sl] for k, v in vars(inputs).items()})


def run_config():
    # A shorter EMA makes its update visible in the weights after two steps.
    return preset("tiny").override(["ema_beta=0.9"])


def _state_tensors(state) -> dict[str, torch.Tensor]:
    out = {}
    for name, m in state.nets.items():
        for k, v in m.state_dict().items():
            out[f"nets.{name}.{k}"] = v.detach().clone()
    for name, m in state.nets_ema.items():
        for k, v in m.state_dict().items():
            out[f"ema.{name}.{k}"] = v.detach().clone()
    return out


def _worker(rank: int, port: int, out_dir: str) -> None:
    os.environ.update(
        {"RANK": str(rank), "WORLD_SIZE": str(WORLD), "LOCAL_RANK": str(rank), "MASTER_ADDR": "127.0.0.1"}
    )
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    torch.set_default_dtype(DTYPE)
    d = distributed.init("cpu")
    try:
        assert d.enabled and d.rank == rank and d.world_size == WORLD
        config = run_config()
        # Rank 1 starts elsewhere on purpose: DDP must broadcast rank 0's initial weights.
        torch.manual_seed(0 if rank == 0 else 123)
        state = init_train_state(config)
        settings = RunSettings(ddp=wrap_ddp(state.nets))
        # The EMA copies are not wrapped: start them from rank 0's weights as the run does (same seed).
        for (_, ema), (_, net) in zip(state.nets_ema.items(), list(state.nets.items())[:3], strict=True):
            ema.load_state_dict(net.state_dict())
        for step in range(STEPS):
            train_step(state, _shard(make_inputs(config, batch=WORLD * PER_RANK, seed=step), rank), settings)
        torch.save(_state_tensors(state), Path(out_dir) / f"rank{rank}.pt")
    finally:
        distributed.shutdown()


@pytest.mark.slow
def test_two_gloo_processes_equal_one_process_with_the_combined_batch(tmp_path: Path) -> None:
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=True)

    config = run_config()
    default = torch.get_default_dtype()
    torch.set_default_dtype(DTYPE)
    try:
        torch.manual_seed(0)
        single = init_train_state(config)
        for step in range(STEPS):
            train_step(single, make_inputs(config, batch=WORLD * PER_RANK, seed=step))
        expected = _state_tensors(single)
        torch.manual_seed(0)
        initial = _state_tensors(init_train_state(config))
    finally:
        torch.set_default_dtype(default)

    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    assert set(ranks[0]) == set(expected)
    for key, want in expected.items():
        # Every process holds the same weights, bit for bit (they apply the same averaged gradients).
        assert torch.equal(ranks[0][key], ranks[1][key]), key
        # And they equal one process with the combined batch, up to the order of floating-point sums (in double
        # precision; in single precision two GAN steps amplify rounding differences to about 1e-5).
        torch.testing.assert_close(ranks[0][key], want, rtol=0, atol=1e-9, msg=lambda m, k=key: f"{k}: {m}")
    # The update did something (guards against comparing two untouched initialisations).
    assert any(not torch.equal(initial[k], expected[k]) for k in expected if k.startswith("nets.generator"))


@pytest.mark.slow
def test_torchrun_trains_writes_from_rank_0_and_resumes_with_another_world_size(
    tmp_path: Path,
) -> None:
    domain_folders = image_folder(tmp_path / "data")
    run_dir = tmp_path / "run"
    common = ["train", "--data", str(domain_folders), "--preset", "tiny", "--run-dir", str(run_dir), "--no-progress"]
    common += ["--device", "cpu", "--batch-size", "2", "--set", "print_every=2", "--set", "save_every=2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={WORLD}"]
    done = subprocess.run(
        [*launch, "-m", "stargan_v2", *common, "--iters", "4"], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "global batch 4" in done.stdout
    # Only rank 0 reports and writes.
    assert done.stdout.count("finished at step 4") == 1
    log = (run_dir / "log.txt").read_text()
    assert log.count("started at step 0") == 1
    assert "batch 2 per process x 2 process(es) = 4 images per step" in log
    state = load_training_state(run_dir / "checkpoints" / "state_000004.safetensors")
    assert state.step == 4

    # Resume in one process (a different world size) and finish the run.
    again = subprocess.run(
        [sys.executable, "-m", "stargan_v2", *common, "--iters", "6", "--resume"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert "finished at step 6" in again.stdout
    assert load_training_state(run_dir / "checkpoints" / "state_000006.safetensors").step == 6


def test_one_process_without_torchrun_is_not_distributed(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    d = distributed.init("cpu")
    assert not d.enabled and d.is_main and d.device == torch.device("cpu")
    values = {"a": torch.tensor(1.5)}
    assert distributed.mean_across(d, values) is values
    assert distributed.sum_across(d, 3) == 3
    assert distributed.any_across(d, True)
