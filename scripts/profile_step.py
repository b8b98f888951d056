"""Where a training iteration's time goes: torch.profiler over `bench train`, as a markdown table.

    python scripts/profile_step.py --preset demo --batch-size 8 [--impl authors] [--rows 12]

Profiles warm-up and timed iterations of ``stargan_v2.bench.bench_train`` (the same step as ``stargan-v2 bench
train``) on the CPU and prints the operators with the most self time, their calls per iteration, and the
number of operator calls per iteration: the figures behind the overhead discussion in docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse

import torch
from torch.profiler import ProfilerActivity, profile

from stargan_v2.bench import bench_train
from stargan_v2.config import preset
from stargan_v2.hardware import device_description


def main() -> None:
    """Profile, then print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--impl", choices=["ours", "authors"], default="ours")
    parser.add_argument("--iters", type=int, default=6, help="iterations profiled (1 warm-up + the rest)")
    parser.add_argument("--rows", type=int, default=12)
    args = parser.parse_args()
    config = preset(args.preset)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        bench_train(
            config,
            preset_name=args.preset,
            batch_size=args.batch_size,
            impl=args.impl,
            warmup=1,
            repeats=args.iters - 1,
            count_flops=False,
        )
    events = [e for e in prof.key_averages() if e.key.startswith("aten::") or "Optimizer" in e.key]
    total = sum(e.self_cpu_time_total for e in events)
    calls = sum(e.count for e in events if e.key.startswith("aten::"))
    print(
        f"{device_description(torch.device('cpu'))}; {args.impl}, "
        f"`--preset {args.preset} --batch-size {args.batch_size}`, {args.iters} iterations profiled"
    )
    print(f"\noperator calls per iteration: {calls / args.iters:,.0f}\n")
    print("| operator | self time, share | calls / iteration |\n|---|---|---|")
    for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[: args.rows]:
        share = e.self_cpu_time_total / total
        print(f"| `{e.key}` | {100 * share:.1f}% | {e.count / args.iters:,.0f} |")


if __name__ == "__main__":
    main()
