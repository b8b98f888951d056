"""The quality benchmark: the paper's evaluation protocol, scored by the procedural dataset's oracle.

StarGAN v2 (Choi et al., CVPR 2020, Section 4, "Evaluation metrics"; ``docs/paper.md``, "Evaluation") evaluates
every ordered pair of domains (source != target): each test image of the source is translated 10 times,
with 10 random latent codes (latent-guided) or 10 random references of the target (reference-guided).
Diversity is the mean LPIPS distance over the 45 pairs of a source's 10 outputs; quality is the FID between
a task's outputs and the training images of the target domain; both are averaged over images, then tasks.

Here the same protocol (the tasks, their random streams and the translation loop of ``evaluate.py``, which
computes the paper's FID and LPIPS) runs on the built-in procedural dataset, whose images carry their true
parameters.
``oracle.py`` trains a small network to read those parameters back, and every output is scored with it:

* ``domain_accuracy``: the oracle sees the target domain's geometry.
* ``pose_error_*`` and ``background_error``: the output keeps the source's pose and background (content).
* reference-guided only: ``style_fur_error`` and ``style_pattern_accuracy`` against the *reference*'s true
  style (a good translation copies it), and ``*_vs_source`` against the source's style, for contrast.
* ``diversity_features`` (LPIPS's protocol with oracle features: mean pairwise L2 distance) and
  ``diversity_pixels`` (mean absolute pixel difference, images in [-1, 1]).
* ``frechet_distance``: FID's formula on oracle features, outputs of a task against the target domain's
  real ``train`` images.

``quality_report`` adds the same readings of real ``val`` images (oracle against the truth, the floor of
every error; the Fréchet distance between real ``val`` and ``train``; the diversity of real images of one
domain) and the oracle's held-out metrics. Numbers are comparable between models of one image size on one
dataset (the oracle and the sample sizes then agree), not with the paper's FID and LPIPS.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .. import procedural
from ..config import ModelConfig
from ..model import Nets
from .evaluate import MODES, MaskFn, eval_mode, mean_over_tasks, task_generator, tasks, translate_task
from .fid import frechet_distance
from .oracle import (
    ORACLE_VERSION,
    Oracle,
    Targets,
    encode_targets,
    load_images,
    load_or_train_oracle,
    load_params,
    pose_errors,
    read_manifest,
    split_files,
    style_errors,
)

#: Real ``train`` images per domain whose features the Fréchet distance compares against.
DEFAULT_TRAIN_PER_DOMAIN = 1000


# ----------------------------------------------------------------------------------------------------------
# Diversity
# ----------------------------------------------------------------------------------------------------------


def _mean_pairwise(x: Tensor, p: float) -> Tensor:
    """Mean distance over the unordered pairs within each group: ``(G, n, D) -> (G,)``."""
    n = x.shape[1]
    d = torch.cdist(x.double(), x.double(), p=p)  # (G, n, n)
    upper = torch.triu(torch.ones(n, n, dtype=torch.bool, device=x.device), diagonal=1)
    return d[:, upper].mean(1).float().cpu()


# ----------------------------------------------------------------------------------------------------------
# The data every mode needs: sources, references, real features
# ----------------------------------------------------------------------------------------------------------


@dataclass
class Benchmark:
    """Images and truths of the ``val`` split, and oracle features of real ``train`` images, per domain: what
    every evaluation of a model on one dataset needs, read once (``prepare_benchmark``)."""

    oracle: Oracle
    val_images: list[Tensor]  # per domain (n_val, 3, S, S), also the references
    val_truth: list[Targets]
    num_sources: list[int]  # sources are the first num_sources[d] val images of domain d (sorted)
    train_features: list[Tensor]  # per domain (n_train, FEATURE_DIM)
    manifest: dict[str, Any]
    max_train_per_domain: int


def prepare_benchmark(
    dataset_dir: str | os.PathLike,
    img_size: int,
    oracle: Oracle,
    max_sources_per_domain: int | None = None,
    max_train_per_domain: int = DEFAULT_TRAIN_PER_DOMAIN,
    batch_size: int = 64,
) -> Benchmark:
    """Read the ``val`` images and truths and the oracle features of real ``train`` images, once.

    Sources are the first ``max_sources_per_domain`` ``val`` images of each domain (all by default); the
    Fréchet distance compares against the first ``max_train_per_domain`` ``train`` images of the target.
    """
    manifest = read_manifest(dataset_dir)
    if oracle.img_size != img_size:
        raise ValueError(f"the oracle reads {oracle.img_size} px images but the model makes {img_size} px ones")
    val_images, val_truth, num_sources, train_features = [], [], [], []
    for d in range(len(procedural.DOMAINS)):
        files = split_files(dataset_dir, "val", d)
        val_images.append(load_images(files, img_size))
        val_truth.append(encode_targets(load_params(files), oracle.layout))
        num_sources.append(len(files) if max_sources_per_domain is None else min(len(files), max_sources_per_domain))
        # Train images are read in chunks: a thousand 128 px images per domain would not need to sit in memory.
        train = split_files(dataset_dir, "train", d)[:max_train_per_domain]
        chunk = max(batch_size, 256)
        feats = [
            oracle.predict(load_images(train[i : i + chunk], img_size)).features for i in range(0, len(train), chunk)
        ]
        train_features.append(torch.cat(feats))
    return Benchmark(oracle, val_images, val_truth, num_sources, train_features, manifest, max_train_per_domain)


# ----------------------------------------------------------------------------------------------------------
# The protocol
# ----------------------------------------------------------------------------------------------------------


@torch.no_grad()
def _translate_task(
    nets: Nets,
    model_config: ModelConfig,
    bench: Benchmark,
    mode: str,
    source: int,
    target: int,
    num_outputs: int,
    seed: int,
    device: torch.device,
    batch_size: int,
    mask_fn: MaskFn | None,
) -> dict[str, float]:
    """Translate every source of ``source`` into ``target`` ``num_outputs`` times; the task's mean figures."""
    n = bench.num_sources[source]
    truth_src = bench.val_truth[source].index(torch.arange(n))
    batches = translate_task(
        nets,
        mode,
        bench.val_images[source][:n],
        bench.val_images[target],
        target,
        num_outputs=num_outputs,
        latent_dim=model_config.latent_dim,
        generator=task_generator(seed, mode, source, target),
        device=device,
        batch_size=batch_size,
        mask_fn=mask_fn,
    )
    per_output: dict[str, list[Tensor]] = {}
    features, diversity_pixels, diversity_features = [], [], []
    for batch in batches:
        rows, out = batch.rows, batch.outputs  # out: (c * num_outputs, 3, S, S)
        pred = bench.oracle.predict(out)
        truth = truth_src.index(rows.repeat_interleave(num_outputs))
        scores = {"domain_accuracy": (pred.domain == target).float()} | pose_errors(pred, truth)
        if mode == "reference":
            assert batch.ref_index is not None
            truth_ref = bench.val_truth[target].index(batch.ref_index)
            scores |= {k: v for k, v in style_errors(pred, truth_ref).items() if k != "style_eye_error"}
            vs_source = style_errors(pred, truth)
            scores["style_fur_error_vs_source"] = vs_source["style_fur_error"]
            scores["style_pattern_accuracy_vs_source"] = vs_source["style_pattern_accuracy"]
        for key, value in scores.items():
            per_output.setdefault(key, []).append(value)
        features.append(pred.features)
        diversity_pixels.append(_mean_pairwise(out.flatten(1).view(len(rows), num_outputs, -1), p=1) / out[0].numel())
        diversity_features.append(_mean_pairwise(pred.features.view(len(rows), num_outputs, -1), p=2))

    figures = {key: float(torch.cat(values).mean()) for key, values in per_output.items()}
    figures["diversity_features"] = float(torch.cat(diversity_features).mean())
    figures["diversity_pixels"] = float(torch.cat(diversity_pixels).mean())
    figures["frechet_distance"] = frechet_distance(torch.cat(features), bench.train_features[target])
    return figures


def evaluate_benchmark(
    nets: Nets,
    model_config: ModelConfig,
    bench: Benchmark,
    mode: str,
    num_outputs: int = 10,
    seed: int = 0,
    device: torch.device | str = "cpu",
    batch_size: int = 64,
    mask_fn: MaskFn | None = None,
) -> dict[str, float]:
    """The protocol in one ``mode`` on a prepared benchmark (see ``evaluate_quality``)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if num_outputs < 2:
        raise ValueError(f"num_outputs must be >= 2 (diversity compares the outputs of a source), got {num_outputs}")
    device = torch.device(device)
    with eval_mode(nets):
        per_task = {
            f"{src}2{trg}": _translate_task(
                nets, model_config, bench, mode, src, trg, num_outputs, seed, device, batch_size, mask_fn
            )
            for src, trg in tasks(len(procedural.DOMAINS))
        }
    # Averaged over the outputs of each task above, then over tasks here, like the paper.
    return mean_over_tasks(per_task)


def _check_model(model_config: ModelConfig) -> None:
    if model_config.num_domains != len(procedural.DOMAINS):
        raise ValueError(
            f"the model has num_domains={model_config.num_domains} but the procedural dataset has "
            f"{len(procedural.DOMAINS)} domains ({', '.join(procedural.DOMAINS)})"
        )


def evaluate_quality(
    nets: Nets,
    model_config: ModelConfig,
    dataset_dir: str | os.PathLike,
    *,
    oracle: Oracle | None = None,
    mode: str = "latent",
    num_outputs: int = 10,
    max_sources_per_domain: int | None = None,
    seed: int = 0,
    device: torch.device | str = "cpu",
    batch_size: int = 64,
    mask_fn: MaskFn | None = None,
    cache_dir: str | os.PathLike | None = None,
    max_train_per_domain: int = DEFAULT_TRAIN_PER_DOMAIN,
) -> dict[str, float]:
    """Run the paper's protocol in one ``mode`` (``latent`` or ``reference``) and score it with the oracle.

    ``nets`` must already be on ``device`` (use the EMA networks, as the paper does); they run in eval mode
    under ``no_grad`` and are left in the mode they came in. Sources are the first ``max_sources_per_domain``
    ``val`` images of each domain (all by default), resized to ``model_config.img_size`` like the loader;
    references are drawn from all ``val`` images of the target. ``mask_fn(x)`` gives the generator's
    high-pass masks for a batch of sources (models with ``w_hpf > 0``, e.g. ``fan.masks``). ``oracle``
    defaults to the cached one (trained on first use, see ``load_or_train_oracle``). Same arguments, same
    numbers.
    """
    _check_model(model_config)
    if oracle is None:
        oracle = load_or_train_oracle(dataset_dir, model_config.img_size, cache_dir, device)
    bench = prepare_benchmark(
        dataset_dir, model_config.img_size, oracle, max_sources_per_domain, max_train_per_domain, batch_size
    )
    return evaluate_benchmark(nets, model_config, bench, mode, num_outputs, seed, device, batch_size, mask_fn)


def real_figures(bench: Benchmark) -> dict[str, float]:
    """The benchmark's figures for real ``val`` images: the oracle against the truth, the floor of each error.

    ``frechet_distance`` compares real ``val`` with real ``train`` images of each domain (averaged over
    domains); the diversities are over all pairs of sources of one domain (the spread of the real data).
    """
    per_image: dict[str, list[Tensor]] = {}
    fd, div_features, div_pixels = [], [], []
    for d, (images, truth) in enumerate(zip(bench.val_images, bench.val_truth, strict=True)):
        pred = bench.oracle.predict(images)
        scores = {"domain_accuracy": (pred.domain == d).float()} | pose_errors(pred, truth)
        scores |= style_errors(pred, truth)
        for key, value in scores.items():
            per_image.setdefault(key, []).append(value)
        fd.append(frechet_distance(pred.features, bench.train_features[d]))
        n = bench.num_sources[d]
        if n >= 2:
            div_features.append(float(_mean_pairwise(pred.features[None, :n], p=2)))
            div_pixels.append(float(_mean_pairwise(images[None, :n].flatten(2), p=1)) / images[0].numel())
    figures = {key: float(torch.cat(values).mean()) for key, values in per_image.items()}
    figures["frechet_distance"] = float(np.mean(fd))
    if div_features:
        figures["diversity_features"] = float(np.mean(div_features))
        figures["diversity_pixels"] = float(np.mean(div_pixels))
    return figures


def quality_report(
    nets: Nets,
    model_config: ModelConfig,
    dataset_dir: str | os.PathLike,
    *,
    oracle: Oracle | None = None,
    modes: Sequence[str] = MODES,
    num_outputs: int = 10,
    max_sources_per_domain: int | None = None,
    seed: int = 0,
    device: torch.device | str = "cpu",
    batch_size: int = 64,
    mask_fn: MaskFn | None = None,
    cache_dir: str | os.PathLike | None = None,
    max_train_per_domain: int = DEFAULT_TRAIN_PER_DOMAIN,
) -> dict[str, Any]:
    """Both modes of ``evaluate_quality`` and the real-image floor, with the oracle loaded and data read once.

    Returns ``{"oracle": held-out metrics, "latent": {...}, "reference": {...}, "real": {...},
    "protocol": {...}}``, ready for ``json.dumps``.
    """
    _check_model(model_config)
    start = time.perf_counter()
    if oracle is None:
        oracle = load_or_train_oracle(dataset_dir, model_config.img_size, cache_dir, device)
    bench = prepare_benchmark(
        dataset_dir, model_config.img_size, oracle, max_sources_per_domain, max_train_per_domain, batch_size
    )
    report: dict[str, Any] = {"oracle": dict(oracle.info.get("heldout", {}))}
    seconds = {}
    for mode in modes:
        t = time.perf_counter()
        report[mode] = evaluate_benchmark(
            nets, model_config, bench, mode, num_outputs, seed, device, batch_size, mask_fn
        )
        seconds[mode] = round(time.perf_counter() - t, 2)
    report["real"] = real_figures(bench)
    num_domains = len(procedural.DOMAINS)
    report["protocol"] = {
        "dataset_seed": int(bench.manifest["seed"]),
        "dataset_size": int(bench.manifest["size"]),
        "img_size": model_config.img_size,
        "domains": list(procedural.DOMAINS),
        "num_tasks": num_domains * (num_domains - 1),
        "num_outputs": num_outputs,
        "sources_per_domain": list(bench.num_sources),
        "max_train_per_domain": max_train_per_domain,
        "train_per_domain": [int(f.shape[0]) for f in bench.train_features],
        "seed": seed,
        "oracle_version": ORACLE_VERSION,
        "seconds": seconds | {"total": round(time.perf_counter() - start, 2)},
    }
    return report
