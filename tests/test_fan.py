"""Tests for the face-landmark network (FAN) and the heatmap -> mask / landmark recipes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from stargan_v2.fan import FAN, heatmaps_to_landmarks, heatmaps_to_masks, load_fan

NUM_PARAMETERS = 6_333_603


def shared_dir() -> Path:
    env = os.environ.get("STARGAN_V2_SHARED")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared"


def official_fan_keys() -> list[tuple[str, list[int]]]:
    path = shared_dir() / "official_checkpoint_keys.txt"
    if not path.is_file():
        pytest.skip(f"{path} is absent (set STARGAN_V2_SHARED to the folder holding it)")
    keys = []
    for line in path.read_text().splitlines():
        if line.startswith("wing\t"):
            _, _, key, shape = line.split("\t")
            keys.append((key, [int(d) for d in shape.strip("[]").split(",") if d.strip()]))
    return keys


@pytest.fixture(scope="module")
def fan() -> FAN:
    torch.manual_seed(0)
    net = FAN()
    # Give the BatchNorms non-trivial statistics so that loading or mode bugs change the outputs.
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    return net


# ------------------------------------------------------------------------------------------------------
# Architecture and state-dict format
# ------------------------------------------------------------------------------------------------------


def test_parameter_count(fan):
    assert sum(p.numel() for p in fan.parameters()) == NUM_PARAMETERS


def test_state_dict_equals_released_keys(fan):
    expected = official_fan_keys()
    assert len(expected) == 336
    mine = [(key, list(value.shape)) for key, value in fan.state_dict().items()]
    assert mine == expected


def test_state_dict_spot_keys_without_shared_file(fan):
    sd = fan.state_dict()
    spots = {
        "conv1.conv.weight": (64, 6, 7, 7),
        "conv2.downsample.0.running_var": (64,),
        "conv2.downsample.2.weight": (128, 64, 1, 1),
        "conv4.conv3.weight": (64, 64, 3, 3),
        "m0.coordconv.conv.weight": (256, 259, 1, 1),
        "m0.coordconv.conv.bias": (256,),
        "m0.b2_plus_1.conv1.weight": (128, 256, 3, 3),
        "m0.b3_4.bn3.num_batches_tracked": (),
        "top_m_0.conv2.weight": (64, 128, 3, 3),
        "conv_last0.bias": (256,),
        "bn_end0.running_mean": (256,),
        "l0.weight": (99, 256, 1, 1),
        "l0.bias": (99,),
    }
    for key, shape in spots.items():
        assert tuple(sd[key].shape) == shape, key
    assert len(sd) == 336
    # Only width-changing blocks have a projection shortcut.
    assert [k for k in sd if "downsample" in k and k.endswith("weight")] == [
        "conv2.downsample.0.weight",
        "conv2.downsample.2.weight",
        "conv4.downsample.0.weight",
        "conv4.downsample.2.weight",
    ]
    # Coordinates are computed on the fly, never stored.
    assert [k for k in sd if "coord" in k] == ["m0.coordconv.conv.weight", "m0.coordconv.conv.bias"]


def test_train_keeps_eval_mode():
    net = FAN()
    assert not net.training
    net.train()
    assert not net.training
    assert not any(m.training for m in net.modules())
    net.train(True)
    assert not any(m.training for m in net.modules())


# ------------------------------------------------------------------------------------------------------
# Forward, masks, landmarks (random weights: only shapes and ranges are meaningful)
# ------------------------------------------------------------------------------------------------------


def test_forward_and_masks_shapes(fan):
    torch.manual_seed(1)
    x256 = torch.rand(1, 3, 256, 256) * 2 - 1
    x128 = torch.rand(1, 3, 128, 128) * 2 - 1
    assert fan(x256 * 0.5 + 0.5).shape == (1, 99, 64, 64)
    for x in (x128, x256):
        coarse, fine = fan.masks(x)
        for mask in (coarse, fine):
            assert mask.shape == (1, 1, 256, 256)
            assert torch.isfinite(mask).all()
            assert mask.min() >= 0 and mask.max() <= 1
        assert not coarse.requires_grad


def test_landmarks_shape_and_range(fan):
    torch.manual_seed(2)
    x = torch.rand(2, 3, 128, 128) * 2 - 1
    lm = fan.landmarks(x)
    assert lm.shape == (2, 98, 2)
    assert lm.dtype == torch.float32
    assert lm.min() >= 0 and lm.max() <= 128


def test_forward_rejects_wrong_channels(fan):
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        fan(torch.zeros(1, 1, 64, 64))


# ------------------------------------------------------------------------------------------------------
# The mask recipe
# ------------------------------------------------------------------------------------------------------


def reference_masks(heatmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A plain, loop-based transcription of the numbered recipe, independent of the vectorised code."""
    B, C, H, W = heatmaps.shape
    sw = H // 256

    def shift(t, n):  # output row i = input row (i + n) mod H
        return t[:, :, [(i + n) % H for i in range(H)], :]

    t = heatmaps.clone()
    for b in range(B):
        for c in range(C):
            m = t[b, c]
            m[m < 0.1] = 0
            t[b, c] = (m - m.min()) / (m.max() - m.min() + 1e-6)
    parts = [
        (8, 25, 0, 3),
        (33, 51, -7 * sw, 2),
        (55, 60, 8 * sw, 4),
        (77, 82, -8 * sw, 4),
        (83, 88, 8 * sw, 4),
        (88, 96, -2 * sw, 3),
    ]
    for s, e, n, p in parts:
        t[:, s:e] = shift(t[:, s:e], n) ** p
    for c in [*range(8), *range(25, 33), 33, 46, 76, 82]:
        t[:, c] = 0
    t[:, 52:55] = shift(t[:, 52:55], 4 * sw)
    before = t[:, 60:76].clone()
    t[:, 60:76] = shift(before, -8) ** 3 + shift(before, -24)
    t2 = t.clone()
    t2[:, 8:25] = 0
    t2[:, 76:96] = 0
    t2[:, 33:51] = 0
    coarse = torch.zeros(B, 1, H, W)
    fine = torch.zeros(B, 1, H, W)
    for c in range(C):
        coarse[:, 0] += t[:, c]
        fine[:, 0] += t2[:, c]
    nan = torch.isnan(coarse)
    coarse[nan] = 0
    fine[nan] = 0
    return coarse.clamp(0, 1), fine.clamp(0, 1)


def blank(h: int = 256) -> torch.Tensor:
    return torch.zeros(1, 98, h, h)


@pytest.mark.parametrize("size", [256, 64, 512])
def test_masks_match_reference_on_random_heatmaps(size):
    torch.manual_seed(size)
    # Scale down so that sums stay partly below the clamp at 1 and the comparison is informative.
    hm = torch.rand(2 if size < 512 else 1, 98, size, size) ** 8 * 1.2
    coarse, fine = heatmaps_to_masks(hm)
    ref_coarse, ref_fine = reference_masks(hm)
    assert coarse.shape == fine.shape == (hm.size(0), 1, size, size)
    torch.testing.assert_close(coarse, ref_coarse, atol=1e-5, rtol=0)
    torch.testing.assert_close(fine, ref_fine, atol=1e-5, rtol=0)
    assert 0 < coarse.mean() < 1 and 0 < fine.mean() < 1


def test_masks_match_reference_on_sparse_blobs():
    torch.manual_seed(3)
    hm = blank()
    for c in range(98):
        r, col = torch.randint(0, 256, (2,)).tolist()
        hm[0, c, r, col] = 0.3 + 0.7 * torch.rand(()).item()
        hm[0, c, (r + 1) % 256, col] = 0.2
    coarse, fine = heatmaps_to_masks(hm)
    ref_coarse, ref_fine = reference_masks(hm)
    torch.testing.assert_close(coarse, ref_coarse, atol=1e-5, rtol=0)
    torch.testing.assert_close(fine, ref_fine, atol=1e-5, rtol=0)


def test_eyebrow_blob_moves_down_and_is_coarse_only():
    hm = blank()
    hm[0, 40, 100, 50] = 1.0  # eyebrow landmark, shift -7: output row i reads input row i - 7
    coarse, fine = heatmaps_to_masks(hm)
    assert coarse[0, 0, 107, 50] == pytest.approx(1.0, abs=1e-5)
    assert coarse.sum() == pytest.approx(1.0, abs=1e-5)
    assert fine.sum() == 0


def test_shift_wraps_around():
    hm = blank()
    hm[0, 40, 252, 9] = 1.0
    coarse, _ = heatmaps_to_masks(hm)
    assert coarse[0, 0, 3, 9] == pytest.approx(1.0, abs=1e-5)


def test_shift_scales_with_heatmap_size():
    hm = blank(512)
    hm[0, 40, 200, 50] = 1.0  # at 512 px the eyebrow shift is -14
    coarse, _ = heatmaps_to_masks(hm)
    assert coarse[0, 0, 214, 50] == pytest.approx(1.0, abs=1e-5)


def test_nose_bridge_moves_up_except_first_point():
    hm = blank()
    hm[0, 51, 120, 10] = 1.0  # first bridge point: unchanged
    hm[0, 53, 120, 20] = 1.0  # other bridge points: shift +4, output row i reads input row i + 4
    coarse, fine = heatmaps_to_masks(hm)
    assert coarse[0, 0, 120, 10] == pytest.approx(1.0, abs=1e-5)
    assert coarse[0, 0, 116, 20] == pytest.approx(1.0, abs=1e-5)
    assert coarse.sum() == pytest.approx(2.0, abs=1e-5)
    torch.testing.assert_close(fine, coarse)  # the nose belongs to the fine mask


def test_eye_gets_two_copies_in_both_masks():
    hm = blank()
    hm[0, 65, 100, 30] = 1.0
    hm[0, 65, 101, 30] = 0.5  # a second, lower value shows the cube on the -8 copy only
    coarse, fine = heatmaps_to_masks(hm)
    v = 0.5 / (1 + 1e-6)
    assert coarse[0, 0, 108, 30] == pytest.approx(1.0, abs=1e-5)
    assert coarse[0, 0, 109, 30] == pytest.approx(v**3, abs=1e-5)
    assert coarse[0, 0, 124, 30] == pytest.approx(1.0, abs=1e-5)
    assert coarse[0, 0, 125, 30] == pytest.approx(v, abs=1e-5)
    torch.testing.assert_close(fine, coarse)


@pytest.mark.parametrize("channel", [0, 7, 25, 32, 33, 46, 76, 82])
def test_dropped_landmarks_contribute_nothing(channel):
    hm = blank()
    hm[0, channel, 100:110, 100:110] = 1.0
    coarse, fine = heatmaps_to_masks(hm)
    assert coarse.sum() == 0 and fine.sum() == 0


@pytest.mark.parametrize("channel", [8, 24, 34, 50, 77, 83, 90, 95])
def test_fine_mask_excludes_chin_mouth_and_eyebrows(channel):
    hm = blank()
    hm[0, channel, 100:110, 100:110] = 1.0
    coarse, fine = heatmaps_to_masks(hm)
    assert coarse.sum() > 50
    assert fine.sum() == 0


@pytest.mark.parametrize("channel", [51, 56, 60, 75, 96, 97])
def test_fine_mask_keeps_eyes_nose_and_pupils(channel):
    hm = blank()
    hm[0, channel, 100:110, 100:110] = 1.0
    coarse, fine = heatmaps_to_masks(hm)
    assert fine.sum() > 50
    torch.testing.assert_close(fine, coarse)


def test_truncation_below_one_tenth():
    hm = blank()
    hm[0, 97, 10, 10] = 0.5  # pupil: no shift, no power
    hm[0, 97, 20, 20] = 0.1  # kept (not below the threshold)
    hm[0, 97, 30, 30] = 0.09  # removed
    coarse, _ = heatmaps_to_masks(hm)
    assert coarse[0, 0, 10, 10] == pytest.approx(1.0, abs=1e-5)
    assert coarse[0, 0, 20, 20] == pytest.approx(0.2, abs=1e-5)
    assert coarse[0, 0, 30, 30] == 0


def test_masks_clamped_and_nan_free():
    hm = torch.ones(1, 98, 64, 64)
    hm[0, 60:76, ::2] = 0.0
    hm[0, 97, 5, 5] = float("nan")
    coarse, fine = heatmaps_to_masks(hm)
    assert not torch.isnan(coarse).any() and not torch.isnan(fine).any()
    assert coarse.max() <= 1 and coarse.min() >= 0
    # One NaN makes that whole heatmap NaN after normalisation, so every position is zeroed in both masks.
    assert coarse.sum() == 0 and fine.sum() == 0


def test_masks_reject_wrong_channel_count():
    with pytest.raises(ValueError, match="98"):
        heatmaps_to_masks(torch.zeros(1, 99, 64, 64))


# ------------------------------------------------------------------------------------------------------
# Heatmaps -> landmarks
# ------------------------------------------------------------------------------------------------------


def reference_landmarks(hm: torch.Tensor, scale: float) -> torch.Tensor:
    """Loop version of the subpixel rule, in 1-based coordinates with the final half-pixel offset."""

    def sign(a: float, b: float) -> int:
        return (a > b) - (a < b)

    B, C, H, W = hm.shape
    out = torch.zeros(B, C, 2)
    for b in range(B):
        for c in range(C):
            m = hm[b, c]
            idx = int(torch.argmax(m.reshape(-1)))
            col, row = idx % W, idx // W
            x, y = col + 1.0, row + 1.0
            if 0 < col < W - 1 and 0 < row < H - 1:
                x += 0.25 * sign(float(m[row, col + 1]), float(m[row, col - 1]))
                y += 0.25 * sign(float(m[row + 1, col]), float(m[row - 1, col]))
            out[b, c] = torch.tensor([x - 0.5, y - 0.5]) * scale
    return out


def test_landmark_subpixel_rule():
    hm = torch.zeros(1, 4, 64, 64)
    # Right neighbour larger, vertical neighbours equal: x nudged +0.25, y not.
    hm[0, 0, 10, 20] = 1.0
    hm[0, 0, 10, 21] = 0.5
    hm[0, 0, 10, 19] = 0.2
    hm[0, 0, 9, 20] = hm[0, 0, 11, 20] = 0.3
    # Upper and left neighbours larger: both nudged by -0.25.
    hm[0, 1, 30, 40] = 1.0
    hm[0, 1, 29, 40] = 0.6
    hm[0, 1, 30, 39] = 0.6
    # On the border: no nudge even with unequal neighbours.
    hm[0, 2, 5, 0] = 1.0
    hm[0, 2, 6, 0] = 0.9
    # Two equal maxima: the first in row-major order wins.
    hm[0, 3, 50, 50] = 1.0
    hm[0, 3, 20, 60] = 1.0
    lm = heatmaps_to_landmarks(hm, scale=4)
    expected = torch.tensor([[20.75, 10.5], [40.25, 30.25], [0.5, 5.5], [60.5, 20.5]]) * 4
    torch.testing.assert_close(lm[0], expected)


def test_landmarks_match_reference_on_random_heatmaps():
    torch.manual_seed(4)
    hm = torch.rand(2, 98, 64, 64)
    hm[:, :5, 0, 7] = 2.0  # a few peaks on the border
    hm[:, 5:10, 30, 63] = 2.0
    lm = heatmaps_to_landmarks(hm, scale=2)
    assert lm.shape == (2, 98, 2)
    torch.testing.assert_close(lm, reference_landmarks(hm, 2))


# ------------------------------------------------------------------------------------------------------
# Loading
# ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_input() -> torch.Tensor:
    torch.manual_seed(5)
    return torch.rand(1, 3, 64, 64)


@pytest.mark.parametrize("layout", ["wrapped", "wrapped_legacy", "bare", "module_prefix", "mapping"])
def test_load_round_trip(fan, small_input, tmp_path, layout):
    sd = fan.state_dict()
    path = tmp_path / "wing.ckpt"
    if layout == "wrapped":
        torch.save({"state_dict": sd}, path)
    elif layout == "wrapped_legacy":
        torch.save({"state_dict": sd}, path, _use_new_zipfile_serialization=False)
    elif layout == "bare":
        torch.save(sd, path)
    elif layout == "module_prefix":
        torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}}, str(path))
    source = sd if layout == "mapping" else path
    loaded = load_fan(source)
    assert isinstance(loaded, FAN) and not loaded.training
    with torch.no_grad():
        assert torch.equal(loaded(small_input), fan(small_input))
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, sd[key]), key


def test_load_wrong_shape_names_key(fan):
    sd = dict(fan.state_dict())
    sd["l0.weight"] = torch.zeros(69, 256, 1, 1)
    with pytest.raises(ValueError, match=r"l0\.weight: expected \[99, 256, 1, 1\], found \[69, 256, 1, 1\]"):
        load_fan({"state_dict": sd})


def test_load_missing_and_unexpected_keys(fan):
    sd = dict(fan.state_dict())
    del sd["bn_end0.running_var"]
    sd["m1.extra.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"wing\.ckpt") as info:
        load_fan(sd)
    assert "bn_end0.running_var" in str(info.value)
    assert "m1.extra.weight" in str(info.value)


def test_load_not_a_state_dict(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save(torch.zeros(3), path)
    with pytest.raises(ValueError, match="not a 98-landmark FAN"):
        load_fan(path)


def test_load_missing_file(tmp_path):
    path = tmp_path / "nowhere" / "wing.ckpt"
    with pytest.raises(FileNotFoundError, match=r"wing\.ckpt") as info:
        load_fan(path)
    assert str(path) in str(info.value)
