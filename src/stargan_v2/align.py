"""Face alignment to the CelebA-HQ framing, so that one's own face photos suit the released CelebA-HQ model.

The CelebA-HQ model was trained on faces cropped and aligned the CelebA-HQ way: eyes level, at fixed places,
the face filling the frame. The paper does not describe alignment, but the authors' release aligns photos
before translating them: it finds the 98 face landmarks with the same face-landmark network (FAN, ``fan.py``)
that drives the generator's high-pass masks, and warps the photo with a similarity transform (rotation,
uniform scale, translation) that brings the landmarks onto the mean landmarks of CelebA-HQ, which they ship
as ``celeba_lm_mean.npz`` (256 px coordinates) beside ``wing.ckpt``.

Here the similarity is the least-squares fit (Umeyama, 1991) of the nose, eye and mouth landmarks onto the
mean ones; the jaw line and eyebrows are left out, as they move with pose and expression more than the
face's frame does. The photo is first looked at as a whole (a centred square, mirrored at the borders, at the
FAN's 256 px); the face is then aligned and looked at again (``refine`` times), because the FAN finds
landmarks best on faces framed as in its training data. Pixels outside the photo are filled by mirroring
it, as the authors do, so the border shows no black wedges. No face detector is run: photos should show one
face, roughly centred and filling a good part of the frame.

Coordinates are continuous pixel positions ``(x, y)``: pixel ``(row, col)`` covers ``[col, col + 1) x [row,
row + 1)``, its centre is ``(col + 0.5, row + 0.5)``, as ``FAN.landmarks`` returns them. Transforms are 3x3
homogeneous matrices mapping input positions to output positions.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from PIL import Image
from torch import Tensor
from tqdm.auto import tqdm

from .fan import FAN
from .images import DECODE_ERRORS, IMAGE_EXTENSIONS, DataError, decode_rgb

#: The FAN's input size; the mean landmarks are in coordinates of a 256 px image too.
REFERENCE_SIZE = 256
#: The file of CelebA-HQ mean landmarks in the authors' release (downloaded with ``wing.ckpt``).
LM_MEAN_FILE = "celeba_lm_mean.npz"
#: Landmarks the similarity is fitted to (WFLW's 98-point layout): nose 51-59, eyes 60-75, mouth 76-95.
ALIGN_POINTS: tuple[int, ...] = tuple(range(51, 96))
_NUM_LANDMARKS = 98

#: ``landmark_fn(view)``: landmarks ``(1, 98, 2)`` of a ``(1, 3, 256, 256)`` image in [-1, 1], in its pixels.
LandmarkFn = Callable[[Tensor], Tensor]


class AlignmentError(ValueError):
    """No usable face was found in an image (the landmarks are degenerate)."""


# ----------------------------------------------------------------------------------------------------------
# The mean landmarks
# ----------------------------------------------------------------------------------------------------------


def mean_landmarks_path(lm_mean: str | os.PathLike | None, fan_path: str | os.PathLike | None) -> Path:
    """``lm_mean`` if given, else ``celeba_lm_mean.npz`` beside the FAN file (where the authors' download puts
    both); FileNotFoundError saying what the file is and where to get it when it is missing."""
    if lm_mean is not None:
        path = Path(lm_mean)
        looked = f"at {path}"
    elif fan_path is not None:
        path = Path(fan_path).parent / LM_MEAN_FILE
        looked = f"beside the FAN file, at {path} (no --lm-mean was given)"
    else:
        raise FileNotFoundError(f"the CelebA-HQ mean landmarks ({LM_MEAN_FILE}) are needed: pass --lm-mean FILE")
    if not path.is_file():
        raise FileNotFoundError(
            f"the CelebA-HQ mean landmark file was not found {looked}. Alignment warps faces onto these mean "
            f"landmarks; the authors' release ships them as {LM_MEAN_FILE} with wing.ckpt (their download.sh, "
            f"item 'wing', writes expr/checkpoints/{LM_MEAN_FILE}). Pass it with --lm-mean FILE."
        )
    return path


def load_mean_landmarks(path: str | os.PathLike) -> Tensor:
    """The mean landmarks ``(98, 2)`` (float64, 256 px coordinates) from an ``.npz`` or ``.npy`` file.

    An ``.npz`` file may hold one array, or several of which one is named ``mean``, ``lm_mean`` or
    ``landmarks``.
    """
    path = Path(path)
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read {path} as a NumPy file of mean landmarks ({exc})") from None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            names = list(loaded.files)
            preferred = [n for n in ("mean", "lm_mean", "landmarks") if n in names]
            if len(names) == 1 or preferred:
                array = loaded[preferred[0] if preferred else names[0]]
            else:
                raise ValueError(f"{path} holds arrays {names}; expected one array of mean landmarks (98, 2)")
    else:
        array = loaded
    array = np.array(array, dtype=np.float64)
    if array.size == 2 * _NUM_LANDMARKS:  # also accept (1, 98, 2) or a flat (196,)
        array = array.reshape(_NUM_LANDMARKS, 2)
    if array.shape != (_NUM_LANDMARKS, 2) or not np.isfinite(array).all():
        raise ValueError(f"{path} does not hold 98 finite (x, y) landmarks: found an array of shape {array.shape}")
    return torch.from_numpy(array)


# ----------------------------------------------------------------------------------------------------------
# Similarity transforms
# ----------------------------------------------------------------------------------------------------------


def fit_similarity(src: Tensor, dst: Tensor) -> Tensor:
    """The similarity (rotation, uniform scale, translation; no reflection) that best maps ``src`` onto
    ``dst`` in the least-squares sense, as a 3x3 matrix (float64). ``src``, ``dst``: ``(N, 2)``, N >= 2.

    Umeyama's closed form: centre both sets, take the SVD of their cross-covariance; the rotation is
    ``U diag(1, d) V^T`` with ``d = -1`` only if a reflection would fit better; the scale is the trace of
    ``S diag(1, d)`` over the source's variance.
    """
    src, dst = src.double(), dst.double()
    if src.shape != dst.shape or src.dim() != 2 or src.shape[1] != 2 or src.shape[0] < 2:
        raise ValueError(f"expected two (N, 2) point sets with N >= 2, got {tuple(src.shape)} and {tuple(dst.shape)}")
    mu_src, mu_dst = src.mean(0), dst.mean(0)
    a, b = src - mu_src, dst - mu_dst
    var_src = a.square().sum(1).mean()
    if not torch.isfinite(var_src) or var_src < 1e-12:
        raise AlignmentError("the landmarks are all at one point: no face found")
    u, s, vh = torch.linalg.svd(b.T @ a / src.shape[0])
    d = torch.ones(2, dtype=torch.float64)
    if torch.det(u) * torch.det(vh) < 0:
        d[1] = -1
    rotation = u @ torch.diag(d) @ vh
    scale = (s * d).sum() / var_src
    matrix = torch.eye(3, dtype=torch.float64)
    matrix[:2, :2] = scale * rotation
    matrix[:2, 2] = mu_dst - scale * rotation @ mu_src
    return matrix


def apply_transform(matrix: Tensor, points: Tensor) -> Tensor:
    """Points ``(N, 2)`` mapped by a 3x3 transform."""
    return points.double() @ matrix[:2, :2].T + matrix[:2, 2]


def _scaling(factor: float) -> Tensor:
    return torch.diag(torch.tensor([factor, factor, 1.0], dtype=torch.float64))


def warp(image: Tensor, matrix: Tensor, size: int) -> Tensor:
    """The ``size x size`` image whose pixel at ``q`` shows ``image`` at ``matrix^-1 q``.

    ``image`` is ``(3, H, W)`` float in [-1, 1]; outside it, the image is mirrored. Sampling is bicubic; when
    the transform shrinks, the image is first resized down with anti-aliasing so that no detail aliases.
    """
    _, height, width = image.shape
    matrix = matrix.double()
    scale = float(torch.det(matrix[:2, :2]).abs().sqrt())
    if scale < 1:
        new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
        image = TF.resize(image, [new_h, new_w], interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
        # A position in the smaller image maps to (W / new_w, H / new_h) times it in the original.
        matrix = matrix @ torch.diag(torch.tensor([width / new_w, height / new_h, 1.0], dtype=torch.float64))
        height, width = new_h, new_w
    centres = torch.arange(size, dtype=torch.float64) + 0.5
    qy, qx = torch.meshgrid(centres, centres, indexing="ij")
    q = torch.stack([qx.flatten(), qy.flatten()], 1)  # (size * size, 2) output positions
    p = apply_transform(torch.linalg.inv(matrix), q)  # where each output pixel looks in the input
    grid = torch.stack([p[:, 0] / width * 2 - 1, p[:, 1] / height * 2 - 1], 1)  # align_corners=False units
    grid = grid.view(1, size, size, 2).to(image.dtype)
    out = F.grid_sample(image[None], grid, mode="bicubic", padding_mode="reflection", align_corners=False)
    return out[0].clamp(-1, 1)  # bicubic overshoots a little at sharp edges


# ----------------------------------------------------------------------------------------------------------
# The aligner
# ----------------------------------------------------------------------------------------------------------


@dataclass
class FaceAligner:
    """Warps face photos onto the CelebA-HQ mean landmarks.

    ``landmark_fn`` finds the 98 landmarks of a 256 px view (``fan.landmarks``); ``mean_landmarks`` (98, 2)
    are in 256 px coordinates; outputs are ``size`` px; ``refine`` extra looks at the aligned face.
    """

    landmark_fn: LandmarkFn
    mean_landmarks: Tensor
    size: int = 256
    refine: int = 1

    def _view_landmarks(self, image: Tensor, matrix: Tensor) -> Tensor:
        """Landmarks of ``image`` found in its 256 px view through ``matrix``, in ``image``'s positions."""
        view = warp(image, matrix, REFERENCE_SIZE)
        found = self.landmark_fn(view[None])[0].double().cpu()  # (98, 2) in the view
        return apply_transform(torch.linalg.inv(matrix), found)

    def transform(self, image: Tensor) -> Tensor:
        """The 3x3 transform from ``image`` (3, H, W) in [-1, 1] to the aligned ``size`` px image."""
        _, height, width = image.shape
        side = max(height, width)
        # First look: the centred square of the photo's longer side, shrunk (or grown) to 256 px.
        corner = torch.tensor([(width - side) / 2, (height - side) / 2], dtype=torch.float64)
        matrix = _scaling(REFERENCE_SIZE / side)
        matrix[:2, 2] = -corner * REFERENCE_SIZE / side
        mean = self.mean_landmarks.double()[list(ALIGN_POINTS)]
        for _ in range(1 + self.refine):
            points = self._view_landmarks(image, matrix)[list(ALIGN_POINTS)]
            if not torch.isfinite(points).all() or points.std(0).max() < 1e-3 * side:
                raise AlignmentError("the landmarks are degenerate: no face found")
            matrix = fit_similarity(points, mean)
        return _scaling(self.size / REFERENCE_SIZE) @ matrix

    def __call__(self, image: Tensor) -> Tensor:
        """The aligned face, ``(3, size, size)`` in [-1, 1], from ``image`` (3, H, W) in [-1, 1]."""
        return warp(image, self.transform(image), self.size)


def fan_landmark_fn(fan: FAN, device: torch.device | str = "cpu") -> LandmarkFn:
    """``FAN.landmarks`` on ``device``, as a ``LandmarkFn``."""

    def landmarks(view: Tensor) -> Tensor:
        return fan.landmarks(view.float().to(device))

    return landmarks


# ----------------------------------------------------------------------------------------------------------
# Folders
# ----------------------------------------------------------------------------------------------------------


def _inputs(root: Path) -> Iterator[tuple[Path, Path]]:
    """(image file, its path relative to ``root``) for ``root`` a file or a folder searched recursively."""
    if root.is_file():
        yield root, Path(root.name)
        return
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        hidden = any(part.startswith(".") for part in relative.parts)  # e.g. macOS "._name.jpg" companions
        if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS and not hidden:
            yield path, relative


def _read(path: Path) -> Tensor:
    try:
        rgb = decode_rgb(path)  # as in training: a phone photo stored sideways is turned upright by its EXIF tag
    except DECODE_ERRORS as exc:
        raise DataError(f"cannot read image {path} ({type(exc).__name__}: {exc})") from exc
    return TF.to_dtype(TF.pil_to_tensor(rgb), torch.float32, scale=True) * 2 - 1


@dataclass
class AlignResult:
    """What ``align_folder`` did: the files written and the inputs skipped (with the reason)."""

    written: list[Path]
    skipped: list[tuple[Path, str]]


def align_folder(
    input_path: str | os.PathLike,
    out: str | os.PathLike,
    aligner: FaceAligner,
    progress: bool = False,
) -> AlignResult:
    """Align every image under ``input_path`` (a folder, searched recursively, or one file) into ``out``.

    Outputs keep their path relative to ``input_path`` (so a folder of domain sub-folders stays one), as
    PNG. An image without a usable face is skipped with a warning; an unreadable file is an error.
    """
    root, out = Path(input_path), Path(out)
    if not root.exists():
        raise FileNotFoundError(f"input not found: {root}")
    items = list(_inputs(root))
    if not items:
        raise DataError(f"no images under {root} (searched recursively for {', '.join(IMAGE_EXTENSIONS)})")
    result = AlignResult([], [])
    for path, relative in tqdm(items, desc="aligning", disable=not progress, unit="img"):
        image = _read(path)
        try:
            aligned = aligner(image)
        except AlignmentError as exc:
            warnings.warn(f"skipping {path}: {exc}", stacklevel=2)
            result.skipped.append((path, str(exc)))
            continue
        target = (out / relative).with_suffix(".png")
        target.parent.mkdir(parents=True, exist_ok=True)
        pixels = ((aligned + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
        Image.fromarray(pixels.permute(1, 2, 0).numpy()).save(target)
        result.written.append(target)
    return result
