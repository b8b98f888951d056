"""Checkpoints: the training state (bit-exact, resumable, atomic), the EMA-only file, and the authors' format."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

import stargan_v2
from stargan_v2 import checkpoint as ckpt
from stargan_v2.checkpoint import (
    CheckpointError,
    export_official,
    infer_model_config,
    load_ema,
    load_official,
    load_training_state,
    read_metadata,
    save_ema,
    save_training_state,
)
from stargan_v2.config import Config, ModelConfig, preset
from stargan_v2.model import Nets, build_nets
from stargan_v2.train import TrainState, init_train_state, train_step

from .conftest import make_inputs, official_fixtures, shared_dir

LAPLACIAN = torch.tensor([[-1.0, -1.0, -1.0], [-1.0, 8.0, -1.0], [-1.0, -1.0, -1.0]])


# ----------------------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------------------


def trained_state(config: Config, steps: int = 2, seed: int = 0) -> TrainState:
    """A fresh state (seeded init) after ``steps`` iterations, so the Adam moments and ``step`` are non-trivial."""
    torch.manual_seed(seed)
    state = init_train_state(config)
    for i in range(steps):
        train_step(state, make_inputs(config, seed=i))
    return state


def seeded_nets(model: ModelConfig, discriminator: bool = True, seed: int = 0) -> Nets:
    torch.manual_seed(seed)
    return build_nets(model, discriminator=discriminator)


def assert_tensors_equal(a: dict, b: dict, what: str = "") -> None:
    assert sorted(a) == sorted(b), f"{what}: keys differ"
    for key in a:
        assert a[key].dtype == b[key].dtype, f"{what}{key}: dtype {a[key].dtype} vs {b[key].dtype}"
        assert torch.equal(a[key], b[key]), f"{what}{key} differs"


def assert_nets_equal(a: Nets, b: Nets) -> None:
    assert [n for n, _ in a.items()] == [n for n, _ in b.items()]
    for (name, ma), (_, mb) in zip(a.items(), b.items(), strict=True):
        assert_tensors_equal(ma.state_dict(), mb.state_dict(), f"{name}.")


def _plain_groups(groups: list[dict]) -> list[dict]:
    # JSON normalisation (tuples -> lists); the exact Python types are checked by a separate test.
    return json.loads(json.dumps(groups))


def assert_optimizers_equal(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for name in a:
        sa, sb = a[name].state_dict(), b[name].state_dict()
        assert _plain_groups(sa["param_groups"]) == _plain_groups(sb["param_groups"]), name
        assert sorted(sa["state"]) == sorted(sb["state"]), name
        for index, entry in sa["state"].items():
            other = sb["state"][index]
            assert sorted(entry) == sorted(other), f"{name}/{index}"
            for key, value in entry.items():  # exp_avg, exp_avg_sq and the tensor 'step'
                if torch.is_tensor(value):
                    assert value.dtype == other[key].dtype, f"{name}/{index}/{key}"
                    assert torch.equal(value, other[key]), f"{name}/{index}/{key}"
                else:
                    assert value == other[key], f"{name}/{index}/{key}"


def fixed_inputs(model: ModelConfig, batch: int = 2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.rand(batch, 3, model.img_size, model.img_size, generator=g) * 2 - 1
    y = torch.arange(batch) % model.num_domains
    z = torch.randn(batch, model.latent_dim, generator=g)
    return x, y, z


@torch.no_grad()
def assert_same_outputs(a: Nets, b: Nets, model: ModelConfig, masks=None) -> None:
    """G, F, E (and D when both have it) give bit-identical outputs on fixed inputs."""
    x, y, z = fixed_inputs(model)
    s = a.mapping_network(z, y)
    assert torch.equal(s, b.mapping_network(z, y))
    assert torch.equal(a.style_encoder(x, y), b.style_encoder(x, y))
    assert torch.equal(a.generator(x, s, masks=masks), b.generator(x, s, masks=masks))
    if a.discriminator is not None and b.discriminator is not None:
        assert torch.equal(a.discriminator(x, y), b.discriminator(x, y))


def inferable_tiny() -> ModelConfig:
    """The tiny model capped at width 16, so that every network (not only E and D) reaches the cap.

    Plain ``tiny`` has its widest layers only in E and D; ``test_infer_model_config_tiny`` covers that case.
    """
    return dataclasses.replace(preset("tiny").model, max_conv_dim=16)


# ----------------------------------------------------------------------------------------------------------
# Training state
# ----------------------------------------------------------------------------------------------------------


def test_training_state_round_trip_is_bit_exact(tmp_path, tiny_config):
    """Every tensor of nets, EMA nets and optimisers, the step and the config come back unchanged."""
    state = trained_state(tiny_config, steps=2)
    assert all(opt.state for opt in state.optimizers.values())  # the optimisers do have moments to save
    path = save_training_state(state, tmp_path / "state.safetensors")
    assert path == tmp_path / "state.safetensors"

    loaded = load_training_state(path)
    assert loaded.step == 2
    assert loaded.config == state.config
    assert loaded.nets.discriminator is not None and loaded.nets_ema.discriminator is None
    assert_nets_equal(loaded.nets, state.nets)
    assert_nets_equal(loaded.nets_ema, state.nets_ema)
    assert_optimizers_equal(loaded.optimizers, state.optimizers)
    # The restored optimisers drive the restored parameters, not stray copies.
    for name, module in loaded.nets.items():
        assert {id(p) for g in loaded.optimizers[name].param_groups for p in g["params"]} == {
            id(p) for p in module.parameters()
        }
    assert not any(p.requires_grad for _, m in loaded.nets_ema.items() for p in m.parameters())


def test_training_state_param_groups_keep_their_types(tmp_path, tiny_config):
    """param_groups compare equal as Python objects (not only after JSON normalisation)."""
    state = trained_state(tiny_config, steps=1)
    loaded = load_training_state(save_training_state(state, tmp_path / "state.safetensors"))
    for name, opt in state.optimizers.items():
        assert loaded.optimizers[name].state_dict()["param_groups"] == opt.state_dict()["param_groups"], name


def test_training_state_restores_rng(tmp_path, tiny_config):
    """With restore_rng=True, torch, Python and NumPy draw the numbers they would have drawn after the save."""
    state = trained_state(tiny_config, steps=1)
    torch.manual_seed(123)
    random.seed(123)
    np.random.seed(123)
    # Leave a cached Gaussian in Python's and NumPy's generators: that part of the state must survive too.
    random.gauss(0.0, 1.0)
    np.random.randn(1)
    path = save_training_state(state, tmp_path / "state.safetensors")
    expected = (torch.rand(5), random.random(), random.gauss(0.0, 1.0), np.random.rand(3), np.random.randn(1))

    torch.manual_seed(999)
    random.seed(999)
    np.random.seed(999)
    load_training_state(path, restore_rng=True)
    got = (torch.rand(5), random.random(), random.gauss(0.0, 1.0), np.random.rand(3), np.random.randn(1))
    assert torch.equal(got[0], expected[0])
    assert got[1] == expected[1]
    assert got[2] == expected[2]
    assert np.array_equal(got[3], expected[3])
    assert np.array_equal(got[4], expected[4])


def test_resume_continues_identically(tmp_path, tiny_config):
    """Two straight steps == one step, save, load, one step: parameters, EMA, optimisers and stats."""
    inputs = [make_inputs(tiny_config, seed=10), make_inputs(tiny_config, seed=11)]

    torch.manual_seed(0)
    straight = init_train_state(tiny_config)
    stats_straight = [train_step(straight, x) for x in inputs]

    torch.manual_seed(0)
    resumed = init_train_state(tiny_config)
    stats_resumed = [train_step(resumed, inputs[0])]
    path = save_training_state(resumed, tmp_path / "state.safetensors")
    del resumed
    resumed = load_training_state(path)
    stats_resumed.append(train_step(resumed, inputs[1]))

    assert resumed.step == straight.step == 2
    assert_nets_equal(resumed.nets, straight.nets)
    assert_nets_equal(resumed.nets_ema, straight.nets_ema)
    assert_optimizers_equal(resumed.optimizers, straight.optimizers)
    for a, b in zip(stats_straight, stats_resumed, strict=True):
        assert sorted(a) == sorted(b)
        for key in a:
            assert torch.equal(a[key], b[key]), key


def test_save_is_atomic(tmp_path, tiny_config, monkeypatch):
    """A crash while writing leaves the previous checkpoint intact under its name and no temporary file."""
    state = trained_state(tiny_config, steps=1)
    path = save_training_state(state, tmp_path / "state.safetensors")
    train_step(state, make_inputs(tiny_config, seed=5))
    assert state.step == 2

    written = []

    def crash_mid_write(tensors, filename, metadata=None):
        written.append(Path(filename))
        Path(filename).write_bytes(b"\x00" * 100)  # a truncated file, then the crash
        raise OSError("disk full")

    monkeypatch.setattr(ckpt, "save_file", crash_mid_write)
    with pytest.raises(OSError, match="disk full"):
        save_training_state(state, path)
    monkeypatch.undo()

    assert written and written[0].parent == tmp_path and written[0] != path  # it wrote to a temporary name
    assert load_training_state(path).step == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.safetensors"]


def test_metadata(tmp_path, tiny_config):
    """The metadata names the format, the package version, the step and the full resolved config."""
    config = tiny_config.override(["num_domains=3", "lambda_cyc=0.5", "seed=5"])
    state = trained_state(config, steps=1)
    meta = read_metadata(save_training_state(state, tmp_path / "state.safetensors"))
    assert meta["format"] == "stargan-v2/training-state"
    assert meta["package_version"] == stargan_v2.__version__
    assert meta["step"] == "1"
    assert Config.from_json(meta["config"]) == config
    assert load_training_state(tmp_path / "state.safetensors").config == config


# ----------------------------------------------------------------------------------------------------------
# EMA-only file
# ----------------------------------------------------------------------------------------------------------


def test_ema_round_trip(tmp_path, tiny_config):
    """save_ema -> load_ema: the same G, F, E weights, eval mode, no discriminator, the config and step."""
    config = tiny_config.override(["lambda_ds=2"])
    state = trained_state(config, steps=1)
    path = save_ema(state.nets_ema, config, tmp_path / "ema.safetensors", step=state.step)

    nets, loaded_config = load_ema(path)
    assert loaded_config == config
    assert nets.discriminator is None
    assert all(not module.training for _, module in nets.items())
    assert_nets_equal(nets, state.nets_ema)

    meta = read_metadata(path)
    assert meta["format"] == "stargan-v2/ema"
    assert meta["package_version"] == stargan_v2.__version__
    assert meta["step"] == "1"
    with safe_open(str(path), framework="pt") as fh:
        assert not any(k.startswith(("discriminator", "optim", "rng")) for k in fh.keys())  # noqa: SIM118


def test_wrong_kind_of_file_is_refused(tmp_path, tiny_config):
    """Each loader refuses the other's file, and says why."""
    state = trained_state(tiny_config, steps=1)
    training = save_training_state(state, tmp_path / "state.safetensors")
    ema = save_ema(state.nets_ema, state.config, tmp_path / "ema.safetensors")
    with pytest.raises(CheckpointError, match="EMA"):
        load_training_state(ema)
    with pytest.raises(CheckpointError, match="training-state"):
        load_ema(training)


@pytest.mark.parametrize("content", [b"not a checkpoint at all\n", bytes(range(256)) * 8, b""])
@pytest.mark.parametrize("loader", [load_ema, load_training_state])
def test_non_safetensors_file_is_refused(tmp_path, content, loader):
    path = tmp_path / "junk.safetensors"
    path.write_bytes(content)
    with pytest.raises(CheckpointError):
        loader(path)


def test_authors_file_given_to_our_loader_points_to_load_official(tmp_path, tiny_config):
    path = export_official(seeded_nets(tiny_config.model, discriminator=False), tmp_path / "000001_nets_ema.ckpt")
    with pytest.raises(CheckpointError, match="load_official"):
        load_ema(path)


@pytest.mark.parametrize("loader", [load_ema, load_training_state, load_official])
def test_missing_file(tmp_path, loader):
    with pytest.raises(FileNotFoundError):
        loader(tmp_path / "nope.safetensors")


# ----------------------------------------------------------------------------------------------------------
# The authors' format
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
@pytest.mark.parametrize("with_d", [True, False], ids=["nets", "nets_ema"])
def test_official_round_trip(tmp_path, tiny_config, legacy, with_d):
    """export_official -> load_official (architecture given): same weights and outputs, eval mode."""
    nets = seeded_nets(tiny_config.model, discriminator=with_d)
    path = export_official(nets, tmp_path / "000001_nets.ckpt", legacy_format=legacy)
    assert zipfile.is_zipfile(path) is not legacy  # the flag really picks the serialisation
    assert [p.name for p in tmp_path.iterdir()] == ["000001_nets.ckpt"]  # no temporary file left

    model = load_official(path, config=tiny_config.model)
    assert model.config == tiny_config.model
    assert (model.discriminator is not None) is with_d
    assert model.fan is None
    assert all(not module.training for _, module in model.nets.items())
    assert_nets_equal(model.nets, nets)
    assert_same_outputs(nets.eval(), model.nets, tiny_config.model)


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_official_round_trip_infers_config_inferable(tmp_path, legacy):
    """Without a config the architecture is read off the file, and the weights and outputs are the same."""
    model_config = inferable_tiny()
    nets = seeded_nets(model_config)
    model = load_official(export_official(nets, tmp_path / "n.ckpt", legacy_format=legacy))
    assert model.config == model_config
    assert_nets_equal(model.nets, nets)
    assert_same_outputs(nets.eval(), model.nets, model_config)


def test_infer_model_config_tiny(tiny_config):
    """The tiny preset's own shapes infer to the tiny config.

    dim_in: the first conv has 8 channels while the released rule would give 2**14 // 32 = 512, so it is
    inferred as 8. max_conv_dim: the widest layer actually used. The generator (1 downsampling) goes
    8 -> 16, but the style encoder and discriminator (3 downsamplings) go 8 -> 16 -> 32 -> 32, so the
    widest layer is 32 == tiny's max_conv_dim, and the inferred config must equal the tiny one.
    """
    nets = seeded_nets(tiny_config.model)
    widest = max(p.shape[0] for _, m in nets.items() for k, p in m.state_dict().items() if k.endswith("conv2.weight"))
    assert widest == tiny_config.model.max_conv_dim == 32
    assert infer_model_config({n: m.state_dict() for n, m in nets.items()}) == tiny_config.model


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_official_round_trip_infers_tiny_config(tmp_path, tiny_config, legacy):
    """export_official(tiny nets) -> load_official() without a config: loads, and infers the tiny config."""
    nets = seeded_nets(tiny_config.model)
    model = load_official(export_official(nets, tmp_path / "n.ckpt", legacy_format=legacy))
    assert model.config == tiny_config.model
    assert_nets_equal(model.nets, nets)


def test_official_module_prefixes_are_stripped(tmp_path):
    """State dicts saved from DataParallel/DDP wrappers ('module.' keys) load the same weights."""
    model_config = inferable_tiny()
    nets = seeded_nets(model_config)
    payload = {name: {f"module.{k}": v for k, v in m.state_dict().items()} for name, m in nets.items()}
    torch.save(payload, tmp_path / "ddp.ckpt")
    model = load_official(tmp_path / "ddp.ckpt")
    assert model.config == model_config
    assert_nets_equal(model.nets, nets)
    # And with the architecture given explicitly (the tiny preset itself).
    tiny = preset("tiny").model
    nets = seeded_nets(tiny)
    torch.save({n: {f"module.{k}": v for k, v in m.state_dict().items()} for n, m in nets.items()}, tmp_path / "t.ckpt")
    assert_nets_equal(load_official(tmp_path / "t.ckpt", config=tiny).nets, nets)


def test_official_high_pass_without_filter_buffer(tmp_path, tiny_config):
    """Like the released CelebA-HQ file: no generator 'hpf.filter'; it loads, w_hpf=1, the filter is the Laplacian."""
    config = tiny_config.override(["img_size=64", "w_hpf=1"]).model
    nets = seeded_nets(config, discriminator=False)
    path = export_official(nets, tmp_path / "celeba_like.ckpt", legacy_format=True)
    payload = torch.load(path, weights_only=True)
    del payload["generator"]["hpf.filter"]
    torch.save(payload, path, _use_new_zipfile_serialization=False)

    model = load_official(path)
    assert model.config.w_hpf == 1
    assert model.config == config
    assert torch.equal(model.generator.hpf.filter, LAPLACIAN / 1)
    assert_nets_equal(model.nets, nets)
    g = torch.Generator().manual_seed(3)
    masks = (torch.rand(2, 1, 64, 64, generator=g), torch.rand(2, 1, 64, 64, generator=g))
    assert_same_outputs(nets.eval(), model.nets, config, masks=masks)


def test_official_high_pass_weight_read_from_filter(tmp_path, tiny_config):
    """With the buffer present, w_hpf is read off it (w_hpf=2 -> Laplacian / 2)."""
    config = tiny_config.override(["img_size=64", "w_hpf=2"]).model
    nets = seeded_nets(config, discriminator=False)
    model = load_official(export_official(nets, tmp_path / "hpf2.ckpt"))
    assert model.config.w_hpf == 2
    assert model.config == config
    assert torch.equal(model.generator.hpf.filter, LAPLACIAN / 2)
    assert_nets_equal(model.nets, nets)


@pytest.mark.parametrize(
    "change, key",
    [
        ({"num_domains": 3}, "unshared.2.0.weight"),  # the file has no third domain head
        ({"style_dim": 32}, "decode.0.norm1.fc.weight"),  # AdaIN layers of another style size
    ],
)
def test_official_file_that_does_not_fit(tmp_path, tiny_config, change, key):
    """A given config that does not match the file fails with a message naming the mismatching tensor."""
    path = export_official(seeded_nets(tiny_config.model), tmp_path / "n.ckpt")
    other = dataclasses.replace(tiny_config.model, **change)
    with pytest.raises(CheckpointError, match="does not fit") as info:
        load_official(path, config=other)
    assert key in str(info.value)


def test_official_discriminator_of_wrong_shape(tmp_path):
    """G, F, E fit but D has another number of domains: the error names D's output layer."""
    model_config = inferable_tiny()
    nets = seeded_nets(model_config)
    wrong_d = seeded_nets(dataclasses.replace(model_config, num_domains=3)).discriminator
    payload = {name: m.state_dict() for name, m in nets.items()}
    payload["discriminator"] = wrong_d.state_dict()
    torch.save(payload, tmp_path / "n.ckpt")
    with pytest.raises(CheckpointError, match="discriminator") as info:
        load_official(tmp_path / "n.ckpt")
    assert "main.7.weight" in str(info.value)


class MarkerOnLoad:
    """Unpickling this runs ``os.mkdir(marker)``: what a malicious checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def test_official_pickled_object_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "code_ran"
    path = tmp_path / "evil.ckpt"
    torch.save({"generator": MarkerOnLoad(marker)}, path)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="weights_only"):
        load_official(path)
    assert not marker.exists()
    # Control: an unrestricted load of the same file does run the code, so the check above means something.
    torch.load(path, weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize(
    "payload",
    [{"state_dict": {"w": torch.zeros(2)}}, {"mapping_network": {}, "style_encoder": {}}, torch.zeros(3)],
    ids=["wing-like", "no-generator", "bare-tensor"],
)
def test_official_file_without_generator(tmp_path, payload):
    torch.save(payload, tmp_path / "x.ckpt")
    with pytest.raises(CheckpointError, match="generator"):
        load_official(tmp_path / "x.ckpt")


# ----------------------------------------------------------------------------------------------------------
# Inference on the released architectures
# ----------------------------------------------------------------------------------------------------------


def released_shapes(name: str) -> dict[str, dict[str, list[int]]]:
    """{network: {key: shape}} of the released ``name`` file, from shared/official_checkpoint_keys.txt."""
    root = shared_dir()
    if root is None or not (root / "official_checkpoint_keys.txt").is_file():
        pytest.skip("shared/official_checkpoint_keys.txt is absent (set STARGAN_V2_SHARED)")
    shapes: dict[str, dict[str, list[int]]] = {}
    for line in (root / "official_checkpoint_keys.txt").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        file, network, key, shape = line.split("\t")
        if file == name:
            shapes.setdefault(network, {})[key] = json.loads(shape)
    assert shapes, f"no keys for {name}"
    return shapes


@pytest.mark.parametrize("name", ["afhq", "celeba_hq"])
def test_infer_model_config_released(name):
    """The released key shapes infer to the preset, and the preset rebuilds exactly those keys and shapes."""
    shapes = released_shapes(name)
    states = {net: {k: torch.empty(s, device="meta") for k, s in keys.items()} for net, keys in shapes.items()}
    if name == "celeba_hq":
        states["generator"].pop("hpf.filter", None)  # the released CelebA-HQ file predates the buffer
    model_config = infer_model_config(states)
    assert model_config == preset(name).model
    with torch.device("meta"):
        nets = build_nets(model_config, init=False)
    for net, module in nets.items():
        assert {k: list(v.shape) for k, v in module.state_dict().items()} == shapes[net], net


@pytest.mark.parametrize(
    "name, drop_filter",
    [
        ("afhq", False),
        ("celeba_hq", True),
        ("celeba_hq", False),
    ],
)
def test_infer_model_config_from_meta_nets(name, drop_filter):
    """Shape-only (meta) state dicts of a preset's nets infer to the preset's model config."""
    with torch.device("meta"):
        nets = build_nets(preset(name).model, init=False)
    states = {n: dict(m.state_dict()) for n, m in nets.items()}
    if drop_filter:
        del states["generator"]["hpf.filter"]
    assert infer_model_config(states) == preset(name).model


# ----------------------------------------------------------------------------------------------------------
# Files written by the authors' code
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, has_d", [("000000_nets_ema.ckpt", False), ("000000_nets.ckpt", True)])
def test_authors_fixture_loads(name, has_d):
    path = official_fixtures() / "afhq_small" / name
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    assert zipfile.is_zipfile(path) is has_d  # the EMA file uses the legacy serialisation, like the releases
    model = load_official(path)
    assert (model.discriminator is not None) is has_d
    assert model.fan is None
    assert all(module.training is False for _, module in model.nets.items())
    c = model.config
    assert (c.img_size, c.num_domains, c.max_conv_dim, c.w_hpf) == (256, 2, 64, 0)
    assert model.generator.hpf is None
    # The file's tensors are what the networks hold.
    raw = torch.load(path, weights_only=True)
    for net, module in model.nets.items():
        assert_tensors_equal(dict(raw[net]), module.state_dict(), f"{net}.")


def test_a_generator_the_authors_cannot_build_is_not_exported_in_their_format(tmp_path: Path) -> None:
    cfg = dataclasses.replace(preset("tiny").model, g_bottleneck=4)
    with pytest.raises(CheckpointError, match=r"g_bottleneck is set.*--format ema"):
        export_official(build_nets(cfg, discriminator=False), tmp_path / "000001_nets_ema.ckpt")
    assert not (tmp_path / "000001_nets_ema.ckpt").exists()


def test_serialisation_imports_no_training_code():
    """The checkpoint formats stand alone: no module-level import of train, run or training_state (the old names
    ``checkpoint.save_training_state`` / ``load_training_state`` still resolve, lazily, to training_state's)."""
    import ast

    from stargan_v2 import checkpoint, checkpoint_io, official, training_state

    for module in (checkpoint, checkpoint_io, official):
        tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
        imported = {node.module for node in tree.body if isinstance(node, ast.ImportFrom)}
        imported |= {alias.name for node in tree.body if isinstance(node, ast.ImportFrom) for alias in node.names}
        assert not imported & {"train", "run", "training_state", "__init__"}, module.__name__
        assert "__version__" not in {a.name for n in tree.body if isinstance(n, ast.ImportFrom) and not n.module
                                     for a in n.names}  # fmt: skip
    assert checkpoint.save_training_state is training_state.save_training_state
    assert checkpoint.load_training_state is training_state.load_training_state
