"""A high-pass model (``w_hpf > 0``) never runs without its face masks: every command and the API stop with an
error that names ``wing.ckpt`` and ``--wing`` when no face-landmark network is given.

Without the masks the generator would still run (the high-pass path is skipped) and give other images, and
other FID and LPIPS, without a word. The dangerous file is the authors' format without a ``"fan"`` entry.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from stargan_v2 import StarGANv2
from stargan_v2.checkpoint import CheckpointError, export_official, load_for_synthesis, load_official, save_ema
from stargan_v2.cli import main
from stargan_v2.config import preset
from stargan_v2.fan import FAN
from stargan_v2.metrics import evaluate as ev
from stargan_v2.model import build_nets

from .synthesis_helpers import write_image

pytestmark = pytest.mark.usefixtures("one_thread")

CONFIG = preset("tiny").override(["w_hpf=1"])


def _nets():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build_nets(CONFIG.model, discriminator=False)


@pytest.fixture(params=["official", "ema"])
def checkpoint(request, tmp_path) -> Path:
    """A high-pass model without a face network: the authors' format (no "fan" entry), and ours."""
    if request.param == "official":
        return export_official(_nets(), tmp_path / "000100_nets_ema.ckpt")
    return save_ema(_nets(), CONFIG, tmp_path / "ema.safetensors", domains=["female", "male"])


@pytest.fixture
def folders(tmp_path) -> Path:
    for name in ("female", "male"):
        for i in range(2):
            write_image(tmp_path / "data" / name / f"{i}.png", 40, 36, seed=i)
    return tmp_path / "data"


def _refused(capsys, argv: list[str]) -> None:
    code = main([str(a) for a in argv])
    _, err = capsys.readouterr()
    assert code == 2, err
    assert "high-pass" in err and "wing.ckpt" in err and "--wing" in err


def test_the_authors_file_without_fan_is_recognised_as_high_pass(tmp_path):
    path = export_official(_nets(), tmp_path / "000100_nets_ema.ckpt")
    assert "fan" not in torch.load(path, weights_only=True)
    model = load_official(path)  # loading the nets alone is allowed (e.g. to export them)
    assert model.config.uses_hpf and model.fan is None
    with pytest.raises(CheckpointError, match=r"wing\.ckpt.*--wing"):
        load_for_synthesis(path)
    assert load_for_synthesis(path, require_fan=False).fan is None


def test_with_the_face_network_it_loads(tmp_path):
    wing = tmp_path / "wing.ckpt"
    torch.save({"state_dict": FAN().state_dict()}, wing)
    path = export_official(_nets(), tmp_path / "000100_nets_ema.ckpt")
    assert load_for_synthesis(path, fan_path=wing).fan is not None
    model = StarGANv2.from_checkpoint(path, "cpu", fan_path=wing)
    assert model.fan is not None and model.config.uses_hpf


def test_api(checkpoint):
    with pytest.raises(CheckpointError, match=r"high-pass.*wing\.ckpt.*--wing"):
        StarGANv2.from_checkpoint(checkpoint, "cpu")


def test_eval_command(capsys, checkpoint, folders, monkeypatch):
    from stargan_v2.metrics import fid, lpips

    # The feature networks are not what this test is about: stand-ins, so that no weight file is needed.
    monkeypatch.setattr(fid, "load_inception", lambda *a, **k: object())
    monkeypatch.setattr(lpips, "load_lpips", lambda *a, **k: object())
    argv = ["eval", "--checkpoint", checkpoint, "--train-data", folders, "--val-data", folders, "--device", "cpu"]
    _refused(capsys, [*argv, "--workers", "0", "--no-progress", "--out", checkpoint.parent / "eval"])


def test_evaluate_refuses_a_high_pass_generator_without_masks(folders):
    nets = _nets()
    with pytest.raises(ValueError, match=r"high-pass.*mask_fn"):
        next(
            ev.translate_task(
                nets,
                "latent",
                torch.zeros(1, 3, 32, 32),
                torch.zeros(1, 3, 32, 32),
                1,
                num_outputs=2,
                latent_dim=CONFIG.model.latent_dim,
                generator=torch.Generator(),
                device="cpu",
                batch_size=4,
            )
        )


def test_sample_command(capsys, checkpoint, folders, tmp_path):
    argv = ["sample", "--checkpoint", checkpoint, "--src", folders, "--ref", folders, "--out", tmp_path / "out"]
    _refused(capsys, [*argv, "--device", "cpu"])
    assert not (tmp_path / "out").exists()


def test_translate_command(capsys, checkpoint, folders, tmp_path):
    argv = ["translate", "--checkpoint", checkpoint, "--input", folders / "female" / "0.png", "--domain", "male"]
    _refused(capsys, [*argv, "--out", tmp_path / "out", "--device", "cpu", "--no-progress"])


def test_video_command(capsys, checkpoint, folders, tmp_path):
    argv = ["video", "--checkpoint", checkpoint, "--src", folders / "female", "--ref", folders]
    _refused(capsys, [*argv, "--out", tmp_path / "v.mp4", "--device", "cpu", "--no-progress"])
    assert not (tmp_path / "v.mp4").exists()


def test_serve_command(capsys, checkpoint, monkeypatch):
    serve = pytest.importorskip("stargan_v2.serve", reason="the web demo needs gradio: pip install -e '.[dev]'")

    def never(*args, **kwargs):
        raise AssertionError("the page was built for a high-pass model without its face network")

    monkeypatch.setattr(serve, "build_app", never)
    _refused(capsys, ["serve", "--checkpoint", checkpoint, "--device", "cpu"])
