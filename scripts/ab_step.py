"""Training iterations of several settings, timed in turns in one process (an interleaved A/B comparison).

    python scripts/ab_step.py --preset demo --batch-size 8 --rounds 20 authors ours all-channels-last
    python scripts/ab_step.py --preset afhq --set w_hpf=0 --set max_conv_dim=64 --img-size 256 --batch-size 2 \\
        --rounds 3 --warmup 1 ours all-channels-last contiguous
    python scripts/ab_step.py --preset demo --batch-size 1 2 4 8 16 --threads 1 ours authors

On a shared VM the speed of the machine drifts by 10-20% within minutes, so `stargan-v2 bench` commands run
one after the other can disagree by more than the difference being measured. Here every variant is built
first, warmed up, then each round runs one iteration of every variant in turn; the table gives each variant's
median and its speed relative to the first variant named (at the same batch size). Several batch sizes
(``--batch-size 1 2 4 8 16``) give every variant one row per size, all timed in the same rounds: how a step's
time splits into a fixed part and a part per image. ``--threads N`` sets PyTorch's intra-op threads first. The
variants:

* ``ours``: ``train_step`` with the settings ``auto`` resolves to on this device (what ``train`` runs);
* ``authors``: ``bench.authors_train_step``, the authors' amount of work (separate resampling, NCHW);
* ``channels-last``: ours with D, E and F in channels_last and G in NCHW, whatever ``auto`` resolves to (what
  ``--memory-format channels_last`` runs);
* ``all-channels-last``: ours with G in channels_last too (``train.NCHW_NETS`` emptied: the layout before
  2026-12-07);
* ``contiguous``: ours with every net in NCHW;
* ``compiled``: ours with G, F and E compiled (``--compile``; the warm-up then includes compiling). With several
  batch sizes each size is compiled for its own static shape, as ``train`` compiles for its one batch size
  (without this, dynamo would build a graph with a dynamic batch dimension at the second size and use it for
  every later one, which is not what training runs).

All variants share this process's allocator setting (ours, tuned, unless ``STARGAN_V2_MALLOC=system``); at the
demo's size it makes no difference (docs/BENCHMARKS.md), at 256 px it is worth about 1.3x, so there compare
``authors`` with ``stargan-v2 bench --impl authors`` instead.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from stargan_v2.bench import authors_train_step, random_inputs
from stargan_v2.config import Config, preset
from stargan_v2.hardware import device_description
from stargan_v2.malloc import malloc_mode_from_env, malloc_state, tune_malloc
from stargan_v2.speed import SpeedSettings, resolve_speed
from stargan_v2.train import RunSettings, apply_settings, init_train_state, train_step

VARIANTS = ("ours", "authors", "channels-last", "all-channels-last", "contiguous", "compiled")


def build(variant: str, config: Config, batch_size: int) -> Callable[[], None]:
    """One iteration of ``variant`` as a function, on a fresh state (same seed for every variant)."""
    torch.manual_seed(0)
    state = init_train_state(config)
    speed = resolve_speed("cpu", config.model)
    if variant == "authors":
        speed = SpeedSettings("fp32", "separate", channels_last=False)
    elif variant == "contiguous":
        speed = SpeedSettings(speed.precision, speed.resampling, channels_last=False)
    elif variant in ("channels-last", "all-channels-last"):
        speed = SpeedSettings(speed.precision, speed.resampling, channels_last=True)
    run = RunSettings.from_speed(speed, compile=variant == "compiled")
    apply_settings(state, run)
    if variant == "all-channels-last":
        state.nets.generator.to(memory_format=torch.channels_last)
        state.nets_ema.generator.to(memory_format=torch.channels_last)
    inputs = random_inputs(config, batch_size, torch.device("cpu"), run.channels_last)
    if variant == "authors":
        return lambda: authors_train_step(state, inputs)
    return lambda: train_step(state, inputs, run)


def main() -> None:
    """Build, warm up, time in turns, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="+", choices=VARIANTS)
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    parser.add_argument("--img-size", type=int, default=None)
    parser.add_argument("--batch-size", type=int, nargs="+", default=[8], help="one or more batch sizes")
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads (default: PyTorch's)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    if args.threads is not None:
        if args.threads < 1:
            parser.error(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    if any(b < 1 for b in args.batch_size):
        parser.error(f"every --batch-size must be at least 1, got {args.batch_size}")
    if "compiled" in args.variants and len(args.batch_size) > 1:
        torch._dynamo.config.automatic_dynamic_shapes = False
    if malloc_mode_from_env() == "tuned":
        tune_malloc()
    size = [f"img_size={args.img_size}"] if args.img_size is not None else []
    config = preset(args.preset).override([*args.set, *size])
    keys = [(name, batch) for batch in args.batch_size for name in args.variants]
    steps = {key: build(key[0], config, key[1]) for key in keys}
    warmup = {}
    for key, step in steps.items():
        start = time.perf_counter()
        for _ in range(args.warmup):
            step()
        warmup[key] = time.perf_counter() - start
    times: dict[tuple[str, int], list[float]] = {key: [] for key in steps}
    for _ in range(args.rounds):
        for key, step in steps.items():
            start = time.perf_counter()
            step()
            times[key].append(time.perf_counter() - start)
    batches = " ".join(str(b) for b in args.batch_size)
    print(
        f"{device_description(torch.device('cpu'))}, {malloc_state()} malloc; preset {args.preset} "
        f"{' '.join('--set ' + s for s in args.set)}{f' --img-size {args.img_size}' if args.img_size else ''} "
        f"batch {batches}; {args.rounds} rounds after {args.warmup} warm-up iterations\n"
    )
    print(
        f"| variant | batch | median s / iteration | min | images/s | vs {args.variants[0]} | warm-up s |\n"
        "|---|---|---|---|---|---|---|"
    )
    for (name, batch), ts in times.items():
        median = statistics.median(ts)
        first = statistics.median(times[(args.variants[0], batch)])
        print(
            f"| {name} | {batch} | {median:.4f} | {min(ts):.4f} | {batch / median:.1f} | {first / median:.2f}x "
            f"| {warmup[(name, batch)]:.1f} |"
        )


if __name__ == "__main__":
    main()
