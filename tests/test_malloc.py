"""The allocator setting: freed memory is reused instead of being mapped (and zeroed) again, and it can be off."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc tuning is Linux-only")

# Allocate, touch and free a 64 MB block with the C library five times after a first one; print the minor page
# faults of those five. (Through the C library directly: a tensor's own small allocations, made between two
# large ones, may be carved out of the freed block and push the next one to fresh memory, by chance.)
_FAULTS = """
import ctypes, ctypes.util, resource, sys
from stargan_v2.malloc import malloc_state, tune_malloc
if sys.argv[1] == "tuned":
    assert tune_malloc() and tune_malloc() and malloc_state() == "tuned"
libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
size = 64 * 2**20
def touch():
    block = libc.malloc(size)
    libc.memset(block, 1, size)
    libc.free(block)
touch()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    touch()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _run(args: list[str], env: dict[str, str] | None = None) -> str:
    full_env = {**os.environ, **(env or {})}
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=full_env, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.slow
def test_tuned_malloc_reuses_freed_blocks() -> None:
    system = int(_run(["-c", _FAULTS, "system"]))
    tuned = int(_run(["-c", _FAULTS, "tuned"]))
    # With the C library's defaults every 64 MB block is a fresh mapping (16k faults with 4 KB pages, fewer
    # with transparent huge pages); tuned, the freed block is reused.
    assert tuned <= system / 4 + 50, (tuned, system)


@pytest.mark.parametrize(
    "extra, env, want",
    [([], {}, "tuned"), (["--impl", "authors"], {}, "system"), ([], {"STARGAN_V2_MALLOC": "system"}, "system")],
    ids=["default", "authors-baseline", "env-off"],
)
@pytest.mark.slow
def test_commands_tune_malloc_unless_told_not_to(extra: list[str], env: dict[str, str], want: str) -> None:
    argv = ["-m", "stargan_v2", "bench", "synth", "--preset", "tiny", "--batch-size", "1", "--warmup", "0"]
    out = _run([*argv, "--repeats", "1", "--no-flops", "--json", *extra], env)
    assert json.loads(out)["settings"]["malloc"] == want


@pytest.mark.slow
def test_a_bad_malloc_setting_is_named() -> None:
    argv = [sys.executable, "-m", "stargan_v2", "bench", "synth", "--preset", "tiny", "--repeats", "1"]
    done = subprocess.run(
        argv, capture_output=True, text=True, env={**os.environ, "STARGAN_V2_MALLOC": "fast"}, timeout=300
    )
    assert done.returncode == 2 and "STARGAN_V2_MALLOC='fast'" in done.stderr and "tuned, system" in done.stderr
