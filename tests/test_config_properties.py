"""Property-based tests of config validation (hypothesis): valid configs survive every round trip, every invalid
value is refused with a message naming its field, and unknown keys are named with a suggestion."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from stargan_v2.config import (
    MAX_IMG_SIZE,
    MAX_SEED,
    Config,
    ConfigError,
    ModelConfig,
    TrainConfig,
    apply_overrides,
)
from stargan_v2.model import build_nets

# The shared CI machine is slow and busy: no deadline, modest example counts.
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

MODEL_FIELDS = [f.name for f in dataclasses.fields(ModelConfig)]
TRAIN_FIELDS = [f.name for f in dataclasses.fields(TrainConfig)]
ALL_FIELDS = MODEL_FIELDS + TRAIN_FIELDS

# ---------------------------------------------------------------------------------------------------------------
# What is valid, field by field
# ---------------------------------------------------------------------------------------------------------------

POSITIVE_INTS = {
    "num_domains",
    "latent_dim",
    "style_dim",
    "hidden_dim",
    "max_conv_dim",
    "ds_iter",
    "batch_size",
    "total_iters",
    "print_every",
    "sample_every",
    "save_every",
}
NON_NEGATIVE = {"w_hpf", "lambda_reg", "lambda_sty", "lambda_ds", "lambda_cyc", "lambda_wrong_domain", "weight_decay"}
POSITIVE = {"lr", "f_lr"}
UNIT_HALF_OPEN = {"beta1", "beta2", "ema_beta"}  # [0, 1)
assert POSITIVE_INTS | NON_NEGATIVE | POSITIVE | UNIT_HALF_OPEN | {
    "img_size",
    "dim_in",
    "g_bottleneck",
    "randcrop_prob",
    "seed",
    "ref_step_updates_all",
} == set(ALL_FIELDS), "a new config field needs strategies here"

finite = st.floats(allow_nan=False, allow_infinity=False)
small_ints = st.integers(1, 512)


def valid_value(name: str, max_img_size: int = 1024) -> st.SearchStrategy[Any]:
    """Values ``name`` accepts (kept small where they size networks)."""
    if name == "img_size":
        return st.sampled_from([2**k for k in range(4, 11) if 2**k <= max_img_size])
    if name == "dim_in":
        return st.none() | small_ints
    if name == "g_bottleneck":  # at most 16: valid at every img_size
        return st.none() | st.sampled_from([2, 4, 8, 16])
    if name == "num_domains":  # each domain adds heads to F, E and D: many make building slow
        return st.integers(1, 16)
    if name in POSITIVE_INTS:
        return small_ints
    if name in NON_NEGATIVE:
        return st.floats(0, 1e6) | st.integers(0, 100)
    if name in POSITIVE:
        return st.floats(1e-12, 10.0)
    if name in UNIT_HALF_OPEN:
        return st.floats(0, 1, exclude_max=True)
    if name == "randcrop_prob":
        return st.floats(0, 1)
    if name == "seed":
        return st.integers(0, MAX_SEED)
    if name == "ref_step_updates_all":
        return st.booleans()
    raise AssertionError(name)


not_a_number = st.sampled_from([None, "1", "abc", [1], {"a": 1}, True, False])
non_finite = st.sampled_from([math.nan, math.inf, -math.inf])


def invalid_value(name: str) -> st.SearchStrategy[Any]:
    """Values ``name`` must refuse: out of range, of the wrong type, non-finite."""
    if name == "img_size":
        not_power = st.integers(-(2**40), 2**40).filter(lambda n: n < 16 or n > MAX_IMG_SIZE or n & (n - 1) != 0)
        return not_power | st.sampled_from([32.0, 64.5]) | not_a_number | non_finite
    if name == "dim_in":
        return st.integers(max_value=0) | st.floats(0.5, 100) | st.sampled_from(["64", True, [64]]) | non_finite
    if name == "g_bottleneck":  # the default img_size is 256: 512 is too large for it
        not_power = st.integers(-(2**20), 2**20).filter(lambda n: n < 2 or n & (n - 1) != 0)
        return not_power | st.sampled_from([512, 2**20, 8.0, "8", True, [8]]) | non_finite
    if name in POSITIVE_INTS:
        return st.integers(max_value=0) | st.floats(0.5, 1e6) | not_a_number | non_finite
    if name in NON_NEGATIVE:
        return st.floats(max_value=-1e-9) | st.integers(max_value=-1) | non_finite | not_a_number
    if name in POSITIVE:
        return st.floats(max_value=0) | st.integers(max_value=0) | non_finite | not_a_number | st.just(10**400)
    if name in UNIT_HALF_OPEN:
        return st.floats(max_value=-1e-9) | st.floats(min_value=1) | non_finite | not_a_number
    if name == "randcrop_prob":
        return st.floats(max_value=-1e-9) | st.floats(min_value=1 + 1e-9) | non_finite | not_a_number
    if name == "seed":
        return st.integers(max_value=-1) | st.integers(min_value=MAX_SEED + 1) | st.floats(0, 10) | not_a_number
    if name == "ref_step_updates_all":
        return st.sampled_from([0, 1, "true", "yes", None, 1.0])
    raise AssertionError(name)


@st.composite
def configs(draw: st.DrawFn, max_img_size: int = 1024) -> Config:
    """Any valid config, with networks small enough to build in a test."""
    model = {name: draw(valid_value(name, max_img_size)) for name in MODEL_FIELDS}
    train = {name: draw(valid_value(name)) for name in TRAIN_FIELDS}
    return Config(ModelConfig(**model), TrainConfig(**train))


# ---------------------------------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------------------------------


@PROPERTY
@given(configs())
def test_valid_configs_round_trip_through_json(config: Config) -> None:
    assert Config.from_json(config.to_json()) == config


@PROPERTY
@given(configs())
def test_set_with_every_field_rebuilds_the_config(config: Config) -> None:
    """``--set key=value`` with each field's text gives back the same config (types and values exact)."""
    assignments = [
        f"{section}.{name}={value!r}" if isinstance(value, float) else f"{section}.{name}={value}"
        for section, values in config.to_dict().items()
        for name, value in values.items()
    ]
    rebuilt = apply_overrides(Config(), assignments)
    assert rebuilt == config
    for name in POSITIVE_INTS | {"img_size", "seed"}:
        value = getattr(rebuilt.model if name in MODEL_FIELDS else rebuilt.train, name)
        assert type(value) is int, name


@PROPERTY
@given(st.data(), st.sampled_from(ALL_FIELDS))
def test_any_invalid_value_is_refused_naming_the_field(data: st.DataObject, name: str) -> None:
    bad = data.draw(invalid_value(name), label=name)
    section = "model" if name in MODEL_FIELDS else "train"
    base = Config()
    with pytest.raises(ConfigError, match=rf"\b{name}\b"):
        dataclasses.replace(getattr(base, section), **{name: bad})
    # The same value as JSON (what a checkpoint or config.json holds) is refused the same way.
    if not isinstance(bad, float) or math.isfinite(bad):
        data_dict = base.to_dict()
        data_dict[section][name] = bad
        with pytest.raises(ConfigError, match=rf"\b{name}\b"):
            Config.from_json(json.dumps(data_dict))


@PROPERTY
@given(st.data(), st.sampled_from(ALL_FIELDS))
def test_any_invalid_text_for_set_is_refused_naming_the_field(data: st.DataObject, name: str) -> None:
    """``--set key=text`` with a bad value (out of range, wrong type, garbage text) names the field."""
    bad = data.draw(
        invalid_value(name).map(str)
        | st.text(st.characters(codec="ascii", exclude_characters="\n\x00"), max_size=12).filter(
            lambda t: not _valid_text(name, t)
        ),
        label=name,
    )
    assume(not _valid_text(name, bad))
    with pytest.raises(ConfigError, match=rf"\b{name}\b"):
        apply_overrides(Config(), [f"{name}={bad}"])


def _valid_text(name: str, text: str) -> bool:
    try:
        apply_overrides(Config(), [f"{name}={text}"])
    except ConfigError:
        return False
    return True


identifiers = st.from_regex(r"[a-z][a-z0-9_]{0,20}", fullmatch=True)


@PROPERTY
@given(identifiers.filter(lambda key: key not in ALL_FIELDS), st.sampled_from(["", "model.", "train."]))
def test_unknown_keys_are_named(key: str, prefix: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(f"'{prefix}{key}'")):
        apply_overrides(Config(), [f"{prefix}{key}=1"])


@PROPERTY
@given(st.sampled_from([n for n in ALL_FIELDS if len(n) >= 5]), st.data())
def test_a_typo_suggests_the_field(name: str, data: st.DataObject) -> None:
    """One character dropped or replaced: the error says "did you mean" with the intended field."""
    i = data.draw(st.integers(0, len(name) - 1), label="position")
    letter = data.draw(st.sampled_from("abcdefghijklmnopqrstuvwxyz_"), label="letter")
    typo = data.draw(st.sampled_from([name[:i] + name[i + 1 :], name[:i] + letter + name[i + 1 :]]), label="typo")
    assume(typo not in ALL_FIELDS)
    with pytest.raises(ConfigError, match=r"did you mean") as info:
        apply_overrides(Config(), [f"{typo}=1"])
    suggestion = str(info.value).split("did you mean", 1)[1].split("?", 1)[0]
    assert name in suggestion.split(" or ") or name in suggestion


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


@PROPERTY
@given(
    st.one_of(
        json_values,
        st.fixed_dictionaries(
            {},
            optional={
                "model": st.dictionaries(st.sampled_from(MODEL_FIELDS), json_values, max_size=4),
                "train": st.dictionaries(st.sampled_from(TRAIN_FIELDS), json_values, max_size=4),
            },
        ),
    )
)
def test_any_json_gives_a_config_or_a_config_error(data: Any) -> None:
    """Whatever a config.json or a checkpoint's metadata holds, reading it fails only with a ConfigError."""
    try:
        config = Config.from_json(json.dumps(data))
    except ConfigError:
        return
    assert isinstance(config, Config)


@settings(max_examples=15, deadline=None)
@given(configs(max_img_size=128))
def test_every_valid_model_config_builds_the_networks(config: Config) -> None:
    """Validation accepts only architectures that can be built (on the meta device: shapes, no memory)."""
    m = config.model
    with torch.device("meta"):
        nets = build_nets(m, init=False)
        y = torch.zeros(2, dtype=torch.long)
        s = nets.mapping_network(torch.zeros(2, m.latent_dim), y)
        assert s.shape == (2, m.style_dim)
        x = torch.zeros(2, 3, m.img_size, m.img_size)
        assert nets.style_encoder(x, y).shape == (2, m.style_dim)
        assert nets.discriminator(x, y).shape == (2,)
        masks = None if not m.uses_hpf else [torch.zeros(2, 1, m.img_size, m.img_size)] * 2
        assert nets.generator(x, s, masks=masks).shape == x.shape
