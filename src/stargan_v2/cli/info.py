"""``summary`` and ``config``: what a configuration resolves to, without any data or checkpoint."""

from __future__ import annotations

import argparse
import json

import torch

from ..model import build_nets, count_parameters
from .common import add_config_args, config_from_args


def add_summary(sub: argparse._SubParsersAction) -> None:
    """``stargan-v2 summary``."""
    p = sub.add_parser("summary", help="parameter count of each network")
    add_config_args(p)
    p.add_argument("--json", action="store_true", help="print {network: parameter count} as JSON")
    p.set_defaults(func=cmd_summary)


def add_config(sub: argparse._SubParsersAction) -> None:
    """``stargan-v2 config``."""
    p = sub.add_parser("config", help="print the resolved config as JSON")
    add_config_args(p)
    p.set_defaults(func=cmd_config)


def cmd_summary(args: argparse.Namespace) -> int:
    """Print each network's parameter count (and the resolved architecture)."""
    cfg = config_from_args(args)
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
    print(config_from_args(args).to_json())
    return 0
