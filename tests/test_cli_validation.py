"""Bad arguments: every numeric or device flag of every command refuses a bad value with a message naming the
flag (argparse: exit 2 and the usage), and config mistakes (--preset, --set, --domains) name what is wrong."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stargan_v2 import cli
from stargan_v2.cli import build_parser, main
from stargan_v2.config import preset
from stargan_v2.run import RunOptions, train

#: Values each argument type must refuse.
BAD_VALUES = {
    cli.positive_int: ["0", "-3", "2.5", "abc", ""],
    cli.nonnegative_int: ["-1", "1e3", "x"],
    cli.positive_float: ["0", "-2", "nan", "inf", "ten"],
    cli.finite_float: ["nan", "-inf", "x"],
    cli.port_number: ["-1", "65536", "http"],
    cli.device_name: ["bogus", "cuda:99", "cpu:x"],
    cli.eval_metric_list: ["", "fid", "oracle,nonsense"],
}


def _commands(
    parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every (sub)command and its parser, e.g. ``("bench", "train")``."""
    for action in parser._actions:  # argparse offers no public way to list sub-parsers
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*prefix, name), sub
                yield from _commands(sub, (*prefix, name))


def _typed_flags() -> list[tuple[tuple[str, ...], str, object]]:
    cases = []
    for command, parser in _commands(build_parser()):
        for action in parser._actions:
            if action.option_strings and action.type is not None:
                cases.append((command, action.option_strings[0], action.type))
    return cases


TYPED_FLAGS = _typed_flags()


def test_no_numeric_flag_is_left_unchecked() -> None:
    """A plain ``type=int`` or ``float`` would take -3 or nan: every such flag uses a checking type."""
    assert TYPED_FLAGS, "no typed flags found"
    unchecked = [(" ".join(c), flag) for c, flag, kind in TYPED_FLAGS if kind in (int, float)]
    assert not unchecked, f"flags without a range check: {unchecked}"
    unknown = [(" ".join(c), flag, kind) for c, flag, kind in TYPED_FLAGS if kind not in BAD_VALUES]
    assert not unknown, f"flag types without bad values in this test: {unknown}"


@pytest.mark.parametrize(
    ("command", "flag", "kind"), TYPED_FLAGS, ids=[f"{' '.join(c)} {f}" for c, f, _ in TYPED_FLAGS]
)
def test_bad_flag_values_name_the_flag(
    command: tuple[str, ...], flag: str, kind: object, capsys: pytest.CaptureFixture[str]
) -> None:
    for bad in BAD_VALUES[kind]:  # type: ignore[index]
        if kind is cli.device_name and bad == "cuda:99" and not _cuda_99_is_bad():
            continue
        assert main([*command, f"{flag}={bad}"]) == 2
        err = capsys.readouterr().err
        assert f"argument {flag}" in err, (flag, bad, err)
        assert "usage:" in err


def _cuda_99_is_bad() -> bool:
    import torch

    return torch.cuda.device_count() <= 99


def test_flag_message_says_what_is_wanted(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--batch-size", "-3"]) == 2
    assert "argument --batch-size: must be a positive integer (got -3)" in capsys.readouterr().err
    assert main(["train", "--minutes", "nan"]) == 2
    assert "argument --minutes: must be a finite number (got 'nan')" in capsys.readouterr().err
    assert main(["sample", "--device", "gpu0"]) == 2
    assert "argument --device: not a torch device: 'gpu0'" in capsys.readouterr().err


def test_good_flag_values_parse() -> None:
    args = build_parser().parse_args(
        ["train", "--data", "d", "--run-dir", "r", "--iters", "5", "--workers", "0", "--minutes", "0.5"]
    )
    assert (args.iters, args.workers, args.minutes, args.device) == (5, 0, 0.5, args.device)
    assert (
        build_parser().parse_args(["translate", "--checkpoint", "c", "--input", "i", "--out", "o", "--psi", "-0.5"]).psi
        == -0.5
    )


# ---------------------------------------------------------------------------------------------------------------
# Config mistakes
# ---------------------------------------------------------------------------------------------------------------


def test_unknown_preset_names_the_flag_and_the_choices(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "--preset", "afhq_v3"]) == 2
    err = capsys.readouterr().err
    assert "argument --preset: invalid choice: 'afhq_v3'" in err and "celeba_hq" in err


@pytest.mark.parametrize(
    ("assignment", "expected"),
    [
        ("img_sise=128", "unknown config field 'img_sise'; did you mean img_size?"),
        ("lamda_ds=2", "did you mean lambda_ds"),
        ("model.lr=1", "unknown config field 'model.lr'"),
        ("optim.lr=1", "unknown config section 'optim'"),
        ("img_size=100", "img_size must be a power of two"),
        ("img_size=16384", "img_size must be a power of two from 16 to 8192"),
        ("img_size=abc", "--set img_size=abc: expected a value of type int"),
        ("batch_size=-3", "batch_size must be a positive integer (got -3)"),
        ("batch_size=true", "batch_size=true: expected a value of type int"),
        ("num_domains=0", "num_domains must be a positive integer"),
        ("latent_dim=-1", "latent_dim must be a positive integer"),
        ("dim_in=0", "dim_in must be a positive integer or None"),
        ("lr=nan", "lr must be a positive number (got nan)"),
        ("ema_beta=1", "ema_beta must be in [0, 1)"),
        ("randcrop_prob=1.5", "randcrop_prob must be in [0, 1]"),
        ("seed=-1", "seed must be an integer in [0, 9223372036854775807]"),
        ("w_hpf=inf", "w_hpf must be a finite number >= 0"),
        ("total_iters=0", "total_iters must be a positive integer"),
        ("lambda_cyc=-0.5", "lambda_cyc must be a finite number >= 0"),
        ("print_every=0", "print_every must be a positive integer"),
        ("img_size", "--set expects key=value"),
    ],
)
def test_config_mistakes_exit_2_naming_the_field(
    assignment: str, expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["config", "--preset", "tiny", "--set", assignment]) == 2
    out, err = capsys.readouterr()
    assert expected in err and out == ""


def _folder(root: Path, domains: tuple[str, ...]) -> Path:
    rng = np.random.default_rng(0)
    for d in domains:
        (root / d).mkdir(parents=True)
        for i in range(2):
            Image.fromarray((rng.random((32, 32, 3)) * 255).astype("uint8")).save(root / d / f"{i}.png")
    return root


def test_domain_count_mismatches_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The config's num_domains against the data folder, and --domains against a checkpoint."""
    data = _folder(tmp_path / "data", ("a", "b", "c"))
    argv = ["train", "--data", str(data), "--run-dir", str(tmp_path / "run"), "--preset", "tiny", "--iters", "1"]
    assert main([*argv, "--set", "num_domains=2", "--device", "cpu", "--no-progress"]) == 2
    assert "num_domains=3" in capsys.readouterr().err

    two = _folder(tmp_path / "two", ("a", "b"))
    config = preset("tiny").override(["total_iters=1", "batch_size=2", "sample_every=1000", "save_every=1000"])
    result = train(config, RunOptions(run_dir=tmp_path / "run2", data=two, progress=False))
    ema = result.ema_path
    out = str(tmp_path / "out")
    translate = ["translate", "--checkpoint", str(ema), "--input", str(two), "--out", out, "--device", "cpu"]
    assert main([*translate, "--domain", "a", "--domains", "x,y,z"]) == 2
    assert "domains must be 2 distinct names" in capsys.readouterr().err
    assert main([*translate, "--domain", "a", "--domains", "x,,y"]) == 2
    assert "--domains 'x,,y': expected distinct, non-empty names" in capsys.readouterr().err
    assert main([*translate, "--domain", "zebra"]) == 2
    assert "unknown domain 'zebra'" in capsys.readouterr().err
    sample = ["sample", "--checkpoint", str(ema), "--src", str(data), "--ref", str(two), "--out", out]
    assert main([*sample, "--device", "cpu"]) == 2
    assert "2 domains" in capsys.readouterr().err
