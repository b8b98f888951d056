"""The paper's evaluation protocol: every ordered pair of domains, 10 outputs per source, FID and LPIPS.

StarGAN v2 (Choi et al., CVPR 2020, Section 4, "Evaluation metrics"; ``docs/paper.md``, "Evaluation"):

* A *task* is an ordered pair of domains ``source != target`` (``K (K - 1)`` of them).
* Each validation image of the source is translated ``num_outputs = 10`` times: with 10 random latent codes
  through the mapping network (``latent`` mode), or with the styles of 10 random validation images of the
  target (``reference`` mode).
* **LPIPS** (diversity, higher is better): the mean over the 45 pairs of a source's 10 outputs, averaged
  over the task's sources, then over tasks. The authors average per batch of 32 sources, a last partial batch
  weighing as much as a full one (``lpips``); the plain mean over sources is reported beside it
  (``lpips_per_source``).
* **FID** (quality, lower is better): a task's outputs against all training images of the target domain,
  averaged over tasks.

The task list, each task's random stream, the translation loop and the averaging are shared with the
quality benchmark (``quality.py``), which scores the same outputs with an oracle network instead.

What the numbers are made of, image by image as in the authors' evaluation: every image read from a file
(training images, sources, references) is squashed to the model's size by PIL's bilinear filter and rounded to
8 bits; outputs are used as the generator gives them for LPIPS, and rounded to 8 bits as the authors' PNG files
are (``to_uint8``) for FID; the feature network then brings every 8-bit image to 299 px its own way (PIL for
the authors' network, as their loader; ``F.interpolate`` for the TensorFlow one, as pytorch-fid). Real-image
statistics are cached on disk, keyed by the folder's files (names, sizes, modification times), the feature
network with its resizing, and the image size.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from torch import Tensor
from tqdm.auto import tqdm

from ..config import ModelConfig
from ..data import DomainFolders, check_same_domains, scan_domains
from ..model import Nets, eval_mode
from .fid import (
    FEATURE_DIM,
    FeatureStats,
    Gaussian,
    covariance_factor,
    files_statistics,
    frechet_distance_gaussians,
    image_batches,
)

MODES: tuple[str, ...] = ("latent", "reference")
#: Bump when what goes into the cached real-image statistics changes (2: PIL resizing, as the authors').
STATS_VERSION = 2
#: Sources per LPIPS average in the authors' evaluation (their --val_batch_size, 32 by default).
LPIPS_BATCH = 32
#: How images reach the feature network, for the report (the last step, to 299 px, is the network's).
MODEL_SIZE_PREPROCESSING = (
    "every image file (training images, sources, references) squashed to the model's size by PIL's bilinear "
    "filter and rounded to 8 bits (torchvision transforms.Resize on PIL images, as the authors' loader); "
    "outputs rounded to 8 bits as torchvision's save_image writes the authors' PNG files"
)

#: ``mask_fn(x)``: the generator's high-pass masks of sources ``x (B, 3, S, S)``, e.g. ``FAN.masks``.
MaskFn = Callable[[Tensor], Sequence[Tensor]]


class ImageSet(Protocol):
    """Images indexed by a tensor of indices: ``images[index] -> (len(index), 3, S, S)`` float in [-1, 1]."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: Tensor) -> Tensor: ...


class FeatureNet(Protocol):
    """A FID feature network: 8-bit images, uint8 ``(B, 3, H, W)`` -> features ``(B, D)``.

    ``cache_token`` names the network and its weights in the real-statistics cache key; ``describe()`` is
    what the report records about it.
    """

    name: str

    def __call__(self, x: Tensor) -> Tensor: ...

    @property
    def cache_token(self) -> str: ...

    def describe(self) -> dict[str, str]: ...


# ----------------------------------------------------------------------------------------------------------
# Tasks, random streams, translation (shared with the quality benchmark)
# ----------------------------------------------------------------------------------------------------------


def tasks(num_domains: int) -> list[tuple[int, int]]:
    """Every ordered pair ``(source, target)`` of distinct domains, sources in order, then targets."""
    return [(s, t) for s in range(num_domains) for t in range(num_domains) if s != t]


def task_generator(seed: int, mode: str, source: int, target: int, stream: int = 0) -> torch.Generator:
    """The random stream of one task: independent of the order in which tasks and modes are run.

    ``stream`` 0 draws the latents or references; other streams are for other draws of the task (1: the
    order of the sources in the authors' LPIPS batches), so that adding one changes nothing else.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    entropy = [seed, MODES.index(mode), source, target] + ([stream] if stream else [])
    state = np.random.SeedSequence(entropy).generate_state(2, np.uint64)
    return torch.Generator().manual_seed(int(state[0] >> np.uint64(1)))


@dataclass
class TaskBatch:
    """Outputs of some sources of a task: ``outputs[k * num_outputs + j]`` is output ``j`` of ``rows[k]``."""

    rows: Tensor  # (c,) int64: indices of the sources
    outputs: Tensor  # (c * num_outputs, 3, S, S), float, as the generator gives them
    ref_index: Tensor | None  # (c * num_outputs,) int64: the references used (reference mode only)


@torch.no_grad()
def translate_task(
    nets: Nets,
    mode: str,
    sources: ImageSet,
    references: ImageSet,
    target: int,
    *,
    num_outputs: int,
    latent_dim: int,
    generator: torch.Generator,
    device: torch.device | str,
    batch_size: int,
    mask_fn: MaskFn | None = None,
) -> Iterator[TaskBatch]:
    """Translate every source into ``target`` ``num_outputs`` times, a few sources per forward pass.

    All random draws of the task (latents, or reference indices) are made from ``generator`` before the
    first pass, so the outputs do not depend on ``batch_size``. Reference mode draws distinct references for
    one source when the target has enough of them, as a shuffled loader would.
    """
    if getattr(nets.generator, "hpf", None) is not None and mask_fn is None:
        # Without its masks a high-pass generator still runs, but makes other images than the model's.
        raise ValueError(
            "this generator has the high-pass path (w_hpf > 0): pass mask_fn (the face-landmark network's masks, "
            "FAN.masks; load the authors' wing.ckpt, --wing on the command line)"
        )
    device = torch.device(device)
    n = len(sources)
    if mode == "latent":
        z = torch.randn(n, num_outputs, latent_dim, generator=generator)
    elif mode == "reference":
        n_refs = len(references)
        if n_refs >= num_outputs:
            ref_index = torch.stack([torch.randperm(n_refs, generator=generator)[:num_outputs] for _ in range(n)])
        else:
            ref_index = torch.randint(n_refs, (n, num_outputs), generator=generator)
    else:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")

    group = max(1, batch_size // num_outputs)  # sources per forward pass
    for start in range(0, n, group):
        rows = torch.arange(start, min(start + group, n))
        x_src = sources[rows].to(device)
        x = x_src.repeat_interleave(num_outputs, 0)  # (c * num_outputs, 3, S, S)
        y = torch.full((x.shape[0],), target, dtype=torch.int64, device=device)
        refs = None
        if mode == "latent":
            s = nets.mapping_network(z[rows].flatten(0, 1).to(device), y)
        else:
            refs = ref_index[rows].flatten()
            s = nets.style_encoder(references[refs].to(device), y)
        masks = None
        if mask_fn is not None:  # once per source: the face-landmark network is the costly part
            masks = tuple(m.repeat_interleave(num_outputs, 0) for m in mask_fn(x_src))
        yield TaskBatch(rows, nets.generator(x, s, masks=masks).float(), refs)


def batched_mean(values: Tensor, batch: int, order: Tensor | None = None) -> float:
    """The mean of ``values`` taken as the authors' evaluation takes LPIPS: the mean of each batch of ``batch``
    consecutive values (in ``order``, e.g. a shuffled one, as their loader shuffles the sources), then the
    mean of the batch means. A last, partial batch weighs as much as a full one."""
    if values.dim() != 1 or values.numel() == 0:
        raise ValueError(f"expected a non-empty 1-d tensor of values, got shape {tuple(values.shape)}")
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    v = values.double() if order is None else values.double()[order]
    return float(torch.stack([chunk.mean() for chunk in v.split(batch)]).mean())


def mean_over_tasks(per_task: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Each figure averaged over tasks (every task weighs the same, whatever its number of sources)."""
    if not per_task:
        raise ValueError("no tasks to average")
    keys = next(iter(per_task.values())).keys()
    return {key: float(np.mean([figures[key] for figures in per_task.values()])) for key in keys}


# ----------------------------------------------------------------------------------------------------------
# Images
# ----------------------------------------------------------------------------------------------------------


def to_uint8(x: Tensor) -> Tensor:
    """Images in [-1, 1] (any float) -> uint8 levels, as the authors' evaluation writes its PNG files.

    Their ``save_image`` maps to [0, 1] and clips, and torchvision's ``save_image`` then takes
    ``floor(255 v + 0.5)``: rounding half up, in float32, in this order.
    """
    x01 = ((x.float() + 1) / 2).clamp(0, 1)
    return x01.mul(255).add(0.5).clamp(0, 255).to(torch.uint8)


def from_uint8(x: Tensor) -> Tensor:
    """uint8 levels -> float images in [-1, 1], as the authors' loader: ``ToTensor`` then ``Normalize(0.5, 0.5)``."""
    return (x.float().div(255) - 0.5) / 0.5


class Uint8Images:
    """Images kept as uint8 ``(N, 3, S, S)`` (a quarter of the memory of floats), served in [-1, 1]."""

    def __init__(self, images: Tensor) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"expected uint8 images (N, 3, S, S), got {images.dtype} {tuple(images.shape)}")
        self.images = images

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: Tensor) -> Tensor:
        return from_uint8(self.images[index])


def read_images(
    files: Sequence[Path], img_size: int, batch_size: int = 64, workers: int = 0, progress: bool = False
) -> Uint8Images:
    """All of ``files`` squashed to ``img_size`` as the authors' loader does (PIL bilinear, 8 bits), in memory."""
    batches = list(image_batches(files, img_size, batch_size, workers, progress, "reading images"))
    return Uint8Images(torch.cat(batches))


# ----------------------------------------------------------------------------------------------------------
# Real-image statistics, cached
# ----------------------------------------------------------------------------------------------------------


def stats_key(files: Sequence[Path], img_size: int, feature_net: FeatureNet) -> str:
    """A digest of what the statistics of ``files`` depend on: each file's path, size and modification time
    (so an edited, added or removed image changes it), the image size and the feature network."""
    h = hashlib.sha256(f"stargan-v2/fid-stats:v{STATS_VERSION}:{feature_net.cache_token}:{img_size}".encode())
    paths = sorted(Path(f).resolve() for f in files)
    # Names relative to the folder that holds them all, so that a copied or moved folder keeps its key.
    root = Path(os.path.commonpath([p.parent for p in paths])) if paths else Path()
    for path in paths:
        st = path.stat()
        h.update(f"\n{path.relative_to(root).as_posix()}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()


@torch.no_grad()
def real_statistics(
    files: Sequence[Path],
    img_size: int,
    feature_net: FeatureNet,
    *,
    batch_size: int = 50,
    workers: int = 0,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = False,
    desc: str = "real images",
) -> Gaussian:
    """Mean and covariance of the features of ``files``, read as the authors' evaluation reads real images:
    squashed to ``img_size`` by PIL's bilinear filter and rounded to 8 bits, then given to ``feature_net``
    (which brings them to 299 px and puts them on its device).

    With ``cache_dir`` the result is stored there under ``stats_key`` and read back on the next call.
    """
    path = None
    if cache_dir is not None:
        key = stats_key(files, img_size, feature_net)
        path = Path(cache_dir) / f"fid_stats_{feature_net.name}_{img_size}px_{key[:24]}.safetensors"
        if path.is_file():
            t = load_file(str(path))
            return Gaussian(t["mu"], t["sigma"], int(t["n"]))
    if len(files) < 2:
        raise ValueError(f"FID needs at least 2 real images, got {len(files)}")
    gaussian = files_statistics(
        files,
        feature_net,
        _feature_dim(feature_net),
        size=img_size,
        batch_size=batch_size,
        workers=workers,
        progress=progress,
        desc=desc,
    )
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tensors = {"mu": gaussian.mu, "sigma": gaussian.sigma, "n": torch.tensor([gaussian.n])}
        save_file(tensors, str(tmp), metadata={"num_images": str(len(files)), "feature_net": feature_net.name})
        os.replace(tmp, path)  # atomic: a concurrent or interrupted run never reads half a file
    return gaussian


def _feature_dim(feature_net: FeatureNet) -> int:
    return int(getattr(feature_net, "feature_dim", FEATURE_DIM))


# ----------------------------------------------------------------------------------------------------------
# The protocol with FID and LPIPS
# ----------------------------------------------------------------------------------------------------------


class PairwiseDistance(Protocol):
    """A diversity measure: ``(G, n, 3, H, W)`` groups of images -> ``(G,)`` mean distance within each."""

    def mean_pairwise(self, x: Tensor) -> Tensor: ...


@dataclass
class EvalData:
    """What every mode needs: the sources and references (validation images) and the real statistics."""

    domains: tuple[str, ...]
    val: list[Uint8Images]  # per domain
    val_files: list[list[Path]]  # per domain, the files of the sources (the first len(val[d]) of them)
    references: list[Uint8Images]  # per domain: all validation images of the domain
    train_stats: list[Gaussian]  # per domain
    train_counts: list[int]
    _factors: dict[int, Tensor]

    def covariance_factor(self, domain: int) -> Tensor:
        """``covariance_factor`` of a domain's real covariance, computed once for all tasks that target it."""
        if domain not in self._factors:
            self._factors[domain] = covariance_factor(self.train_stats[domain].sigma)
        return self._factors[domain]


def prepare(
    train: DomainFolders,
    val: DomainFolders,
    img_size: int,
    feature_net: FeatureNet,
    *,
    max_sources_per_domain: int | None = None,
    batch_size: int = 50,
    workers: int = 0,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = False,
) -> EvalData:
    """Read the validation images and compute (or load) each domain's real-image statistics."""
    check_same_domains(train, val)
    sources, source_files, references, stats, counts = [], [], [], [], []
    for d, name in enumerate(val.domains):
        refs = read_images(val.files[d], img_size, batch_size, workers, progress)
        n = len(refs) if max_sources_per_domain is None else min(len(refs), max_sources_per_domain)
        references.append(refs)
        sources.append(Uint8Images(refs.images[:n]))
        source_files.append(list(val.files[d][:n]))
        stats.append(
            real_statistics(
                train.files[d],
                img_size,
                feature_net,
                batch_size=batch_size,
                workers=workers,
                cache_dir=cache_dir,
                progress=progress,
                desc=f"real images of {name}",
            )
        )
        counts.append(len(train.files[d]))
    return EvalData(tuple(val.domains), sources, source_files, references, stats, counts, {})


def _save_outputs(folder: Path, files: Sequence[Path], rows: Tensor, images: Tensor, num_outputs: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    arrays = images.permute(0, 2, 3, 1).cpu().numpy()  # (c * num_outputs, S, S, 3) uint8
    for k, row in enumerate(rows.tolist()):
        for j in range(num_outputs):
            Image.fromarray(arrays[k * num_outputs + j]).save(folder / f"{Path(files[row]).stem}_{j:02d}.png")


@torch.no_grad()
def evaluate_mode(
    nets: Nets,
    model_config: ModelConfig,
    data: EvalData,
    mode: str,
    feature_net: FeatureNet,
    lpips: PairwiseDistance,
    *,
    num_outputs: int = 10,
    seed: int = 0,
    device: torch.device | str = "cpu",
    batch_size: int = 50,
    mask_fn: MaskFn | None = None,
    save_images: str | os.PathLike | None = None,
    progress: bool = False,
    lpips_batch: int = LPIPS_BATCH,
) -> dict[str, Any]:
    """The protocol in one ``mode``: ``{"tasks": {"a2b": figures}, "mean": figures}`` with the figures
    ``{"fid", "lpips", "lpips_per_source"}``.

    ``lpips`` is the authors' figure: the sources, in an order shuffled by the task's second random stream (as
    their loader shuffles them), are cut into batches of ``lpips_batch``; each batch's mean is taken, then the
    mean of those. ``lpips_per_source`` is the plain mean over sources. Both have the same expected value; the
    authors' weighs the sources of a last, partial batch more.
    """
    if num_outputs < 2:
        raise ValueError(f"num_outputs must be >= 2 (LPIPS compares the outputs of a source), got {num_outputs}")
    if model_config.num_domains != len(data.domains):
        raise ValueError(
            f"the model has num_domains={model_config.num_domains} but the data has {len(data.domains)} "
            f"domains ({', '.join(data.domains)})"
        )
    all_tasks = tasks(len(data.domains))
    total = sum(len(data.val[s]) for s, _ in all_tasks)
    bar = tqdm(total=total * num_outputs, desc=f"{mode}-guided", disable=not progress, unit="img", leave=False)
    per_task: dict[str, dict[str, float]] = {}
    with eval_mode(nets), bar:
        for source, target in all_tasks:
            name = f"{data.domains[source]}2{data.domains[target]}"
            fake_stats = FeatureStats(_feature_dim(feature_net))
            per_source = torch.zeros(len(data.val[source]), dtype=torch.float64)  # LPIPS of each source
            batches = translate_task(
                nets,
                mode,
                data.val[source],
                data.references[target],
                target,
                num_outputs=num_outputs,
                latent_dim=model_config.latent_dim,
                generator=task_generator(seed, mode, source, target),
                device=device,
                batch_size=batch_size,
                mask_fn=mask_fn,
            )
            for batch in batches:
                out = batch.outputs  # (c * num_outputs, 3, S, S)
                # LPIPS on the outputs as they are; FID on 8-bit images, as if read back from PNG files.
                groups = out.view(-1, num_outputs, *out.shape[1:])
                per_source[batch.rows] = lpips.mean_pairwise(groups).double().cpu()  # (c,)
                quantised = to_uint8(out)
                fake_stats.update(feature_net(quantised))
                if save_images is not None:
                    folder = Path(save_images) / mode / name
                    _save_outputs(folder, data.val_files[source], batch.rows, quantised, num_outputs)
                bar.update(out.shape[0])
            fake = fake_stats.gaussian()
            fid = frechet_distance_gaussians(fake, data.train_stats[target], data.covariance_factor(target))
            order = torch.randperm(len(per_source), generator=task_generator(seed, mode, source, target, stream=1))
            per_task[name] = {
                "fid": fid,
                "lpips": batched_mean(per_source, lpips_batch, order),
                "lpips_per_source": float(per_source.mean()),
            }
    return {"tasks": per_task, "mean": mean_over_tasks(per_task)}


def _protocol(
    data: EvalData,
    train: DomainFolders,
    val: DomainFolders,
    img_size: int,
    num_outputs: int,
    feature_net: FeatureNet,
    lpips_batch: int,
) -> dict[str, Any]:
    """The report's description of what was measured: domains, counts, data folders and how images and LPIPS
    were prepared and averaged."""
    return {
        "domains": list(data.domains),
        "img_size": img_size,
        "num_outputs": num_outputs,
        "num_tasks": len(tasks(len(data.domains))),
        "sources_per_domain": {d: len(v) for d, v in zip(data.domains, data.val, strict=True)},
        "references_per_domain": {d: len(r) for d, r in zip(data.domains, data.references, strict=True)},
        "train_images_per_domain": dict(zip(data.domains, data.train_counts, strict=True)),
        "train_data": str(train.root),
        "val_data": str(val.root),
        "fid_preprocessing": {
            "model_size": MODEL_SIZE_PREPROCESSING,
            "to_inception_input": feature_net.describe().get("resize_description", "the feature network's own"),
        },
        "lpips_averaging": {
            "lpips": f"the authors': mean over batches of {lpips_batch} sources (in a seeded shuffled order, "
            "as their loader), each batch the mean over its sources; a last partial batch weighs as much as "
            "a full one",
            "lpips_per_source": "mean over sources",
            "batch": lpips_batch,
        },
    }


def evaluate(
    nets: Nets,
    model_config: ModelConfig,
    train_data: str | os.PathLike,
    val_data: str | os.PathLike,
    feature_net: FeatureNet,
    lpips: PairwiseDistance,
    *,
    modes: Sequence[str] = MODES,
    num_outputs: int = 10,
    seed: int = 0,
    device: torch.device | str = "cpu",
    batch_size: int = 50,
    workers: int = 0,
    mask_fn: MaskFn | None = None,
    max_sources_per_domain: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    save_images: str | os.PathLike | None = None,
    progress: bool = False,
    lpips_batch: int = LPIPS_BATCH,
) -> dict[str, Any]:
    """FID and LPIPS of ``nets`` by the paper's protocol, in each of ``modes``; a JSON-ready report.

    ``nets`` (the EMA networks) must be on ``device``; ``feature_net`` (``fid.load_inception``) and
    ``lpips`` (``lpips.load_lpips``) too. ``train_data`` and ``val_data`` hold one sub-folder per domain, the
    same ones. Sources are the validation images (the first ``max_sources_per_domain`` of each domain if
    given); references are drawn from all validation images of the target. ``mask_fn`` gives high-pass
    models their masks (``fan.masks``). ``save_images`` writes every output as PNG to
    ``save_images/<mode>/<src>2<trg>/<source name>_<j>.png``. ``lpips_batch`` is the number of sources per
    LPIPS average of the authors' figure (``evaluate_mode``). Same arguments, same numbers.
    """
    if lpips_batch < 1:
        raise ValueError(f"lpips_batch must be >= 1, got {lpips_batch}")
    for mode in modes:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    start = time.perf_counter()
    img_size = model_config.img_size
    train = scan_domains(train_data, num_domains=model_config.num_domains)
    val = scan_domains(val_data, num_domains=model_config.num_domains)
    data = prepare(
        train,
        val,
        img_size,
        feature_net,
        max_sources_per_domain=max_sources_per_domain,
        batch_size=batch_size,
        workers=workers,
        cache_dir=cache_dir,
        progress=progress,
    )
    seconds = {"prepare": round(time.perf_counter() - start, 2)}
    report: dict[str, Any] = {
        "seed": seed,
        "fid_network": feature_net.describe(),
        "lpips_network": _describe(lpips),
        "protocol": _protocol(data, train, val, img_size, num_outputs, feature_net, lpips_batch),
    }
    for mode in modes:
        t = time.perf_counter()
        report[mode] = evaluate_mode(
            nets,
            model_config,
            data,
            mode,
            feature_net,
            lpips,
            num_outputs=num_outputs,
            seed=seed,
            device=device,
            batch_size=batch_size,
            mask_fn=mask_fn,
            save_images=save_images,
            progress=progress,
            lpips_batch=lpips_batch,
        )
        seconds[mode] = round(time.perf_counter() - t, 2)
    report["seconds"] = seconds | {"total": round(time.perf_counter() - start, 2)}
    return report


def _describe(net: object) -> dict[str, str]:
    describe = getattr(net, "describe", None)
    return describe() if callable(describe) else {"name": type(net).__name__}


def format_table(report: Mapping[str, Any]) -> str:
    """The per-task and mean figures of a report as a text table, one row per (mode, task)."""
    lines = [f"{'mode':<10} {'task':<24} {'FID':>10} {'LPIPS':>8} {'LPIPS/src':>10}"]
    for mode in MODES:
        if mode not in report:
            continue
        rows = [*report[mode]["tasks"].items(), ("mean", report[mode]["mean"])]
        for name, figures in rows:
            per_source = figures.get("lpips_per_source", float("nan"))
            lines.append(f"{mode:<10} {name:<24} {figures['fid']:>10.2f} {figures['lpips']:>8.4f} {per_source:>10.4f}")
    return "\n".join(lines)


def write_report(report: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write the report as indented JSON (atomically: a reader never sees half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path
