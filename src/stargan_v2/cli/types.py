"""Argument types of the ``stargan-v2`` command.

argparse reports their errors as "argument --flag: <message>", shows the usage and exits with status 2, so every
bad number names its flag without more code in the commands.
"""

from __future__ import annotations

import argparse
import math

import torch


def _int_at_least(text: str, minimum: int, wanted: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {wanted} (got {text!r})") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be {wanted} (got {value})")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1 (counts, sizes, steps)."""
    return _int_at_least(text, 1, "a positive integer")


def nonnegative_int(text: str) -> int:
    """An integer >= 0 (worker processes, seeds, optional extra passes)."""
    return _int_at_least(text, 0, "an integer >= 0")


def port_number(text: str) -> int:
    """A TCP port, 0 to 65535 (0 lets the system choose)."""
    value = nonnegative_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"must be a port number from 0 to 65535 (got {value})")
    return value


def finite_float(text: str) -> float:
    """Any finite number (``nan`` and ``inf`` parse as floats but are never meant)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number (got {text!r})") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number (got {text!r})")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0 (minutes, frames per second, megabytes)."""
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number (got {text})")
    return value


def eval_metric_list(text: str) -> tuple[str, ...]:
    """A comma-separated list of what ``train --eval-every`` measures (``stargan_v2.run.EVAL_METRICS``)."""
    from ..run import EVAL_METRICS

    names = tuple(t.strip() for t in text.split(",") if t.strip())
    bad = [n for n in names if n not in EVAL_METRICS]
    if not names or bad:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of {', '.join(EVAL_METRICS)} (got {text!r})")
    return names


def default_device() -> str:
    """``cuda`` where CUDA is available, else ``cpu``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def device_name(text: str) -> str:
    """A torch device that exists here (``cpu``, ``cuda``, ``cuda:1``, ``mps``), checked before any work starts."""
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"not a torch device: {text!r} (use cpu, cuda, cuda:N or mps)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(f"{text}: CUDA is not available on this machine (use --device cpu)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise argparse.ArgumentTypeError(f"{text}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise argparse.ArgumentTypeError(f"{text}: MPS is not available on this machine (use --device cpu)")
    return text
