"""FID between two folders of images or statistics files: ``stargan-v2 fid``, as users know it from pytorch-fid.

Each side is a folder of images (searched recursively, any sizes) or a ``.npz`` statistics file in pytorch-fid's
format (``mu``: the feature mean ``(D,)``, ``sigma``: the covariance ``(D, D)``). Images are read as 8-bit RGB
and handed to the feature network, which brings each to 299 px its own way (``fid.RESIZES``):

* ``pt_inception`` (the default here), the TensorFlow FID network with pytorch-fid's preprocessing: scaled to
  [0, 1], ``F.interpolate`` (bilinear, no anti-aliasing) to 299 px, then to [-1, 1]. With the same weight
  file, the numbers are pytorch-fid's (``tests/test_fid_folders.py`` checks it against pytorch-fid itself).
* ``torchvision`` (alias ``inception``), torchvision's Inception v3 with the authors' preprocessing: PIL's
  bilinear filter to 299 px, 8 bits, ImageNet normalisation, as their ``metrics/fid.py``.

``img_size`` first squashes every image to ``img_size x img_size`` with PIL's bilinear filter and rounds it to
8 bits, as the authors' evaluation does at the model's size (their ``--img_size``); pytorch-fid has no such
step. Statistics files written here also record the feature network, the preprocessing and the number of
images (extra arrays that pytorch-fid ignores), and a file is refused when it was made another way than the
other side.
"""

from __future__ import annotations

import os
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..images import IMAGE_EXTENSIONS, DataError, find_images
from .fid import (
    FEATURE_DIM,
    FEATURE_NETS,
    Gaussian,
    InceptionFeatures,
    files_statistics,
    frechet_distance_gaussians,
    load_inception,
)

#: Other names of the feature networks on the command line: "inception" is the authors' (torchvision's).
NET_ALIASES: dict[str, str] = {"inception": "torchvision"}
#: The network of the ``fid`` command when none is named: pytorch-fid's, so that its numbers are pytorch-fid's.
DEFAULT_NET = "pt_inception"


@dataclass
class Statistics:
    """Feature statistics of one side, with what is known of how they were made."""

    gaussian: Gaussian
    source: Path
    num_images: int | None  # None: a statistics file that does not say (pytorch-fid's)
    feature_net: str | None  # None: not recorded (pytorch-fid's files)
    preprocessing: str | None  # None: not recorded
    notes: list[str] = field(default_factory=list)


def net_name(name: str | None) -> str:
    """The feature network a command-line name stands for (``None``: ``DEFAULT_NET``)."""
    if name is None:
        return DEFAULT_NET
    name = NET_ALIASES.get(name, name)
    if name not in FEATURE_NETS:
        choices = ", ".join([*FEATURE_NETS, *NET_ALIASES])
        raise ValueError(f"unknown FID feature network {name!r}; choose one of {choices}")
    return name


def preprocessing_of(feature_net: InceptionFeatures, img_size: int | None) -> str:
    """A short, comparable description of how images reach the network, e.g. ``"resize=torch"``."""
    return f"resize={feature_net.resize}" + (f";img_size={img_size}" if img_size is not None else "")


def image_files(folder: str | os.PathLike) -> list[Path]:
    """The images in ``folder``, recursively and sorted; an error naming the folder if it has fewer than 2."""
    path = Path(folder)
    if not path.exists():
        raise FileNotFoundError(f"no such folder or statistics file: {path}")
    if not path.is_dir():
        raise ValueError(f"{path} is neither a folder of images nor a .npz statistics file (with arrays mu, sigma)")
    files = find_images(path)
    if not files:
        raise DataError(
            f"{path} holds no images (searched recursively for {', '.join(IMAGE_EXTENSIONS)}): give a folder of "
            "images or a .npz statistics file"
        )
    if len(files) < 2:
        raise DataError(f"{path} holds 1 image; a covariance needs at least 2 (FID is meant for thousands)")
    return files


def folder_statistics(
    folder: str | os.PathLike,
    feature_net: InceptionFeatures,
    *,
    img_size: int | None = None,
    batch_size: int = 50,
    workers: int = 0,
    progress: bool = False,
) -> Statistics:
    """Statistics of the features of every image in ``folder`` (see the module docstring)."""
    files = image_files(folder)
    gaussian = files_statistics(
        files,
        feature_net,
        feature_net.feature_dim,
        size=img_size,
        batch_size=batch_size,
        workers=workers,
        progress=progress,
        desc=str(folder),
    )
    notes = []
    if len(files) < feature_net.feature_dim:
        notes.append(
            f"{folder}: {len(files)} images for {feature_net.feature_dim}-d features, so the covariance is "
            "singular and FID is biased upwards; use thousands of images (50,000 is usual) to compare models"
        )
    return Statistics(
        gaussian, Path(folder), len(files), feature_net.name, preprocessing_of(feature_net, img_size), notes
    )


def load_statistics(path: str | os.PathLike) -> Statistics:
    """A ``.npz`` statistics file (pytorch-fid's ``mu``, ``sigma``; ours add ``n``, ``feature_net`` and
    ``preprocessing``), checked: both arrays present, finite, of matching sizes. Nothing is unpickled."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such statistics file: {path}")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {key: f[key] for key in f.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path} is not a readable .npz statistics file ({type(exc).__name__}: {exc})") from None
    missing = [key for key in ("mu", "sigma") if key not in arrays]
    if missing:
        found = ", ".join(sorted(arrays)) or "nothing"
        raise ValueError(
            f"{path} has no {' or '.join(repr(k) for k in missing)} array (it holds {found}): a statistics file "
            "holds the feature mean 'mu' (D,) and covariance 'sigma' (D, D), as written by stargan-v2 fid "
            "--save-stats or pytorch-fid --save-stats"
        )
    mu, sigma = arrays["mu"], arrays["sigma"]
    if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
        raise ValueError(
            f"{path}: 'mu' must be (D,) and 'sigma' (D, D), found {mu.shape} and {sigma.shape}: not FID statistics"
        )
    if not (np.issubdtype(mu.dtype, np.number) and np.issubdtype(sigma.dtype, np.number)):
        raise ValueError(f"{path}: 'mu' and 'sigma' must be numbers, found {mu.dtype} and {sigma.dtype}")
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise ValueError(f"{path}: 'mu' or 'sigma' holds NaN or infinite values; compute the statistics again")
    n = int(arrays["n"]) if "n" in arrays and arrays["n"].size == 1 else None
    gaussian = Gaussian(torch.from_numpy(mu.astype(np.float64)), torch.from_numpy(sigma.astype(np.float64)), n or 0)
    text = {key: str(arrays[key]) for key in ("feature_net", "preprocessing") if key in arrays}
    return Statistics(gaussian, path, n, text.get("feature_net"), text.get("preprocessing"))


def save_statistics(stats: Statistics, path: str | os.PathLike) -> Path:
    """Write ``stats`` as a ``.npz`` file pytorch-fid reads (``mu``, ``sigma``), plus ``n``, ``feature_net`` and
    ``preprocessing``; atomically. An existing file is not overwritten."""
    path = Path(path)
    if path.suffix != ".npz":
        raise ValueError(f"--save-stats {path}: the statistics file must end in .npz")
    if path.exists():
        raise FileExistsError(f"{path} exists: remove it or choose another name for the statistics")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    arrays: dict[str, Any] = {"mu": stats.gaussian.mu.numpy(), "sigma": stats.gaussian.sigma.numpy()}
    if stats.num_images is not None:
        arrays["n"] = np.int64(stats.num_images)
    for key in ("feature_net", "preprocessing"):
        if getattr(stats, key) is not None:
            arrays[key] = np.str_(getattr(stats, key))
    try:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _check_comparable(a: Statistics, b: Statistics) -> None:
    """Refuse statistics of other feature sizes, networks or preprocessing than the other side's."""
    dim_a, dim_b = a.gaussian.mu.shape[0], b.gaussian.mu.shape[0]
    if dim_a != dim_b:
        hint = " (pytorch-fid --dims other than 2048?)" if FEATURE_DIM in (dim_a, dim_b) else ""
        raise ValueError(
            f"{a.source} has {dim_a}-d features but {b.source} has {dim_b}-d{hint}: FID compares statistics of "
            "one feature layer; compute both with the same network"
        )
    for key, what in (("feature_net", "feature network"), ("preprocessing", "preprocessing")):
        va, vb = getattr(a, key), getattr(b, key)
        if va is not None and vb is not None and va != vb:
            raise ValueError(
                f"{a.source} was made with {what} {va!r} but {b.source} with {vb!r}: FID numbers are only "
                f"comparable with the same {what}; compute both the same way (--fid-net, --img-size)"
            )


def fid_of_paths(
    path_a: str | os.PathLike,
    path_b: str | os.PathLike,
    *,
    fid_net: str | None = None,
    weights_dir: str | os.PathLike | None = None,
    device: torch.device | str = "cpu",
    img_size: int | None = None,
    batch_size: int = 50,
    workers: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """FID between two folders of images and/or ``.npz`` statistics files; a JSON-ready report.

    The feature network (``fid_net``: ``pt_inception`` by default, ``torchvision`` / ``inception``) is loaded
    only when a folder is given. A statistics file that records another network or preprocessing than the
    other side is refused; one that records nothing (pytorch-fid's) is taken at its word, with a note in
    ``notes`` when the network is not pytorch-fid's.
    """
    start = time.perf_counter()
    name = net_name(fid_net)
    paths = [Path(path_a), Path(path_b)]
    feature_net = None
    if any(not (p.is_file() and p.suffix == ".npz") for p in paths):
        feature_net = load_inception(name, weights_dir, device)
    sides = []
    for path in paths:
        if path.is_file() and path.suffix == ".npz":
            stats = load_statistics(path)
            if stats.feature_net is None and feature_net is not None and name != "pt_inception":
                stats.notes.append(
                    f"{path} does not record its feature network (a pytorch-fid file?): it is assumed to come "
                    f"from {name}, like the other side"
                )
            sides.append(stats)
        else:
            assert feature_net is not None
            sides.append(
                folder_statistics(
                    path,
                    feature_net,
                    img_size=img_size,
                    batch_size=batch_size,
                    workers=workers,
                    progress=progress,
                )
            )
    for side in sides:
        if fid_net is not None and side.feature_net not in (None, name):
            raise ValueError(
                f"{side.source} holds statistics of the {side.feature_net} network, not of {name} (--fid-net "
                f"{fid_net}): pass --fid-net {side.feature_net}, or compute the statistics again"
            )
    _check_comparable(sides[0], sides[1])
    value = frechet_distance_gaussians(sides[0].gaussian, sides[1].gaussian)
    network = feature_net.describe() if feature_net is not None else {"name": sides[0].feature_net or "unrecorded"}
    return {
        "fid": value,
        "paths": [str(p) for p in paths],
        "num_images": [s.num_images for s in sides],
        "fid_network": network,
        "preprocessing": next((s.preprocessing for s in sides if s.preprocessing is not None), None),
        "img_size": img_size,
        "notes": [note for s in sides for note in s.notes],
        "seconds": round(time.perf_counter() - start, 2),
    }


def save_folder_statistics(
    folder: str | os.PathLike,
    out: str | os.PathLike,
    *,
    fid_net: str | None = None,
    weights_dir: str | os.PathLike | None = None,
    device: torch.device | str = "cpu",
    img_size: int | None = None,
    batch_size: int = 50,
    workers: int = 0,
    progress: bool = False,
) -> tuple[Path, Statistics]:
    """Compute the statistics of the images in ``folder`` and write them to ``out`` (``.npz``, see
    ``save_statistics``): pytorch-fid's ``--save-stats``."""
    out = Path(out)
    if out.suffix != ".npz":
        raise ValueError(f"--save-stats {out}: the statistics file must end in .npz")
    if out.exists():  # before the work, not after it
        raise FileExistsError(f"{out} exists: remove it or choose another name for the statistics")
    feature_net = load_inception(net_name(fid_net), weights_dir, device)
    stats = folder_statistics(
        folder, feature_net, img_size=img_size, batch_size=batch_size, workers=workers, progress=progress
    )
    return save_statistics(stats, out), stats
