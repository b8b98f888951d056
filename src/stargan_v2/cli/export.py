"""``export``: convert checkpoints (ours <-> the authors' format, EMA-only), or export the generator to ONNX or
TorchScript."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..checkpoint import (
    EMA_FORMAT,
    TRAINING_FORMAT,
    CheckpointError,
    checkpoint_kind,
    export_official,
    export_official_optimizers,
    load_ema,
    load_official,
    load_training_state,
    read_config,
    read_domains,
    read_metadata,
    save_ema,
)
from ..config import Config, ConfigError
from ..export import GRAPH_FORMATS
from ..fan import FAN, load_fan
from .common import add_checkpoint, add_domains, add_wing, domain_names, print_written

#: The checkpoint formats ``export`` converts to: the authors' files, or our EMA-only file.
CHECKPOINT_FORMATS = ("official", "ema")


def add_export(sub: argparse._SubParsersAction) -> None:
    """``stargan-v2 export``."""
    p = sub.add_parser(
        "export",
        help="convert checkpoints (ours <-> the authors' format, EMA-only), or export the generator to ONNX / "
        "TorchScript",
    )
    p.add_argument("--format", required=True, choices=(*CHECKPOINT_FORMATS, *GRAPH_FORMATS), help="what to write")
    add_checkpoint(
        p, help="training state, EMA file, run dir (onnx, torchscript), or (not for official) an authors' file"
    )
    p.add_argument(
        "--out",
        required=True,
        help="official: a folder (gets {step:06d}_nets_ema.ckpt [+ _nets.ckpt and _optims.ckpt from a training "
        "state]); ema: the .safetensors file; "
        "onnx: NAME.onnx (writes NAME_latent.onnx and NAME_reference.onnx) or a folder (latent.onnx, "
        "reference.onnx); torchscript: the .pt file (methods latent and reference)",
    )
    add_domains(p, help="domain names to record, comma-separated in label order (e.g. cat,dog,wild)")
    p.add_argument("--legacy", action="store_true", help="official: use the legacy torch serialisation (as released)")
    add_wing(p, "--fan", metavar="WING_CKPT", help="official, high-pass models: the authors' wing.ckpt to include")
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    """Convert between our checkpoints and the authors' format, or export the generator to ONNX / TorchScript."""
    if args.format in GRAPH_FORMATS:
        written = _export_graph(args)
    elif args.format == "official":
        written = _export_official(args)
    else:
        written = _export_ema(args)
    print_written(written)
    return 0


def _export_graph(args: argparse.Namespace) -> list[Path]:
    """ONNX or TorchScript files of the EMA generator with its mapping network and style encoder."""
    from ..api import checkpoint_domains
    from ..checkpoint import load_for_synthesis
    from ..export import export_onnx, export_torchscript

    # No face network is loaded: high-pass models are refused by the exporters, with the reason.
    loaded = load_for_synthesis(args.checkpoint, device="cpu", require_fan=False)
    domains = checkpoint_domains(loaded.source, loaded.config, domain_names(args))
    if args.format == "onnx":
        return list(export_onnx(loaded.nets, loaded.config, args.out, domains))
    return [export_torchscript(loaded.nets, loaded.config, args.out, domains)]


def _official_fan(args: argparse.Namespace, src: Path) -> FAN | None:
    """The face network to include in the authors' files: high-pass models need it (``--fan``), others not."""
    config = read_config(src)
    if not config.model.uses_hpf:
        return None
    # The authors' loader reads a "fan" entry from every file of a high-pass model.
    if args.fan is None:
        raise ConfigError(
            f"{src} is a high-pass model (w_hpf={config.model.w_hpf}); the authors' code expects the "
            "face-landmark network inside the exported files: pass --fan wing.ckpt"
        )
    return load_fan(args.fan)


def _export_official(args: argparse.Namespace) -> list[Path]:
    """Our training state (nets, EMA nets, optimisers) or EMA file in the authors' format."""
    src, out = Path(args.checkpoint), Path(args.out)
    kind = checkpoint_kind(src)
    if kind not in (TRAINING_FORMAT, EMA_FORMAT):
        raise CheckpointError(f"{src} is already in the authors' format (or is not a stargan-v2 checkpoint)")
    fan = _official_fan(args, src)
    if kind == TRAINING_FORMAT:
        state = load_training_state(src, restore_rng=False)
        out.mkdir(parents=True, exist_ok=True)
        return [
            export_official(state.nets_ema, out / f"{state.step:06d}_nets_ema.ckpt", args.legacy, fan),
            export_official(state.nets, out / f"{state.step:06d}_nets.ckpt", args.legacy, fan),
            # With the optimisers the authors' code can resume training from this run (--resume_iter).
            export_official_optimizers(state.optimizers, out / f"{state.step:06d}_optims.ckpt", args.legacy),
        ]
    nets, _ = load_ema(src)
    step = int(read_metadata(src).get("step", 0))
    target = out / f"{step:06d}_nets_ema.ckpt" if out.suffix != ".ckpt" else out
    written = [export_official(nets, target, args.legacy, fan)]
    print(
        f"{src} is an EMA-only file: it has no training nets or optimiser states, so only _nets_ema.ckpt "
        "is written (export a training state, state_NNNNNN.safetensors, for _nets.ckpt and _optims.ckpt)"
    )
    return written


def _export_ema(args: argparse.Namespace) -> list[Path]:
    """The EMA nets of a training state or of the authors' file as our EMA-only file."""
    src, out = Path(args.checkpoint), Path(args.out)
    kind = checkpoint_kind(src)
    if kind == TRAINING_FORMAT:
        state = load_training_state(src, restore_rng=False)
        domains = domain_names(args) or read_domains(src)
        return [save_ema(state.nets_ema, state.config, out, step=state.step, domains=domains)]
    if kind == "official":
        model = load_official(src)
        return [save_ema(model.nets, Config(model=model.config), out, domains=domain_names(args))]
    raise CheckpointError(f"{src} is already an EMA-only file")
