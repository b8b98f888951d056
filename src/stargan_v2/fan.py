"""The face-landmark network (FAN) behind the CelebA-HQ generator's high-pass path, and its mask recipe.

The paper does not describe this network, but the released CelebA-HQ model depends on it: the generator
multiplies its skip features by soft masks of the eyes, nose and mouth before the high-pass filter, and those
masks come from the heatmaps of a frozen 98-landmark face-alignment network. The authors ship its weights as
``wing.ckpt``; this module rebuilds that network so that the file loads with its own key names, and
reimplements the fixed recipe that turns the heatmaps into the (coarse, fine) mask pair.

The architecture is a single-stack hourglass landmark detector in the style of Bulat and Tzimiropoulos'
face-alignment network, with the coordinate-convolution input layers of Wang et al.'s Adaptive Wing loss work.
It takes a 256 px face in [0, 1] and returns 99 heatmaps at 64 px: one per landmark (WFLW's 98-point layout)
plus a boundary map, which nothing here uses.

Shapes: image (B, 3, 256, 256) -> stem (B, 256, 64, 64) -> hourglass -> heatmaps (B, 99, 64, 64).
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["FAN", "heatmaps_to_landmarks", "heatmaps_to_masks", "load_fan"]

# The network works on faces of this size and predicts heatmaps at a quarter of it.
_INPUT_SIZE = 256
_HEATMAP_SIZE = 64
_NUM_LANDMARKS = 98


# --------------------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------------------


def _coordinate_maps(height: int, width: int, like: Tensor) -> Tensor:
    """Three fixed maps, (1, 3, H, W): row position, column position (both in [-1, 1]) and radius in [0, 1].

    They are rebuilt on the fly, on the input's device and in its dtype, so the module holds no device
    choice and nothing enters the state dict that the released file lacks. The arithmetic (index / (size - 1)
    * 2 - 1, radius divided by its maximum) reproduces the released network's inputs bit for bit.
    """
    rows = torch.arange(height, device=like.device, dtype=torch.float32)
    cols = torch.arange(width, device=like.device, dtype=torch.float32)
    rows = (rows / (height - 1) * 2 - 1).view(height, 1).expand(height, width)
    cols = (cols / (width - 1) * 2 - 1).view(1, width).expand(height, width)
    radius = torch.sqrt(rows**2 + cols**2)
    radius = radius / radius.max()
    return torch.stack([rows, cols, radius]).unsqueeze(0).to(like.dtype)


class _CoordConv(nn.Module):
    """A convolution whose input is the feature map with the three coordinate maps appended after it.

    The coordinates let a translation-equivariant network know where on the face it is looking.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, padding: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels + 3, out_channels, kernel_size, stride, padding)

    def forward(self, x: Tensor) -> Tensor:
        coords = _coordinate_maps(x.size(2), x.size(3), x).expand(x.size(0), -1, -1, -1)
        return self.conv(torch.cat([x, coords], dim=1))


class _ConvBlock(nn.Module):
    """Pre-activation residual block whose output concatenates three successively narrower 3x3 branches.

    The branches have out/2, out/4 and out/4 channels, so their concatenation has ``out_channels``; a
    BN-ReLU-1x1 projection (``downsample``) matches the shortcut when the width changes.
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        half, quarter = out_channels // 2, out_channels // 4
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, half, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(half)
        self.conv2 = nn.Conv2d(half, quarter, 3, 1, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(quarter)
        self.conv3 = nn.Conv2d(quarter, quarter, 3, 1, 1, bias=False)
        self.downsample: nn.Module | None = None
        if in_channels != out_channels:
            # The indices 0 and 2 of this Sequential are the released key names, so keep its layout.
            self.downsample = nn.Sequential(
                nn.BatchNorm2d(in_channels),
                nn.ReLU(),
                nn.Conv2d(in_channels, out_channels, 1, 1, bias=False),
            )

    def forward(self, x: Tensor) -> Tensor:
        branch1 = self.conv1(F.relu(self.bn1(x)))
        branch2 = self.conv2(F.relu(self.bn2(branch1)))
        branch3 = self.conv3(F.relu(self.bn3(branch2)))
        shortcut = x if self.downsample is None else self.downsample(x)
        return torch.cat([branch1, branch2, branch3], dim=1) + shortcut


class _Hourglass(nn.Module):
    """A coordinate convolution followed by a recursive hourglass of ``depth`` levels, all 256 channels wide.

    Level ``k`` keeps a full-resolution branch (``b1_k``) and a branch that halves the resolution, runs
    ``b2_k``, the next level down (or ``b2_plus_1`` at the bottom) and ``b3_k``, then upsamples by nearest
    neighbour; the two branches are summed. The blocks are registered directly on this module under those
    names because the released state dict addresses them that way.
    """

    def __init__(self, depth: int = 4, channels: int = 256):
        super().__init__()
        self.depth = depth
        self.coordconv = _CoordConv(channels, channels, kernel_size=1, stride=1, padding=0)
        # Register in the same order as the released network so that printed summaries line up with it.
        for level in range(depth, 0, -1):
            self.add_module(f"b1_{level}", _ConvBlock(channels, channels))
            self.add_module(f"b2_{level}", _ConvBlock(channels, channels))
        self.add_module("b2_plus_1", _ConvBlock(channels, channels))
        for level in range(1, depth + 1):
            self.add_module(f"b3_{level}", _ConvBlock(channels, channels))

    def _level(self, level: int, x: Tensor) -> Tensor:
        full = self.get_submodule(f"b1_{level}")(x)
        low = self.get_submodule(f"b2_{level}")(F.avg_pool2d(x, 2, stride=2))
        # The recursion bottoms out in one extra block at the lowest resolution.
        low = self._level(level - 1, low) if level > 1 else self.get_submodule("b2_plus_1")(low)
        low = self.get_submodule(f"b3_{level}")(low)
        return full + F.interpolate(low, scale_factor=2, mode="nearest")

    def forward(self, x: Tensor) -> Tensor:
        return self._level(self.depth, self.coordconv(x))


# --------------------------------------------------------------------------------------------------------
# The network
# --------------------------------------------------------------------------------------------------------


class FAN(nn.Module):
    """The 98-landmark face-alignment network of the authors' ``wing.ckpt`` (6,333,603 parameters).

    Its state-dict keys equal the released file's. The network is only ever used frozen, with the running
    BatchNorm statistics it was trained with, so it stays in eval mode whatever ``train()`` is asked (see
    :meth:`train`). ``forward`` gives raw heatmaps; :meth:`masks` gives the generator's (coarse, fine) masks
    and :meth:`landmarks` gives pixel coordinates.
    """

    def __init__(self, num_landmarks: int = _NUM_LANDMARKS) -> None:
        super().__init__()
        self.num_landmarks = num_landmarks
        # Stem: 256 px -> 128 px (strided coordinate convolution) -> 64 px (average pooling).
        self.conv1 = _CoordConv(3, 64, kernel_size=7, stride=2, padding=3)
        self.bn1 = nn.BatchNorm2d(64)
        self.conv2 = _ConvBlock(64, 128)
        self.conv3 = _ConvBlock(128, 128)
        self.conv4 = _ConvBlock(128, 256)
        # One hourglass stack and its head; the released names carry the stack index 0.
        self.m0 = _Hourglass(depth=4, channels=256)
        self.top_m_0 = _ConvBlock(256, 256)
        self.conv_last0 = nn.Conv2d(256, 256, 1)
        self.bn_end0 = nn.BatchNorm2d(256)
        # One heatmap per landmark plus a boundary heatmap as the last channel.
        self.l0 = nn.Conv2d(256, num_landmarks + 1, 1)
        self.eval()

    def train(self, mode: bool = True) -> FAN:
        """Keep the network in eval mode whatever ``mode`` is.

        The FAN is a fixed, pretrained tool. A training loop that calls ``.train()`` on every network would
        otherwise switch its BatchNorms to batch statistics (changing the masks with the batch's content)
        and overwrite the running statistics it was trained with.
        """
        return super().train(False)

    def forward(self, x01: Tensor) -> Tensor:
        """Raw heatmaps: (B, 3, H, W) images in [0, 1] -> (B, num_landmarks + 1, H/4, W/4).

        The released network was trained on 256 px faces (giving 64 px heatmaps); other sizes divisible by 64
        run but are outside what it has seen.
        """
        if x01.dim() != 4 or x01.size(1) != 3:
            raise ValueError(f"FAN expects images of shape (B, 3, H, W), got {tuple(x01.shape)}")
        x = F.relu(self.bn1(self.conv1(x01)))  # (B, 64, H/2, W/2)
        x = F.avg_pool2d(self.conv2(x), 2, stride=2)  # (B, 128, H/4, W/4)
        x = self.conv4(self.conv3(x))  # (B, 256, H/4, W/4)
        x = self.top_m_0(self.m0(x))
        x = F.relu(self.bn_end0(self.conv_last0(x)))
        return self.l0(x)  # (B, num_landmarks + 1, H/4, W/4)

    def _landmark_heatmaps(self, x: Tensor) -> Tensor:
        """Images in [-1, 1] of any size -> the 98 landmark heatmaps at 64 px (boundary map dropped)."""
        x = F.interpolate(x, size=_INPUT_SIZE, mode="bilinear", align_corners=False)
        return self(x * 0.5 + 0.5)[:, :-1]

    @torch.no_grad()
    def masks(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The generator's high-pass masks for images ``x`` (B, 3, H, W) in [-1, 1].

        Returns ``(coarse, fine)``, each (B, 1, 256, 256) in [0, 1], whatever the input size: the face is
        resized to 256 px, its 64 px heatmaps are upsampled by 4 (bilinear, corners aligned) and passed
        through :func:`heatmaps_to_masks`. The caller resizes the masks to each feature map it gates.
        """
        heatmaps = self._landmark_heatmaps(x)
        factor = _INPUT_SIZE // heatmaps.size(2)
        heatmaps = F.interpolate(heatmaps, scale_factor=factor, mode="bilinear", align_corners=True)
        return heatmaps_to_masks(heatmaps)

    @torch.no_grad()
    def landmarks(self, x: Tensor) -> Tensor:
        """Landmark positions for images ``x`` (B, 3, H, W) in [-1, 1]: (B, 98, 2) float32 ``(x, y)`` pixels.

        Coordinates are in the input's resolution, scaled by the integer factor ``H // 64`` as the authors
        do (exact for 64, 128, 256, 512 ... px inputs).
        """
        heatmaps = self._landmark_heatmaps(x)
        return heatmaps_to_landmarks(heatmaps, scale=x.size(2) // heatmaps.size(2))


# --------------------------------------------------------------------------------------------------------
# Heatmaps -> landmarks
# --------------------------------------------------------------------------------------------------------


def heatmaps_to_landmarks(heatmaps: Tensor, scale: float) -> Tensor:
    """Landmark coordinates from heatmaps (B, C, H, W): (B, C, 2) float32 ``(x, y)``, multiplied by ``scale``.

    Each landmark sits at its heatmap's maximum (the first one in row-major order on ties), nudged a quarter
    pixel towards the larger of its horizontal and of its vertical neighbours (no nudge on the heatmap's
    border or on equal neighbours). Pixel ``(row, col)`` maps to ``(col + 0.5, row + 0.5)``, its centre, so
    that multiplying by ``scale`` gives positions in an image ``scale`` times larger.
    """
    if heatmaps.dim() != 4:
        raise ValueError(f"heatmaps must have shape (B, C, H, W), got {tuple(heatmaps.shape)}")
    _, _, height, width = heatmaps.shape
    flat = heatmaps.flatten(2)  # (B, C, H*W)
    peak = flat.argmax(dim=2)  # (B, C)
    row, col = peak // width, peak % width

    def value_at(r: Tensor, c: Tensor) -> Tensor:
        # Clamping only matters on the border, where the nudge is discarded anyway.
        index = r.clamp(0, height - 1) * width + c.clamp(0, width - 1)
        return flat.gather(2, index.unsqueeze(2)).squeeze(2)

    dx = torch.sign(value_at(row, col + 1) - value_at(row, col - 1)).float() * 0.25
    dy = torch.sign(value_at(row + 1, col) - value_at(row - 1, col)).float() * 0.25
    interior = (col > 0) & (col < width - 1) & (row > 0) & (row < height - 1)
    dx = torch.where(interior, dx, torch.zeros_like(dx))
    dy = torch.where(interior, dy, torch.zeros_like(dy))
    xy = torch.stack([col.float() + 0.5 + dx, row.float() + 0.5 + dy], dim=2)
    return xy * scale


# --------------------------------------------------------------------------------------------------------
# Heatmaps -> masks
# --------------------------------------------------------------------------------------------------------

# Landmark index ranges [start, end) of WFLW's 98-point layout that the recipe touches.
_CHIN = (8, 25)  # the jaw line without its upper ends (0..7 and 25..32 are dropped)
_EYEBROWS = (33, 51)
_NOSE = (51, 55)  # the bridge; the first point stays, the other three move
_NOSTRILS = (55, 60)
_EYES = (60, 76)
_LIP_UPPER = (77, 82)
_LIP_LOWER = (83, 88)
_LIP_INNER = (88, 96)
_MOUTH = (76, 96)  # from the left mouth corner to the end of the inner lip

# Per part: (index range, row shift at 256 px, power). A positive shift moves the blob up, a negative one
# down; the power sharpens the soft blob. They are applied in this order.
_PART_RECIPE = (
    (_CHIN, 0, 3),
    (_EYEBROWS, -7, 2),
    (_NOSTRILS, 8, 4),
    (_LIP_UPPER, -8, 4),
    (_LIP_LOWER, 8, 4),
    (_LIP_INNER, -2, 3),
)
# Landmarks removed from both masks: the upper jaw line on each side, the outer ends of the eyebrows and the
# mouth corners.
_DROPPED = (*range(0, 8), *range(25, 33), 33, 46, 76, 82)


def _shift_rows(t: Tensor, n: int) -> Tensor:
    """Cyclic shift along the height axis: output row ``i`` is input row ``(i + n) mod H``."""
    return torch.roll(t, shifts=-n, dims=2)


def heatmaps_to_masks(heatmaps: Tensor) -> tuple[Tensor, Tensor]:
    """The authors' fixed recipe from 98 landmark heatmaps (B, 98, H, W) to the ``(coarse, fine)`` masks.

    Each heatmap is thresholded at 0.1 and min-max normalised; the blobs of some facial parts are moved a
    few rows (scaled by ``H // 256``) and sharpened by a power; the jaw's upper ends, the outer eyebrow ends
    and the mouth corners are dropped. The coarse mask sums
    every remaining heatmap (eyes, eyebrows, nose, mouth, chin); the fine one leaves out the chin, mouth and
    eyebrows. Both are (B, 1, H, W), NaN-free and clamped to [0, 1].
    """
    if heatmaps.dim() != 4 or heatmaps.size(1) != _NUM_LANDMARKS:
        raise ValueError(f"heatmaps must have shape (B, 98, H, W), got {tuple(heatmaps.shape)}")
    height = heatmaps.size(2)
    step = height // _INPUT_SIZE  # shifts are specified for 256 px heatmaps

    # Drop the low tail of every heatmap, then stretch each one to [0, 1] on its own.
    t = torch.where(heatmaps < 0.1, torch.zeros_like(heatmaps), heatmaps)
    flat = t.flatten(2)
    low = flat.amin(dim=2, keepdim=True)
    high = flat.amax(dim=2, keepdim=True)
    t = ((flat - low) / (high - low + 1e-6)).view_as(heatmaps)

    for (start, end), shift, power in _PART_RECIPE:
        t[:, start:end] = _shift_rows(t[:, start:end], shift * step) ** power
    t[:, list(_DROPPED)] = 0

    # The nose bridge's lower three points move up; the eyes get a sharpened copy moved down by 8 rows plus a
    # plain copy moved down by 24 rows (the authors do not scale these two shifts with the heatmap size).
    # Both eye terms read the values from before this update.
    bridge = slice(_NOSE[0] + 1, _NOSE[1])
    t[:, bridge] = _shift_rows(t[:, bridge], 4 * step)
    eyes = t[:, _EYES[0] : _EYES[1]]
    t[:, _EYES[0] : _EYES[1]] = _shift_rows(eyes, -8) ** 3 + _shift_rows(eyes, -24)

    fine = t.clone()
    for start, end in (_CHIN, _MOUTH, _EYEBROWS):
        fine[:, start:end] = 0

    coarse = t.sum(dim=1, keepdim=True)  # (B, 1, H, W)
    fine = fine.sum(dim=1, keepdim=True)
    # NaN heatmaps (from a NaN input) must not leak into the generator. The fine mask sums a subset of the
    # coarse mask's terms, so the coarse mask's NaN positions cover both.
    invalid = torch.isnan(coarse)
    coarse = coarse.masked_fill(invalid, 0.0)
    fine = fine.masked_fill(invalid, 0.0)
    return coarse.clamp(0, 1), fine.clamp(0, 1)


# --------------------------------------------------------------------------------------------------------
# Loading the released weights
# --------------------------------------------------------------------------------------------------------


def _fan_state_from(obj: object) -> dict[str, Tensor]:
    """Find the FAN state dict in what a file held and strip DataParallel's ``module.`` prefixes."""
    if not isinstance(obj, Mapping):
        raise ValueError(f"expected a mapping of tensors, found {type(obj).__name__}")
    # wing.ckpt wraps the state dict as {'state_dict': ...}; the authors' CelebA-HQ 'nets_ema' file stores
    # a copy of the same network under 'fan'.
    for wrapper in ("state_dict", "fan"):
        inner = obj.get(wrapper)
        if isinstance(inner, Mapping):
            obj = inner
            break
    return {str(key).removeprefix("module."): value for key, value in obj.items()}


def _check_fan_state(state: Mapping[str, object], expected: Mapping[str, Tensor], source: str) -> None:
    """Raise one ValueError that names every kind of mismatch (missing, unexpected, wrong shape)."""
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    wrong = []
    for key, ref in expected.items():
        if key not in state:
            continue
        found = state[key]
        found_shape = list(found.shape) if isinstance(found, Tensor) else type(found).__name__
        if not isinstance(found, Tensor) or tuple(found.shape) != tuple(ref.shape):
            wrong.append(f"{key}: expected {list(ref.shape)}, found {found_shape}")
    if not (missing or unexpected or wrong):
        return

    def first_few(items: list[str]) -> str:
        shown = ", ".join(items[:5])
        return shown + (f" ... ({len(items)} in all)" if len(items) > 5 else "")

    problems = []
    if missing:
        problems.append(f"missing keys: {first_few(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {first_few(unexpected)}")
    if wrong:
        problems.append(f"shape mismatches: {first_few(wrong)}")
    raise ValueError(f"{source} is not a 98-landmark FAN (wing.ckpt) checkpoint; " + "; ".join(problems) + ".")


def load_fan(
    path_or_state: str | os.PathLike[str] | Mapping[str, Tensor],
    map_location: str | torch.device = "cpu",
) -> FAN:
    """Build a :class:`FAN` from the authors' ``wing.ckpt`` (or a state dict) and return it in eval mode.

    Accepts the released file (``{'state_dict': ...}``), a file holding a bare state dict, or a mapping
    passed directly; keys may carry ``module.`` prefixes. Files are read with ``weights_only=True``, so
    nothing but tensors and plain containers is ever unpickled. The network is built on the CPU; move it
    with ``.to(device)``.

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: the contents are not this network's weights (the message names the offending keys).
    """
    if isinstance(path_or_state, Mapping):
        source = "the given state dict"
        obj: object = path_or_state
    else:
        path = Path(path_or_state)
        source = str(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"FAN weights not found at {path}. Pass the authors' released face-landmark file, wing.ckpt, "
                "which the CelebA-HQ model needs for its high-pass masks."
            )
        try:
            obj = torch.load(path, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError as err:
            raise ValueError(
                f"{path} holds objects other than tensors and plain containers, so it is not a "
                "98-landmark FAN (wing.ckpt) checkpoint (it was not unpickled, for safety)."
            ) from err
        except Exception as err:  # torch raises RuntimeError, EOFError, struct.error ... on damaged files
            raise ValueError(
                f"could not read {path}: it is damaged, cut short, or not a torch checkpoint "
                f"({type(err).__name__}); copy or download wing.ckpt again"
            ) from err
    try:
        state = _fan_state_from(obj)
    except ValueError as err:
        raise ValueError(f"{source} is not a 98-landmark FAN (wing.ckpt) checkpoint: {err}.") from err

    net = FAN()
    _check_fan_state(state, net.state_dict(), source)
    net.load_state_dict(state)
    return net.eval()
