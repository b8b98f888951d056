"""``stargan-v2 translate``: folders and single images, seeds, truncation, references, paste-back, errors."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from stargan_v2.cli import main

from .synthesis_helpers import tiny_checkpoint, write_image

pytestmark = pytest.mark.usefixtures("one_thread")


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def checkpoint(tmp_path):
    return tiny_checkpoint(tmp_path / "tiny.safetensors", domains=["cat", "dog"])


@pytest.fixture
def photos(tmp_path):
    """A folder with images at two levels and of two sizes."""
    write_image(tmp_path / "photos" / "a.png", 48, 40, seed=1)
    write_image(tmp_path / "photos" / "more" / "b.jpg", 30, 50, seed=2)
    return tmp_path / "photos"


def test_latent_guided_folder_with_seeds(capsys, tmp_path, checkpoint, photos):
    out = tmp_path / "out"
    code, stdout, _ = run(capsys, "translate", "--checkpoint", checkpoint, "--input", photos, "--domain", "dog",
                          "--seeds", "0-2", "--out", out, "--device", "cpu")  # fmt: skip
    assert code == 0 and "wrote 6 images" in stdout
    names = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert names == [f"a_dog-seed{k}.png" for k in range(3)] + [f"more/b_dog-seed{k}.png" for k in range(3)]
    assert all(Image.open(p).size == (32, 32) for p in out.rglob("*.png"))


def test_psi_zero_makes_every_seed_alike(capsys, tmp_path, checkpoint, photos):
    out = tmp_path / "out"
    code, _, _ = run(capsys, "translate", "--checkpoint", checkpoint, "--input", photos / "a.png", "--domain", "cat",
                     "--seeds", "3,8", "--psi", "0", "--out", out, "--no-progress")  # fmt: skip
    assert code == 0
    a, b = (np.array(Image.open(out / f"a_cat-seed{k}.png")) for k in (3, 8))
    # Both seeds ran in one batch with the same (mean) style: the same picture up to rounding.
    assert np.abs(a.astype(np.int16) - b.astype(np.int16)).max() <= 1


def test_reference_guided_with_paste_back(capsys, tmp_path, checkpoint, photos):
    for name in ("cat", "dog"):
        write_image(tmp_path / "refs" / name / "r.png", 40, 40, seed=5)
    out = tmp_path / "out"
    code, _, _ = run(capsys, "translate", "--checkpoint", checkpoint, "--input", photos, "--ref", tmp_path / "refs",
                     "--paste-back", "--out", out, "--no-progress")  # fmt: skip
    assert code == 0
    assert Image.open(out / "a_ref-cat-r.png").size == (48, 40)
    assert Image.open(out / "more" / "b_ref-dog-r.png").size == (30, 50)
    cat, dog = (np.array(Image.open(out / f"a_ref-{d}-r.png")) for d in ("cat", "dog"))
    assert not np.array_equal(cat, dog)  # same picture, read as a cat or as a dog: different styles


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--domain", "horse"], "unknown domain 'horse'"),
        ([], "--domain NAME"),
        (["--domain", "cat", "--seeds", "x"], "--seeds"),
    ],
)
def test_bad_arguments_exit_2(capsys, tmp_path, checkpoint, photos, extra, message):
    code, _, err = run(capsys, "translate", "--checkpoint", checkpoint, "--input", photos, "--out", tmp_path / "o",
                       *extra)  # fmt: skip
    assert code == 2 and message in err


def test_bad_files_exit_2_naming_them(capsys, tmp_path, checkpoint):
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    code, _, err = run(capsys, "translate", "--checkpoint", checkpoint, "--input", notes, "--domain", "cat",
                       "--out", tmp_path / "o", "--no-progress")  # fmt: skip
    assert code == 2 and "notes.txt" in err and "not a readable image" in err
    code, _, err = run(capsys, "translate", "--checkpoint", checkpoint, "--input", tmp_path / "nowhere",
                       "--domain", "cat", "--out", tmp_path / "o")  # fmt: skip
    assert code == 2 and "nowhere" in err
    flat = write_image(tmp_path / "flat" / "r.png")
    code, _, err = run(capsys, "translate", "--checkpoint", checkpoint, "--input", flat, "--ref", flat.parent,
                       "--out", tmp_path / "o")  # fmt: skip
    assert code == 2 and "--domain" in err
