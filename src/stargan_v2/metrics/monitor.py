"""Metrics measured while a model trains (``stargan-v2 train --eval-every N``), as StyleGAN's training loop does.

A *monitor* scores the EMA networks at the current step and returns flat ``{name: value}`` figures; the run
appends them to ``metrics.jsonl`` in the run directory and to TensorBoard, and ``--keep-best NAME`` keeps the
EMA checkpoint with the best value of one of them. Names state their protocol: ``oracle/latent/domain_accuracy``
is the quality benchmark's domain accuracy in latent-guided mode (``quality.py``).

Each monitor reads its data once and evaluates a bounded number of sources, so that measuring costs a small
share of training time (the run log and ``metrics.jsonl`` record the seconds it took).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Protocol

import torch

from ..config import ModelConfig
from ..model import Nets
from .evaluate import MODES, MaskFn
from .oracle import load_or_train_oracle
from .quality import evaluate_benchmark, prepare_benchmark

#: Real ``train`` images per domain for the oracle's Fréchet distance during training (fewer than the
#: benchmark's 1000: reading them is part of the start-up time of a run).
MONITOR_TRAIN_PER_DOMAIN = 300

#: Figures for which a higher value is better; every other figure is better lower (errors, distances).
_HIGHER_IS_BETTER = ("domain_accuracy", "pattern_accuracy", "diversity", "lpips")


class Monitor(Protocol):
    """Scores EMA networks: ``monitor(nets, model_config) -> {name: value}``; ``names`` lists what it returns."""

    names: tuple[str, ...]

    def __call__(self, nets: Nets, model_config: ModelConfig, mask_fn: MaskFn | None = None) -> dict[str, float]: ...


def higher_is_better(name: str) -> bool:
    """Whether a larger value of the figure ``name`` is better (accuracies, diversity) or worse (errors)."""
    parts = name.split("/")
    return any(part.startswith(word) or part.endswith(word) for part in parts for word in _HIGHER_IS_BETTER)


class OracleMonitor:
    """The quality benchmark on the built-in dataset (both modes), on the first ``sources_per_domain``
    validation images of each domain, ``num_outputs`` outputs each; the oracle is loaded (or trained and
    cached) once."""

    #: The benchmark's figures kept per mode (the reference-only ones appear only in reference mode).
    FIGURES: tuple[str, ...] = (
        "domain_accuracy",
        "pose_error_center_rel",
        "style_fur_error",
        "style_fur_error_vs_source",
        "diversity_pixels",
        "frechet_distance",
    )

    def __init__(
        self,
        dataset_dir: str | os.PathLike,
        img_size: int,
        *,
        sources_per_domain: int = 10,
        num_outputs: int = 10,
        seed: int = 0,
        device: torch.device | str = "cpu",
        modes: Sequence[str] = MODES,
    ) -> None:
        self.device = torch.device(device)
        self.modes = tuple(modes)
        self.num_outputs = num_outputs
        self.seed = seed
        oracle = load_or_train_oracle(dataset_dir, img_size, device=self.device)
        self.bench = prepare_benchmark(
            dataset_dir,
            img_size,
            oracle,
            max_sources_per_domain=sources_per_domain,
            max_train_per_domain=MONITOR_TRAIN_PER_DOMAIN,
        )
        self.names = tuple(
            f"oracle/{mode}/{figure}"
            for mode in self.modes
            for figure in self.FIGURES
            if mode == "reference" or not figure.startswith("style_")
        )

    def __call__(self, nets: Nets, model_config: ModelConfig, mask_fn: MaskFn | None = None) -> dict[str, float]:
        """The figures of ``nets`` (EMA networks on the monitor's device), keyed ``oracle/<mode>/<figure>``."""
        figures: dict[str, float] = {}
        for mode in self.modes:
            result = evaluate_benchmark(
                nets, model_config, self.bench, mode, self.num_outputs, self.seed, self.device, mask_fn=mask_fn
            )
            figures.update({f"oracle/{mode}/{k}": v for k, v in result.items() if k in self.FIGURES})
        return figures


class FidLpipsMonitor:
    """The paper's FID and LPIPS (``evaluate.py``) on the first ``sources_per_domain`` validation images of each
    domain, both modes; the feature networks and the real images' statistics are loaded once (the statistics
    from the same cache as ``stargan-v2 eval``). With few sources the FID is biased upwards against a full
    evaluation: compare its values along one run, not with the paper's table."""

    #: ``lpips`` is the authors' average (per batch of 32 sources), ``lpips_per_source`` the plain mean.
    FIGURES: tuple[str, ...] = ("fid", "lpips", "lpips_per_source")

    def __init__(
        self,
        train_dir: str | os.PathLike,
        val_dir: str | os.PathLike,
        img_size: int,
        *,
        sources_per_domain: int = 10,
        num_outputs: int = 10,
        seed: int = 0,
        fid_net: str = "torchvision",
        weights_dir: str | os.PathLike | None = None,
        device: torch.device | str = "cpu",
        modes: Sequence[str] = MODES,
    ) -> None:
        from ..data import scan_domains
        from .evaluate import prepare
        from .fid import load_inception
        from .lpips import load_lpips

        self.device = torch.device(device)
        self.modes = tuple(modes)
        self.num_outputs = num_outputs
        self.seed = seed
        # The weight files first: a missing one stops the run before any training (the error names the file).
        self.feature_net = load_inception(fid_net, weights_dir, self.device)
        self.lpips = load_lpips(weights_dir, self.device)
        train, val = scan_domains(train_dir, min_size=img_size), scan_domains(val_dir, min_size=img_size)
        self.data = prepare(train, val, img_size, self.feature_net, max_sources_per_domain=sources_per_domain)
        self.names = tuple(f"{metric}/{mode}" for mode in self.modes for metric in self.FIGURES)

    def __call__(self, nets: Nets, model_config: ModelConfig, mask_fn: MaskFn | None = None) -> dict[str, float]:
        """``fid/<mode>``, ``lpips/<mode>`` and ``lpips_per_source/<mode>``, averaged over the tasks."""
        from .evaluate import evaluate_mode

        figures: dict[str, float] = {}
        for mode in self.modes:
            result = evaluate_mode(
                nets,
                model_config,
                self.data,
                mode,
                self.feature_net,
                self.lpips,
                num_outputs=self.num_outputs,
                seed=self.seed,
                device=self.device,
                mask_fn=mask_fn,
            )
            figures.update({f"{metric}/{mode}": float(result["mean"][metric]) for metric in self.FIGURES})
        return figures


class Monitors:
    """Several monitors as one: their figures merged (names do not collide: each has its own prefix)."""

    def __init__(self, monitors: Sequence[Monitor]) -> None:
        self.monitors = list(monitors)
        self.names = tuple(name for m in self.monitors for name in m.names)

    def __call__(self, nets: Nets, model_config: ModelConfig, mask_fn: MaskFn | None = None) -> dict[str, float]:
        """Every monitor's figures."""
        figures: dict[str, float] = {}
        for monitor in self.monitors:
            figures.update(monitor(nets, model_config, mask_fn))
        return figures
