"""``StarGANv2``: loading, domain names, latent- and reference-guided translation, and the README's example."""

from __future__ import annotations

import doctest
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import stargan_v2.api
from stargan_v2 import StarGANv2
from stargan_v2.api import default_domains, find_references, parse_seeds, spread
from stargan_v2.checkpoint import CheckpointError, export_official, load_ema
from stargan_v2.config import preset
from stargan_v2.data import DataError

from .synthesis_helpers import tiny_checkpoint, write_image

pytestmark = pytest.mark.usefixtures("one_thread")

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture
def model(tmp_path) -> StarGANv2:
    return StarGANv2.from_checkpoint(tiny_checkpoint(tmp_path / "tiny.safetensors", domains=["cat", "dog"]), "cpu")


@pytest.fixture
def images(tmp_path) -> list[Path]:
    return [write_image(tmp_path / f"img{i}.png", 48, 40, seed=i) for i in range(3)]


# ----------------------------------------------------------------------------------------------------------
# Loading and domain names
# ----------------------------------------------------------------------------------------------------------


def test_domain_names_from_checkpoint_argument_or_defaults(tmp_path):
    named = tiny_checkpoint(tmp_path / "named.safetensors", domains=["cat", "dog"])
    plain = tiny_checkpoint(tmp_path / "plain.safetensors")
    assert StarGANv2.from_checkpoint(named, "cpu").domains == ("cat", "dog")
    assert StarGANv2.from_checkpoint(named, "cpu", domains=["a", "b"]).domains == ("a", "b")
    assert StarGANv2.from_checkpoint(plain, "cpu").domains == ("domain0", "domain1")
    with pytest.raises(ValueError, match="2 distinct names"):
        StarGANv2.from_checkpoint(plain, "cpu", domains=["only_one"])


def test_released_architectures_get_the_released_names():
    assert default_domains(preset("afhq").model) == ("cat", "dog", "wild")
    assert default_domains(preset("celeba_hq").model) == ("female", "male")
    assert default_domains(preset("tiny").model) == ("domain0", "domain1")


def test_loads_the_authors_format_and_run_directories(tmp_path, images):
    ours = tiny_checkpoint(tmp_path / "run" / "checkpoints" / "ema_000010.safetensors", domains=["cat", "dog"])
    nets, _ = load_ema(ours)
    official = export_official(nets, tmp_path / "000010_nets_ema.ckpt")
    a = StarGANv2.from_checkpoint(official, "cpu")
    b = StarGANv2.from_checkpoint(tmp_path / "run", "cpu")
    assert a.domains == ("domain0", "domain1") and b.domains == ("cat", "dog")
    out_a = a.translate(images[0], domain=1, seed=0, output="tensor")
    out_b = b.translate(images[0], domain="dog", seed=0, output="tensor")
    assert torch.equal(out_a, out_b)


def test_high_pass_model_needs_the_face_network(tmp_path):
    path = tiny_checkpoint(tmp_path / "hpf.safetensors", w_hpf=1.0)
    with pytest.raises(CheckpointError, match="wing"):
        StarGANv2.from_checkpoint(path, "cpu")


# ----------------------------------------------------------------------------------------------------------
# Latent-guided translation
# ----------------------------------------------------------------------------------------------------------


def test_result_follows_the_inputs_shape(model, images):
    size = (model.img_size, model.img_size)
    one = model.translate(images[0], domain="dog", seed=0)
    assert isinstance(one, Image.Image) and one.size == size
    many = model.translate(images, domain="dog", seed=0)
    assert len(many) == 3 and all(im.size == size for im in many)
    styles = model.translate(images[0], domain="dog", seed=0, n=4)
    assert len(styles) == 4
    grid = model.translate(images[:2], domain="dog", seed=[5, 6, 7])
    assert len(grid) == 2 and all(len(row) == 3 for row in grid)
    t = model.translate(images[:2], domain="dog", seed=0, n=3, output="tensor")
    assert t.shape == (2, 3, 3, model.img_size, model.img_size)
    assert model.translate(images[0], domain="dog", seed=0, output="tensor").shape == (3, 32, 32)


def test_accepts_pil_paths_and_tensors_of_any_size(model, images):
    pil = Image.open(images[0])
    uint8 = torch.from_numpy(np.array(pil)).permute(2, 0, 1).contiguous()
    signed = uint8.float() / 127.5 - 1
    outs = [model.translate(x, domain="cat", seed=1, output="tensor") for x in (images[0], str(images[0]), pil)]
    outs += [model.translate(x, domain="cat", seed=1, output="tensor") for x in (uint8, signed)]
    for out in outs[1:]:
        torch.testing.assert_close(out, outs[0], atol=1e-5, rtol=0)
    batch = model.translate(torch.rand(5, 3, 70, 50) * 2 - 1, domain=0, seed=0, output="tensor")
    assert batch.shape == (5, 3, 32, 32)


def test_seeds_are_reproducible_and_independent_of_the_batch(model, images):
    a = model.translate(images, domain="dog", seed=0, n=3, output="tensor", batch_size=2)
    b = model.translate(images, domain="dog", seed=0, n=3, output="tensor", batch_size=16)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    # Output j of seed=s is the output of seed s + j, whatever the other images are.
    alone = model.translate(images[2], domain="dog", seed=1, output="tensor")
    torch.testing.assert_close(a[2, 1], alone, atol=1e-5, rtol=0)
    assert not torch.allclose(a[:, 0], a[:, 1])


def test_psi_zero_gives_the_mean_style_for_every_seed(model, images):
    out = model.translate(images[0], domain="cat", seed=[0, 1, 2], psi=0.0, output="tensor")
    # One batch of three identical rows: equal up to rounding (a kernel may treat a batch's rows differently).
    torch.testing.assert_close(out[1], out[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(out[2], out[0], atol=1e-6, rtol=0)
    half = model.translate(images[0], domain="cat", seed=[0, 1], psi=0.5, output="tensor")
    assert not torch.allclose(half[0], half[1])
    s = model.style_from_latent("cat", [0], psi=0.5)
    expected = model.mean_style("cat") + 0.5 * (model.style_from_latent("cat", [0]) - model.mean_style("cat"))
    torch.testing.assert_close(s, expected)


def test_explicit_latents_and_styles(model, images):
    z = torch.randn(2, model.config.latent_dim)
    by_z = model.translate(images[0], domain="dog", z=z, output="tensor")
    s = model.style_from_latent("dog", z=z)
    by_style = model.translate(images[0], style=s, output="tensor")
    torch.testing.assert_close(by_z, by_style)
    assert by_z.shape == (2, 3, 32, 32)


# ----------------------------------------------------------------------------------------------------------
# Reference-guided translation
# ----------------------------------------------------------------------------------------------------------


def test_reference_mode_uses_the_reference(model, images, tmp_path):
    ref_a = write_image(tmp_path / "refs" / "dog" / "a.png", seed=10)
    ref_b = write_image(tmp_path / "refs" / "dog" / "b.png", seed=11)
    out = model.translate(images[0], reference=ref_a, output="tensor")  # domain from the folder name
    x, r = model.prepare(images[0]), model.prepare(ref_a)
    y = torch.tensor([model.domain_index("dog")])
    with torch.no_grad():
        expected = model.nets.generator(x, model.nets.style_encoder(r, y))[0]
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
    both = model.translate(images[0], reference=[ref_a, ref_b], output="tensor")
    assert both.shape == (2, 3, 32, 32) and not torch.allclose(both[0], both[1])
    as_cat = model.translate(images[0], reference=ref_a, domain="cat", output="tensor")
    assert not torch.allclose(as_cat, out)


def test_reference_needs_its_domain(model, images):
    with pytest.raises(ValueError, match="reference's domain"):
        model.translate(images[0], reference=images[1])
    with pytest.raises(ValueError, match="latent-guided"):
        model.translate(images[0], reference=images[1], domain="cat", seed=3)


def test_find_references_in_domain_folders(tmp_path):
    for name in ("cat", "dog"):
        for i in range(2):
            write_image(tmp_path / "refs" / name / f"{i}.png", seed=i)
    files, labels = find_references(tmp_path / "refs", ("cat", "dog"))
    assert labels == [0, 0, 1, 1] and files[2].parent.name == "dog"
    files, labels = find_references(tmp_path / "refs", ("dog", "cat"))  # matched by name, not position
    assert labels == [0, 0, 1, 1] and files[0].parent.name == "dog"
    files, labels = find_references(tmp_path / "refs", ("a", "b"))  # by sorted position, as in training
    assert labels == [0, 0, 1, 1] and files[0].parent.name == "cat"
    files, labels = find_references(tmp_path / "refs", ("cat", "dog"), domain="dog")
    assert labels == [1, 1] and all(f.parent.name == "dog" for f in files)
    with pytest.raises(ValueError, match="sub-folders"):
        find_references(tmp_path / "refs" / "cat", ("cat", "dog"))


# ----------------------------------------------------------------------------------------------------------
# Any size, paste-back, errors
# ----------------------------------------------------------------------------------------------------------


def test_paste_back_keeps_the_original_size_and_outside(model, tmp_path):
    wide = write_image(tmp_path / "wide.png", width=90, height=60, seed=3)
    out = model.translate(wide, domain="dog", seed=0, paste_back=True)
    assert out.size == (90, 60)
    original = torch.from_numpy(np.array(Image.open(wide))).int()
    result = torch.from_numpy(np.array(out)).int()
    # The centred 60 x 60 square is translated; the 15 px bands at the sides are the original's.
    assert torch.equal(result[:, :15], original[:, :15]) and torch.equal(result[:, 75:], original[:, 75:])
    assert not torch.equal(result[:, 15:75], original[:, 15:75])
    tall = model.translate(torch.rand(2, 3, 64, 40) * 2 - 1, domain=0, seed=0, paste_back=True, output="tensor")
    assert tall.shape == (2, 3, 64, 40)


def test_domains_by_name_or_label(model):
    assert [model.domain_index(d) for d in ("dog", "DOG", 1, "1", "cat", 0)] == [1, 1, 1, 1, 0, 0]


def test_bad_inputs_fail_naming_them(model, tmp_path, images):
    with pytest.raises(ValueError, match=r"unknown domain 'horse'.*cat, dog"):
        model.translate(images[0], domain="horse")
    with pytest.raises(ValueError, match="out of range"):
        model.translate(images[0], domain=7)
    notes = tmp_path / "notes.txt"
    notes.write_text("not a picture")
    with pytest.raises(DataError, match=r"notes\.txt"):
        model.translate(notes, domain="cat")
    with pytest.raises(FileNotFoundError, match=r"missing\.png"):
        model.translate(tmp_path / "missing.png", domain="cat")
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        model.translate(torch.rand(3, 32, 32) * 255, domain="cat")
    with pytest.raises(ValueError, match="domain="):
        model.translate(images[0])


def test_parse_seeds_and_spread():
    assert parse_seeds("0-3") == [0, 1, 2, 3]
    assert parse_seeds("7") == [7]
    assert parse_seeds("0,3,5-6") == [0, 3, 5, 6]
    with pytest.raises(ValueError, match="--seeds"):
        parse_seeds("a-b")
    assert spread(list(range(10)), 3) == [0, 3, 6]
    assert spread([1, 2], 5) == [1, 2]


# ----------------------------------------------------------------------------------------------------------
# The documented examples run
# ----------------------------------------------------------------------------------------------------------


def _example_files(folder: Path) -> None:
    """The files the examples name: a 3-domain model and a few pictures."""
    tiny_checkpoint(folder / "afhq.safetensors", num_domains=3, domains=["cat", "dog", "wild"])
    write_image(folder / "cat.jpg", 64, 64, seed=1)
    write_image(folder / "wild.jpg", 80, 64, seed=2)
    write_image(folder / "wide.jpg", 96, 64, seed=3)
    write_image(folder / "refs" / "dog" / "rex.jpg", 64, 72, seed=4)


def test_docstring_examples_run(tmp_path, monkeypatch):
    _example_files(tmp_path)
    monkeypatch.chdir(tmp_path)
    result = doctest.testmod(stargan_v2.api, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 5 and result.failed == 0


def test_readme_api_example_runs(tmp_path, monkeypatch):
    text = README.read_text(encoding="utf-8")
    section = text.split("## Translating images from Python", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code, "README: the API section has no python example"
    _example_files(tmp_path)
    monkeypatch.chdir(tmp_path)
    exec(compile(code.group(1), "README.md", "exec"), {})
    assert (tmp_path / "dog.png").is_file()


def test_high_pass_model_translates_with_the_face_masks():
    """A high-pass generator gets the FAN's masks of each batch (a randomly initialised FAN stands in)."""
    from stargan_v2.fan import FAN
    from stargan_v2.model import build_nets

    config = preset("tiny").override(["w_hpf=1"]).model
    model = StarGANv2(build_nets(config, discriminator=False), config, fan=FAN(), device="cpu")
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    out = model.translate(x, domain=1, seed=0, output="tensor")
    s = model.style_from_latent(1, 0).expand(2, -1)
    with torch.no_grad():
        expected = model.nets.generator(x, s, masks=model.fan.masks(x))
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


def test_training_states_store_domain_names_too(tmp_path):
    from stargan_v2.checkpoint import read_domains
    from stargan_v2.train import init_train_state
    from stargan_v2.training_state import save_training_state

    state = init_train_state(preset("tiny"))
    path = save_training_state(state, tmp_path / "state.safetensors", domains=["female", "male"])
    assert read_domains(path) == ("female", "male")
    assert StarGANv2.from_checkpoint(path, "cpu").domains == ("female", "male")
    with pytest.raises(CheckpointError, match="2 distinct names"):
        save_training_state(state, tmp_path / "bad.safetensors", domains=["a", "a"])


def test_translate_grid_is_always_per_image_then_per_style(model, images):
    """``translate_grid`` gives the list of lists whatever the inputs' shape, with ``translate``'s pictures."""
    one = model.translate_grid(images[0], domain="dog", seed=3)
    assert len(one) == 1 and len(one[0]) == 1
    assert np.array_equal(np.asarray(one[0][0]), np.asarray(model.translate(images[0], domain="dog", seed=3)))
    grid = model.translate_grid(images, domain="cat", seed=[0, 1])
    assert [len(row) for row in grid] == [2, 2, 2]
    expected = model.translate(images, domain="cat", seed=[0, 1])
    assert all(
        np.array_equal(np.asarray(a), np.asarray(b))
        for ra, rb in zip(grid, expected, strict=True)
        for a, b in zip(ra, rb, strict=True)
    )
