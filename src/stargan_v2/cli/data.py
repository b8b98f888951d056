"""``make-dataset`` and ``align``: prepare images for training or for a model."""

from __future__ import annotations

import argparse
import time

from .common import add_device, add_no_progress, add_wing
from .types import nonnegative_int, positive_int


def add_make_dataset(sub: argparse._SubParsersAction) -> None:
    """``stargan-v2 make-dataset``."""
    p = sub.add_parser("make-dataset", help="write the built-in procedural dataset (3 animal-head domains)")
    p.add_argument("--out", required=True, help="folder to create (train/ and val/ inside)")
    p.add_argument("--size", type=positive_int, default=64, help="image size: 32, 64 (default) or 128")
    p.add_argument("--per-domain", type=positive_int, default=1000, help="training images per domain (default 1000)")
    p.add_argument(
        "--val-per-domain", type=nonnegative_int, default=100, help="validation images per domain (default 100)"
    )
    p.add_argument("--seed", type=nonnegative_int, default=0, help="random seed (default 0)")
    p.add_argument("--workers", type=nonnegative_int, default=0, help="worker processes (default 0)")
    p.add_argument(
        "--markings",
        action="store_true",
        help="draw spots and stripes on the fur (off by default: a 10-minute demo model cannot draw them yet)",
    )
    p.set_defaults(func=cmd_make_dataset)


def add_align(sub: argparse._SubParsersAction) -> None:
    """``stargan-v2 align``."""
    p = sub.add_parser("align", help="align face photos to the CelebA-HQ framing (for the CelebA-HQ model)")
    p.add_argument("--input", required=True, help="an image, or a folder of images (searched recursively)")
    p.add_argument("--out", required=True, help="output folder (same relative paths, as PNG)")
    add_wing(p, "--fan", "--wing", dest="fan", required=True, help="the face-landmark network, wing.ckpt")
    p.add_argument("--lm-mean", help="the CelebA-HQ mean landmarks, celeba_lm_mean.npz (default: beside --fan)")
    p.add_argument("--size", type=positive_int, default=256, help="output size in pixels (default 256)")
    p.add_argument(
        "--refine", type=nonnegative_int, default=1, help="extra landmark passes on the aligned face (default 1)"
    )
    add_device(p)
    add_no_progress(p)
    p.set_defaults(func=cmd_align)


def cmd_make_dataset(args: argparse.Namespace) -> int:
    """Write the built-in procedural dataset (cat, dog, fox heads) in the layout of a user's data."""
    from ..procedural import make_dataset

    start = time.monotonic()
    path = make_dataset(
        args.out,
        size=args.size,
        per_domain=args.per_domain,
        val_per_domain=args.val_per_domain,
        seed=args.seed,
        workers=args.workers,
        markings=args.markings,
    )
    print(f"wrote {path} ({time.monotonic() - start:.1f} s): train with --data {path / 'train'}")
    return 0


def cmd_align(args: argparse.Namespace) -> int:
    """Warp face photos onto the CelebA-HQ mean landmarks (for the released CelebA-HQ model)."""
    from ..align import FaceAligner, align_folder, fan_landmark_fn, load_mean_landmarks, mean_landmarks_path
    from ..fan import load_fan

    mean = load_mean_landmarks(mean_landmarks_path(args.lm_mean, args.fan))
    fan = load_fan(args.fan).to(args.device)
    aligner = FaceAligner(fan_landmark_fn(fan, args.device), mean, size=args.size, refine=args.refine)
    result = align_folder(args.input, args.out, aligner, progress=not args.no_progress)
    print(f"aligned {len(result.written)} image(s) into {args.out}")
    for path, reason in result.skipped:
        print(f"skipped {path}: {reason}")
    return 0 if result.written else 1
