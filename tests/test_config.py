"""The typed config: presets, validation that names the field, --set overrides, JSON round trip."""

from __future__ import annotations

import dataclasses

import pytest

from stargan_v2.config import Config, ConfigError, ModelConfig, TrainConfig, apply_overrides, preset


def test_presets_match_the_paper() -> None:
    afhq, celeba = preset("afhq"), preset("celeba_hq")
    assert (afhq.model.img_size, afhq.model.num_domains, afhq.model.w_hpf, afhq.train.lambda_ds) == (256, 3, 0.0, 2.0)
    assert (celeba.model.img_size, celeba.model.num_domains, celeba.model.w_hpf, celeba.train.lambda_ds) == (
        256,
        2,
        1.0,
        1.0,
    )
    # Released widths: 2**14 // img_size at the first layer, capped at 512.
    assert afhq.model.first_dim == 64 and afhq.model.max_conv_dim == 512
    t = afhq.train
    assert (t.lr, t.f_lr, t.beta1, t.beta2, t.weight_decay, t.batch_size, t.total_iters) == (
        1e-4,
        1e-6,
        0.0,
        0.99,
        1e-4,
        8,
        100_000,
    )
    assert (t.lambda_reg, t.lambda_sty, t.lambda_cyc, t.ds_iter, t.ema_beta) == (1.0, 1.0, 1.0, 100_000, 0.999)
    assert not t.ref_step_updates_all


def test_unknown_preset_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="afhq"):
        preset("nope")


def test_config_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        preset("afhq").model.img_size = 128  # type: ignore[misc]


def test_overrides_parse_by_field_type_and_section() -> None:
    cfg = apply_overrides(
        preset("afhq"),
        ["num_domains=5", "model.img_size=128", "train.lambda_ds=0.5", "ref_step_updates_all=true", "dim_in=32"],
    )
    assert cfg.model.num_domains == 5 and isinstance(cfg.model.num_domains, int)
    assert cfg.model.img_size == 128 and cfg.model.dim_in == 32
    assert cfg.train.lambda_ds == 0.5 and cfg.train.ref_step_updates_all is True
    # The original is untouched.
    assert preset("afhq").model.num_domains == 3
    assert apply_overrides(cfg, ["dim_in=none"]).model.first_dim == 2**14 // 128


@pytest.mark.parametrize(
    ("assignment", "field"),
    [
        ("img_size=100", "img_size"),
        ("img_size=abc", "img_size"),
        ("num_domains=0", "num_domains"),
        ("lambda_ds=-1", "lambda_ds"),
        ("beta2=1.5", "beta2"),
        ("lr=0", "lr"),
        ("w_hpf=-1", "w_hpf"),
        ("randcrop_prob=2", "randcrop_prob"),
        ("batch_size=2.5", "batch_size"),
        ("ref_step_updates_all=maybe", "ref_step_updates_all"),
        ("no_such_field=1", "no_such_field"),
        ("missing_equals", "key=value"),
    ],
)
def test_bad_values_name_the_field(assignment: str, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        apply_overrides(preset("afhq"), [assignment])


def test_json_round_trip_and_unknown_fields() -> None:
    cfg = apply_overrides(preset("celeba_hq"), ["lambda_ds=3", "seed=5"])
    assert Config.from_json(cfg.to_json()) == cfg
    data = cfg.to_dict()
    data["model"]["bogus"] = 1
    with pytest.raises(ConfigError, match="bogus"):
        Config.from_dict(data)


def test_direct_construction_validates() -> None:
    with pytest.raises(ConfigError, match="style_dim"):
        ModelConfig(style_dim=0)
    with pytest.raises(ConfigError, match="ema_beta"):
        TrainConfig(ema_beta=1.0)
