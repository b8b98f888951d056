"""The reference interpolation video: schedule, frames, the encoded file, and ``stargan-v2 video``."""

from __future__ import annotations

import imageio.v2 as imageio
import numpy as np
import pytest
import torch

from stargan_v2 import StarGANv2
from stargan_v2.cli import main
from stargan_v2.video import ease, frame_count, interpolation_frames, reference_video, style_schedule

from .synthesis_helpers import tiny_checkpoint, write_image

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def model(tmp_path) -> StarGANv2:
    return StarGANv2.from_checkpoint(tiny_checkpoint(tmp_path / "tiny.safetensors", domains=["cat", "dog"]), "cpu")


def read_frames(path) -> list[np.ndarray]:
    with imageio.get_reader(str(path)) as reader:
        return list(reader.iter_data())  # list(reader) asks for a length, which ffmpeg readers do not know


def test_schedule_holds_then_eases_between_references():
    assert ease(0.0) == 0.0 and ease(1.0) == 1.0 and ease(0.5) == 0.5
    ts = [ease(i / 10) for i in range(11)]
    assert ts == sorted(ts)
    schedule = list(style_schedule(3, hold_frames=2, transition_frames=4))
    assert len(schedule) == frame_count(3, 2, 4) == 14
    assert schedule[:2] == [(0, 0.0), (0, 0.0)] and schedule[6:8] == [(1, 0.0), (1, 0.0)]
    assert all(0 < t < 1 for _, t in schedule[2:6])


def test_held_frames_show_the_reference_translation(model):
    x_src = torch.rand(2, 3, 32, 32) * 2 - 1
    x_ref = torch.rand(2, 3, 32, 32) * 2 - 1
    s_ref = model.style_from_reference(x_ref, ["cat", "dog"])
    frames = list(interpolation_frames(model, x_src, x_ref, s_ref, hold_frames=1, transition_frames=2))
    assert len(frames) == 4 and frames[0].shape == (64, 96, 3) and frames[0].dtype == np.uint8
    for frame, k in ((frames[0], 0), (frames[3], 1)):
        expected = model.translate(x_src, reference=x_ref[k : k + 1], domain=k, output="tensor")[:, 0]
        expected = ((expected.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        cells = torch.from_numpy(frame[32:, 32:]).permute(2, 0, 1)  # bottom row, after the reference cell
        got = torch.stack([cells[:, :, :32], cells[:, :, 32:]])
        assert (got.int() - expected.int()).abs().max() <= 1
    assert not np.array_equal(frames[1], frames[2])  # the style moves during the transition


def test_video_file_has_the_expected_frames(model, tmp_path):
    sources = torch.rand(3, 3, 40, 32) * 2 - 1
    refs = torch.rand(3, 3, 32, 32) * 2 - 1
    out = reference_video(model, sources, refs, ["cat", "dog", "cat"], tmp_path / "v.mp4", fps=10,
                          hold_frames=2, transition_frames=3, progress=False)  # fmt: skip
    frames = read_frames(out)
    assert len(frames) == frame_count(3, 2, 3) == 12
    assert frames[0].shape == (64, 128, 3)
    assert not list(tmp_path.glob(".*tmp*"))  # the temporary file was renamed


def test_video_command(capsys, tmp_path):
    checkpoint = tiny_checkpoint(tmp_path / "tiny.safetensors", domains=["cat", "dog"])
    for name in ("cat", "dog"):
        for i in range(3):
            write_image(tmp_path / "refs" / name / f"{i}.png", 40, 36, seed=i)
    for i in range(4):
        write_image(tmp_path / "src" / f"{i}.png", 36, 40, seed=10 + i)
    out = tmp_path / "video.mp4"
    code = main(["video", "--checkpoint", str(checkpoint), "--src", str(tmp_path / "src"), "--ref",
                 str(tmp_path / "refs"), "--out", str(out), "--num-src", "2", "--max-refs", "4",
                 "--hold-frames", "1", "--transition-frames", "2", "--no-progress"])  # fmt: skip
    stdout, _ = capsys.readouterr()
    assert code == 0 and "2 sources, 4 references" in stdout
    frames = read_frames(out)
    assert len(frames) == frame_count(4, 1, 2) and frames[0].shape == (64, 96, 3)


@pytest.mark.parametrize(
    ("ref_layout", "out_name", "message"),
    [("flat", "v.mp4", "--domain"), ("domains", "v.gif", ".mp4")],
)
def test_video_command_errors(capsys, tmp_path, ref_layout, out_name, message):
    checkpoint = tiny_checkpoint(tmp_path / "tiny.safetensors", domains=["cat", "dog"])
    write_image(tmp_path / "src" / "0.png")
    ref = tmp_path / "refs"
    write_image(ref / "0.png" if ref_layout == "flat" else ref / "cat" / "0.png")
    code = main(["video", "--checkpoint", str(checkpoint), "--src", str(tmp_path / "src"), "--ref", str(ref),
                 "--out", str(tmp_path / out_name), "--no-progress"])  # fmt: skip
    _, err = capsys.readouterr()
    assert code == 2 and message in err
