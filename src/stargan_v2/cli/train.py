"""``train``: train on folders of images (one sub-folder per domain), or resume a run (``--resume``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..metrics.fid import FEATURE_NET_CHOICES
from ..run import ON_NAN_CHOICES, RunOptions, train
from .common import (
    add_config_args,
    add_device,
    add_no_progress,
    add_speed_args,
    add_weights_dir,
    add_wing,
    config_from_args,
)
from .types import eval_metric_list, nonnegative_int, positive_float, positive_int


def add_train(sub: argparse._SubParsersAction) -> None:
    """``stargan-v2 train``."""
    p = sub.add_parser("train", help="train on folders of images (one sub-folder per domain)")
    p.add_argument("--data", required=True, help="training images: DIR/<domain>/**/*.{jpg,png,...}")
    p.add_argument("--val-data", help="validation images in the same layout (used for the sample grids)")
    p.add_argument("--run-dir", required=True, help="where config, logs, samples and checkpoints go")
    add_config_args(p)
    p.add_argument("--iters", type=positive_int, help="total training steps (same as --set total_iters=N)")
    p.add_argument("--batch-size", type=positive_int, help="images per step (same as --set batch_size=N)")
    p.add_argument("--resume", action="store_true", help="continue from the run directory's newest checkpoint")
    p.add_argument("--workers", type=nonnegative_int, default=0, help="data-loading worker processes (default: 0)")
    add_device(p)
    p.add_argument("--skip-bad-images", action="store_true", help="skip unreadable images with a warning")
    add_wing(p, help="the authors' wing.ckpt (face-landmark network) for w_hpf > 0 models")
    p.add_argument("--minutes", type=positive_float, help="stop (and save) after this much training time")
    add_no_progress(p)
    add_speed_args(p)
    _add_run_args(p)
    _add_eval_args(p)
    p.set_defaults(func=cmd_train)


def _add_run_args(p: argparse.ArgumentParser) -> None:
    """Checkpoints kept, what to do on a non-finite loss, determinism and Weights & Biases."""
    p.add_argument(
        "--keep", type=positive_int, default=3, help="training-state checkpoints kept (default 3; older pruned)"
    )
    p.add_argument(
        "--on-nan",
        choices=ON_NAN_CHOICES,
        default="stop",
        help="on a non-finite loss or gradient: stop (default), or reload the last checkpoint with halved lr",
    )
    p.add_argument("--deterministic", action="store_true", help="deterministic kernels (bit-identical CPU reruns)")
    p.add_argument("--wandb", metavar="PROJECT", help="also log to this Weights & Biases project (pip install wandb)")


def _add_eval_args(p: argparse.ArgumentParser) -> None:
    """The evaluation during training (``--eval-every``) and the best checkpoint it keeps."""
    p.add_argument(
        "--eval-every",
        type=positive_int,
        metavar="N",
        help="measure the EMA nets every N steps into metrics.jsonl and TensorBoard (default: never)",
    )
    p.add_argument(
        "--eval-metrics",
        type=eval_metric_list,
        default=(),
        metavar="LIST",
        help="what --eval-every measures, comma-separated: oracle (built-in dataset only), fid_lpips (needs "
        "--val-data and the weight files); default: oracle on the built-in dataset, else fid_lpips",
    )
    p.add_argument(
        "--eval-sources",
        type=positive_int,
        default=10,
        help="validation images per domain that --eval-every translates (10 outputs each; default 10)",
    )
    p.add_argument(
        "--keep-best",
        metavar="METRIC",
        help="keep the EMA nets with the best value of a measured figure as checkpoints/best_ema.safetensors, "
        "e.g. oracle/latent/domain_accuracy or fid/latent",
    )
    p.add_argument(
        "--fid-net",
        choices=FEATURE_NET_CHOICES,
        default="torchvision",
        help="FID features of --eval-every: torchvision (alias inception; the authors', default) or pt_inception",
    )
    add_weights_dir(p, help="folder of the FID/LPIPS weight files (default: the torch cache)")


def _shortcut_overrides(args: argparse.Namespace) -> list[str]:
    """``--iters`` and ``--batch-size`` as the ``--set`` overrides they stand for."""
    overrides = []
    if args.iters is not None:
        overrides.append(f"total_iters={args.iters}")
    if args.batch_size is not None:
        overrides.append(f"batch_size={args.batch_size}")
    return overrides


def _explicit_keys(args: argparse.Namespace) -> set[str]:
    """Config fields the user set on purpose (``--set`` and the shortcut flags)."""
    keys = {item.split("=", 1)[0].strip().split(".")[-1] for item in args.overrides if "=" in item}
    if getattr(args, "iters", None) is not None:
        keys.add("total_iters")
    if getattr(args, "batch_size", None) is not None:
        keys.add("batch_size")
    return keys


def _optional_path(text: str | None) -> Path | None:
    return Path(text) if text else None


def run_options(args: argparse.Namespace) -> RunOptions:
    """The ``RunOptions`` of the command line."""
    return RunOptions(
        run_dir=Path(args.run_dir),
        data=Path(args.data),
        val_data=_optional_path(args.val_data),
        resume=args.resume,
        num_workers=args.workers,
        skip_bad_images=args.skip_bad_images,
        device=args.device,
        minutes=args.minutes,
        progress=not args.no_progress,
        wing=_optional_path(args.wing),
        precision=args.precision,
        resampling=args.resampling,
        memory_format=args.memory_format,
        compile=args.compile,
        keep=args.keep,
        on_nan=args.on_nan,
        deterministic=args.deterministic,
        wandb=args.wandb,
        eval_every=args.eval_every,
        eval_metrics=args.eval_metrics,
        eval_sources=args.eval_sources,
        keep_best=args.keep_best,
        weights_dir=_optional_path(args.weights_dir),
        fid_net=args.fid_net,
    )


def cmd_train(args: argparse.Namespace) -> int:
    """Train on folders of images, one sub-folder per domain."""
    config = config_from_args(args, _shortcut_overrides(args))
    result = train(config, run_options(args), explicit=_explicit_keys(args))
    if result.state_path is not None:  # rank 0 (the only process that writes) reports
        print(f"{result.reason} at step {result.step} after {result.seconds:.0f} s")
        print(f"run directory: {result.run_dir} (samples in samples/, checkpoints in checkpoints/)")
        if result.bad_images:
            print(f"skipped {result.bad_images} unreadable images")
    return 130 if result.reason == "interrupted" else 0
