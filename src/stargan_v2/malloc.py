"""Keep freed memory inside the process (glibc), so CPU training does not pay for fresh pages on every tensor.

glibc's ``malloc`` serves every block above its mmap threshold (at most 32 MB) with a fresh ``mmap`` and gives
it back to the kernel on ``free``. A 256 px training iteration allocates and frees hundreds of feature maps of
that size, and the kernel zeroes every page again on first touch: on the project's 2-core CPU about 14 GB per
iteration at batch 2, about 30% of the iteration's time (``docs/BENCHMARKS.md``). With ``mmap`` off and the heap
not trimmed, freed blocks are reused instead. The price is a higher peak resident size (freed blocks stay
mapped, and the heap fragments). It changes no result.

``STARGAN_V2_MALLOC=system`` keeps the C library's defaults. Other C libraries (musl) and other systems are
left alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

#: ``mallopt`` parameter numbers from glibc's ``malloc.h``.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
#: The largest trim threshold ``mallopt`` takes (an ``int``): the heap is then practically never trimmed.
_NEVER_TRIM = 2**31 - 1
#: Values of ``STARGAN_V2_MALLOC``.
MALLOC_MODES = ("tuned", "system")

_tuned = False


def malloc_mode_from_env() -> str:
    """``STARGAN_V2_MALLOC`` (``tuned`` when unset); anything else is a ValueError that names the choices."""
    mode = os.environ.get("STARGAN_V2_MALLOC", "tuned").strip().lower() or "tuned"
    if mode not in MALLOC_MODES:
        raise ValueError(f"STARGAN_V2_MALLOC={mode!r}: set it to one of {', '.join(MALLOC_MODES)} or unset it")
    return mode


def malloc_state() -> str:
    """``tuned`` once ``tune_malloc`` has taken effect in this process, else ``system``."""
    return "tuned" if _tuned else "system"


def tune_malloc() -> bool:
    """Turn off glibc's per-block ``mmap`` and heap trimming for this process; True when it is now in effect.

    Safe to call more than once and at any time (it affects later allocations). Returns False, changing
    nothing, off Linux or when the C library has no ``mallopt``.
    """
    global _tuned
    if _tuned:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success; glibc applies each setting on its own.
    _tuned = mallopt(_M_MMAP_MAX, 0) == 1 and mallopt(_M_TRIM_THRESHOLD, _NEVER_TRIM) == 1
    return _tuned
