#!/usr/bin/env bash
# The CPU rows of docs/BENCHMARKS.md, one `stargan-v2 bench ... --json` object per line into $1
# (default bench_cpu.jsonl), each with the command that made it. Run it on an otherwise idle machine:
#   scripts/bench_cpu.sh results.jsonl            (about 9 minutes on a 2-core AVX2-only Zen 3)
# Ours and the authors' amount of work alternate, so a drift of the machine's speed shows in both.
set -euo pipefail
out="${1:-bench_cpu.jsonl}"
bench="${STARGAN_V2:-stargan-v2} bench"
demo="train --preset demo --batch-size 8 --warmup 3 --repeats 15 --no-flops"
c256="train --preset afhq --set w_hpf=0 --set max_conv_dim=64 --img-size 256 --batch-size 2 --warmup 1 --repeats 3 --no-flops"

row() {
    echo "+ stargan-v2 bench $*" >&2
    # shellcheck disable=SC2086
    $bench "$@" --json | python3 -c 'import json, sys; r = json.load(sys.stdin); r["command"] = sys.argv[1]; print(json.dumps(r))' "stargan-v2 bench $*" >> "$out"
}

# The demo preset (32 px, widths 16-64), batch 8: per-operator overhead dominates.
for _ in 1 2; do
    row $demo --impl authors
    row $demo
done
# Compiled G, F and E: first with an empty inductor cache (the warm-up then includes compiling from scratch,
# `warmup_sec` in the JSON), then again with the cache that run filled, then the authors' work once more.
TORCHINDUCTOR_CACHE_DIR="$(mktemp -d)"
export TORCHINDUCTOR_CACHE_DIR
row $demo --compile
row $demo --compile
unset TORCHINDUCTOR_CACHE_DIR
row $demo --impl authors
row train --preset demo --batch-size 8 --warmup 3 --repeats 5
row $demo --memory-format contiguous
row $demo --memory-format contiguous --resampling separate
row $demo --malloc system
row $demo --precision bf16 --warmup 1 --repeats 3
# 256 px, max_conv_dim=64, batch 2: arithmetic dominates.
row $c256 --impl authors
row $c256
row $c256 --memory-format contiguous
row $c256 --malloc system
