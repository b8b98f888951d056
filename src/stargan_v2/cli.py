"""The ``stargan-v2`` command. It only parses arguments and calls the library; the config does the rest."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from .checkpoint import (
    EMA_FORMAT,
    TRAINING_FORMAT,
    CheckpointError,
    checkpoint_kind,
    export_official,
    load_ema,
    load_official,
    load_training_state,
    read_metadata,
    save_ema,
)
from .config import PRESETS, Config, ConfigError, preset
from .fan import load_fan
from .model import build_nets, count_parameters


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="afhq", choices=sorted(PRESETS), help="named configuration (default: afhq)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any config field, e.g. --set num_domains=4 --set lambda_ds=1 (repeatable)",
    )


def _config(args: argparse.Namespace) -> Config:
    return preset(args.preset).override(args.overrides)


def cmd_summary(args: argparse.Namespace) -> int:
    """Print each network's parameter count (and the resolved architecture)."""
    cfg = _config(args)
    # Build on the meta device: shapes only, no memory and no initialisation cost.
    with torch.device("meta"):
        nets = build_nets(cfg.model, init=False)
    counts = {name: count_parameters(module) for name, module in nets.items()}
    if args.json:
        print(json.dumps(counts, indent=2))
        return 0
    m = cfg.model
    print(
        f"preset {args.preset}: {m.img_size} px, {m.num_domains} domains, latent {m.latent_dim}, style "
        f"{m.style_dim}, widths {m.first_dim}..{m.max_conv_dim}, w_hpf {m.w_hpf}"
    )
    for name, n in counts.items():
        print(f"  {name:<16} {n:>12,}")
    print(f"  {'total':<16} {sum(counts.values()):>12,}")
    if m.uses_hpf:
        print("  (+ the frozen face-landmark network, FAN, loaded from wing.ckpt: 6,333,603)")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    """Print the resolved config as JSON."""
    print(_config(args).to_json())
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Convert between our checkpoints and the authors' format."""
    src, out = Path(args.checkpoint), Path(args.out)
    kind = checkpoint_kind(src)
    if args.format == "official":
        if kind not in (TRAINING_FORMAT, EMA_FORMAT):
            raise CheckpointError(f"{src} is already in the authors' format (or is not a stargan-v2 checkpoint)")
        config = Config.from_json(read_metadata(src)["config"])
        fan = None
        if config.model.uses_hpf:
            # The authors' loader reads a "fan" entry from every file of a high-pass model.
            if args.fan is None:
                raise ConfigError(
                    f"{src} is a high-pass model (w_hpf={config.model.w_hpf}); the authors' code expects the "
                    "face-landmark network inside the exported files: pass --fan wing.ckpt"
                )
            fan = load_fan(args.fan)
        if kind == TRAINING_FORMAT:
            state = load_training_state(src, restore_rng=False)
            out.mkdir(parents=True, exist_ok=True)
            written = [
                export_official(state.nets_ema, out / f"{state.step:06d}_nets_ema.ckpt", args.legacy, fan),
                export_official(state.nets, out / f"{state.step:06d}_nets.ckpt", args.legacy, fan),
            ]
        else:
            nets, _ = load_ema(src)
            step = int(read_metadata(src).get("step", 0))
            target = out / f"{step:06d}_nets_ema.ckpt" if out.suffix != ".ckpt" else out
            written = [export_official(nets, target, args.legacy, fan)]
    else:  # ema
        if kind == TRAINING_FORMAT:
            state = load_training_state(src, restore_rng=False)
            written = [save_ema(state.nets_ema, state.config, out, step=state.step)]
        elif kind == "official":
            model = load_official(src)
            written = [save_ema(model.nets, Config(model=model.config), out)]
        else:
            raise CheckpointError(f"{src} is already an EMA-only file")
    for path in written:
        print(f"wrote {path}")
    return 0


def _explicit_keys(args: argparse.Namespace) -> set[str]:
    """Config fields the user set on purpose (``--set`` and the shortcut flags)."""
    keys = {item.split("=", 1)[0].strip().split(".")[-1] for item in args.overrides if "=" in item}
    if getattr(args, "iters", None) is not None:
        keys.add("total_iters")
    if getattr(args, "batch_size", None) is not None:
        keys.add("batch_size")
    return keys


def cmd_train(args: argparse.Namespace) -> int:
    """Train on folders of images, one sub-folder per domain."""
    from .run import RunOptions, train

    overrides = list(args.overrides)
    if args.iters is not None:
        overrides.append(f"total_iters={args.iters}")
    if args.batch_size is not None:
        overrides.append(f"batch_size={args.batch_size}")
    config = preset(args.preset).override(overrides)
    options = RunOptions(
        run_dir=Path(args.run_dir),
        data=Path(args.data),
        val_data=Path(args.val_data) if args.val_data else None,
        resume=args.resume,
        num_workers=args.workers,
        skip_bad_images=args.skip_bad_images,
        device=args.device,
        max_seconds=args.minutes * 60 if args.minutes is not None else None,
        progress=not args.no_progress,
        wing=Path(args.wing) if args.wing else None,
    )
    result = train(config, options, explicit=_explicit_keys(args))
    print(f"{result.reason} at step {result.step} after {result.seconds:.0f} s")
    print(f"run directory: {result.run_dir} (samples in samples/, checkpoints in checkpoints/)")
    if result.bad_images:
        print(f"skipped {result.bad_images} unreadable images")
    return 130 if result.reason == "interrupted" else 0


def cmd_sample(args: argparse.Namespace) -> int:
    """Reference- and latent-guided grids from any checkpoint."""
    from .checkpoint import load_for_synthesis
    from .data import scan_domains
    from .run import sample_batch
    from .synthesis import latent_grid, reference_grid, save_image

    model = load_for_synthesis(args.checkpoint, fan_path=args.wing, device=args.device)
    cfg = model.config
    src = scan_domains(args.src, num_domains=cfg.num_domains)
    ref = scan_domains(args.ref, num_domains=cfg.num_domains)
    sources = sample_batch(src, cfg.img_size, n_src=args.num_src, refs_per_domain=1)
    refs = sample_batch(ref, cfg.img_size, n_src=1, refs_per_domain=args.refs_per_domain)
    mask_fn = model.fan.masks if model.fan is not None else None
    device = torch.device(args.device)
    x_src = sources.x_src.to(device)
    out = Path(args.out)
    written = [
        save_image(
            reference_grid(model.nets, x_src, refs.x_ref.to(device), refs.y_ref.to(device), mask_fn=mask_fn),
            out / "reference.png",
        ),
        save_image(
            latent_grid(model.nets, x_src, cfg.num_domains, cfg.latent_dim, args.styles, args.seed, mask_fn, args.psi),
            out / "latent.png",
        ),
    ]
    for path in written:
        print(f"wrote {path}")
    return 0


def cmd_make_dataset(args: argparse.Namespace) -> int:
    """Write the built-in procedural dataset (cat, dog, fox heads) in the layout of a user's data."""
    from .procedural import make_dataset

    start = time.monotonic()
    path = make_dataset(
        args.out,
        size=args.size,
        per_domain=args.per_domain,
        val_per_domain=args.val_per_domain,
        seed=args.seed,
        workers=args.workers,
    )
    print(f"wrote {path} ({time.monotonic() - start:.1f} s): train with --data {path / 'train'}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Dataset, bounded training, quality figures and a report, in one folder."""
    from .demo import DemoOptions, run_demo

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


def cmd_bench_quality(args: argparse.Namespace) -> int:
    """Quality figures of a checkpoint on the built-in dataset (an oracle judges the translations)."""
    from .checkpoint import load_for_synthesis
    from .metrics.quality import quality_report

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


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``stargan-v2`` command."""
    parser = argparse.ArgumentParser(
        prog="stargan-v2", description="StarGAN v2: diverse image-to-image translation for multiple domains"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("summary", help="parameter count of each network")
    _add_config_args(p)
    p.add_argument("--json", action="store_true", help="print {network: parameter count} as JSON")
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser("config", help="print the resolved config as JSON")
    _add_config_args(p)
    p.set_defaults(func=cmd_config)

    p = sub.add_parser(
        "export",
        help="convert checkpoints: ours -> the authors' format, or a training state / authors' file -> EMA-only",
    )
    p.add_argument("--format", required=True, choices=("official", "ema"), help="what to write")
    p.add_argument(
        "--checkpoint", required=True, help="training state, EMA file, or (for --format ema) an authors' file"
    )
    p.add_argument(
        "--out",
        required=True,
        help="official: a folder (gets {step:06d}_nets_ema.ckpt [+ _nets.ckpt]); ema: the .safetensors file",
    )
    p.add_argument("--legacy", action="store_true", help="official: use the legacy torch serialisation (as released)")
    p.add_argument("--fan", metavar="WING_CKPT", help="official, high-pass models: the authors' wing.ckpt to include")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("train", help="train on folders of images (one sub-folder per domain)")
    p.add_argument("--data", required=True, help="training images: DIR/<domain>/**/*.{jpg,png,...}")
    p.add_argument("--val-data", help="validation images in the same layout (used for the sample grids)")
    p.add_argument("--run-dir", required=True, help="where config, logs, samples and checkpoints go")
    _add_config_args(p)
    p.add_argument("--iters", type=int, help="total training steps (same as --set total_iters=N)")
    p.add_argument("--batch-size", type=int, help="images per step (same as --set batch_size=N)")
    p.add_argument("--resume", action="store_true", help="continue from the run directory's newest checkpoint")
    p.add_argument("--workers", type=int, default=0, help="data-loading worker processes (default: 0)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="torch device")
    p.add_argument("--skip-bad-images", action="store_true", help="skip unreadable images with a warning")
    p.add_argument("--wing", help="the authors' wing.ckpt (face-landmark network) for w_hpf > 0 models")
    p.add_argument("--minutes", type=float, help="stop (and save) after this much training time")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("sample", help="reference- and latent-guided grids from a checkpoint")
    p.add_argument("--checkpoint", required=True, help="run dir, our checkpoint, or the authors' *_nets_ema.ckpt")
    p.add_argument("--src", required=True, help="source images, one sub-folder per domain")
    p.add_argument("--ref", required=True, help="reference images, one sub-folder per domain")
    p.add_argument("--out", required=True, help="output folder (reference.png, latent.png)")
    p.add_argument("--num-src", type=int, default=8, help="number of source images (default 8)")
    p.add_argument("--refs-per-domain", type=int, default=2, help="reference rows per domain (default 2)")
    p.add_argument("--styles", type=int, default=3, help="latent-guided rows per domain (default 3)")
    p.add_argument("--seed", type=int, default=0, help="seed of the latent codes")
    p.add_argument("--psi", type=float, default=1.0, help="truncation towards the mean style (1 = none)")
    p.add_argument("--wing", help="the authors' wing.ckpt for high-pass (CelebA-HQ) models")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="torch device")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("make-dataset", help="write the built-in procedural dataset (3 animal-head domains)")
    p.add_argument("--out", required=True, help="folder to create (train/ and val/ inside)")
    p.add_argument("--size", type=int, default=64, help="image size: 32, 64 (default) or 128")
    p.add_argument("--per-domain", type=int, default=1000, help="training images per domain (default 1000)")
    p.add_argument("--val-per-domain", type=int, default=100, help="validation images per domain (default 100)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--workers", type=int, default=0, help="worker processes (default 0)")
    p.set_defaults(func=cmd_make_dataset)

    p = sub.add_parser("demo", help="make the built-in dataset, train on it for a while, and write a report")
    p.add_argument("--out", default="demo_output", help="output folder (default: demo_output)")
    p.add_argument("--minutes", type=float, default=10.0, help="training time budget (default 10)")
    p.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    p.add_argument("--workers", type=int, default=0, help="data-loading worker processes (default 0)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="torch device")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override the demo preset"
    )
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("bench", help="benchmarks")
    bench = p.add_subparsers(dest="bench", required=True)
    q = bench.add_parser("quality", help="translation quality on the built-in dataset, judged by an oracle net")
    q.add_argument("--checkpoint", required=True, help="run dir, our checkpoint, or the authors' *_nets_ema.ckpt")
    q.add_argument("--data", required=True, help="the built-in dataset folder (from make-dataset)")
    q.add_argument("--num-outputs", type=int, default=10, help="outputs per source image (default 10, the paper's)")
    q.add_argument("--max-sources", type=int, help="cap on source images per domain (default: all val images)")
    q.add_argument("--seed", type=int, default=0, help="seed of latents and reference choices")
    q.add_argument("--out", help="also write the figures to this JSON file")
    q.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="torch device")
    q.set_defaults(func=cmd_bench_quality)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``stargan-v2`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, CheckpointError, FileNotFoundError, FileExistsError, ValueError) as exc:
        print(f"stargan-v2 {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
