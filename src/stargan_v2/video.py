"""The reference interpolation video (Choi et al., CVPR 2020, the paper's video and Section 2's style space).

Source images are translated with the style codes of a sequence of references; between two consecutive
references the style code moves along the straight line joining them, ``s(t) = lerp(s_a, s_b, ease(t))``,
so the outputs morph smoothly from one reference's look to the next while keeping each source's content.

Each frame is two rows of cells of the model's size: the top row is a blank cell followed by the sources;
the bottom row is the current reference (a cross-fade during transitions) followed by the translations. The
video holds each reference for ``hold_frames`` frames and spends ``transition_frames`` frames moving to the
next, so ``M`` references give ``M * hold_frames + (M - 1) * transition_frames`` frames.

Frames are made one at a time and streamed to the encoder (imageio with its bundled ffmpeg; no system ffmpeg
is needed), so memory does not grow with the length of the video.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from .api import StarGANv2

PathLike = str | os.PathLike[str]
#: Containers the bundled ffmpeg writes with H.264.
VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".avi")


def ease(t: float) -> float:
    """Smoothstep ``3t^2 - 2t^3``: starts and ends at rest, so a transition does not jerk at a reference."""
    t = min(max(t, 0.0), 1.0)
    return t * t * (3.0 - 2.0 * t)


def frame_count(num_refs: int, hold_frames: int, transition_frames: int) -> int:
    """The number of frames of a video over ``num_refs`` references."""
    return num_refs * hold_frames + max(num_refs - 1, 0) * transition_frames


def style_schedule(num_refs: int, hold_frames: int, transition_frames: int) -> Iterator[tuple[int, float]]:
    """``(a, t)`` per frame: the frame shows ``lerp(ref a, ref a + 1, t)`` (``t`` already eased)."""
    for a in range(num_refs):
        for _ in range(hold_frames):
            yield a, 0.0
        if a + 1 < num_refs:
            for i in range(transition_frames):
                yield a, ease((i + 1) / (transition_frames + 1))


def _to_uint8(images: Tensor) -> Tensor:
    return ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


@torch.no_grad()
def interpolation_frames(
    model: StarGANv2,
    x_src: Tensor,
    x_ref: Tensor,
    s_ref: Tensor,
    hold_frames: int = 10,
    transition_frames: int = 30,
) -> Iterator[np.ndarray]:
    """The video's frames as ``(H, W, 3)`` uint8 arrays, made one at a time.

    ``x_src`` ``(N, 3, S, S)`` are the prepared sources, ``x_ref`` ``(M, 3, S, S)`` the prepared references and
    ``s_ref`` ``(M, style_dim)`` their style codes (``model.style_from_reference``).
    """
    n, size = x_src.shape[0], model.img_size
    x_dev = x_src.to(model.device)
    masks = model.masks(x_dev)  # the sources do not change, so their face masks are computed once
    top = torch.cat([torch.full((3, size, size), 255, dtype=torch.uint8), *_to_uint8(x_src)], dim=2)
    refs = x_ref.cpu().float()
    for a, t in style_schedule(x_ref.shape[0], hold_frames, transition_frames):
        b = min(a + 1, x_ref.shape[0] - 1)
        s = torch.lerp(s_ref[a], s_ref[b], t).expand(n, -1)
        fakes = _to_uint8(model.generate(x_dev, s, masks=masks).cpu())
        ref_cell = _to_uint8(torch.lerp(refs[a], refs[b], t))
        bottom = torch.cat([ref_cell, *fakes], dim=2)
        yield torch.cat([top, bottom], dim=1).permute(1, 2, 0).numpy()


def write_video(
    frames: Iterable[np.ndarray], path: PathLike, fps: float = 30, total: int | None = None, progress: bool = True
) -> Path:
    """Encode ``frames`` (``(H, W, 3)`` uint8, even sides) as H.264 into ``path``, streaming them with a progress bar.

    The file is written under a temporary name and renamed when complete, so an interrupted run leaves no
    truncated video under the final name.
    """
    path = Path(path)
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise ValueError(f"cannot write {path}: use a video file name ending in {', '.join(VIDEO_SUFFIXES)}")
    try:
        import imageio.v2 as imageio
    except ImportError:
        raise ImportError("writing videos needs imageio and imageio-ffmpeg: pip install stargan-v2") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    # macro_block_size=1: frame sides are multiples of the model size (even), so no resizing is needed.
    writer = imageio.get_writer(
        str(tmp), fps=fps, codec="libx264", quality=8, macro_block_size=1, ffmpeg_log_level="error"
    )
    try:
        for frame in tqdm(frames, total=total, desc="video", unit="frame", disable=not progress):
            writer.append_data(frame)
        writer.close()
        os.replace(tmp, path)
    except BaseException:
        writer.close()
        tmp.unlink(missing_ok=True)
        raise
    return path


def reference_video(
    model: StarGANv2,
    sources: list[Path] | Tensor,
    references: list[Path] | Tensor,
    reference_domains: list[str | int],
    out: PathLike,
    fps: float = 30,
    hold_frames: int = 10,
    transition_frames: int = 30,
    progress: bool = True,
) -> Path:
    """Write the interpolation video of ``sources`` through the styles of ``references`` (in order) to ``out``."""
    if hold_frames < 1 or transition_frames < 0:
        raise ValueError("hold_frames must be at least 1 and transition_frames at least 0")
    x_src = model.prepare(sources)
    x_ref = model.prepare(references)
    s_ref = model.style_from_reference(x_ref, reference_domains)  # prepared already: no second read
    frames = interpolation_frames(model, x_src, x_ref, s_ref, hold_frames, transition_frames)
    total = frame_count(x_ref.shape[0], hold_frames, transition_frames)
    return write_video(frames, out, fps=fps, total=total, progress=progress)
