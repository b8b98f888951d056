"""What every checkpoint format shares: the error they raise, atomic writes and strict state-dict loading.

``stargan_v2.checkpoint`` (our safetensors files) and ``stargan_v2.official`` (the authors' torch files) build on
it; it imports nothing but torch.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

from torch import Tensor, nn

PathLike = str | os.PathLike[str]


class CheckpointError(ValueError):
    """A checkpoint is missing, of another kind, or does not fit the networks; the message says which."""


def _atomic_write(path: PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp)`` for a temporary file in the destination's folder, flush it, then rename it over
    ``path``; a failure leaves the old file (if any) untouched and no temporary file behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_net_state(module: nn.Module, state: Mapping[str, Tensor], what: str) -> None:
    """Load ``state`` into ``module`` strictly, failing with a message naming every mismatching tensor."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or wrong:
        lines = [f"{what} does not fit the network:"]
        for title, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", wrong)):
            if items:
                shown = ", ".join(items[:6]) + (f" ... (+{len(items) - 6} more)" if len(items) > 6 else "")
                lines.append(f"  {title} ({len(items)}): {shown}")
        lines.append("  Check img_size, num_domains, w_hpf and the channel widths against the file.")
        raise CheckpointError("\n".join(lines))
    module.load_state_dict(state, strict=True)


__all__ = ["CheckpointError", "PathLike", "load_net_state"]
