"""Face alignment: the similarity fit, the warp, the aligner's geometry, the mean-landmark file and the command."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from torch import Tensor

from stargan_v2.align import (
    LM_MEAN_FILE,
    AlignmentError,
    FaceAligner,
    align_folder,
    apply_transform,
    fit_similarity,
    load_mean_landmarks,
    mean_landmarks_path,
    warp,
)
from stargan_v2.cli import main
from stargan_v2.fan import FAN


def _similarity(angle_deg: float, scale: float, tx: float, ty: float) -> Tensor:
    a = math.radians(angle_deg)
    m = torch.eye(3, dtype=torch.float64)
    m[:2, :2] = scale * torch.tensor([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]], dtype=torch.float64)
    m[:2, 2] = torch.tensor([tx, ty], dtype=torch.float64)
    return m


def _mean_landmarks() -> Tensor:
    """98 made-up landmarks in 256 px coordinates: the eyes (60-75) near y=110, the mouth (76-95) near y=180."""
    g = torch.Generator().manual_seed(0)
    points = torch.rand(98, 2, generator=g, dtype=torch.float64) * 120 + 68
    points[60:68] = torch.tensor([90.0, 110.0], dtype=torch.float64) + torch.randn(8, 2, generator=g) * 3
    points[68:76] = torch.tensor([166.0, 110.0], dtype=torch.float64) + torch.randn(8, 2, generator=g) * 3
    points[76:96] = torch.tensor([128.0, 180.0], dtype=torch.float64) + torch.randn(20, 2, generator=g) * 6
    return points


# Three coloured blobs stand for a face: red left eye, green right eye, blue mouth.
_PARTS = (slice(60, 68), slice(68, 76), slice(76, 96))


def _anchors(landmarks: Tensor) -> Tensor:
    return torch.stack([landmarks[part].mean(0) for part in _PARTS])  # (3, 2)


def _blob_image(height: int, width: int, centres: Tensor, sigma: float) -> Tensor:
    ys, xs = torch.meshgrid(torch.arange(height) + 0.5, torch.arange(width) + 0.5, indexing="ij")
    image = -torch.ones(3, height, width)
    for channel, (cx, cy) in enumerate(centres.tolist()):
        image[channel] += 2 * torch.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * sigma**2))
    return image


def _centroids(image: Tensor) -> Tensor:
    """Centre of mass of each colour channel's blob: (3, 2) positions."""
    _, height, width = image.shape
    ys, xs = torch.meshgrid(torch.arange(height) + 0.5, torch.arange(width) + 0.5, indexing="ij")
    weights = (image + 1) / 2
    weights = torch.where(weights > 0.05, weights, torch.zeros_like(weights))
    mass = weights.sum((1, 2))
    return torch.stack([(weights * xs).sum((1, 2)) / mass, (weights * ys).sum((1, 2)) / mass], 1).double()


class BlobLandmarks:
    """A landmark finder that locates the three blobs and places the mean face on them: consistent in any view."""

    def __init__(self, mean: Tensor) -> None:
        self.mean = mean
        self.views: list[tuple[int, ...]] = []

    def __call__(self, view: Tensor) -> Tensor:
        self.views.append(tuple(view.shape))
        found = _centroids(view[0])
        return apply_transform(fit_similarity(_anchors(self.mean), found), self.mean)[None]


# ----------------------------------------------------------------------------------------------------------
# Geometry


def test_fit_similarity_recovers_a_known_transform_and_never_reflects():
    src = torch.rand(20, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 100
    known = _similarity(25, 1.7, -30, 12)
    fitted = fit_similarity(src, apply_transform(known, src))
    assert torch.allclose(fitted, known, atol=1e-9)
    mirrored = src * torch.tensor([-1.0, 1.0], dtype=torch.float64)
    fitted = fit_similarity(src, mirrored)
    assert torch.det(fitted[:2, :2]) > 0  # the best rotation, not a reflection
    with pytest.raises(AlignmentError):
        fit_similarity(torch.ones(5, 2), torch.rand(5, 2))


def _about(angle_deg: float, scale: float, centre_in: float, centre_out: float) -> Tensor:
    """The similarity that turns and scales about ``centre_in`` and moves it to ``centre_out`` (both (c, c))."""
    m = _similarity(angle_deg, scale, 0, 0)
    m[:2, 2] = centre_out - m[:2, :2] @ torch.tensor([centre_in, centre_in], dtype=torch.float64)
    return m


def test_warp_puts_each_point_where_the_transform_sends_it():
    # Blobs near the middle of a larger image, so that no mirrored copy enters the output.
    image = _blob_image(200, 200, torch.tensor([[85.0, 90.0], [115.0, 92.0], [100.0, 120.0]]), sigma=3)
    for matrix, size in ((_about(-15, 1.3, 100, 64), 128), (_about(30, 0.4, 100, 32), 64)):
        out = warp(image, matrix, size)
        assert out.shape == (3, size, size) and out.min() >= -1 and out.max() <= 1
        expected = apply_transform(matrix, _centroids(image))
        assert torch.allclose(_centroids(out), expected, atol=0.3)


def test_the_aligner_brings_a_rotated_scaled_face_onto_the_mean_landmarks():
    mean = _mean_landmarks()
    face = _similarity(20, 0.6, 60, 25)  # from 256 px mean coordinates into a 300 x 220 photo
    photo = _blob_image(220, 300, apply_transform(face, _anchors(mean)), sigma=5)
    finder = BlobLandmarks(mean)
    aligner = FaceAligner(finder, mean, size=128, refine=1)
    aligned = aligner(photo)
    assert aligned.shape == (3, 128, 128)
    assert finder.views == [(1, 3, 256, 256)] * 2  # the first look and one refinement, at the FAN's size
    assert torch.allclose(_centroids(aligned), _anchors(mean) * 0.5, atol=0.5)
    # The transform undoes the photo's: photo -> mean coordinates, then 256 -> 128 px.
    expected = torch.diag(torch.tensor([0.5, 0.5, 1.0], dtype=torch.float64)) @ torch.linalg.inv(face)
    got = aligner.transform(photo)
    assert torch.allclose(got[:2, :2], expected[:2, :2], atol=1e-3)
    assert torch.allclose(got[:2, 2], expected[:2, 2], atol=0.05)  # pixels; blob centres are found to ~0.01


def test_degenerate_landmarks_are_no_face():
    mean = _mean_landmarks()
    aligner = FaceAligner(lambda view: torch.full((1, 98, 2), 100.0), mean, size=64, refine=0)
    with pytest.raises(AlignmentError, match="no face"):
        aligner(torch.zeros(3, 64, 64))


# ----------------------------------------------------------------------------------------------------------
# The mean-landmark file


def test_mean_landmark_files(tmp_path):
    mean = _mean_landmarks().numpy()
    np.savez(tmp_path / "one.npz", whatever=mean)
    np.savez(tmp_path / "named.npz", mean=mean, other=np.zeros(3))
    np.save(tmp_path / "plain.npy", mean.reshape(1, 98, 2))
    for name in ("one.npz", "named.npz", "plain.npy"):
        assert torch.allclose(load_mean_landmarks(tmp_path / name), torch.from_numpy(mean))
    np.savez(tmp_path / "two.npz", a=mean, b=mean)
    with pytest.raises(ValueError, match="arrays"):
        load_mean_landmarks(tmp_path / "two.npz")
    np.save(tmp_path / "short.npy", mean[:68])
    with pytest.raises(ValueError, match="98"):
        load_mean_landmarks(tmp_path / "short.npy")


def test_a_missing_mean_landmark_file_says_what_it_is_and_where_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        mean_landmarks_path(None, tmp_path / "wing.ckpt")
    message = str(info.value)
    assert LM_MEAN_FILE in message and str(tmp_path / LM_MEAN_FILE) in message and "--lm-mean" in message
    (tmp_path / LM_MEAN_FILE).write_bytes(b"")
    assert mean_landmarks_path(None, tmp_path / "wing.ckpt") == tmp_path / LM_MEAN_FILE
    with pytest.raises(FileNotFoundError, match=r"elsewhere\.npz"):
        mean_landmarks_path(tmp_path / "elsewhere.npz", tmp_path / "wing.ckpt")


# ----------------------------------------------------------------------------------------------------------
# Folders and the command


def test_align_folder_keeps_relative_paths_and_skips_faceless_images(tmp_path):
    mean = _mean_landmarks()
    face = _similarity(-10, 0.5, 40, 30)
    for name in ("female/a.jpg", "male/b.png"):
        (tmp_path / "in" / name).parent.mkdir(parents=True, exist_ok=True)
        photo = _blob_image(200, 180, apply_transform(face, _anchors(mean)), sigma=4)
        Image.fromarray(((photo + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()).save(tmp_path / "in" / name)
    Image.new("RGB", (50, 50)).save(tmp_path / "in" / "male" / "blank.png")  # no blobs: no face
    with pytest.warns(UserWarning, match="blank.png"):
        result = align_folder(tmp_path / "in", tmp_path / "out", FaceAligner(_SafeBlobs(mean), mean, size=64))
    written = sorted(p.relative_to(tmp_path / "out").as_posix() for p in result.written)
    assert written == ["female/a.png", "male/b.png"]
    assert [p.name for p, _ in result.skipped] == ["blank.png"]
    with Image.open(tmp_path / "out" / "female" / "a.png") as image:
        assert image.size == (64, 64)


class _SafeBlobs(BlobLandmarks):
    """Blob landmarks, or all landmarks at one point when the view has no blobs (as a FAN might on no face)."""

    def __call__(self, view: Tensor) -> Tensor:
        if (view > 0).sum() == 0:
            return torch.full((1, 98, 2), 128.0)
        return super().__call__(view)


def test_align_command_with_a_random_weight_fan(tmp_path, capsys):
    torch.manual_seed(0)
    torch.save({"state_dict": FAN().state_dict()}, tmp_path / "wing.ckpt")
    (tmp_path / "in").mkdir()
    pixels = np.random.default_rng(0).integers(0, 255, (90, 70, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "in" / "me.jpg")

    argv = [
        "align",
        "--input",
        str(tmp_path / "in"),
        "--out",
        str(tmp_path / "out"),
        "--fan",
        str(tmp_path / "wing.ckpt"),
    ]
    argv += ["--device", "cpu", "--refine", "0", "--size", "64", "--no-progress"]
    assert main(argv) == 2
    assert LM_MEAN_FILE in capsys.readouterr().err  # said clearly when the mean landmarks are missing

    np.savez(tmp_path / "celeba_lm_mean.npz", mean=_mean_landmarks().numpy())
    assert main(argv) in (0, 1)  # random landmarks may or may not make a face
    out = capsys.readouterr().out
    if (tmp_path / "out" / "me.png").exists():
        with Image.open(tmp_path / "out" / "me.png") as image:
            assert image.size == (64, 64)
        assert "aligned 1 image(s)" in out
    else:
        assert "skipped" in out
