"""A training run: the loop around ``train_step`` with its run directory (Choi et al., CVPR 2020, Appendix B).

One run directory holds everything needed to audit and continue a run::

    config.json        the resolved config
    log.txt            one line per logged step (and the run's notes)
    stats.jsonl        the loss components, one JSON object per logged step
    tensorboard/       the same scalars and the sample grids, for TensorBoard
    samples/           {step:06d}_latent.png, _reference.png, _cycle.png
    metrics.jsonl      with --eval-every: the figures measured during training, one JSON object per evaluation
    checkpoints/       state_{step:06d}.safetensors (complete training state) and
                       ema_{step:06d}.safetensors (EMA nets only, for synthesis); with --keep-best, also
                       best_ema.safetensors and best_ema.json (the EMA nets with the best value of a metric);
                       their names and how they are listed are defined in ``stargan_v2.rundir``

Every random choice of a step (images, augmentation, latents) is a pure function of (seed, rank, step), and the
complete state is saved, so a run resumed from a checkpoint continues bit-identically on the same device (and
the same number of processes).

Under ``torchrun`` every process trains on its own shard of each step (``--batch-size`` images each) with
DistributedDataParallel; rank 0 alone writes the run directory (``stargan_v2.distributed``).
"""

from __future__ import annotations

import dataclasses
import errno
import itertools
import json
import os
import signal
import threading
import time
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from . import distributed
from .checkpoint import CheckpointError, save_ema
from .config import Config
from .data import (
    BadImageWarning,
    DataError,
    DomainFolders,
    TrainBatches,
    check_same_domains,
    load_image,
    scan_domains,
    to_step_inputs,
    train_loader,
)
from .fan import FAN
from .losses import Stats
from .model import eval_mode
from .rundir import best_ema_path, checkpoint_dir, ema_path, list_states, state_path
from .speed import MEMORY_FORMATS, PRECISIONS, RESAMPLINGS, resolve_speed
from .synthesis import cycle_grid, latent_grid, reference_grid, save_image
from .train import RunSettings, TrainState, apply_settings, init_train_state, train_step, wrap_ddp
from .training_state import load_training_state, save_training_state

if TYPE_CHECKING:
    from .metrics.monitor import Monitor

#: Fields that may change when a run is resumed: they do not alter what a step computes.
RESUMABLE_FIELDS = ("total_iters", "print_every", "sample_every", "save_every")
#: What ``--on-nan`` can do when a loss stops being finite: stop the run, or roll back to the last checkpoint.
ON_NAN_CHOICES = ("stop", "rollback")


class RunError(ValueError):
    """A run cannot start or continue as asked; the message says why and what to do."""


class NonFiniteError(RunError):
    """A loss or gradient became NaN or infinite; the message names it and the step."""


@dataclass(frozen=True)
class RunOptions:
    """How to run (as opposed to what to train, which is the config).

    ``minutes`` stops the run after that many minutes of training (a checkpoint is written); ``wing`` is the
    authors' face-landmark file for high-pass (``w_hpf > 0``) models. ``device`` is ``cpu``, ``cuda`` or
    ``cuda:N``; under torchrun each process takes the GPU of its ``LOCAL_RANK``. ``precision``,
    ``resampling`` and ``memory_format`` are the speed settings (``stargan_v2.speed``; ``auto`` chooses by the
    device and the model).
    """

    run_dir: Path
    data: Path
    val_data: Path | None = None
    resume: bool = False
    num_workers: int = 0
    skip_bad_images: bool = False
    device: str = "cpu"
    minutes: float | None = None
    progress: bool = True
    wing: Path | None = None
    keep: int = 3
    #: ``auto``, ``fp32`` or ``bf16`` (bfloat16 autocast of the forward passes).
    precision: str = "auto"
    #: ``auto``, ``fused`` or ``separate``: how the training nets resample.
    resampling: str = "auto"
    #: ``auto``, ``channels_last`` or ``contiguous``: the layout of weights and feature maps.
    memory_format: str = "auto"
    #: Compile G, F and E in place (``torch.compile``; the first steps take longer).
    compile: bool = False
    #: What a non-finite loss or gradient does: ``stop`` (the newest checkpoint stays the last good one) or
    #: ``rollback`` (reload the newest checkpoint, halve the learning rates, go on; at most ``max_rollbacks``).
    on_nan: str = "stop"
    max_rollbacks: int = 3
    #: ``torch.use_deterministic_algorithms``: bit-identical reruns on CPU; see docs/RELIABILITY.md for GPUs.
    deterministic: bool = False
    #: A Weights & Biases project to log to as well (needs ``pip install wandb``); ``None``: no W&B.
    wandb: str | None = None
    #: Measure the EMA nets every this many steps (``None``: never) with ``eval_metrics`` on the first
    #: ``eval_sources`` validation images of each domain, into ``metrics.jsonl`` and TensorBoard.
    eval_every: int | None = None
    #: ``oracle`` (the quality benchmark; the built-in dataset only) and/or ``fid_lpips`` (the paper's metrics;
    #: needs the Inception and AlexNet weight files and ``val_data``). Empty: ``oracle`` on the built-in
    #: dataset, else ``fid_lpips``.
    eval_metrics: tuple[str, ...] = ()
    eval_sources: int = 10
    #: Keep the EMA nets with the best value of this measured figure (e.g. ``oracle/latent/domain_accuracy``).
    keep_best: str | None = None
    #: Where the FID and LPIPS weight files are (default: the torch cache); the FID feature network.
    weights_dir: Path | None = None
    fid_net: str = "torchvision"


@dataclass
class RunResult:
    """What a run did: the step it reached, why it stopped, and where its files are."""

    step: int
    reason: str  # "finished", "time budget", "interrupted"
    run_dir: Path
    state_path: Path | None  # None in processes other than rank 0, which write nothing
    ema_path: Path | None
    seconds: float
    bad_images: int


def _start_wandb(project: str, run_dir: Path, config: Config) -> Any:
    """A Weights & Biases run for ``project`` (optional: only when asked for, and only if installed).

    The run's id is kept in the run directory, so a resumed training run continues the same W&B run.
    """
    try:
        import wandb
    except ImportError:
        raise RunError("--wandb needs the wandb package: pip install wandb (or leave --wandb out)") from None
    id_file = run_dir / "wandb_id.txt"
    run_id = id_file.read_text().strip() if id_file.is_file() else wandb.util.generate_id()
    id_file.write_text(run_id + "\n")
    return wandb.init(
        project=project, id=run_id, resume="allow", dir=str(run_dir), name=run_dir.name, config=config.to_dict()
    )


class _Log:
    """``log.txt`` and ``stats.jsonl`` appenders, plus TensorBoard when it is installed, and W&B when asked for."""

    def __init__(self, run_dir: Path, write_tensorboard: bool = True, wandb_run: Any = None) -> None:
        self.run_dir = run_dir
        self.text = open(run_dir / "log.txt", "a", encoding="utf-8")  # noqa: SIM115 (closed in close())
        self.stats = open(run_dir / "stats.jsonl", "a", encoding="utf-8")  # noqa: SIM115
        self.tb = None
        self.wandb = wandb_run
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
        if self.wandb is not None:
            self.wandb.log(values, step=step)

    def metrics(self, step: int, values: dict[str, float]) -> None:
        """Append measured figures (``--eval-every``) to ``metrics.jsonl``, the log, TensorBoard and W&B."""
        with open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"step": step, **values}) + "\n")
        shown = " ".join(f"{k}={v:.4g}" for k, v in values.items())
        self.note(f"metrics at step {step}: {shown}")
        if self.tb is not None:
            for key, value in values.items():
                self.tb.add_scalar(f"metrics/{key}", value, step)
            self.tb.flush()
        if self.wandb is not None:
            self.wandb.log({f"metrics/{k}": v for k, v in values.items()}, step=step)

    def image(self, tag: str, grid: Tensor, step: int) -> None:
        if self.tb is not None:
            self.tb.add_image(tag, (grid.clamp(-1, 1) + 1) / 2, step)
        if self.wandb is not None:
            import wandb

            pixels = ((grid.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()
            self.wandb.log({tag: wandb.Image(pixels)}, step=step)

    def close(self) -> None:
        self.text.close()
        self.stats.close()
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()


class _NoLog(_Log):
    """What processes other than rank 0 log: nothing."""

    def __init__(self) -> None:
        pass

    def note(self, message: str) -> None:
        pass

    def scalars(self, step: int, values: dict[str, float]) -> None:
        pass

    def metrics(self, step: int, values: dict[str, float]) -> None:
        pass

    def image(self, tag: str, grid: Tensor, step: int) -> None:
        pass

    def close(self) -> None:
        pass


# ----------------------------------------------------------------------------------------------------------
# Ctrl-C: finish the step, save, stop
# ----------------------------------------------------------------------------------------------------------


@contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    """Turn the first Ctrl-C (SIGINT) or SIGTERM into a request to stop after the current step; a second
    Ctrl-C interrupts at once.

    Interrupting inside a step would leave D updated and G not; finishing the step keeps the saved state whole.
    SIGTERM is what job schedulers and ``kill`` send before SIGKILL, so it gets the same clean stop.
    """
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, frame: Any) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


# ----------------------------------------------------------------------------------------------------------
# Numerical faults
# ----------------------------------------------------------------------------------------------------------


class _FaultWatch:
    """Remembers, on the device, the first step at which each loss or gradient norm was not finite.

    Updating it is a few tensor operations per step and never waits for the device; ``check`` reads it (one
    sync) and is called at log intervals and before every checkpoint.
    """

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.first: Tensor | None = None

    def add(self, step: int, stats: dict[str, Tensor]) -> None:
        if self.first is None:
            self.keys = list(stats)  # the order the step computes them in, so the first one is the origin
            self.first = torch.full((len(self.keys),), -1, dtype=torch.long, device=stats[self.keys[0]].device)
        values = torch.stack([stats[k].detach().float().reshape(()) for k in self.keys])
        new = ~torch.isfinite(values) & (self.first < 0)
        self.first = torch.where(new, torch.full_like(self.first, step), self.first)

    def check(self, d: distributed.Dist) -> str | None:
        """``None`` when all is finite (in every process), else a message naming the losses and steps."""
        bad = self.first is not None and bool((self.first >= 0).any())
        if not distributed.any_across(d, bad):
            return None
        if not bad:
            return "a loss or gradient became non-finite in another process"
        assert self.first is not None
        steps = self.first.tolist()
        found = sorted((step, i) for i, step in enumerate(steps) if step >= 0)
        step, i = found[0]
        # A NaN spreads to everything computed after it; the first value of the first bad step is the origin.
        rest = f" (then {len(found) - 1} more values became non-finite)" if len(found) > 1 else ""
        return f"non-finite {self.keys[i]} at step {step}{rest}"

    def reset(self) -> None:
        self.first = None


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


def sample_batch(
    folders: DomainFolders, img_size: int, n_src: int = 8, refs_per_domain: int = 2, skip_bad_images: bool = False
) -> SampleBatch:
    """Pick the first images of each domain (sorted), round-robin, so the grids are the same in every run.

    With ``skip_bad_images`` an unreadable file is passed over (with a warning) for the next one of its domain.
    """
    k = len(folders.domains)

    def readable(paths: Iterable[Path]) -> Iterator[Tensor]:
        for path in paths:
            try:
                yield load_image(path, img_size)
            except DataError as exc:
                if not skip_bad_images:
                    raise
                warnings.warn(f"{exc}; not used for the sample grids", BadImageWarning, stacklevel=2)

    fronts = [readable(folders.files[d]) for d in range(k)]
    src: list[tuple[int, Tensor]] = []
    for _ in range(n_src):
        for d in range(k):
            if len(src) < n_src and (x := next(fronts[d], None)) is not None:
                src.append((d, x))
    # References come from the end of each domain's list so that they differ from the sources when possible.
    ref: list[tuple[int, Tensor]] = []
    for d in range(k):
        backs = readable(reversed(folders.files[d]))
        ref.extend((d, x) for x in itertools.islice(backs, refs_per_domain))

    def stack(items: list[tuple[int, Tensor]]) -> tuple[Tensor, Tensor]:
        return torch.stack([x for _, x in items]), torch.tensor([d for d, _ in items], dtype=torch.long)

    x_src, y_src = stack(src)
    x_ref, y_ref = stack(ref)
    # For the cycle grid every source gets a reference of the next domain.
    pick = [next(i for i, (d, _) in enumerate(ref) if d == (ys + 1) % k) for ys in y_src.tolist()]
    return SampleBatch(x_src, y_src, x_ref, y_ref, x_ref[pick], y_ref[pick])


def write_samples(state: TrainState, batch: SampleBatch, out_dir: Path, log: _Log | None = None) -> list[Path]:
    """Latent-, reference-guided and cycle grids of the EMA nets at the current step."""
    nets, cfg = state.nets_ema, state.config.model
    device = next(nets.generator.parameters()).device
    b = SampleBatch(*(t.to(device) for t in dataclasses.astuple(batch)))
    mask_fn = state.mask_fn
    with eval_mode(nets):
        grids = {
            "latent": latent_grid(nets, b.x_src, cfg.num_domains, cfg.latent_dim, seed=0, mask_fn=mask_fn),
            "reference": reference_grid(nets, b.x_src, b.x_ref, b.y_ref, mask_fn=mask_fn),
            "cycle": cycle_grid(nets, b.x_src, b.y_src, b.x_cyc_ref, b.y_cyc_ref, mask_fn=mask_fn),
        }
    paths = []
    for name, grid in grids.items():
        paths.append(save_image(grid, out_dir / f"{state.step:06d}_{name}.png"))
        if log is not None:
            log.image(f"samples/{name}", grid, state.step)
    return paths


# ----------------------------------------------------------------------------------------------------------
# The plan of a run with a time budget
# ----------------------------------------------------------------------------------------------------------


class _Plan:
    """With a time budget (``--minutes``): after a short warm-up, measure the seconds per step and say how many
    steps the budget will give, so that a user on a slower machine knows at once what to expect."""

    #: Steps skipped before measuring (the first ones pay for allocations and kernel choices) and measured.
    WARMUP, MEASURED = 5, 20

    def __init__(self, budget: float | None, first_step: int, log: _Log, device: torch.device, announce: bool) -> None:
        self.budget, self.first, self.log, self.device, self.announce = budget, first_step, log, device, announce
        self.t0: float | None = None
        self.done = budget is None

    def step(self, step: int, start: float) -> None:
        if self.done or step not in (self.first + self.WARMUP, self.first + self.WARMUP + self.MEASURED):
            return
        if self.device.type == "cuda":  # the step's kernels may still be running
            torch.cuda.synchronize(self.device)
        elapsed = time.monotonic() - start
        if step == self.first + self.WARMUP:
            self.t0 = elapsed
        elif self.t0 is not None and step == self.first + self.WARMUP + self.MEASURED:
            per_step = (elapsed - self.t0) / self.MEASURED
            assert self.budget is not None
            expected = step + int(max(0.0, self.budget - elapsed) / per_step)
            message = (
                f"plan: {per_step:.3f} s per step (measured over steps {self.first + self.WARMUP}-{step}), so "
                f"about {expected} steps in the budget of {self.budget / 60:g} min"
            )
            self.log.note(message)
            if self.announce:
                from tqdm.auto import tqdm

                tqdm.write(message)  # on its own line above a progress bar, if one is drawn
            self.done = True


# ----------------------------------------------------------------------------------------------------------
# Measuring during training (--eval-every)
# ----------------------------------------------------------------------------------------------------------

#: What ``--eval-metrics`` may name: the quality benchmark's oracle, or the paper's FID and LPIPS.
EVAL_METRICS = ("oracle", "fid_lpips")


def make_monitor(options: RunOptions, img_size: int, device: torch.device) -> Monitor | None:
    """The monitor ``options`` ask for (``None`` without ``eval_every``); reads its data and weights once."""
    if options.eval_every is None:
        return None
    from .metrics.monitor import FidLpipsMonitor, Monitors, OracleMonitor
    from .procedural import is_procedural_dataset

    root = Path(options.data).parent
    built_in = Path(options.data).name == "train" and is_procedural_dataset(root)
    monitors: list[Monitor] = []
    for name in options.eval_metrics or (("oracle",) if built_in else ("fid_lpips",)):
        if name == "oracle":
            if not built_in:
                raise RunError(
                    f"--eval-metrics oracle scores the built-in dataset only, and {options.data} is not the train "
                    "folder of one (stargan-v2 make-dataset writes it): use --eval-metrics fid_lpips"
                )
            monitors.append(OracleMonitor(root, img_size, sources_per_domain=options.eval_sources, device=device))
        elif name == "fid_lpips":
            if options.val_data is None:
                raise RunError("--eval-every measures FID and LPIPS on the validation images: pass --val-data DIR")
            monitors.append(
                FidLpipsMonitor(
                    options.data,
                    options.val_data,
                    img_size,
                    sources_per_domain=options.eval_sources,
                    fid_net=options.fid_net,
                    weights_dir=options.weights_dir,
                    device=device,
                )
            )
        else:
            raise RunError(f"--eval-metrics {name}: choose from {', '.join(EVAL_METRICS)}")
    monitor = Monitors(monitors)
    if options.keep_best is not None and options.keep_best not in monitor.names:
        raise RunError(f"--keep-best {options.keep_best} is not measured; choose one of: {', '.join(monitor.names)}")
    return monitor


class _Best:
    """``--keep-best``: the EMA nets with the best value so far of one measured figure, in ``best_ema.*``."""

    def __init__(self, run_dir: Path, name: str) -> None:
        from .metrics.monitor import higher_is_better

        self.name, self.higher = name, higher_is_better(name)
        self.path = best_ema_path(run_dir)
        self.info = self.path.with_suffix(".json")
        self.value: float | None = None
        if self.info.is_file() and self.path.is_file():  # a resumed run goes on from the best it had
            saved = json.loads(self.info.read_text(encoding="utf-8"))
            if saved.get("metric") == name:
                self.value = float(saved["value"])

    def update(self, state: TrainState, value: float, domains: tuple[str, ...], log: _Log) -> None:
        if self.value is not None and not (value > self.value if self.higher else value < self.value):
            return
        self.value = value
        save_ema(state.nets_ema, state.config, self.path, step=state.step, domains=domains)
        record = {"metric": self.name, "value": value, "step": state.step, "higher_is_better": self.higher}
        tmp = self.info.with_name(f".{self.info.name}.tmp")
        tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, self.info)
        log.note(f"best {self.name}={value:.4g} so far: saved {self.path.name}")


def _measure(
    state: TrainState, monitor: Monitor, best: _Best | None, log: _Log, domains: tuple[str, ...], elapsed: float
) -> None:
    """Score the EMA nets, log the figures (with the seconds it took) and keep the best checkpoint."""
    t = time.monotonic()
    with eval_mode(state.nets_ema):
        figures = monitor(state.nets_ema, state.config.model, state.mask_fn)
    seconds = time.monotonic() - t
    log.metrics(state.step, {**figures, "time": elapsed, "eval_seconds": seconds})
    if best is not None:
        best.update(state, figures[best.name], domains, log)


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


def _load_fan(options: RunOptions, config: Config, device: torch.device) -> FAN | None:
    if not config.model.uses_hpf:
        return None
    if options.wing is None:
        raise RunError(
            f"w_hpf={config.model.w_hpf} turns on the high-pass path, which needs the authors' face-landmark "
            "network: pass --wing path/to/wing.ckpt (or --set w_hpf=0)"
        )
    from .fan import load_fan

    return load_fan(options.wing).to(device)


def _resume_state(
    options: RunOptions, config: Config, explicit: set[str], fan: FAN | None, device: torch.device
) -> TrainState:
    """Load the newest checkpoint that reads back; an unreadable one is reported and skipped."""
    for _, path in reversed(list_states(options.run_dir)):
        try:
            state = load_training_state(path, device=device, fan=fan)
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


def _save(state: TrainState, options: RunOptions, log: _Log, domains: tuple[str, ...]) -> tuple[Path, Path]:
    folder = checkpoint_dir(options.run_dir)
    saved_state = state_path(options.run_dir, state.step)
    try:
        save_training_state(state, saved_state, domains=domains)
        saved_ema = save_ema(
            state.nets_ema, state.config, ema_path(options.run_dir, state.step), step=state.step, domains=domains
        )
    except OSError as exc:
        # The write goes to a temporary file that is renamed only when complete, so nothing older is damaged.
        previous = list_states(options.run_dir)
        kept = f"the newest complete checkpoint, {previous[-1][1].name}, is intact" if previous else "no checkpoint"
        reason = "the disk is full" if exc.errno == errno.ENOSPC else f"the write failed ({exc.strerror or exc})"
        log.note(f"could not save step {state.step}: {reason}")
        raise RunError(
            f"could not write the checkpoint of step {state.step} to {folder}: {reason}; {kept}. Free space (or fix "
            "the folder's permissions) and continue with --resume"
        ) from exc
    # Old complete states are dropped only after the new one is safely on disk.
    for _, old in list_states(options.run_dir)[: -options.keep]:
        old.unlink(missing_ok=True)
    log.note(f"saved {saved_state.name} and {saved_ema.name}")
    return saved_state, saved_ema


# ----------------------------------------------------------------------------------------------------------
# The loop
# ----------------------------------------------------------------------------------------------------------


def train(config: Config, options: RunOptions, explicit: set[str] | None = None) -> RunResult:
    """Train ``config`` on the domain folders of ``options.data`` in ``options.run_dir``.

    ``explicit`` names the config fields the user set on purpose (``--set``, ``--iters`` ...): only those may
    disagree with the data's domain count (an error) or change on ``--resume``. Under torchrun the processes
    join one group (``stargan_v2.distributed``) and train together; in one process nothing changes.
    """
    for name, value, choices in (
        ("precision", options.precision, PRECISIONS),
        ("resampling", options.resampling, RESAMPLINGS),
        ("memory-format", options.memory_format, MEMORY_FORMATS),
    ):
        if value not in choices:
            raise RunError(f"--{name} {value}: choose one of {', '.join(choices)}")
    if options.on_nan not in ON_NAN_CHOICES:
        raise RunError(f"--on-nan {options.on_nan}: choose one of {', '.join(ON_NAN_CHOICES)}")
    if options.keep < 1:
        raise RunError(f"--keep must be at least 1 (got {options.keep})")
    if options.eval_every is not None and options.eval_every < 1:
        raise RunError(f"--eval-every must be a positive number of steps (got {options.eval_every})")
    if options.eval_sources < 2:
        raise RunError(f"--eval-sources must be at least 2 per domain (got {options.eval_sources})")
    if options.keep_best is not None and options.eval_every is None:
        raise RunError("--keep-best needs --eval-every N (it keeps the best of what is measured)")
    explicit = set(explicit or ())
    run_dir = Path(options.run_dir)
    if options.deterministic:
        _make_deterministic()
    d = distributed.init(options.device)
    if d.device.type == "cuda":
        # TF32 matmuls and convolutions on Ampere and newer; cuDNN picks the fastest kernels unless asked to
        # be deterministic.
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = not options.deterministic
    try:
        return _train(config, options, explicit, run_dir, d)
    finally:
        distributed.shutdown()


def _apply_settings(state: TrainState, options: RunOptions, d: distributed.Dist) -> RunSettings:
    """The run's settings, put into effect on a fresh, resumed or rolled-back state (they are not part of a
    checkpoint): resolved from ``options`` for the device and the model, with DDP wrappers in many processes."""
    speed = resolve_speed(d.device, state.config.model, options.precision, options.resampling, options.memory_format)
    settings = RunSettings.from_speed(speed, compile=options.compile)
    apply_settings(state, settings)
    if d.enabled:
        settings = dataclasses.replace(settings, ddp=wrap_ddp(state.nets))
    return settings


def _make_deterministic() -> None:
    """Deterministic kernels everywhere (an error names any operation that has none)."""
    import os

    # cuBLAS needs a fixed workspace to be deterministic; it must be set before the first CUDA matmul.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def _prepare_run_dir(run_dir: Path) -> None:
    """Create the run directory, prove it is writable, and clear temporary files a killed save left behind."""
    folder = checkpoint_dir(run_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".write-test"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        raise RunError(
            f"cannot write to the run directory {run_dir} ({exc.strerror or exc}): choose a --run-dir on a "
            "writable disk with free space"
        ) from exc
    for stale in folder.glob(".*.tmp"):
        stale.unlink(missing_ok=True)


def _train(config: Config, options: RunOptions, explicit: set[str], run_dir: Path, d: distributed.Dist) -> RunResult:
    """Start or resume, train until a stop reason (``_train_steps``), then the final samples and checkpoint."""
    state, settings, folders, val = _start_state(config, options, explicit, run_dir, d)
    run = _open_run(state, settings, options, run_dir, d, folders, val)
    reason = "finished"
    paths: tuple[Path | None, Path | None] = (None, None)
    try:
        with _stop_on_signals() as run.stop:
            state, reason = _train_steps(run, state, settings)
            paths = _finish(run, state)
    except NonFiniteError:
        reason = "non-finite"
        raise
    finally:
        if run.bar is not None:
            run.bar.close()
        run.log.note(f"stopped at step {run.step}: {reason}")
        run.log.close()
    seconds = time.monotonic() - run.start
    return RunResult(state.step, reason, run_dir, paths[0], paths[1], seconds, run.bad_images)


def _start_state(
    config: Config, options: RunOptions, explicit: set[str], run_dir: Path, d: distributed.Dist
) -> tuple[TrainState, RunSettings, DomainFolders, DomainFolders | None]:
    """Check the data and the run directory, then start or resume the state with the run's settings applied;
    also returns the training and validation folders."""
    fan = _load_fan(options, config, d.device)
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
    if d.is_main:
        _prepare_run_dir(run_dir)
    distributed.barrier(d)
    if options.resume and has_states:
        state = _resume_state(options, config, explicit, fan, d.device)
    else:
        # Every process starts from the same weights (DDP also broadcasts rank 0's).
        torch.manual_seed(config.train.seed)
        state = init_train_state(config, device=d.device, fan=fan)
    settings = _apply_settings(state, options, d)
    if d.is_main:
        (run_dir / "config.json").write_text(state.config.to_json() + "\n", encoding="utf-8")
    return state, settings, folders, val


@dataclass
class _Run:
    """What the steps of one run share, besides the state and its settings (which a rollback replaces)."""

    options: RunOptions
    d: distributed.Dist
    run_dir: Path
    folders: DomainFolders
    batches: TrainBatches
    samples: SampleBatch | None
    monitor: Monitor | None
    best: _Best | None
    log: _Log
    bar: Any
    plan: _Plan
    start: float
    #: The step the run has reached (for the last line of the log, whatever stops the run).
    step: int
    watch: _FaultWatch = dataclasses.field(default_factory=_FaultWatch)
    #: Set by Ctrl-C or SIGTERM (``_stop_on_signals``).
    stop: threading.Event = dataclasses.field(default_factory=threading.Event)
    bad_images: int = 0

    def elapsed(self) -> float:
        return time.monotonic() - self.start


def _open_run(
    state: TrainState,
    settings: RunSettings,
    options: RunOptions,
    run_dir: Path,
    d: distributed.Dist,
    folders: DomainFolders,
    val: DomainFolders | None,
) -> _Run:
    """The data stream, the sample images, the monitor, the log and the progress bar of a started state."""
    config, cfg, size = state.config, state.config.train, state.config.model.img_size
    batches = TrainBatches(
        folders,
        size,
        cfg.batch_size,
        cfg.randcrop_prob,
        config.model.latent_dim,
        seed=cfg.seed,
        rank=d.rank,
        skip_bad_images=options.skip_bad_images,
    )
    samples = sample_batch(val or folders, size, skip_bad_images=options.skip_bad_images) if d.is_main else None
    monitor = make_monitor(options, size, d.device) if d.is_main else None
    best = _Best(run_dir, options.keep_best) if monitor is not None and options.keep_best else None
    wandb_run = _start_wandb(options.wandb, run_dir, config) if options.wandb and d.is_main else None
    log = _Log(run_dir, wandb_run=wandb_run) if d.is_main else _NoLog()
    log.note(
        f"{'resumed at' if state.step else 'started at'} step {state.step} of {cfg.total_iters}; data {folders.root} "
        f"({folders.num_images} images, domains {', '.join(folders.domains)}); device {d.device}; "
        f"{settings.describe()}{', compiled' if options.compile else ''}; "
        f"batch {cfg.batch_size} per process x {d.world_size} process(es) = "
        f"{cfg.batch_size * d.world_size} images per step"
    )
    if d.enabled and d.is_main:
        print(
            f"training with {d.world_size} processes: batch {cfg.batch_size} per process, "
            f"global batch {cfg.batch_size * d.world_size}",
            flush=True,
        )
    bar = None
    if options.progress and d.is_main:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.total_iters, initial=state.step, unit="it", dynamic_ncols=True)
    budget = None if options.minutes is None else options.minutes * 60
    plan = _Plan(budget, state.step, log, d.device, announce=d.is_main)
    start = time.monotonic()
    return _Run(options, d, run_dir, folders, batches, samples, monitor, best, log, bar, plan, start, state.step)


@dataclass(frozen=True)
class _Stop:
    """Why the steps stopped: ``reason`` is ``finished``, ``interrupted`` or ``time budget``, or ``non-finite``
    with the ``fault`` that says which value became non-finite at which step."""

    reason: str
    fault: str | None = None


def _train_steps(run: _Run, state: TrainState, settings: RunSettings) -> tuple[TrainState, str]:
    """Train until a stop reason. A numerical fault never reaches a checkpoint: it stops the run
    (``NonFiniteError``) or rolls back to the newest checkpoint and trains on from there (``--on-nan``).
    Returns the final state (a rolled-back one after a fault) and the reason it stopped."""
    options = run.options
    for rollbacks in itertools.count():
        stop = _step_loop(run, state, settings)
        # The steps since the last check are checked too, before the final save (in every process).
        fault = stop.fault if stop.fault is not None else run.watch.check(run.d)
        if fault is None:
            return state, stop.reason
        run.log.note(fault)
        if options.on_nan == "stop" or rollbacks >= options.max_rollbacks:
            raise NonFiniteError(_fault_message(fault, options, rollbacks))
        state, settings = _rollback(state, options, run.d, run.log, fault)
        run.watch.reset()
        run.step = state.step
        if run.bar is not None:
            run.bar.reset(total=state.config.train.total_iters)
            run.bar.update(state.step)
    raise AssertionError("unreachable")  # itertools.count() never ends


def _step_loop(run: _Run, state: TrainState, settings: RunSettings) -> _Stop:
    """Steps from ``state.step`` until the last one, or until ``_after_step`` gives a reason to stop."""
    cfg, device = state.config.train, run.d.device
    loader = train_loader(
        run.batches, state.step, cfg.total_iters, run.options.num_workers, pin_memory=device.type == "cuda"
    )
    for batch in loader:
        stats = train_step(state, to_step_inputs(batch, device), settings)
        run.bad_images += int(batch["bad_images"])
        if (stop := _after_step(run, state, stats)) is not None:
            return stop
    return _Stop("finished")


def _after_step(run: _Run, state: TrainState, stats: Stats) -> _Stop | None:
    """What follows a step: fault checks, the log, samples, checkpoints, measurements; returns a reason to stop
    (``None``: go on). Every process takes the same branches at the same step, so that the collective
    operations in it (fault checks, loss averages, the stop agreement) match across processes."""
    cfg, d, options = state.config.train, run.d, run.options
    step = run.step = state.step
    run.plan.step(step, run.start)
    run.watch.add(step, stats)
    logged = step % cfg.print_every == 0 or step == cfg.total_iters
    saving = step % cfg.save_every == 0 and step != cfg.total_iters
    # A fault is looked for (one device sync) only at log intervals and before a checkpoint, so that a bad
    # state is never saved and the step itself never waits.
    if (logged or saving) and (fault := run.watch.check(d)) is not None:
        return _Stop("non-finite", fault)
    if logged:
        _log_losses(run, step, stats)
    if run.bar is not None:
        run.bar.update(1)
    if step % cfg.sample_every == 0 and run.samples is not None:
        write_samples(state, run.samples, run.run_dir / "samples", run.log)
    if saving and d.is_main:
        _save(state, options, run.log, run.folders.domains)
    if run.monitor is not None and step % options.eval_every == 0:  # type: ignore[operator]
        _measure(state, run.monitor, run.best, run.log, run.folders.domains, run.elapsed())
    return _stop_requested(run, logged)


def _log_losses(run: _Run, step: int, stats: Stats) -> None:
    """Log the step's losses (a device sync), averaged over the processes."""
    values = {k: float(v) for k, v in distributed.mean_across(run.d, stats).items()}
    values["time"] = run.elapsed()
    run.log.scalars(step, values)
    if run.bar is not None:
        run.bar.set_postfix(
            D=f"{values['D/latent_total']:.3f}", G=f"{values['G/latent_total']:.3f}", ds=f"{values['G/latent_ds']:.3f}"
        )


def _stop_requested(run: _Run, logged: bool) -> _Stop | None:
    """Ctrl-C and the time budget stop every process at the same step. With many processes they agree at log
    intervals only (``logged``), so that a step never waits for the others just to check."""
    d, minutes = run.d, run.options.minutes
    over = minutes is not None and run.elapsed() >= minutes * 60
    if d.enabled:
        if not logged:
            return None
        interrupted = distributed.any_across(d, run.stop.is_set())
        over = distributed.any_across(d, over)
    else:
        interrupted = run.stop.is_set()
    if interrupted:
        return _Stop("interrupted")
    if over:
        return _Stop("time budget")
    return None


def _finish(run: _Run, state: TrainState) -> tuple[Path | None, Path | None]:
    """The last samples, measurement and checkpoint of a run that stopped cleanly; their paths (rank 0)."""
    options, d, cfg = run.options, run.d, state.config.train
    run.bad_images = distributed.sum_across(d, run.bad_images)
    if run.bad_images:
        run.log.note(f"skipped {run.bad_images} unreadable images (--skip-bad-images)")
    if run.samples is not None and state.step % cfg.sample_every != 0:
        write_samples(state, run.samples, run.run_dir / "samples", run.log)
    if run.monitor is not None and state.step % options.eval_every != 0:  # type: ignore[operator]
        _measure(state, run.monitor, run.best, run.log, run.folders.domains, run.elapsed())
    paths: tuple[Path | None, Path | None] = (None, None)
    if d.is_main:
        paths = _save(state, options, run.log, run.folders.domains)
    distributed.barrier(d)
    return paths


def _fault_message(fault: str, options: RunOptions, rollbacks: int) -> str:
    states = list_states(options.run_dir)
    newest = f"the newest checkpoint, {states[-1][1].name}, is from before it" if states else "no checkpoint was saved"
    if rollbacks:
        return (
            f"training stopped: {fault}, again after {rollbacks} rollback(s) with lower learning rates; {newest}. "
            "Look at the data and the loss weights before resuming"
        )
    return (
        f"training stopped: {fault}; {newest}. Continue from it with --resume and a lower learning rate "
        "(--set lr=... --set f_lr=...), or pass --on-nan rollback to do that automatically"
    )


def _rollback(
    state: TrainState,
    options: RunOptions,
    d: distributed.Dist,
    log: _Log,
    fault: str,
) -> tuple[TrainState, RunSettings]:
    """Reload the newest checkpoint and halve the learning rates (kept in the config, so a resume keeps them)."""
    if not list_states(options.run_dir):
        raise NonFiniteError(f"training stopped: {fault}; there is no checkpoint to roll back to")
    good = _resume_state(options, state.config, set(), state.fan, d.device)
    now = state.config.train
    # Halve the rates in use (a second rollback halves again); keep this run's resumable settings.
    kept = {name: getattr(now, name) for name in RESUMABLE_FIELDS}
    train_cfg = dataclasses.replace(good.config.train, lr=now.lr / 2, f_lr=now.f_lr / 2, **kept)
    good.config = dataclasses.replace(good.config, train=train_cfg)
    for name, opt in good.optimizers.items():
        for group in opt.param_groups:
            group["lr"] = train_cfg.f_lr if name == "mapping_network" else train_cfg.lr
    settings = _apply_settings(good, options, d)
    log.note(f"rolled back to step {good.step} with lr={train_cfg.lr:g}, f_lr={train_cfg.f_lr:g}")
    return good, settings


__all__ = [
    "NonFiniteError",
    "RunError",
    "RunOptions",
    "RunResult",
    "checkpoint_dir",
    "list_states",
    "sample_batch",
    "train",
    "write_samples",
]
