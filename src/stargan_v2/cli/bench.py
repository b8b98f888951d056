"""``bench``: translation quality on the built-in dataset, and the speed and memory of training and synthesis."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..bench import IMPLS, SYNTH_MODES
from ..config import ConfigError
from ..malloc import MALLOC_MODES
from .common import add_checkpoint, add_config_args, add_device, add_speed_args, config_from_args
from .types import nonnegative_int, positive_int

#: The speed benchmarks: ``bench train`` and ``bench synth``, and what each times.
SPEED_BENCHMARKS = {"train": "training iterations (all four updates + EMA)", "synth": "synthesis batches"}


def add_bench(sub: argparse._SubParsersAction) -> None:
    """``stargan-v2 bench quality|train|synth``."""
    p = sub.add_parser("bench", help="benchmarks")
    bench = p.add_subparsers(dest="bench", required=True)
    _add_quality(bench)
    for name, what in SPEED_BENCHMARKS.items():
        _add_speed(bench, name, what)


def _add_quality(bench: argparse._SubParsersAction) -> None:
    q = bench.add_parser("quality", help="translation quality on the built-in dataset, judged by an oracle net")
    add_checkpoint(q)
    q.add_argument("--data", required=True, help="the built-in dataset folder (from make-dataset)")
    q.add_argument(
        "--num-outputs", type=positive_int, default=10, help="outputs per source image (default 10, the paper's)"
    )
    q.add_argument("--max-sources", type=positive_int, help="cap on source images per domain (default: all val images)")
    q.add_argument("--seed", type=nonnegative_int, default=0, help="seed of latents and reference choices")
    q.add_argument("--out", help="also write the figures to this JSON file")
    add_device(q)
    q.set_defaults(func=cmd_bench_quality)


def _add_speed(bench: argparse._SubParsersAction, name: str, what: str) -> None:
    b = bench.add_parser(name, help=f"speed and memory of {what}")
    add_config_args(b)
    b.add_argument("--img-size", type=positive_int, help="image size (same as --set img_size=N)")
    b.add_argument("--batch-size", type=positive_int, help="images per iteration (default: the preset's)")
    add_device(b)
    add_speed_args(b, resampling=name == "train")
    b.add_argument("--warmup", type=nonnegative_int, default=1, help="untimed iterations first (default 1)")
    b.add_argument("--repeats", type=positive_int, default=3 if name == "train" else 5, help="timed iterations")
    b.add_argument("--no-flops", action="store_true", help="skip counting FLOPs (one more iteration)")
    b.add_argument("--json", action="store_true", help="print one JSON object")
    b.add_argument(
        "--impl",
        choices=IMPLS,
        default="ours",
        help="authors: the same work done the authors' way (the baseline)",
    )
    b.add_argument(
        "--malloc",
        choices=MALLOC_MODES,
        help="tuned: keep freed memory in the process (glibc; default for ours); "
        "system: the C library's defaults (default for --impl authors)",
    )
    if name == "synth":
        b.add_argument("--mode", choices=SYNTH_MODES, default="latent", help="style source")
    b.set_defaults(func=cmd_bench_speed)


def cmd_bench_speed(args: argparse.Namespace) -> int:
    """Seconds per training iteration or synthesis batch, images/s, peak memory and FLOP/s."""
    from ..bench import bench_synth, bench_train, to_json

    config = config_from_args(args, [f"img_size={args.img_size}"] if args.img_size is not None else [])
    batch = args.batch_size if args.batch_size is not None else config.train.batch_size
    if batch < 1:
        raise ConfigError(f"--batch-size must be at least 1 (got {batch})")
    if args.repeats < 1 or args.warmup < 0:
        raise ConfigError(f"--repeats must be >= 1 and --warmup >= 0 (got {args.repeats}, {args.warmup})")
    common = dict(
        preset_name=args.preset,
        batch_size=batch,
        device=args.device,
        precision=args.precision,
        memory_format=args.memory_format,
        compile_nets=args.compile,
        warmup=args.warmup,
        repeats=args.repeats,
        count_flops=not args.no_flops,
    )
    if args.bench == "train":
        result = bench_train(config, impl=args.impl, resampling=args.resampling, **common)
    else:
        result = bench_synth(config, impl=args.impl, mode=args.mode, **common)
    print(json.dumps(to_json(result)) if args.json else result.summary())
    return 0


def cmd_bench_quality(args: argparse.Namespace) -> int:
    """Quality figures of a checkpoint on the built-in dataset (an oracle judges the translations)."""
    from ..checkpoint import load_for_synthesis
    from ..metrics.quality import quality_report

    model = load_for_synthesis(args.checkpoint, device=args.device)
    figures = quality_report(
        model.nets,
        model.config,
        args.data,
        num_outputs=args.num_outputs,
        max_sources_per_domain=args.max_sources,
        seed=args.seed,
        device=args.device,
    )
    figures["checkpoint"] = str(model.source)
    text = json.dumps(figures, indent=2)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0
