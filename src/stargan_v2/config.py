"""Typed, frozen configuration and the named presets.

Field names follow the authors' command-line arguments (``img_size``, ``lambda_ds``, ``f_lr`` ...) so that
people coming from their code find what they know. Defaults are the paper's (Section 4 and Appendix) and the
released models' (see ``docs/paper.md``, "Defaults and presets"). A config is validated once, when it is
built, and every error names the field at fault. Nothing in the package mutates a config: schedules such as
the diversity weight are functions of the step (``stargan_v2.losses.ds_weight``).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field and what would be valid."""


#: The largest image size: the data loader refuses images above 8192 x 8192 pixels
#: (``stargan_v2.data.MAX_IMAGE_PIXELS``), so a larger model could never be trained.
MAX_IMG_SIZE = 8192
#: Seeds are given to ``torch.manual_seed``, which takes 64-bit values; non-negative ones below 2**63 also fit
#: every other generator a seed may reach.
MAX_SEED = 2**63 - 1


def _is_power_of_two(n: int) -> bool:
    return n > 0 and (n & (n - 1)) == 0


def _is_int(value: Any) -> bool:
    # bool is a subclass of int in Python, but `num_domains=true` is a mistake, not 1.
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    """A finite int or float, not a bool; an int too large for a float is not one either (torch needs floats)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond 1.8e308
        return False


def _check_int(name: str, value: Any, minimum: int = 1, maximum: int | None = None) -> None:
    """Fail naming ``name`` unless ``value`` is an integer in ``[minimum, maximum]``."""
    if not _is_int(value) or value < minimum or (maximum is not None and value > maximum):
        if maximum is not None:
            wanted = f"an integer in [{minimum}, {maximum}]"
        else:
            wanted = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ConfigError(f"{name} must be {wanted} (got {value!r})")


def _check_number(
    name: str, value: Any, low: float, high: float = math.inf, *, open_low: bool = False, open_high: bool = False
) -> None:
    """Fail naming ``name`` unless ``value`` is a finite number in the interval from ``low`` to ``high``."""
    ok = _is_number(value) and (value > low if open_low else value >= low)
    ok = ok and (value < high if open_high else value <= high)
    if not ok:
        if high == math.inf:
            wanted = "a positive number" if open_low and low == 0 else f"a finite number >= {low:g}"
        else:
            wanted = f"in {'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}"
        raise ConfigError(f"{name} must be {wanted} (got {value!r})")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of the four networks (and whether the high-pass path is used).

    ``dim_in`` is the width of the first convolution; ``None`` means the released rule ``2**14 // img_size``
    (64 at 256 px). Widths double at every downsampling, capped at ``max_conv_dim``. ``hidden_dim`` is the
    width of the mapping network's layers. ``w_hpf > 0`` turns on the high-pass path of the CelebA-HQ model,
    whose filter is divided by ``w_hpf``.

    ``g_bottleneck`` is the side of the generator's bottleneck feature map, in pixels; ``None`` means the
    released rule: 16 px whatever the image size (8 px with the high-pass path), i.e. ``log2(img_size) - 4``
    downsamplings. A smaller bottleneck gives G a larger receptive field (the ``demo`` preset uses it at
    32 px, where the released rule would downsample only once). The authors' code cannot build other values.
    """

    img_size: int = 256
    num_domains: int = 2
    latent_dim: int = 16
    style_dim: int = 64
    hidden_dim: int = 512
    dim_in: int | None = None
    max_conv_dim: int = 512
    w_hpf: float = 0.0
    g_bottleneck: int | None = None

    def __post_init__(self) -> None:
        size = self.img_size
        if not _is_int(size) or not _is_power_of_two(size) or not 16 <= size <= MAX_IMG_SIZE:
            # 16 px: E and D downsample log2(img_size) - 2 times to 4 x 4 before their last 4 x 4 convolution.
            raise ConfigError(f"img_size must be a power of two from 16 to {MAX_IMG_SIZE} (got {size!r})")
        for name in ("num_domains", "latent_dim", "style_dim", "hidden_dim", "max_conv_dim"):
            _check_int(name, getattr(self, name))
        if self.dim_in is not None and (not _is_int(self.dim_in) or self.dim_in < 1):
            raise ConfigError(f"dim_in must be a positive integer or None for 2**14 // img_size (got {self.dim_in!r})")
        if self.first_dim < 1:
            raise ConfigError(f"dim_in resolves to {self.first_dim} at img_size={self.img_size}; set dim_in explicitly")
        _check_number("w_hpf", self.w_hpf, 0)
        bottleneck = self.g_bottleneck
        # Instance norm needs more than one value per channel, so the bottleneck is at least 2 x 2.
        if bottleneck is not None and (
            not _is_int(bottleneck) or not _is_power_of_two(bottleneck) or not 2 <= bottleneck <= size
        ):
            raise ConfigError(
                f"g_bottleneck must be a power of two from 2 to img_size={size}, or None for the released rule "
                f"(got {bottleneck!r})"
            )

    @property
    def first_dim(self) -> int:
        """Width of the first convolution of G, E and D (``dim_in`` or ``2**14 // img_size``)."""
        return self.dim_in if self.dim_in is not None else 2**14 // self.img_size

    @property
    def uses_hpf(self) -> bool:
        """Whether the generator has the high-pass (face mask) path."""
        return self.w_hpf > 0


@dataclass(frozen=True)
class TrainConfig:
    """Objective weights, optimiser settings and schedule of training.

    ``ref_step_updates_all`` chooses what the reference-guided generator update steps: the authors step only
    G (``False``, the default); ``True`` also steps the mapping network and the style encoder.
    ``print_every``, ``sample_every`` and ``save_every`` are the intervals (in steps) of the log, the sample
    grids and the checkpoints of a training run.

    ``lambda_wrong_domain`` (0 in the paper) weighs an extra term of the discriminator's objective: each real
    image, scored by the heads of the *other* domains, should be called fake there (a matching-aware
    discriminator, as in text-to-image GANs). It teaches the heads the domains' differences from the first
    step, before fakes are good enough to teach them; the ``demo`` preset uses it.
    """

    lambda_reg: float = 1.0
    lambda_sty: float = 1.0
    lambda_ds: float = 1.0
    lambda_cyc: float = 1.0
    lambda_wrong_domain: float = 0.0
    ds_iter: int = 100_000
    lr: float = 1e-4
    f_lr: float = 1e-6
    beta1: float = 0.0
    beta2: float = 0.99
    weight_decay: float = 1e-4
    ema_beta: float = 0.999
    batch_size: int = 8
    total_iters: int = 100_000
    randcrop_prob: float = 0.5
    seed: int = 777
    ref_step_updates_all: bool = False
    print_every: int = 10
    sample_every: int = 5000
    save_every: int = 10000

    def __post_init__(self) -> None:
        for name in ("lambda_reg", "lambda_sty", "lambda_ds", "lambda_cyc", "lambda_wrong_domain", "weight_decay"):
            _check_number(name, getattr(self, name), 0)
        for name in ("lr", "f_lr"):
            _check_number(name, getattr(self, name), 0, open_low=True)
        for name in ("beta1", "beta2", "ema_beta"):
            # A beta of 1 would freeze Adam's moment estimates or the EMA nets at their first value.
            _check_number(name, getattr(self, name), 0, 1, open_high=True)
        for name in ("ds_iter", "batch_size", "total_iters", "print_every", "sample_every", "save_every"):
            _check_int(name, getattr(self, name))
        _check_number("randcrop_prob", self.randcrop_prob, 0, 1)
        _check_int("seed", self.seed, 0, MAX_SEED)
        if not isinstance(self.ref_step_updates_all, bool):
            raise ConfigError(f"ref_step_updates_all must be true or false (got {self.ref_step_updates_all!r})")


@dataclass(frozen=True)
class Config:
    """The whole configuration of a run: the architecture and the training settings."""

    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """A JSON-ready nested dict (``{"model": {...}, "train": {...}}``)."""
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        """The config as indented JSON, as written into run directories and checkpoints."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Config:
        """Build a config from ``to_dict`` output; unknown fields are an error that names them."""
        sections = {"model": ModelConfig, "train": TrainConfig}
        if not isinstance(data, Mapping):
            raise ConfigError(
                f"a config must be an object with 'model' and 'train' sections, got {type(data).__name__}"
            )
        unknown = set(data) - set(sections)
        if unknown:
            raise ConfigError(f"unknown config section(s) {sorted(map(str, unknown))}; expected 'model' and 'train'")
        built = {}
        for name, section_cls in sections.items():
            section = data.get(name, {})
            if not isinstance(section, Mapping):
                raise ConfigError(f"config section '{name}' must be an object of fields, got {type(section).__name__}")
            values = dict(section)
            names = {f.name for f in fields(section_cls)}
            extra = set(values) - names
            if extra:
                raise ConfigError(f"unknown field(s) {sorted(map(str, extra))} in config section '{name}'")
            built[name] = section_cls(**values)
        return cls(**built)

    @classmethod
    def from_json(cls, text: str) -> Config:
        """Inverse of ``to_json``; text that is not JSON is a ConfigError too."""
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"the config is not valid JSON ({exc})") from None
        return cls.from_dict(data)

    def override(self, assignments: Iterable[str]) -> Config:
        """Apply ``key=value`` strings (the CLI's ``--set``); see ``apply_overrides``."""
        return apply_overrides(self, assignments)


def _field_owner(key: str) -> tuple[str, dataclasses.Field[Any]]:
    """Find which section holds ``key`` (``img_size`` or ``model.img_size``)."""
    sections = {"model": ModelConfig, "train": TrainConfig}
    if "." in key:
        section, name = key.split(".", 1)
        if section not in sections:
            raise ConfigError(f"unknown config section '{section}' in '{key}'; use 'model.' or 'train.'")
        candidates = [section]
    else:
        name = key
        candidates = list(sections)
    for section in candidates:
        for f in fields(sections[section]):
            if f.name == name:
                return section, f
    known = sorted(f.name for cls in sections.values() for f in fields(cls))
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    raise ConfigError(f"unknown config field '{key}'; {hint}known fields: {', '.join(known)}")


def _parse_value(key: str, raw: str, current: Any, annotation: str) -> Any:
    """Turn the text of ``--set key=value`` into the field's type."""
    text = raw.strip()
    if text.lower() in ("none", "null") and "None" in annotation:
        return None
    try:
        if annotation.startswith("bool"):
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if annotation.startswith("int"):
            try:
                return int(text)  # exact, however large (float() would round a long seed)
            except ValueError:
                value = float(text)  # also take 1e3 and 64.0
            if not value.is_integer():
                raise ValueError
            return int(value)
        if annotation.startswith("float"):
            return float(text)
    except ValueError:  # also float('1e400'), which is inf and so not an integer
        raise ConfigError(f"--set {key}={raw}: expected a value of type {annotation}") from None
    return type(current)(text) if current is not None else text


def apply_overrides(config: Config, assignments: Iterable[str]) -> Config:
    """Return a new config with ``key=value`` assignments applied (``lambda_ds=2``, ``model.img_size=128``).

    Keys are field names; prefix with ``model.`` or ``train.`` if you like. Values are parsed by the field's
    type, and the result is validated as a whole, so a bad value fails with a message naming the field.
    """
    changes: dict[str, dict[str, Any]] = {"model": {}, "train": {}}
    for item in assignments:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value (got {item!r})")
        key, raw = item.split("=", 1)
        section, f = _field_owner(key.strip())
        current = getattr(getattr(config, section), f.name)
        changes[section][f.name] = _parse_value(key, raw, current, str(f.type))
    return Config(
        model=dataclasses.replace(config.model, **changes["model"]),
        train=dataclasses.replace(config.train, **changes["train"]),
    )


def _presets() -> dict[str, Config]:
    return {
        # AFHQ (cat, dog, wildlife) as released: 256 px, three domains, no high-pass path.
        "afhq": Config(
            ModelConfig(img_size=256, num_domains=3, w_hpf=0.0),
            TrainConfig(lambda_sty=1.0, lambda_ds=2.0, lambda_cyc=1.0),
        ),
        # CelebA-HQ (female, male) as released: 256 px, two domains, high-pass path on.
        "celeba_hq": Config(
            ModelConfig(img_size=256, num_domains=2, w_hpf=1.0),
            TrainConfig(lambda_sty=1.0, lambda_ds=1.0, lambda_cyc=1.0),
        ),
        # The demo: the built-in dataset at 32 px, small enough to train on a 2-core laptop CPU in about ten
        # minutes (0.2 s a step on an AMD EPYC Zen 4, about 0.3 s on a Zen 3). A run this short needs two
        # departures from the paper: the EMA averages over about 100 steps
        # instead of 1000 (with beta=0.999 the EMA nets still hold 0.999**1000 = 37% of the random initialisation
        # at step 1000); and D's heads are told from the start that a real image of another domain is not theirs
        # (lambda_wrong_domain=2): without it D learns the domains' shapes only once fakes are good, and after
        # 1000 steps the oracle found the target's head shape in about half of the translations instead of 0.98.
        # The mapping network keeps the paper's f_lr=1e-6: at f_lr=1e-4 (this preset before 2026-12-07) its
        # styles shrank during training and one source's latent-guided outputs looked alike (diversity 0.05
        # against 0.11 after 10 minutes). docs/quality.md has the measurements behind these choices.
        "demo": Config(
            ModelConfig(
                img_size=32,
                num_domains=3,
                latent_dim=16,
                style_dim=32,
                hidden_dim=64,
                dim_in=16,
                max_conv_dim=64,
            ),
            TrainConfig(
                lambda_ds=1.0,
                lambda_wrong_domain=2.0,
                ds_iter=2000,
                ema_beta=0.99,
                batch_size=8,
                total_iters=2000,
                print_every=10,
                sample_every=500,
                save_every=500,
            ),
        ),
        # A network small enough that a full training step takes milliseconds on a CPU; used by the tests.
        "tiny": Config(
            ModelConfig(
                img_size=32, num_domains=2, latent_dim=8, style_dim=16, hidden_dim=32, dim_in=8, max_conv_dim=32
            ),
            TrainConfig(lambda_ds=1.0, ds_iter=100, batch_size=4, total_iters=100),
        ),
    }


PRESETS: Mapping[str, Config] = _presets()


def preset(name: str) -> Config:
    """The named preset (``afhq``, ``celeba_hq``, ``demo``, ``tiny``); an unknown name lists the known ones."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown preset '{name}'; choose one of: {', '.join(sorted(PRESETS))}") from None
