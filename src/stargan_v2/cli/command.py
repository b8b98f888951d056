"""The ``stargan-v2`` command: its parser, assembled from the command modules, and its entry point."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ..checkpoint import CheckpointError
from ..config import ConfigError
from ..malloc import malloc_mode_from_env, tune_malloc
from . import app, bench, data, evaluate, export, info, synth, train

#: Each command's parser, in the order ``stargan-v2 --help`` lists them.
COMMANDS = (
    info.add_summary,
    info.add_config,
    export.add_export,
    train.add_train,
    synth.add_sample,
    synth.add_translate,
    synth.add_video,
    data.add_make_dataset,
    app.add_demo,
    bench.add_bench,
    evaluate.add_eval,
    evaluate.add_fid,
    data.add_align,
    app.add_serve,
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``stargan-v2`` command."""
    parser = argparse.ArgumentParser(
        prog="stargan-v2", description="StarGAN v2: diverse image-to-image translation for multiple domains"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(sub)
    return parser


def _malloc_mode(args: argparse.Namespace) -> str:
    """The allocator setting of this command: ``bench --malloc``, else ``$STARGAN_V2_MALLOC`` (default tuned).

    The benchmark's ``--impl authors`` baseline keeps the C library's defaults unless told otherwise, as the
    authors' code does.
    """
    chosen = getattr(args, "malloc", None)
    if chosen is not None:
        return chosen
    if getattr(args, "impl", None) == "authors":
        return "system"
    return malloc_mode_from_env()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``stargan-v2`` console script; returns the exit status."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse has printed the usage and the error (or --help): return its status
        return exc.code if isinstance(exc.code, int) else 2
    try:
        if _malloc_mode(args) == "tuned":
            tune_malloc()
        return args.func(args)
    except (ConfigError, CheckpointError, FileNotFoundError, FileExistsError, ValueError) as exc:
        print(f"stargan-v2 {args.command}: error: {exc}", file=sys.stderr)
        return 2
