"""``eval`` and ``fid``: the paper's FID and LPIPS of a checkpoint, and FID between folders of images."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..metrics.evaluate import MODES
from ..metrics.fid import FEATURE_NET_CHOICES
from .common import add_checkpoint, add_device, add_no_progress, add_reader_workers, add_weights_dir, add_wing
from .types import nonnegative_int, positive_int

#: ``eval --mode``: the style sources of ``metrics.evaluate.MODES``, or both.
EVAL_MODES = (*MODES, "both")


def add_eval(sub: argparse._SubParsersAction) -> None:
    """``stargan-v2 eval``."""
    p = sub.add_parser("eval", help="FID and LPIPS by the paper's protocol (latent- and reference-guided)")
    add_checkpoint(p)
    p.add_argument("--train-data", required=True, help="training images, one sub-folder per domain (FID's reals)")
    p.add_argument("--val-data", required=True, help="validation images, same domains (sources and references)")
    p.add_argument("--mode", choices=EVAL_MODES, default="both", help="default: both")
    p.add_argument("--out", default="eval_output", help="output folder for eval.json (default: eval_output)")
    p.add_argument(
        "--num-outs", type=positive_int, default=10, help="outputs per source image (default 10, the paper's)"
    )
    p.add_argument("--batch-size", type=positive_int, default=50, help="images per forward pass (default 50)")
    p.add_argument(
        "--fid-net",
        choices=FEATURE_NET_CHOICES,
        default="torchvision",
        help="FID features: torchvision's Inception v3 (alias inception; as the authors' evaluation, default) or "
        "the TF FID Inception of pytorch-fid",
    )
    add_weights_dir(p)
    p.add_argument("--cache-dir", help="cache of real-image statistics (default: ~/.cache/stargan-v2/fid_stats)")
    p.add_argument("--save-images", action="store_true", help="also write every output as PNG under OUT/images/")
    p.add_argument("--max-sources", type=positive_int, help="cap on source images per domain (default: all)")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="seed of latents and reference choices (default 0)")
    p.add_argument(
        "--lpips-batch",
        type=positive_int,
        default=32,
        help="sources per LPIPS average, as the authors' --val_batch_size (default 32); the per-source mean is "
        "reported beside it",
    )
    add_wing(p)
    add_reader_workers(p)
    add_device(p)
    add_no_progress(p, help="no progress bars")
    p.set_defaults(func=cmd_eval)


def add_fid(sub: argparse._SubParsersAction) -> None:
    """``stargan-v2 fid``."""
    p = sub.add_parser(
        "fid",
        help="FID between two folders of images or .npz statistics files (as pytorch-fid)",
        description="FID between two folders of images (searched recursively, any size) or .npz statistics "
        "files (mu, sigma; pytorch-fid's format). With pt_inception (the default) the numbers are pytorch-fid's; "
        "with inception (torchvision's, the authors' evaluation) images are resized as the authors' code does.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="two folders or .npz files (one folder with --save-stats)")
    p.add_argument(
        "--fid-net",
        choices=FEATURE_NET_CHOICES,
        help="pt_inception: the TF FID Inception with pytorch-fid's resizing (default); inception (= torchvision): "
        "torchvision's Inception v3 with the authors' PIL resizing",
    )
    p.add_argument(
        "--img-size",
        type=positive_int,
        help="first squash every image to N x N (PIL bilinear, 8 bits), as the authors' evaluation does at the "
        "model's size; default: none (as pytorch-fid)",
    )
    p.add_argument("--save-stats", metavar="FILE.npz", help="write the statistics of the one folder given to FILE.npz")
    p.add_argument("--batch-size", type=positive_int, default=50, help="images per forward pass (default 50)")
    add_device(p)
    add_reader_workers(p)
    add_weights_dir(p)
    p.add_argument("--json", action="store_true", help="print a JSON object (FID, paths, image counts, network)")
    add_no_progress(p, help="no progress bars")
    p.set_defaults(func=cmd_fid)


def cmd_eval(args: argparse.Namespace) -> int:
    """FID and LPIPS by the paper's protocol: every ordered pair of domains, 10 outputs per source image."""
    from ..checkpoint import load_for_synthesis
    from ..metrics.evaluate import evaluate, format_table, write_report
    from ..metrics.fid import load_inception
    from ..metrics.lpips import load_lpips
    from ..metrics.oracle import default_cache_dir

    # The feature networks first: a missing weight file should stop the command before any other work.
    feature_net = load_inception(args.fid_net, args.weights_dir, args.device)
    lpips = load_lpips(args.weights_dir, args.device)
    model = load_for_synthesis(args.checkpoint, fan_path=args.wing, device=args.device)
    out = Path(args.out)
    report = evaluate(
        model.nets,
        model.config,
        args.train_data,
        args.val_data,
        feature_net,
        lpips,
        modes=MODES if args.mode == "both" else (args.mode,),
        num_outputs=args.num_outs,
        seed=args.seed,
        device=args.device,
        batch_size=args.batch_size,
        workers=args.workers,
        mask_fn=model.fan.masks if model.fan is not None else None,
        max_sources_per_domain=args.max_sources,
        cache_dir=Path(args.cache_dir) if args.cache_dir else default_cache_dir() / "fid_stats",
        save_images=out / "images" if args.save_images else None,
        progress=not args.no_progress,
        lpips_batch=args.lpips_batch,
    )
    report = {"checkpoint": str(model.source), **report}
    path = write_report(report, out / "eval.json")
    print(format_table(report))
    print(f"FID features: {feature_net.describe()['comparable_with']}")
    print(f"FID resizing to 299 px: {feature_net.describe()['resize_description']}")
    print(f"LPIPS: the authors' mean over batches of {args.lpips_batch} sources; LPIPS/src: the mean over sources")
    print(f"wrote {path}")
    return 0


def _fid_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of ``fid_of_paths`` and ``save_folder_statistics`` from the command line."""
    return dict(
        fid_net=args.fid_net,
        weights_dir=args.weights_dir,
        device=args.device,
        img_size=args.img_size,
        batch_size=args.batch_size,
        workers=args.workers,
        progress=not args.no_progress,
    )


def _save_fid_stats(args: argparse.Namespace) -> int:
    """``fid --save-stats FILE.npz FOLDER``: the statistics of one folder of images."""
    from ..metrics.fid_folders import save_folder_statistics

    if len(args.paths) != 1:
        raise ValueError(f"--save-stats FILE takes one folder of images, got {len(args.paths)} paths")
    path, stats = save_folder_statistics(args.paths[0], args.save_stats, **_fid_settings(args))
    for note in stats.notes:
        print(f"note: {note}", file=sys.stderr)
    if args.json:
        print(json.dumps({"statistics": str(path), "num_images": stats.num_images, "feature_net": stats.feature_net,
                          "preprocessing": stats.preprocessing}))  # fmt: skip
    else:
        print(f"wrote {path} ({stats.num_images} images, {stats.feature_net}, {stats.preprocessing})")
    return 0


def cmd_fid(args: argparse.Namespace) -> int:
    """FID between two folders of images or .npz statistics files, as pytorch-fid; or --save-stats of one folder."""
    from ..metrics.fid_folders import fid_of_paths

    if args.save_stats is not None:
        return _save_fid_stats(args)
    if len(args.paths) != 2:
        raise ValueError(
            f"expected two paths (folders of images or .npz statistics files), got {len(args.paths)}; "
            "with one folder, pass --save-stats FILE.npz to write its statistics"
        )
    report = fid_of_paths(args.paths[0], args.paths[1], **_fid_settings(args))
    for note in report["notes"]:
        print(f"note: {note}", file=sys.stderr)
    print(json.dumps(report, indent=2) if args.json else f"FID: {report['fid']:.6f}")
    return 0
