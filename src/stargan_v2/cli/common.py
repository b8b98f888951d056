"""What several commands share: one helper per common argument, and the small helpers of their handlers."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable
from pathlib import Path

from ..config import PRESETS, Config, preset
from ..speed import MEMORY_FORMATS, PRECISIONS, RESAMPLINGS
from .types import default_device, device_name, nonnegative_int

#: Where ``stargan-v2 demo`` writes its run by default: ``serve`` and ``translate`` use that model when given no
#: checkpoint, or the demo model shipped with the package when there is no demo run.
DEMO_RUN = Path("demo_output") / "run"

CHECKPOINT_HELP = "run dir, our checkpoint, or the authors' *_nets_ema.ckpt"
WING_HELP = "the authors' wing.ckpt for high-pass (CelebA-HQ) models"
DOMAINS_HELP = "names of the checkpoint's domains, comma-separated (if it stores none)"
WEIGHTS_DIR_HELP = "folder holding the weight files (default: the torch cache, $TORCH_HOME/hub/checkpoints)"

# ---------------------------------------------------------------------------------------------------------------
# Arguments
# ---------------------------------------------------------------------------------------------------------------


def add_device(p: argparse.ArgumentParser) -> None:
    """``--device``: a torch device that exists here; CUDA by default where there is one."""
    p.add_argument("--device", type=device_name, default=default_device(), help="torch device")


def add_checkpoint(p: argparse.ArgumentParser, required: bool = True, help: str | None = None) -> None:
    """``--checkpoint``: any model file or run dir; an optional one defaults to the demo's (``default_checkpoint``)."""
    if help is None:
        help = CHECKPOINT_HELP
        if not required:
            help += f" (default: the demo run {DEMO_RUN}, else the demo model shipped with the package)"
    p.add_argument("--checkpoint", required=required, help=help)


def add_wing(
    p: argparse.ArgumentParser,
    *flags: str,
    help: str = WING_HELP,
    dest: str | None = None,
    required: bool = False,
    metavar: str | None = None,
) -> None:
    """The face-landmark network's file (``--wing`` unless other ``flags`` are given) for high-pass models."""
    p.add_argument(*(flags or ("--wing",)), dest=dest, required=required, metavar=metavar, help=help)


def add_domains(p: argparse.ArgumentParser, help: str = DOMAINS_HELP) -> None:
    """``--domains cat,dog,wild`` (read by ``domain_names``)."""
    p.add_argument("--domains", help=help)


def add_no_progress(p: argparse.ArgumentParser, help: str = "no progress bar") -> None:
    """``--no-progress``."""
    p.add_argument("--no-progress", action="store_true", help=help)


def add_weights_dir(p: argparse.ArgumentParser, help: str = WEIGHTS_DIR_HELP) -> None:
    """``--weights-dir``: where the FID and LPIPS weight files are."""
    p.add_argument("--weights-dir", help=help)


def add_reader_workers(p: argparse.ArgumentParser) -> None:
    """``--workers`` of the commands that read many images: up to 4 processes by default."""
    p.add_argument(
        "--workers", type=nonnegative_int, default=min(4, os.cpu_count() or 1), help="image-reading worker processes"
    )


def add_overrides(p: argparse.ArgumentParser, help: str) -> None:
    """``--set KEY=VALUE`` (repeatable), collected in ``args.overrides``."""
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help)


def add_config_args(p: argparse.ArgumentParser) -> None:
    """``--preset`` and ``--set``: the configuration (read by ``config_from_args``)."""
    p.add_argument("--preset", default="afhq", choices=sorted(PRESETS), help="named configuration (default: afhq)")
    add_overrides(p, "override any config field, e.g. --set num_domains=4 --set lambda_ds=1 (repeatable)")


def add_speed_args(p: argparse.ArgumentParser, resampling: bool = True) -> None:
    """The speed settings (``stargan_v2.speed``), each ``auto`` by default: chosen by the device and model."""
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="bf16: bfloat16 autocast; auto (default): bf16 where the hardware computes in it natively and it is "
        "faster, else fp32",
    )
    if resampling:
        p.add_argument(
            "--resampling",
            choices=RESAMPLINGS,
            default="auto",
            help="fused (= auto, default): fold 2x2 pooling and 2x upsampling into the 3x3 convs (the same "
            "function up to rounding); separate: the authors' order",
        )
    p.add_argument(
        "--memory-format",
        choices=MEMORY_FORMATS,
        default="auto",
        help="channels_last (D, E and F; G keeps NCHW for its instance norms) or contiguous weights and feature "
        "maps; auto (default): channels_last on the CPU for images below 128 px",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile G, F and E (D stays eager for R1); compiling takes minutes",
    )


# ---------------------------------------------------------------------------------------------------------------
# Handlers' helpers
# ---------------------------------------------------------------------------------------------------------------


def config_from_args(args: argparse.Namespace, extra: Iterable[str] = ()) -> Config:
    """The config of ``--preset`` with ``--set`` overrides, then ``extra`` ones (from shortcut flags)."""
    return preset(args.preset).override([*args.overrides, *extra])


def domain_names(args: argparse.Namespace) -> list[str] | None:
    """``--domains cat,dog,wild``: names for a checkpoint's domain labels, in order."""
    if not getattr(args, "domains", None):
        return None
    names = [name.strip() for name in args.domains.split(",")]
    if not all(names) or len(set(names)) != len(names):
        raise ValueError(f"--domains {args.domains!r}: expected distinct, non-empty names separated by commas")
    return names


def print_written(paths: Iterable[Path]) -> None:
    """``wrote PATH`` for each file a command wrote."""
    for path in paths:
        print(f"wrote {path}")


def default_checkpoint(command: str) -> Path:
    """The model of a command given no ``--checkpoint``: the newest demo run (``demo_output/run``, what ``make
    demo`` trains), else the demo model shipped with the package; says which on stderr."""
    from ..assets import shipped_demo_path, shipped_demo_record
    from ..run import list_states

    if list_states(DEMO_RUN):
        print(
            f"{command}: no --checkpoint given, using the demo run {DEMO_RUN} (what `make demo` trained)",
            file=sys.stderr,
        )
        return DEMO_RUN
    shipped = shipped_demo_path()
    if shipped is None:
        raise FileNotFoundError(
            f"no --checkpoint given, no demo run in {DEMO_RUN} and no shipped demo model in this installation: run "
            "`make demo` first (it trains one on the built-in dataset) or pass --checkpoint FILE"
        )
    steps = shipped_demo_record().get("steps", "?")
    print(
        f"{command}: no --checkpoint given and no demo run in {DEMO_RUN}: using the demo model shipped with the "
        f"package ({steps} steps of the demo preset on the built-in dataset; {shipped})",
        file=sys.stderr,
    )
    return shipped
