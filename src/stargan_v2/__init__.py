"""StarGAN v2 (Choi et al., CVPR 2020) in PyTorch: diverse image-to-image translation across many domains.

The main entry points:

- ``Config`` / ``preset(name)``: the typed configuration (``stargan_v2.config``);
- ``build_nets(cfg.model)``: the generator, mapping network, style encoder and discriminator;
- ``load_official(path, fan_path=None)``: the authors' released ``*_nets_ema.ckpt`` / ``*_nets.ckpt`` files;
- ``init_train_state`` / ``train_step``: one training iteration (four updates, then EMA);
- ``save_training_state`` / ``load_training_state`` / ``save_ema`` / ``load_ema``: our own checkpoints;
- ``StarGANv2.from_checkpoint(path).translate(images, domain=...)``: translate images with a trained model.
"""

from ._version import __version__
from .api import StarGANv2
from .checkpoint import CheckpointError, load_ema, save_ema
from .config import Config, ConfigError, ModelConfig, TrainConfig, apply_overrides, preset
from .model import (
    Discriminator,
    Generator,
    MappingNetwork,
    Nets,
    StyleEncoder,
    build_nets,
)
from .official import OfficialModel, export_official, load_official
from .train import StepInputs, TrainState, init_train_state, train_step
from .training_state import load_training_state, save_training_state

__all__ = [
    "CheckpointError",
    "Config",
    "ConfigError",
    "Discriminator",
    "Generator",
    "MappingNetwork",
    "ModelConfig",
    "Nets",
    "OfficialModel",
    "StarGANv2",
    "StepInputs",
    "StyleEncoder",
    "TrainConfig",
    "TrainState",
    "__version__",
    "apply_overrides",
    "build_nets",
    "export_official",
    "init_train_state",
    "load_ema",
    "load_official",
    "load_training_state",
    "preset",
    "save_ema",
    "save_training_state",
    "train_step",
]
