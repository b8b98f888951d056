"""Hostile and broken checkpoints: a malicious pickle is refused without running it; truncated, wrong-shape and
incomplete files fail with a CheckpointError naming the file and the problem (and exit 2 from the command)."""

from __future__ import annotations

import dataclasses
import pathlib
import pickle
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from stargan_v2.checkpoint import (
    EMA_FORMAT,
    CheckpointError,
    checkpoint_kind,
    export_official,
    load_ema,
    load_for_synthesis,
    load_official,
    load_training_state,
    save_ema,
    save_training_state,
)
from stargan_v2.cli import main
from stargan_v2.config import Config, preset
from stargan_v2.model import Nets, build_nets
from stargan_v2.train import init_train_state

# ---------------------------------------------------------------------------------------------------------------
# Malicious pickles
# ---------------------------------------------------------------------------------------------------------------


class TouchOnLoad:
    """Unpickling this creates ``marker`` (``pathlib.Path.touch``): what a malicious checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


class OpenOnLoad(TouchOnLoad):
    """The same with the ``open`` builtin (no import needed by the attacker)."""

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _write(kind: str, payload: object, path: Path) -> Path:
    if kind == "pickle":
        with open(path, "wb") as fh:
            pickle.dump(payload, fh)
    else:
        torch.save(payload, path, _use_new_zipfile_serialization=kind == "torch")
    return path


def _unsafe_load(kind: str, path: Path) -> None:
    """What an unguarded loader does with the file (the control that shows the file really is malicious)."""
    if kind == "pickle":
        with open(path, "rb") as fh:
            pickle.load(fh)
    else:
        torch.load(path, weights_only=False)


WRITERS = ["pickle", "torch", "torch_legacy"]
GADGETS = [TouchOnLoad, OpenOnLoad]


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # pickle.dump's protocol; torch expects 2
@pytest.mark.parametrize("gadget", GADGETS, ids=lambda g: g.__name__)
@pytest.mark.parametrize("kind", WRITERS)
def test_malicious_pickle_is_refused_without_running_it(tmp_path: Path, kind: str, gadget: type) -> None:
    marker = tmp_path / "code_ran"
    path = _write(kind, {"generator": gadget(marker)}, tmp_path / "evil.ckpt")
    for load in (load_official, load_for_synthesis):
        with pytest.raises(CheckpointError, match=r"refused .*evil\.ckpt.*weights_only") as info:
            load(path)
        assert "arbitrary code" in str(info.value)
        assert not marker.exists()
    # Control: an unguarded load of the same file does run the code, so the checks above mean something.
    _unsafe_load(kind, path)
    assert marker.exists()


def test_malicious_pickle_named_like_our_files_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "code_ran"
    path = _write("torch", {"generator": TouchOnLoad(marker)}, tmp_path / "ema.safetensors")
    with pytest.raises(CheckpointError, match=r"ema\.safetensors is not a stargan-v2 safetensors checkpoint"):
        load_ema(path)
    with pytest.raises(CheckpointError, match=r"ema\.safetensors"):
        load_for_synthesis(path)
    assert not marker.exists()


def _images(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for domain in ("a", "b"):
        (root / domain).mkdir(parents=True)
        Image.fromarray((rng.random((32, 32, 3)) * 255).astype("uint8")).save(root / domain / "0.png")
    return root


def _command(name: str, checkpoint: Path, tmp_path: Path) -> list[str]:
    """The argv of ``name`` with ``checkpoint`` and everything else valid."""
    images = _images(tmp_path / "images")
    out = str(tmp_path / "out")
    c = str(checkpoint)
    return {
        "sample": ["sample", "--checkpoint", c, "--src", str(images), "--ref", str(images), "--out", out],
        "translate": ["translate", "--checkpoint", c, "--input", str(images), "--domain", "a", "--out", out],
        "export-ema": ["export", "--format", "ema", "--checkpoint", c, "--out", out + ".safetensors"],
        "export-onnx": ["export", "--format", "onnx", "--checkpoint", c, "--out", out + ".onnx"],
    }[name] + (["--device", "cpu"] if name in ("sample", "translate") else [])


@pytest.mark.parametrize("command", ["sample", "translate", "export-ema", "export-onnx"])
def test_malicious_pickle_through_the_command_exits_2(
    tmp_path: Path, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "code_ran"
    path = _write("torch", {"generator": TouchOnLoad(marker)}, tmp_path / "evil.ckpt")
    assert main(_command(command, path, tmp_path)) == 2
    err = capsys.readouterr().err
    assert "refused" in err and str(path) in err
    assert not marker.exists()


# ---------------------------------------------------------------------------------------------------------------
# Truncated files
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One file of each kind from the tiny model: training state, EMA, the authors' (zip and legacy)."""
    root = tmp_path_factory.mktemp("checkpoints")
    config = preset("tiny")
    torch.manual_seed(0)
    state = init_train_state(config)
    return {
        "state": save_training_state(state, root / "state.safetensors"),
        "ema": save_ema(state.nets_ema, config, root / "ema.safetensors"),
        "official": export_official(state.nets_ema, root / "000001_nets_ema.ckpt"),
        "official_legacy": export_official(state.nets_ema, root / "legacy_nets_ema.ckpt", legacy_format=True),
    }


def _cut(source: Path, dest: Path, fraction: float) -> Path:
    data = source.read_bytes()
    dest.write_bytes(data[: max(9, int(len(data) * fraction))])
    return dest


LOADERS: dict[str, Callable[[Path], object]] = {
    "state": load_training_state,
    "ema": load_ema,
    "official": load_official,
    "official_legacy": load_official,
}


@pytest.mark.parametrize("fraction", [0.0, 0.01, 0.5, 0.999])
@pytest.mark.parametrize("kind", ["state", "ema"])
def test_truncated_safetensors_file_is_named_truncated(
    tmp_path: Path, files: dict[str, Path], kind: str, fraction: float
) -> None:
    """Cut anywhere after its first 9 bytes (inside the header or the tensors), our file says "truncated"."""
    path = _cut(files[kind], tmp_path / f"cut_{kind}.safetensors", fraction)
    for load in (LOADERS[kind], load_for_synthesis, checkpoint_kind):
        with pytest.raises(CheckpointError, match=rf"cut_{kind}\.safetensors is truncated: it holds [\d,]+ bytes"):
            load(path)


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9, 0.999])
@pytest.mark.parametrize("kind", ["official", "official_legacy"])
def test_truncated_authors_file_is_named(tmp_path: Path, files: dict[str, Path], kind: str, fraction: float) -> None:
    path = _cut(files[kind], tmp_path / "cut_nets_ema.ckpt", fraction)
    for load in (load_official, load_for_synthesis):
        with pytest.raises(CheckpointError, match=r"cut_nets_ema\.ckpt.*cut short"):
            load(path)


@pytest.mark.parametrize("legacy", [False, True])
def test_damaged_or_malicious_face_landmark_file_is_named(tmp_path: Path, legacy: bool) -> None:
    """wing.ckpt (the FAN of high-pass models) is read the same way: cut short or hostile, it is named."""
    from stargan_v2.fan import load_fan

    path = tmp_path / "wing.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1000)}}, path, _use_new_zipfile_serialization=not legacy)
    _cut(path, path, 0.5)
    with pytest.raises(ValueError, match=r"wing\.ckpt.*(cut short|not unpickled)"):
        load_fan(path)
    marker = tmp_path / "code_ran"
    _write("torch_legacy" if legacy else "torch", {"state_dict": TouchOnLoad(marker)}, path)
    with pytest.raises(ValueError, match=r"wing\.ckpt holds objects other than tensors"):
        load_fan(path)
    assert not marker.exists()


def test_truncated_checkpoint_through_the_command_exits_2(
    tmp_path: Path, files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    path = _cut(files["ema"], tmp_path / "ema.safetensors", 0.5)
    assert main(_command("sample", path, tmp_path)) == 2
    assert f"{path} is truncated" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------------
# Wrong shapes, missing metadata
# ---------------------------------------------------------------------------------------------------------------


def _nets(config: Config) -> Nets:
    torch.manual_seed(0)
    return build_nets(config.model, discriminator=False)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"img_size": 64}, r"missing|shape mismatch"),  # another image size: more blocks
        ({"dim_in": 16}, r"shape mismatch .*from_rgb\.weight"),  # another first width
        ({"max_conv_dim": 16}, r"shape mismatch"),  # another width cap
        ({"style_dim": 8}, r"shape mismatch"),
        ({"num_domains": 3}, r"missing .*unshared\.2"),
    ],
)
def test_ema_file_of_another_architecture_names_the_file_and_tensors(
    tmp_path: Path, change: dict, problem: str
) -> None:
    """The tensors of the tiny model under a config that says otherwise (a hand-edited or mixed-up file)."""
    tiny = preset("tiny")
    other = Config(dataclasses.replace(tiny.model, **change), tiny.train)
    path = save_ema(_nets(tiny), other, tmp_path / "mixed.safetensors")
    with pytest.raises(CheckpointError, match=r"mixed\.safetensors \[\w+\] does not fit the network") as info:
        load_ema(path)
    assert re.search(problem, str(info.value)), str(info.value)


@pytest.mark.parametrize("change", [{"dim_in": 16}, {"max_conv_dim": 64}, {"img_size": 64}, {"latent_dim": 4}])
def test_authors_file_with_another_architecture_is_refused(tmp_path: Path, change: dict) -> None:
    tiny = preset("tiny").model
    path = export_official(_nets(preset("tiny")), tmp_path / "n.ckpt")
    with pytest.raises(CheckpointError, match=r"n\.ckpt \[\w+\] does not fit the network"):
        load_official(path, config=dataclasses.replace(tiny, **change))


def test_authors_file_mixing_image_sizes_is_refused(tmp_path: Path) -> None:
    """G of a 32 px model with F and E of a 64 px one: the inferred architecture fits neither."""
    tiny = preset("tiny")
    big = Config(dataclasses.replace(tiny.model, img_size=64), tiny.train)
    small_nets, big_nets = _nets(tiny), _nets(big)
    payload = {name: m.state_dict() for name, m in big_nets.items()}
    payload["generator"] = small_nets.generator.state_dict()
    torch.save(payload, tmp_path / "mixed.ckpt")
    with pytest.raises(CheckpointError, match=r"mixed\.ckpt.*fits neither|mixed\.ckpt.*does not fit"):
        load_official(tmp_path / "mixed.ckpt")


def _raw_ema(path: Path, metadata: dict[str, str], files: dict[str, Path]) -> Path:
    from safetensors import safe_open

    with safe_open(str(files["ema"]), framework="pt") as fh:
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
    save_file(tensors, str(path), metadata=metadata)
    return path


@pytest.mark.parametrize(
    ("metadata", "problem"),
    [
        ({"format": EMA_FORMAT}, r"no 'config' metadata"),
        ({"format": EMA_FORMAT, "config": "{not json"}, r"invalid config: the config is not valid JSON"),
        ({"format": EMA_FORMAT, "config": '{"model": {"img_size": 100}}'}, r"invalid config: img_size"),
        ({"format": EMA_FORMAT, "config": "[1, 2]"}, r"invalid config"),
    ],
)
def test_bad_config_metadata_is_named(tmp_path: Path, files: dict[str, Path], metadata: dict, problem: str) -> None:
    path = _raw_ema(tmp_path / "odd.safetensors", metadata, files)
    with pytest.raises(CheckpointError, match=rf"odd\.safetensors.*{problem}"):
        load_ema(path)


def test_incomplete_training_state_is_named(tmp_path: Path, files: dict[str, Path]) -> None:
    from stargan_v2.checkpoint import TRAINING_FORMAT, read_metadata

    config = read_metadata(files["state"])["config"]
    path = _raw_ema(tmp_path / "partial.safetensors", {"format": TRAINING_FORMAT, "config": config}, files)
    with pytest.raises(CheckpointError, match=r"partial\.safetensors is an incomplete training state: no step"):
        load_training_state(path)
