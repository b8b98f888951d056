"""``sample``, ``translate`` and ``video``: images from a trained model."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from .common import (
    add_checkpoint,
    add_device,
    add_domains,
    add_no_progress,
    add_wing,
    default_checkpoint,
    domain_names,
    print_written,
)
from .types import finite_float, nonnegative_int, positive_float, positive_int

if TYPE_CHECKING:
    from ..api import StarGANv2


def add_sample(sub: argparse._SubParsersAction) -> None:
    """``stargan-v2 sample``."""
    p = sub.add_parser("sample", help="reference- and latent-guided grids from a checkpoint")
    add_checkpoint(p)
    p.add_argument("--src", required=True, help="source images, one sub-folder per domain")
    p.add_argument("--ref", required=True, help="reference images, one sub-folder per domain")
    p.add_argument("--out", required=True, help="output folder (reference.png, latent.png)")
    p.add_argument("--num-src", type=positive_int, default=8, help="number of source images (default 8)")
    p.add_argument("--refs-per-domain", type=positive_int, default=2, help="reference rows per domain (default 2)")
    p.add_argument("--styles", type=positive_int, default=3, help="latent-guided rows per domain (default 3)")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="seed of the latent codes")
    p.add_argument("--psi", type=finite_float, default=1.0, help="truncation towards the mean style (1 = none)")
    add_wing(p)
    add_device(p)
    p.set_defaults(func=cmd_sample)


def add_translate(sub: argparse._SubParsersAction) -> None:
    """``stargan-v2 translate``."""
    p = sub.add_parser("translate", help="translate images (latent-guided with seeds, or reference-guided)")
    add_checkpoint(p, required=False)
    p.add_argument("--input", required=True, help="an image, or a folder of images (searched recursively)")
    p.add_argument("--out", required=True, help="output folder (PNG files named <input>_<domain>-seed<k>.png ...)")
    p.add_argument("--domain", help="target domain (latent-guided), or the references' domain with --ref")
    p.add_argument("--seeds", help="latent-guided: seeds of the styles, e.g. 0-9 or 0,3,5 (default 0)")
    p.add_argument(
        "--psi", type=finite_float, default=1.0, help="latent-guided: truncation towards the mean style (1 = none)"
    )
    p.add_argument("--ref", help="reference image or folder (one sub-folder per domain, or flat with --domain)")
    p.add_argument("--paste-back", action="store_true", help="put each result back into its input at the original size")
    add_domains(p)
    p.add_argument("--batch-size", type=positive_int, default=16, help="images per batch (default 16)")
    add_wing(p)
    add_device(p)
    add_no_progress(p)
    p.set_defaults(func=cmd_translate)


def add_video(sub: argparse._SubParsersAction) -> None:
    """``stargan-v2 video``."""
    p = sub.add_parser("video", help="reference interpolation video (styles morph from reference to reference)")
    add_checkpoint(p)
    p.add_argument("--src", required=True, help="source image or folder (searched recursively)")
    p.add_argument("--ref", required=True, help="reference folder: one sub-folder per domain, or flat with --domain")
    p.add_argument("--out", required=True, help="video file (.mp4, .mkv, .mov or .avi)")
    p.add_argument("--domain", help="the references' domain (a flat --ref folder), or the one sub-folder to use")
    p.add_argument(
        "--num-src", type=positive_int, default=5, help="source images shown, spread over the folder (default 5)"
    )
    p.add_argument(
        "--max-refs", type=positive_int, help="at most this many references, spread over the folder (default all)"
    )
    p.add_argument("--fps", type=positive_float, default=30, help="frames per second (default 30)")
    p.add_argument("--hold-frames", type=positive_int, default=10, help="frames showing each reference (default 10)")
    p.add_argument(
        "--transition-frames",
        type=nonnegative_int,
        default=30,
        help="frames from one reference to the next (default 30)",
    )
    add_domains(p)
    add_wing(p)
    add_device(p)
    add_no_progress(p)
    p.set_defaults(func=cmd_video)


def cmd_sample(args: argparse.Namespace) -> int:
    """Reference- and latent-guided grids from any checkpoint."""
    from ..checkpoint import load_for_synthesis
    from ..data import scan_domains
    from ..run import sample_batch
    from ..synthesis import latent_grid, reference_grid, save_image

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
    reference = reference_grid(model.nets, x_src, refs.x_ref.to(device), refs.y_ref.to(device), mask_fn=mask_fn)
    written = [save_image(reference, out / "reference.png")]
    latent = latent_grid(model.nets, x_src, cfg.num_domains, cfg.latent_dim, args.styles, args.seed, mask_fn, args.psi)
    written.append(save_image(latent, out / "latent.png"))
    print_written(written)
    return 0


def _reference_domain(model: StarGANv2, args: argparse.Namespace) -> str | None:
    """The model's name of ``--domain`` (its own spelling), or ``None`` without the flag."""
    return model.domains[model.domain_index(args.domain)] if args.domain is not None else None


def _translate_styles(model: StarGANv2, args: argparse.Namespace) -> tuple[Tensor, list[str]]:
    """The styles of ``translate`` (computed once, used for every input) and the output names' suffixes."""
    from ..api import find_references, parse_seeds

    if args.ref is not None:
        refs, labels = find_references(args.ref, model.domains, _reference_domain(model, args))
        style = model.style_from_reference(refs, labels, batch_size=args.batch_size)
        return style, [f"ref-{model.domains[k]}-{path.stem}" for path, k in zip(refs, labels, strict=True)]
    domain = model.domains[model.domain_index(args.domain)]
    seeds = parse_seeds(args.seeds if args.seeds is not None else "0")
    return model.style_from_latent(domain, seeds, psi=args.psi), [f"{domain}-seed{k}" for k in seeds]


def _check_translate_args(args: argparse.Namespace) -> None:
    if args.ref is None and args.domain is None:
        raise ValueError("pass --domain NAME (latent-guided) or --ref IMG_OR_DIR (reference-guided)")
    if args.ref is not None and (args.psi != 1.0 or args.seeds is not None):
        raise ValueError("--seeds and --psi are for latent-guided translation (--domain without --ref)")


def _write_translations(
    model: StarGANv2, args: argparse.Namespace, inputs: Sequence[Path], style: Tensor, names: Sequence[str]
) -> int:
    """Translate ``inputs`` in batches with every style; the outputs keep the inputs' folders. Returns the count."""
    from tqdm.auto import tqdm

    root = Path(args.input) if Path(args.input).is_dir() else None
    out = Path(args.out)
    written = 0
    with tqdm(total=len(inputs), desc="translate", unit="image", disable=args.no_progress) as bar:
        for start in range(0, len(inputs), args.batch_size):
            chunk = inputs[start : start + args.batch_size]
            results = model.translate_grid(chunk, style=style, paste_back=args.paste_back, batch_size=args.batch_size)
            for path, row in zip(chunk, results, strict=True):
                folder = out / path.parent.relative_to(root) if root is not None else out
                folder.mkdir(parents=True, exist_ok=True)
                for name, image in zip(names, row, strict=True):
                    image.save(folder / f"{path.stem}_{name}.png")
                    written += 1
            bar.update(len(chunk))
    return written


def cmd_translate(args: argparse.Namespace) -> int:
    """Translate an image or a folder of images, latent-guided (--domain, --seeds) or reference-guided (--ref)."""
    from ..api import StarGANv2, list_images

    _check_translate_args(args)
    inputs = list_images(args.input)
    checkpoint = args.checkpoint if args.checkpoint is not None else default_checkpoint("translate")
    model = StarGANv2.from_checkpoint(checkpoint, device=args.device, fan_path=args.wing, domains=domain_names(args))
    style, names = _translate_styles(model, args)
    written = _write_translations(model, args, inputs, style, names)
    print(f"wrote {written} image{'s' if written != 1 else ''} to {Path(args.out)}")
    return 0


def cmd_video(args: argparse.Namespace) -> int:
    """The reference interpolation video: sources translated with styles moving from reference to reference."""
    from ..api import StarGANv2, find_references, list_images, spread
    from ..video import reference_video

    model = StarGANv2.from_checkpoint(
        args.checkpoint, device=args.device, fan_path=args.wing, domains=domain_names(args)
    )
    sources = spread(list_images(args.src), args.num_src)
    refs, labels = find_references(args.ref, model.domains, _reference_domain(model, args))
    picked = spread(list(zip(refs, labels, strict=True)), args.max_refs)
    path = reference_video(
        model,
        sources,
        [p for p, _ in picked],
        [k for _, k in picked],
        args.out,
        fps=args.fps,
        hold_frames=args.hold_frames,
        transition_frames=args.transition_frames,
        progress=not args.no_progress,
    )
    print(f"wrote {path} ({len(sources)} sources, {len(picked)} references)")
    return 0
