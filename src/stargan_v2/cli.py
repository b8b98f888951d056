"""The ``stargan-v2`` command. It only parses arguments and calls the library; the config does the rest."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from .checkpoint import (
    EMA_FORMAT,
    TRAINING_FORMAT,
    CheckpointError,
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


def _checkpoint_kind(path: Path) -> str:
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        return read_metadata(path).get("format", "unknown")
    except Exception:
        return "official"  # not safetensors: try the authors' torch format


def cmd_export(args: argparse.Namespace) -> int:
    """Convert between our checkpoints and the authors' format."""
    src, out = Path(args.checkpoint), Path(args.out)
    kind = _checkpoint_kind(src)
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``stargan-v2`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, CheckpointError, FileNotFoundError, ValueError) as exc:
        print(f"stargan-v2 {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
