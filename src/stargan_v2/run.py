"""A training run: the loop around ``train_step`` with its run directory (Choi et al., CVPR 2020, Appendix B).

One run directory holds everything needed to audit and continue a run::

    config.json        the resolved config
    log.txt            one line per logged step (and the run's notes)
    stats.jsonl        the loss components, one JSON object per logged step
    tensorboard/       the same scalars and the sample grids, for TensorBoard
    samples/           {step:06d}_latent.png, _reference.png, _cycle.png
    checkpoints/       state_{step:06d}.safetensors (complete training state) and
                       ema_{step:06d}.safetensors (EMA nets only, for synthesis)

Every random choice of a step (images, augmentation, latents) is a pure function of (seed, rank, step), and the
complete state is saved, so a run resumed from a checkpoint continues bit-identically on the same device.
"""

from __future__ import annotations

import dataclasses
import json
import re
import signal
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .checkpoint import CheckpointError, load_training_state, save_ema, save_training_state
from .config import Config
from .data import (
    DomainFolders,
    TrainBatches,
    check_same_domains,
    load_image,
    scan_domains,
    to_step_inputs,
    train_loader,
)
from .synthesis import cycle_grid, latent_grid, reference_grid, save_image
from .train import TrainState, init_train_state, train_step

#: Fields that may change when a run is resumed: they do not alter what a step computes.
RESUMABLE_FIELDS = ("total_iters", "print_every", "sample_every", "save_every")
_STATE_RE = re.compile(r"state_(\d{6,})\.safetensors")


class RunError(ValueError):
    """A run cannot start or continue as asked; the message says why and what to do."""


@dataclass(frozen=True)
class RunOptions:
    """How to run (as opposed to what to train, which is the config).

    ``max_seconds`` stops the run after that much training time (a checkpoint is written); ``wing`` is the
    authors' face-landmark file for high-pass (``w_hpf > 0``) models.
    """

    run_dir: Path
    data: Path
    val_data: Path | None = None
    resume: bool = False
    num_workers: int = 0
    skip_bad_images: bool = False
    device: str = "cpu"
    max_seconds: float | None = None
    progress: bool = True
    wing: Path | None = None
    keep_checkpoints: int = 3


@dataclass
class RunResult:
    """What a run did: the step it reached, why it stopped, and where its files are."""

    step: int
    reason: str  # "finished", "time budget", "interrupted"
    run_dir: Path
    state_path: Path
    ema_path: Path
    seconds: float
    bad_images: int


# ----------------------------------------------------------------------------------------------------------
# The run directory
# ----------------------------------------------------------------------------------------------------------


def checkpoint_dir(run_dir: Path) -> Path:
    """Where a run keeps its checkpoints."""
    return Path(run_dir) / "checkpoints"


def list_states(run_dir: Path) -> list[tuple[int, Path]]:
    """The run's training-state files as ``(step, path)``, oldest first."""
    folder = checkpoint_dir(run_dir)
    found = []
    if folder.is_dir():
        for path in folder.iterdir():
            if m := _STATE_RE.fullmatch(path.name):
                found.append((int(m.group(1)), path))
    return sorted(found)


class _Log:
    """``log.txt`` and ``stats.jsonl`` appenders, plus TensorBoard when it is installed."""

    def __init__(self, run_dir: Path, write_tensorboard: bool = True) -> None:
        self.text = open(run_dir / "log.txt", "a", encoding="utf-8")  # noqa: SIM115 (closed in close())
        self.stats = open(run_dir / "stats.jsonl", "a", encoding="utf-8")  # noqa: SIM115
        self.tb = None
        if write_tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(run_dir / "tensorboard"))
            except ImportError:  # TensorBoard is optional at run time; the JSON log has the same numbers.
                self.tb = None

    def note(self, message: str) -> None:
        self.text.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")
        self.text.flush()

    def scalars(self, step: int, values: dict[str, float]) -> None:
        self.stats.write(json.dumps({"step": step, **values}) + "\n")
        self.stats.flush()
        parts = " ".join(f"{k}={v:.4f}" for k, v in values.items() if k != "time")
        self.note(f"step {step} {parts}")
        if self.tb is not None:
            for key, value in values.items():
                self.tb.add_scalar(key, value, step)

    def image(self, tag: str, grid: Tensor, step: int) -> None:
        if self.tb is not None:
            self.tb.add_image(tag, (grid.clamp(-1, 1) + 1) / 2, step)

    def close(self) -> None:
        self.text.close()
        self.stats.close()
        if self.tb is not None:
            self.tb.close()


# ----------------------------------------------------------------------------------------------------------
# Ctrl-C: finish the step, save, stop
# ----------------------------------------------------------------------------------------------------------


@contextmanager
def _stop_on_sigint() -> Iterator[threading.Event]:
    """Turn the first Ctrl-C into a request to stop after the current step (a second one interrupts at once).

    Interrupting inside a step would leave D updated and G not; finishing the step keeps the saved state whole.
    """
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


# ----------------------------------------------------------------------------------------------------------
# Sample grids
# ----------------------------------------------------------------------------------------------------------


@dataclass
class SampleBatch:
    """Fixed images for the sample grids: sources spread over the domains, and references for each domain."""

    x_src: Tensor
    y_src: Tensor
    x_ref: Tensor
    y_ref: Tensor
    x_cyc_ref: Tensor
    y_cyc_ref: Tensor


def sample_batch(folders: DomainFolders, img_size: int, n_src: int = 8, refs_per_domain: int = 2) -> SampleBatch:
    """Pick the first images of each domain (sorted), round-robin, so the grids are the same in every run."""
    k = len(folders.domains)
    src = [(d, folders.files[d][i]) for i in range(n_src) for d in range(k) if i < len(folders.files[d])][:n_src]
    # References come from the end of each domain's list so that they differ from the sources when possible.
    ref = [(d, folders.files[d][-1 - i]) for d in range(k) for i in range(min(refs_per_domain, len(folders.files[d])))]

    def load(items: list[tuple[int, Path]]) -> tuple[Tensor, Tensor]:
        x = torch.stack([load_image(p, img_size) for _, p in items])
        return x, torch.tensor([d for d, _ in items], dtype=torch.long)

    x_src, y_src = load(src)
    x_ref, y_ref = load(ref)
    # For the cycle grid every source gets a reference of the next domain.
    pick = [next(i for i, (d, _) in enumerate(ref) if d == (ys + 1) % k) for ys in y_src.tolist()]
    return SampleBatch(x_src, y_src, x_ref, y_ref, x_ref[pick], y_ref[pick])


def write_samples(state: TrainState, batch: SampleBatch, out_dir: Path, log: _Log | None = None) -> list[Path]:
    """Latent-, reference-guided and cycle grids of the EMA nets at the current step."""
    nets, cfg = state.nets_ema, state.config.model
    device = next(nets.generator.parameters()).device
    b = SampleBatch(*(t.to(device) for t in dataclasses.astuple(batch)))
    mask_fn = state.mask_fn
    was_training = [m.training for _, m in nets.items()]
    nets.eval()
    try:
        grids = {
            "latent": latent_grid(nets, b.x_src, cfg.num_domains, cfg.latent_dim, seed=0, mask_fn=mask_fn),
            "reference": reference_grid(nets, b.x_src, b.x_ref, b.y_ref, mask_fn=mask_fn),
            "cycle": cycle_grid(nets, b.x_src, b.y_src, b.x_cyc_ref, b.y_cyc_ref, mask_fn=mask_fn),
        }
    finally:
        for (_, m), flag in zip(nets.items(), was_training, strict=True):
            m.train(flag)
    paths = []
    for name, grid in grids.items():
        paths.append(save_image(grid, out_dir / f"{state.step:06d}_{name}.png"))
        if log is not None:
            log.image(f"samples/{name}", grid, state.step)
    return paths


# ----------------------------------------------------------------------------------------------------------
# Starting or resuming
# ----------------------------------------------------------------------------------------------------------


def resolve_config(config: Config, folders: DomainFolders, explicit: set[str]) -> Config:
    """Take the number of domains from the data unless the user set it; a disagreement is an error."""
    found = len(folders.domains)
    if config.model.num_domains == found:
        return config
    if "num_domains" in explicit:
        raise RunError(
            f"--set num_domains={config.model.num_domains} but {folders.root} has {found} domain folders "
            f"({', '.join(folders.domains)}): fix the folder or use --set num_domains={found}"
        )
    return dataclasses.replace(config, model=dataclasses.replace(config.model, num_domains=found))


def _load_fan(options: RunOptions, config: Config) -> nn.Module | None:
    if not config.model.uses_hpf:
        return None
    if options.wing is None:
        raise RunError(
            f"w_hpf={config.model.w_hpf} turns on the high-pass path, which needs the authors' face-landmark "
            "network: pass --wing path/to/wing.ckpt (or --set w_hpf=0)"
        )
    from .fan import load_fan

    return load_fan(options.wing).to(options.device)


def _resume_state(options: RunOptions, config: Config, explicit: set[str], fan: nn.Module | None) -> TrainState:
    """Load the newest checkpoint that reads back; an unreadable one is reported and skipped."""
    for _, path in reversed(list_states(options.run_dir)):
        try:
            state = load_training_state(path, device=options.device, fan=fan)
        except (CheckpointError, OSError) as exc:
            warnings.warn(f"skipping unreadable checkpoint {path} ({exc})", stacklevel=2)
            continue
        saved = state.config
        changed = {}
        for section in ("model", "train"):
            for f in dataclasses.fields(getattr(saved, section)):
                mine, theirs = getattr(getattr(config, section), f.name), getattr(getattr(saved, section), f.name)
                if f.name in explicit and mine != theirs:
                    if f.name not in RESUMABLE_FIELDS:
                        raise RunError(
                            f"cannot resume {options.run_dir} with {f.name}={mine}: it was trained with "
                            f"{f.name}={theirs}. Only {', '.join(RESUMABLE_FIELDS)} may change on resume; "
                            "start a new --run-dir to change anything else"
                        )
                    changed[f.name] = mine
        if changed:
            state.config = dataclasses.replace(saved, train=dataclasses.replace(saved.train, **changed))
        return state
    raise RunError(f"--resume: {options.run_dir} has no readable checkpoint in {checkpoint_dir(options.run_dir)}")


def _save(state: TrainState, options: RunOptions, log: _Log) -> tuple[Path, Path]:
    folder = checkpoint_dir(options.run_dir)
    state_path = save_training_state(state, folder / f"state_{state.step:06d}.safetensors")
    ema_path = save_ema(state.nets_ema, state.config, folder / f"ema_{state.step:06d}.safetensors", step=state.step)
    # Old complete states are dropped only after the new one is safely on disk.
    for _, old in list_states(options.run_dir)[: -options.keep_checkpoints]:
        old.unlink(missing_ok=True)
    log.note(f"saved {state_path.name} and {ema_path.name}")
    return state_path, ema_path


# ----------------------------------------------------------------------------------------------------------
# The loop
# ----------------------------------------------------------------------------------------------------------


def train(config: Config, options: RunOptions, explicit: set[str] | None = None) -> RunResult:
    """Train ``config`` on the domain folders of ``options.data`` in ``options.run_dir``.

    ``explicit`` names the config fields the user set on purpose (``--set``, ``--iters`` ...): only those may
    disagree with the data's domain count (an error) or change on ``--resume``.
    """
    explicit = set(explicit or ())
    run_dir = Path(options.run_dir)
    fan = _load_fan(options, config)
    # Images smaller than the model are refused here, before anything is written.
    size = config.model.img_size
    folders = scan_domains(options.data, min_size=size, skip_bad_images=options.skip_bad_images)
    config = resolve_config(config, folders, explicit)
    val = None
    if options.val_data is not None:
        val = scan_domains(options.val_data, min_size=size, skip_bad_images=options.skip_bad_images)
        check_same_domains(folders, val)

    has_states = bool(list_states(run_dir))
    if has_states and not options.resume:
        raise RunError(
            f"{run_dir} already holds checkpoints; pass --resume to continue that run, or choose a new --run-dir"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    if options.resume and has_states:
        state = _resume_state(options, config, explicit, fan)
    else:
        torch.manual_seed(config.train.seed)
        state = init_train_state(config, device=options.device, fan=fan)
    config = state.config
    (run_dir / "config.json").write_text(config.to_json() + "\n", encoding="utf-8")

    cfg = config.train
    batches = TrainBatches(
        folders,
        config.model.img_size,
        cfg.batch_size,
        cfg.randcrop_prob,
        config.model.latent_dim,
        seed=cfg.seed,
        skip_bad_images=options.skip_bad_images,
    )
    samples = sample_batch(val or folders, config.model.img_size)
    log = _Log(run_dir)
    log.note(
        f"{'resumed at' if state.step else 'started at'} step {state.step} of {cfg.total_iters}; data {folders.root} "
        f"({folders.num_images} images, domains {', '.join(folders.domains)}); device {options.device}"
    )
    bar = None
    if options.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.total_iters, initial=state.step, unit="it", dynamic_ncols=True)

    start, bad_images, reason = time.monotonic(), 0, "finished"
    state_path = ema_path = None
    try:
        with _stop_on_sigint() as stop:
            loader = train_loader(batches, state.step, cfg.total_iters, num_workers=options.num_workers)
            for batch in loader:
                stats = train_step(state, to_step_inputs(batch, options.device))
                bad_images += int(batch["bad_images"])
                step = state.step
                if step % cfg.print_every == 0 or step == cfg.total_iters:
                    values = {k: float(v) for k, v in stats.items()}
                    values["time"] = time.monotonic() - start
                    log.scalars(step, values)
                    if bar is not None:
                        bar.set_postfix(
                            D=f"{values['D/latent_total']:.3f}",
                            G=f"{values['G/latent_total']:.3f}",
                            ds=f"{values['G/latent_ds']:.3f}",
                        )
                if bar is not None:
                    bar.update(1)
                if step % cfg.sample_every == 0:
                    write_samples(state, samples, run_dir / "samples", log)
                if step % cfg.save_every == 0 and step != cfg.total_iters:
                    _save(state, options, log)
                if stop.is_set():
                    reason = "interrupted"
                    break
                if options.max_seconds is not None and time.monotonic() - start >= options.max_seconds:
                    reason = "time budget"
                    break
            if bad_images:
                log.note(f"skipped {bad_images} unreadable images (--skip-bad-images)")
            if state.step % cfg.sample_every != 0:
                write_samples(state, samples, run_dir / "samples", log)
            state_path, ema_path = _save(state, options, log)
    finally:
        if bar is not None:
            bar.close()
        log.note(f"stopped at step {state.step}: {reason}")
        log.close()
    return RunResult(state.step, reason, run_dir, state_path, ema_path, time.monotonic() - start, bad_images)


__all__ = [
    "RunError",
    "RunOptions",
    "RunResult",
    "checkpoint_dir",
    "list_states",
    "sample_batch",
    "train",
    "write_samples",
]
