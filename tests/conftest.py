"""Shared fixtures: every network in the tests is built from one tiny config."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from stargan_v2.config import Config, preset
from stargan_v2.train import StepInputs

#: Where the authors'-code fixtures live; `.ci/run` sets this to ../shared/fixtures/official.
FIXTURES_ENV = "STARGAN_V2_OFFICIAL_FIXTURES"


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Run the tiny nets on one thread: on a small shared CPU, thread hand-offs cost more than they save.

    Modules of tiny-model synthesis tests ask for it for every test: ``pytestmark = pytest.mark.usefixtures(...)``.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny_config() -> Config:
    """32 px, 2 domains, a few channels: a full training step takes milliseconds."""
    return preset("tiny")


def make_inputs(config: Config, batch: int = 4, seed: int = 0) -> StepInputs:
    """Deterministic random inputs of one iteration for ``config``."""
    g = torch.Generator().manual_seed(seed)
    m = config.model
    size = (batch, 3, m.img_size, m.img_size)
    return StepInputs(
        x_src=torch.rand(size, generator=g) * 2 - 1,
        y_src=torch.randint(0, m.num_domains, (batch,), generator=g),
        y_trg=torch.randint(0, m.num_domains, (batch,), generator=g),
        z_trg=torch.randn(batch, m.latent_dim, generator=g),
        z_trg2=torch.randn(batch, m.latent_dim, generator=g),
        x_ref=torch.rand(size, generator=g) * 2 - 1,
        x_ref2=torch.rand(size, generator=g) * 2 - 1,
    )


@pytest.fixture
def tiny_inputs(tiny_config: Config) -> StepInputs:
    return make_inputs(tiny_config)


def official_fixtures() -> Path:
    """The folder of fixtures made by the authors' code, or skip the test with the reason."""
    root = os.environ.get(FIXTURES_ENV)
    if not root:
        pytest.skip(f"{FIXTURES_ENV} is not set (`.ci/run` sets it to ../shared/fixtures/official)")
    path = Path(root)
    if not path.is_dir():
        pytest.skip(f"{FIXTURES_ENV}={root} does not exist")
    return path


def shared_dir() -> Path | None:
    """The project's shared/ folder (PAPER.md, official_checkpoint_keys.txt), if present."""
    env = os.environ.get("STARGAN_V2_SHARED")
    path = Path(env) if env else Path(__file__).resolve().parents[2] / "shared"
    return path if path.is_dir() else None
