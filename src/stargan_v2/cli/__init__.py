"""The ``stargan-v2`` command. It only parses arguments and calls the library; the config does the rest.

One module per group of commands, each with its parsers and handlers:

- ``info``: ``summary``, ``config``;
- ``train``: ``train`` (and ``--resume``);
- ``synth``: ``sample``, ``translate``, ``video``;
- ``evaluate``: ``eval``, ``fid``;
- ``bench``: ``bench quality|train|synth``;
- ``data``: ``make-dataset``, ``align``;
- ``export``: ``export``;
- ``app``: ``serve``, ``demo``.

``common`` holds the arguments several commands share, ``types`` the argument types, and ``command`` assembles
the parser and runs a command.
"""

from __future__ import annotations

from .command import build_parser, main
from .common import DEMO_RUN, default_checkpoint
from .types import (
    device_name,
    eval_metric_list,
    finite_float,
    nonnegative_int,
    port_number,
    positive_float,
    positive_int,
)

__all__ = [
    "DEMO_RUN",
    "build_parser",
    "default_checkpoint",
    "device_name",
    "eval_metric_list",
    "finite_float",
    "main",
    "nonnegative_int",
    "port_number",
    "positive_float",
    "positive_int",
]
