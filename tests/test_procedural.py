"""The procedural dataset: deterministic parameters, shape set by the domain, pose by the content, colours by
the style, and a dataset folder written atomically in the layout of a user's data."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stargan_v2 import procedural
from stargan_v2.procedural import (
    DOMAINS,
    PATTERNS,
    is_procedural_dataset,
    make_dataset,
    render,
    render_batch,
    sample_params,
)

CENTRED = {"cx": 0.5, "cy": 0.5, "scale": 1.0, "angle": 0.0}


def params(seed: int, domain: int, **content: float) -> dict:
    """Parameters drawn from ``seed``, with some content values overridden."""
    p = sample_params(np.random.default_rng(seed), domain)
    p["content"].update(content)
    return p


def with_style(p: dict, **style: object) -> dict:
    p = copy.deepcopy(p)
    p["style"].update(style)
    return p


def silhouette(p: dict, size: int = 64) -> np.ndarray:
    """Pixels where the head covers the background: a ``(size, size)`` bool mask."""
    img = np.asarray(render(p, size)).astype(int)
    background = np.asarray(procedural._background(p["content"], size * procedural._SUPERSAMPLE).reduce(4))
    return np.abs(img - background.astype(int)).max(axis=-1) > 40


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def solid(p: dict, fur: list[float]) -> dict:
    """``p`` with a solid fur of colour ``fur`` whose muzzle is a little lighter."""
    return with_style(p, pattern="solid", fur_rgb=fur, muzzle_rgb=[c + 0.5 * (1 - c) for c in fur])


# ----------------------------------------------------------------------------------------------------------
# Parameters.


def test_domains_are_sorted_and_three() -> None:
    assert len(DOMAINS) == 3
    assert list(DOMAINS) == sorted(DOMAINS)
    assert PATTERNS == ("solid", "spots", "stripes")


def test_sample_params_is_deterministic_and_json_ready() -> None:
    a, b, c = params(7, 1), params(7, 1), params(8, 1)
    assert a == b
    assert a != c
    assert json.loads(json.dumps(a)) == a
    assert a["domain"] == DOMAINS[1] and a["domain_index"] == 1
    assert all(type(v) is float for v in a["content"].values())
    assert {"cx", "cy", "scale", "angle"} <= a["content"].keys()
    style = a["style"]
    assert style["pattern"] in PATTERNS
    assert [k for k, v in style.items() if isinstance(v, str)] == ["pattern"]
    for key in ("fur_rgb", "pattern_rgb", "eye_rgb"):
        assert len(style[key]) == 3 and all(0.0 <= v <= 1.0 for v in style[key])
    for value in style.values():
        assert isinstance(value, (str, float)) or (len(value) == 3 and all(0.0 <= v <= 1.0 for v in value))


def test_sample_params_ranges_and_variety() -> None:
    rng = np.random.default_rng(0)
    drawn = [sample_params(rng, d % 3, markings=True) for d in range(300)]
    cx = [p["content"]["cx"] for p in drawn]
    angle = [p["content"]["angle"] for p in drawn]
    scale = [p["content"]["scale"] for p in drawn]
    assert min(cx) >= 0.4 and max(cx) <= 0.6
    assert min(angle) >= -20 and max(angle) <= 20 and max(angle) - min(angle) > 30
    assert min(scale) >= 0.75 and max(scale) <= 1.0
    assert {p["style"]["pattern"] for p in drawn} == set(PATTERNS)
    fur = np.array([p["style"]["fur_rgb"] for p in drawn])
    assert (fur.std(axis=0) > 0.15).all()  # Fur colours really vary.
    # Every image has the same sky and ground colours: only their layout (horizon, sun) is content.
    assert not {"sky_hue", "ground_hue"} & drawn[0]["content"].keys()


def test_markings_only_on_request_and_colours_unchanged() -> None:
    plain = [sample_params(np.random.default_rng(i), i % 3) for i in range(60)]
    marked = [sample_params(np.random.default_rng(i), i % 3, markings=True) for i in range(60)]
    assert {p["style"]["pattern"] for p in plain} == {"solid"}
    assert {p["style"]["pattern"] for p in marked} == set(PATTERNS)
    # The same numbers are drawn either way: only the pattern differs.
    for a, b in zip(plain, marked, strict=True):
        assert a["content"] == b["content"]
        assert {k: v for k, v in a["style"].items() if k != "pattern"} == {
            k: v for k, v in b["style"].items() if k != "pattern"
        }


def test_version_1_parameters_still_render_with_their_own_background() -> None:
    p = params(3, 0)
    old = copy.deepcopy(p)
    old["content"].update(sky_hue=0.05, ground_hue=0.35)  # a version 1 image's hues: red sky, green ground
    corner_new, corner_old = render(p, 32).getpixel((0, 0)), render(old, 32).getpixel((0, 0))
    assert corner_new != corner_old and corner_old[0] > corner_old[2]


def test_domain_does_not_change_content_or_style() -> None:
    drawn = [params(3, d) for d in range(3)]
    assert all(p["content"] == drawn[0]["content"] and p["style"] == drawn[0]["style"] for p in drawn)


def test_invalid_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="domain"):
        sample_params(np.random.default_rng(0), 3)
    p = params(0, 0)
    for size in (16, 48, 512):
        with pytest.raises(ValueError, match="power of two"):
            render(p, size)
    with pytest.raises(ValueError, match="domain"):
        render({**p, "domain": "cow"})
    with pytest.raises(ValueError, match="pattern"):
        render(with_style(p, pattern="plaid"))


# ----------------------------------------------------------------------------------------------------------
# Rendering.


@pytest.mark.parametrize("size", [32, 64, 128])
def test_render_is_a_pure_function_of_params(size: int) -> None:
    p = params(1, 2)
    img = render(p, size)
    assert img.mode == "RGB" and img.size == (size, size)
    assert img.tobytes() == render(json.loads(json.dumps(p)), size).tobytes()
    assert img.tobytes() != render(params(2, 2), size).tobytes()


def test_render_batch_matches_render() -> None:
    ps = [params(i, i % 3) for i in range(4)]
    x = render_batch(ps, 32)
    assert x.shape == (4, 3, 32, 32) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1
    expected = torch.from_numpy(np.array(render(ps[2], 32))).permute(2, 0, 1).float() / 127.5 - 1
    assert torch.equal(x[2], expected)
    assert render_batch([], 32).shape == (0, 3, 32, 32)


@pytest.mark.parametrize("size", [32, 64])
def test_geometry_differs_between_domains(size: int) -> None:
    # The same content and style in each domain: only the shape may differ.
    masks = [silhouette(solid(params(3, d, **CENTRED), [0.45, 0.25, 0.1]), size) for d in range(3)]
    for i in range(3):
        for j in range(i + 1, 3):
            assert iou(masks[i], masks[j]) < 0.85, (DOMAINS[i], DOMAINS[j])


@pytest.mark.parametrize("domain", range(3))
def test_style_keeps_the_silhouette(domain: int) -> None:
    a = params(1, domain)
    b = with_style(params(2, domain), fur_rgb=[0.1, 0.2, 0.5])
    a = with_style(a, fur_rgb=[0.5, 0.3, 0.1])
    b["content"] = a["content"]
    assert a["style"] != b["style"]
    assert iou(silhouette(a), silhouette(b)) > 0.95


def test_shapes_lie_in_the_unit_disc() -> None:
    # The guarantee that heads stay inside the image rests on this.
    for ops in procedural._OPS.values():
        for op in ops:
            assert np.hypot(*op[1].T).max() < 0.98


@pytest.mark.parametrize("size", [32, 64, 128])
@pytest.mark.parametrize("domain", range(3))
def test_heads_stay_inside_the_image(domain: int, size: int) -> None:
    for cx in (0.4, 0.6):
        for cy in (0.4, 0.6):
            for angle in (-20.0, 20.0):
                p = solid(params(0, domain, cx=cx, cy=cy, scale=1.0, angle=angle), [0.4, 0.2, 0.1])
                mask = silhouette(p, size)
                assert mask.any()
                assert not (mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any()), (cx, cy, angle)


def test_content_moves_the_head() -> None:
    def centroid(p: dict) -> np.ndarray:
        ys, xs = np.nonzero(silhouette(p))
        return np.array([xs.mean(), ys.mean()])

    for domain in range(3):
        base = solid(params(5, domain, **CENTRED), [0.4, 0.2, 0.1])
        left = copy.deepcopy(base)
        left["content"]["cx"] = 0.42
        low = copy.deepcopy(base)
        low["content"]["cy"] = 0.58
        np.testing.assert_allclose(centroid(base) - centroid(left), [0.08 * 64, 0.0], atol=1.0)
        np.testing.assert_allclose(centroid(low) - centroid(base), [0.0, 0.08 * 64], atol=1.0)
        small = copy.deepcopy(base)
        small["content"]["scale"] = 0.75
        assert silhouette(small).sum() < 0.7 * silhouette(base).sum()


def test_positive_angle_turns_the_head_counter_clockwise() -> None:
    upright = solid(params(5, 2, **CENTRED), [0.4, 0.2, 0.1])
    mask = Image.fromarray(silhouette(upright, 128).astype(np.uint8) * 255)
    # Pillow's rotate turns counter-clockwise about the centre, where the head is.
    turned = np.asarray(mask.rotate(20.0, resample=Image.Resampling.BILINEAR)) > 127
    ious = {}
    for angle in (-20.0, 20.0):
        p = copy.deepcopy(upright)
        p["content"]["angle"] = angle
        ious[angle] = iou(silhouette(p, 128), turned)
    assert ious[20.0] > 0.95 and ious[-20.0] < 0.85


def test_fur_colour_follows_style() -> None:
    base = params(4, 0, **CENTRED)
    furs = [[0.8, 0.2, 0.1], [0.1, 0.6, 0.2], [0.2, 0.3, 0.9], [0.9, 0.8, 0.3], [0.35, 0.3, 0.3]]
    means = []
    for fur in furs:
        p = solid(base, fur)
        pixels = np.asarray(render(p)).reshape(-1, 3)[silhouette(p).reshape(-1)] / 255
        # The commonest colour of a solid head is its fur.
        colours, counts = np.unique((pixels * 255).round().astype(int), axis=0, return_counts=True)
        np.testing.assert_allclose(colours[counts.argmax()] / 255, fur, atol=0.01)
        means.append(pixels.mean(axis=0))
    assert np.corrcoef(np.ravel(means), np.ravel(furs))[0, 1] > 0.9


def test_patterns_are_visible_at_64px() -> None:
    base = solid(params(6, 1, **CENTRED), [0.8, 0.6, 0.3])
    mask = silhouette(base)
    plain = np.asarray(render(base)).astype(float)[mask]
    for pattern in ("spots", "stripes"):
        marked = with_style(base, pattern=pattern, pattern_rgb=[0.2, 0.1, 0.05], pattern_scale=0.5)
        pixels = np.asarray(render(marked)).astype(float)[mask]
        changed = np.abs(pixels - plain).max(axis=-1) > 60
        assert 0.1 < changed.mean() < 0.6, pattern


# ----------------------------------------------------------------------------------------------------------
# The dataset folder.


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_make_dataset_layout(tmp_path: Path) -> None:
    out = make_dataset(tmp_path / "data", size=32, per_domain=3, val_per_domain=2, seed=5)
    assert out == tmp_path / "data"
    assert is_procedural_dataset(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # No temporary folder is left behind.
    manifest = json.loads((out / "dataset.json").read_text())
    assert manifest == {
        "kind": "stargan-v2/procedural",
        "version": 2,
        "size": 32,
        "seed": 5,
        "domains": list(DOMAINS),
        "per_domain": 3,
        "val_per_domain": 2,
        "markings": False,
    }
    for split, count in (("train", 3), ("val", 2)):
        assert sorted(p.name for p in (out / split).iterdir()) == list(DOMAINS)
        for d, name in enumerate(DOMAINS):
            folder = out / split / name
            assert sorted(p.name for p in folder.glob("*.png")) == [f"{i:05d}.png" for i in range(count)]
            assert sorted(p.name for p in folder.glob("*.json")) == [f"{i:05d}.json" for i in range(count)]
            record = json.loads((folder / "00001.json").read_text())
            assert record["domain"] == name and record["domain_index"] == d
            assert record["size"] == 32 and record["seed"] == 5
            with Image.open(folder / "00001.png") as img:
                assert img.mode == "RGB" and img.size == (32, 32)
                # The saved parameters reproduce the saved pixels.
                assert img.tobytes() == render(record, 32).tobytes()
    assert not is_procedural_dataset(tmp_path)


def test_make_dataset_is_deterministic(tmp_path: Path) -> None:
    a = files(make_dataset(tmp_path / "a", size=32, per_domain=4, val_per_domain=1, seed=1))
    b = files(make_dataset(tmp_path / "b", size=32, per_domain=4, val_per_domain=1, seed=1, workers=2))
    assert a == b
    c = files(make_dataset(tmp_path / "c", size=32, per_domain=2, val_per_domain=1, seed=1))
    # Fewer images per domain leave the first ones unchanged.
    assert all(a[k] == v for k, v in c.items() if k != "dataset.json")
    d = files(make_dataset(tmp_path / "d", size=32, per_domain=4, val_per_domain=1, seed=2))
    assert a["train/cat/00000.png"] != d["train/cat/00000.png"]
    e = make_dataset(tmp_path / "e", size=32, per_domain=4, val_per_domain=1, seed=1, markings=True)
    assert json.loads((e / "dataset.json").read_text())["markings"] is True
    patterns = {json.loads(p.read_text())["style"]["pattern"] for p in (e / "train").rglob("*.json")}
    assert patterns - {"solid"}  # 12 draws from three patterns: markings appear


def test_make_dataset_reuse_and_refusal(tmp_path: Path) -> None:
    out = make_dataset(tmp_path / "data", size=32, per_domain=2, val_per_domain=1)
    png = out / "train" / "dog" / "00001.png"
    stamp = png.stat().st_mtime_ns
    assert make_dataset(tmp_path / "data", size=32, per_domain=2, val_per_domain=1) == out
    assert png.stat().st_mtime_ns == stamp  # Re-used, not rewritten.
    with pytest.raises(FileExistsError, match="data"):
        make_dataset(out, size=32, per_domain=3, val_per_domain=1)
    with pytest.raises(FileExistsError, match="markings=True"):
        make_dataset(out, size=32, per_domain=2, val_per_domain=1, markings=True)
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "cat.png").write_bytes(b"")
    with pytest.raises(FileExistsError, match="empty folder"):
        make_dataset(foreign, size=32, per_domain=1)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert is_procedural_dataset(make_dataset(empty, size=32, per_domain=1, val_per_domain=0))
    assert not (empty / "val").exists()


def test_make_dataset_interrupted_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(job: tuple) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(procedural, "_write_images", fail)
    with pytest.raises(KeyboardInterrupt):
        make_dataset(tmp_path / "data", size=32, per_domain=2)
    assert list(tmp_path.iterdir()) == []


def test_make_dataset_validates_arguments(tmp_path: Path) -> None:
    for kwargs in ({"size": 100}, {"per_domain": 0}, {"val_per_domain": -1}, {"seed": -1}, {"workers": -2}):
        with pytest.raises(ValueError):
            make_dataset(tmp_path / "x", **kwargs)
    assert not (tmp_path / "x").exists()


def test_make_dataset_throughput(tmp_path: Path) -> None:
    start = time.perf_counter()
    make_dataset(tmp_path / "data", size=64, per_domain=100, val_per_domain=0)
    seconds = time.perf_counter() - start
    print(f"procedural dataset: 300 images at 64 px in {seconds:.2f} s ({300 / seconds:.0f} images/s)")
    assert seconds < 30
