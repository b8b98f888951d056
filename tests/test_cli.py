"""The ``stargan-v2`` command: summary, config, export, and its error handling (exit 2, message on stderr)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import zipfile

import pytest
import torch

from stargan_v2.checkpoint import (
    export_official,
    load_ema,
    load_official,
    read_metadata,
    save_ema,
    save_training_state,
)
from stargan_v2.cli import main
from stargan_v2.config import Config, preset
from stargan_v2.model import Nets, build_nets
from stargan_v2.train import init_train_state, train_step

from .conftest import make_inputs, official_fixtures

# Parameter counts of the released networks (the paper's table; also shared/official_checkpoint_keys.txt).
RELEASED_COUNTS = {
    "afhq": {
        "generator": 33892995,
        "mapping_network": 3259072,
        "style_encoder": 20949760,
        "discriminator": 20852803,
    },
    "celeba_hq": {
        "generator": 43467395,
        "mapping_network": 2438272,
        "style_encoder": 20916928,
        "discriminator": 20852290,
    },
}


def run(capsys, *argv: str) -> tuple[int, str, str]:
    """Run the command in-process; returns (exit status, stdout, stderr)."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_nets_equal(a: Nets, b: Nets) -> None:
    assert [n for n, _ in a.items()] == [n for n, _ in b.items()]
    for (name, ma), (_, mb) in zip(a.items(), b.items(), strict=True):
        sa, sb = ma.state_dict(), mb.state_dict()
        assert sorted(sa) == sorted(sb), name
        for key in sa:
            assert torch.equal(sa[key], sb[key]), f"{name}.{key}"


@pytest.fixture
def state_file(tmp_path, tiny_config):
    """A tiny training state after one step, saved; returns (state, path)."""
    torch.manual_seed(0)
    state = init_train_state(tiny_config)
    train_step(state, make_inputs(tiny_config))
    return state, save_training_state(state, tmp_path / "state.safetensors")


# ----------------------------------------------------------------------------------------------------------
# summary and config
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(RELEASED_COUNTS))
def test_summary_json_matches_released_counts(capsys, name):
    code, out, err = run(capsys, "summary", "--preset", name, "--json")
    assert code == 0, err
    assert json.loads(out) == RELEASED_COUNTS[name]


def test_summary_text(capsys):
    code, out, _ = run(capsys, "summary", "--preset", "celeba_hq")
    assert code == 0
    assert "43,467,395" in out and "FAN" in out  # the high-pass model mentions its landmark network


@pytest.mark.slow
def test_module_entry_point():
    """`python -m stargan_v2.cli` works as a program (a fresh interpreter, not the in-process call)."""
    result = subprocess.run(
        [sys.executable, "-m", "stargan_v2.cli", "summary", "--preset", "afhq", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == RELEASED_COUNTS["afhq"]


def test_summary_follows_overrides(capsys):
    """--set num_domains=3 adds domain heads to F, E and D; G does not depend on the number of domains."""
    _, out2, _ = run(capsys, "summary", "--preset", "tiny", "--set", "num_domains=2", "--json")
    code, out3, err = run(capsys, "summary", "--preset", "tiny", "--set", "num_domains=3", "--json")
    assert code == 0, err
    two, three = json.loads(out2), json.loads(out3)
    for name in ("mapping_network", "style_encoder", "discriminator"):
        assert three[name] > two[name], name
    assert three["generator"] == two["generator"]


@pytest.mark.parametrize("command", ["summary", "config"])
@pytest.mark.parametrize(
    "assignment, field", [("foo=1", "foo"), ("img_size=100", "img_size"), ("lambda_ds=abc", "lambda_ds")]
)
def test_bad_override_exits_2_naming_the_field(capsys, command, assignment, field):
    code, out, err = run(capsys, command, "--preset", "tiny", "--set", assignment)
    assert code == 2
    assert field in err
    assert out == ""


def test_config_prints_resolved_json(capsys):
    code, out, err = run(capsys, "config", "--preset", "tiny", "--set", "lambda_ds=3")
    assert code == 0, err
    data = json.loads(out)
    assert data["train"]["lambda_ds"] == 3.0 and isinstance(data["train"]["lambda_ds"], float)
    assert Config.from_json(out) == preset("tiny").override(["lambda_ds=3"])


# ----------------------------------------------------------------------------------------------------------
# export
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_export_official_from_training_state(capsys, tmp_path, state_file, legacy):
    """A training state becomes {step:06d}_nets_ema.ckpt and _nets.ckpt holding the EMA and training weights, and
    _optims.ckpt (tests/test_official_optimizers.py)."""
    state, path = state_file
    out_dir = tmp_path / "official"
    code, out, err = run(
        capsys,
        "export", "--format", "official", "--checkpoint", str(path), "--out", str(out_dir),
        *(["--legacy"] if legacy else []),
    )  # fmt: skip
    assert code == 0, err
    assert sorted(p.name for p in out_dir.iterdir()) == [
        "000001_nets.ckpt",
        "000001_nets_ema.ckpt",
        "000001_optims.ckpt",
    ]
    assert "000001_nets_ema.ckpt" in out
    ema = load_official(out_dir / "000001_nets_ema.ckpt")
    nets = load_official(out_dir / "000001_nets.ckpt")
    assert ema.config == state.config.model
    assert zipfile.is_zipfile(out_dir / "000001_nets_ema.ckpt") is not legacy
    assert ema.discriminator is None and nets.discriminator is not None
    assert_nets_equal(ema.nets, state.nets_ema)
    assert_nets_equal(nets.nets, state.nets)


def test_export_ema_from_training_state(capsys, tmp_path, state_file):
    state, path = state_file
    target = tmp_path / "ema.safetensors"
    code, _, err = run(capsys, "export", "--format", "ema", "--checkpoint", str(path), "--out", str(target))
    assert code == 0, err
    nets, config = load_ema(target)
    assert config == state.config
    assert read_metadata(target)["step"] == "1"
    assert_nets_equal(nets, state.nets_ema)


def test_export_official_from_ema_file(capsys, tmp_path, state_file):
    """An EMA-only file becomes {step:06d}_nets_ema.ckpt (the step from its metadata)."""
    state, _ = state_file
    ema = save_ema(state.nets_ema, state.config, tmp_path / "ema.safetensors", step=7)
    out_dir = tmp_path / "official"
    code, _, err = run(capsys, "export", "--format", "official", "--checkpoint", str(ema), "--out", str(out_dir))
    assert code == 0, err
    assert [p.name for p in out_dir.iterdir()] == ["000007_nets_ema.ckpt"]
    loaded = load_official(out_dir / "000007_nets_ema.ckpt", config=state.config.model)
    assert_nets_equal(loaded.nets, state.nets_ema)


def _convert_official_to_ema(capsys, tmp_path, source) -> None:
    """``export --format ema`` of an authors' file: our EMA file holds the same weights and the inferred config."""
    target = tmp_path / "converted.safetensors"
    code, _, err = run(capsys, "export", "--format", "ema", "--checkpoint", str(source), "--out", str(target))
    assert code == 0, err
    nets, config = load_ema(target)
    reference = load_official(source)
    assert config == Config(model=reference.config)
    assert_nets_equal(nets, Nets(reference.generator, reference.mapping_network, reference.style_encoder))
    raw = torch.load(source, weights_only=True)
    for name, module in nets.items():
        assert all(torch.equal(v, raw[name][k]) for k, v in module.state_dict().items()), name


def test_export_ema_from_official_file(capsys, tmp_path):
    """A tiny model capped at width 16 (every network reaches the cap)."""
    model = dataclasses.replace(preset("tiny").model, max_conv_dim=16)
    torch.manual_seed(0)
    source = export_official(build_nets(model, discriminator=False), tmp_path / "000003_nets_ema.ckpt", True)
    _convert_official_to_ema(capsys, tmp_path, source)


def test_export_ema_from_official_tiny_file(capsys, tmp_path):
    torch.manual_seed(0)
    source = export_official(build_nets(preset("tiny").model, discriminator=False), tmp_path / "n.ckpt")
    _convert_official_to_ema(capsys, tmp_path, source)


def test_export_ema_from_authors_fixture(capsys, tmp_path):
    """The file written by the authors' code converts to ours with the same weights."""
    source = official_fixtures() / "afhq_small" / "000000_nets_ema.ckpt"
    if not source.is_file():
        pytest.skip(f"{source} is absent")
    _convert_official_to_ema(capsys, tmp_path, source)


@pytest.mark.parametrize("fmt", ["official", "ema"])
def test_export_missing_file(capsys, tmp_path, fmt):
    missing = tmp_path / "nope.safetensors"
    code, out, err = run(capsys, "export", "--format", fmt, "--checkpoint", str(missing), "--out", str(tmp_path / "o"))
    assert code == 2
    assert "not found" in err and "nope.safetensors" in err
    assert out == ""
    assert not (tmp_path / "o").exists()


def test_export_refuses_pointless_conversions(capsys, tmp_path, state_file):
    """An authors' file to the authors' format, or an EMA file to an EMA file: exit 2 with the reason."""
    state, _ = state_file
    official = export_official(state.nets_ema, tmp_path / "000001_nets_ema.ckpt")
    code, _, err = run(capsys, "export", "--format", "official", "--checkpoint", str(official), "--out", str(tmp_path))
    assert code == 2 and "authors' format" in err
    ema = save_ema(state.nets_ema, state.config, tmp_path / "ema.safetensors")
    code, _, err = run(capsys, "export", "--format", "ema", "--checkpoint", str(ema), "--out", str(tmp_path / "x"))
    assert code == 2 and "EMA-only" in err


def test_export_official_high_pass_model_includes_the_fan(capsys, tmp_path):
    """The authors' loader reads a "fan" entry from a high-pass model's files, so export needs --fan."""
    from stargan_v2.fan import FAN

    config = preset("tiny").override(["img_size=64", "w_hpf=1"])
    torch.manual_seed(0)
    nets = build_nets(config.model, discriminator=False)
    ema_path = save_ema(nets, config, tmp_path / "ema.safetensors", step=3)
    out_dir = tmp_path / "official"
    code, _, err = run(capsys, "export", "--format", "official", "--checkpoint", str(ema_path), "--out", str(out_dir))
    assert code == 2 and "--fan" in err
    assert not out_dir.exists() or not any(out_dir.iterdir())

    fan = FAN()
    torch.save({"state_dict": fan.state_dict()}, tmp_path / "wing.ckpt")
    argv = ["export", "--format", "official", "--checkpoint", str(ema_path), "--out", str(out_dir)]
    code, _, err = run(capsys, *argv, "--fan", str(tmp_path / "wing.ckpt"))
    assert code == 0, err
    exported = torch.load(out_dir / "000003_nets_ema.ckpt", weights_only=True)
    assert sorted(exported) == ["fan", "generator", "mapping_network", "style_encoder"]
    model = load_official(out_dir / "000003_nets_ema.ckpt")
    assert model.fan is not None and model.config == config.model
    assert_nets_equal(model.nets, nets)
