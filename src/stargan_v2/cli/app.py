"""``serve`` and ``demo``: the web demo for a model, and the built-in demo (dataset, training, report)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..config import preset
from .common import (
    DEMO_RUN,
    add_checkpoint,
    add_device,
    add_domains,
    add_no_progress,
    add_overrides,
    add_wing,
    default_checkpoint,
    domain_names,
)
from .types import nonnegative_int, port_number, positive_float, positive_int


def add_demo(sub: argparse._SubParsersAction) -> None:
    """``stargan-v2 demo``."""
    p = sub.add_parser("demo", help="make the built-in dataset, train on it for a while, and write a report")
    p.add_argument("--out", default="demo_output", help="output folder (default: demo_output)")
    p.add_argument("--minutes", type=positive_float, default=10.0, help="training time budget (default 10)")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="dataset seed (default 0)")
    p.add_argument("--workers", type=nonnegative_int, default=0, help="data-loading worker processes (default 0)")
    add_device(p)
    add_no_progress(p)
    add_overrides(p, help="override the demo preset")
    p.set_defaults(func=cmd_demo)


def add_serve(sub: argparse._SubParsersAction) -> None:
    """``stargan-v2 serve``."""
    p = sub.add_parser("serve", help="the web demo: translate uploaded pictures in the browser (Gradio)")
    add_checkpoint(p, required=False)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=port_number, default=7860, help="port (default 7860)")
    p.add_argument("--examples", help="folder of example source images to offer (default: the demo's, if any)")
    add_domains(p)
    p.add_argument("--max-upload-mb", type=positive_float, default=10.0, help="largest upload in MB (default 10)")
    p.add_argument(
        "--max-pixels", type=positive_int, default=4096 * 4096, help="largest image in pixels (default 4096x4096)"
    )
    add_wing(p)
    add_device(p)
    p.set_defaults(func=cmd_serve)


def cmd_demo(args: argparse.Namespace) -> int:
    """Dataset, bounded training, quality figures and a report, in one folder."""
    from ..demo import DemoOptions, run_demo

    options = DemoOptions(
        out=Path(args.out),
        minutes=args.minutes,
        seed=args.seed,
        device=args.device,
        workers=args.workers,
        progress=not args.no_progress,
    )
    config = preset("demo").override(args.overrides)
    report = run_demo(options, config)
    print(f"\nreport: {report}\n(also {report.with_suffix('.md')}; grids and quality.json beside it)")
    return 0


def _serve_examples(args: argparse.Namespace) -> list[Path] | None:
    """``--examples`` (spread over the folder); else, for the shipped model with no dataset on disk, a few
    pictures of its kind drawn here; else ``None`` (the demo run's own, if any)."""
    from ..run import list_states
    from ..serve import example_images

    if args.examples:
        return example_images(args.examples)
    if args.checkpoint is None and not list_states(DEMO_RUN):
        from ..assets import example_sources
        from ..metrics.oracle import default_cache_dir

        return example_sources(default_cache_dir() / "examples")
    return None


def cmd_serve(args: argparse.Namespace) -> int:
    """The web demo (a Gradio page) for a checkpoint, by default the newest demo run or the shipped demo model."""
    checkpoint = args.checkpoint if args.checkpoint is not None else default_checkpoint("serve")
    try:
        from ..serve import UploadLimits, serve
    except ModuleNotFoundError as e:
        print(
            f"stargan-v2 serve: error: {e}; install the web demo's extra: pip install 'stargan-v2[serve]'",
            file=sys.stderr,
        )
        return 2
    limits = UploadLimits(max_mb=args.max_upload_mb, max_pixels=args.max_pixels)
    examples = _serve_examples(args)
    serve(
        checkpoint,
        host=args.host,
        port=args.port,
        device=args.device,
        domains=domain_names(args),
        examples=examples,
        fan_path=args.wing,
        limits=limits,
    )
    return 0
