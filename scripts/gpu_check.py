"""One prepared GPU check: speed, memory, a DDP (NCCL) run and determinism, in at most 8 minutes on one GPU.

    python scripts/gpu_check.py --out gpu_check/            # on a machine with a GPU
    python scripts/gpu_check.py --out /tmp/gc --dry-run     # anywhere: the same steps, tiny, on the CPU

It writes ``gpu_check.json`` (every measurement, the machine, what was skipped and why) and ``gpu_check.md`` (one
table) into ``--out``. What it measures, each against ``--impl authors`` (the same update with the authors'
amount of work, fp32, separate resampling):

* training and synthesis at 256 px (the released AFHQ architecture, batch 8): seconds per iteration,
  images/s, FLOP/s and the share of the card's peak (TF32 peak for fp32, since training turns TF32 on; bf16
  peak for bf16), peak CUDA memory; fp32 and bf16, contiguous and channels_last, eager and compiled;
* a short training run under ``torchrun`` with NCCL (one process per GPU);
* determinism: two ``--deterministic`` runs of the same seed give bit-identical weights.

A time budget (``--budget-s``, 420 s by default) is checked before each item: an item that would not fit is
skipped and listed. ``--dry-run`` runs every item on the CPU with the ``tiny`` preset (gloo instead of NCCL), so
that the test suite proves the script works (``tests/test_gpu_check.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

#: Dense peak TFLOP/s by GPU name fragment: (TF32, BF16). From NVIDIA's data sheets (SXM parts).
PEAK_TFLOPS = {
    "H200": (494.7, 989.4),
    "H100": (494.7, 989.4),
    "A100": (156.0, 312.0),
    "L40S": (183.0, 362.0),
    "A10G": (35.0, 70.0),
}


def peak_tflops(name: str, precision: str) -> float | None:
    """The card's dense peak for ``precision`` (fp32 counts as TF32), or ``None`` for an unknown card."""
    for fragment, (tf32, bf16) in PEAK_TFLOPS.items():
        if fragment in name:
            return tf32 if precision == "fp32" else bf16
    return None


class Budget:
    """Wall-clock budget: ``fits(seconds)`` says whether an item of about that length still fits."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()

    def fits(self, seconds: float) -> bool:
        return self.left() >= seconds


def _speed_rows(device: str, dry_run: bool, budget: Budget, skipped: list[str]) -> list[dict[str, Any]]:
    from stargan_v2.bench import bench_synth, bench_train
    from stargan_v2.config import preset

    if dry_run:
        config, name, batch, warmup, repeats = preset("tiny"), "tiny", 2, 0, 1
    else:
        config, name, batch, warmup, repeats = preset("afhq"), "afhq", 8, 2, 5
    # (kind, impl, precision, memory format, compile, seconds it may take)
    plan = [
        ("train", "authors", "auto", "auto", False, 30),
        ("train", "ours", "fp32", "contiguous", False, 30),
        ("train", "ours", "fp32", "channels_last", False, 30),
        ("train", "ours", "bf16", "contiguous", False, 30),
        ("train", "ours", "bf16", "channels_last", False, 30),
        ("synth", "authors", "auto", "auto", False, 15),
        ("synth", "ours", "fp32", "channels_last", False, 15),
        ("synth", "ours", "bf16", "channels_last", False, 15),
        ("train", "ours", "bf16", "channels_last", True, 150),
        ("train", "ours", "fp32", "channels_last", True, 150),
    ]
    rows = []
    for kind, impl, precision, memory_format, compiled, seconds in plan:
        label = f"{kind} {impl} {precision} {memory_format}{' compiled' if compiled else ''}"
        if compiled and dry_run:
            skipped.append(f"{label}: compiling takes minutes on a CPU (dry run)")
            continue
        if not budget.fits(seconds + 120):  # keep time for the DDP and determinism runs
            skipped.append(f"{label}: not enough of the time budget left")
            continue
        bench = bench_train if kind == "train" else bench_synth
        result = bench(
            config,
            preset_name=name,
            batch_size=batch,
            device=device,
            precision=precision,
            memory_format=memory_format,
            compile_nets=compiled,
            impl=impl,
            warmup=warmup + (1 if compiled else 0),
            repeats=repeats,
            count_flops=not compiled,  # the same FLOPs as the eager row; the counter does not see compiled code
        )
        s = result.settings
        flops = result.flops_per_iter
        if compiled:
            eager = [r for r in rows if (r["kind"], r["precision"], r["compile"]) == (kind, s["precision"], False)]
            flops = eager[0]["flops_per_iter"] if eager else None
        peak = peak_tflops(result.machine["device_name"], str(s["precision"]))
        tflops = flops / result.sec_per_iter / 1e12 if flops else None
        rows.append(
            {
                "kind": kind,
                "impl": impl,
                "precision": s["precision"],
                "channels_last": s["channels_last"],
                "compile": compiled,
                "resampling": s.get("resampling", "fused" if impl == "ours" else "separate"),
                "batch_size": batch,
                "sec_per_iter": result.sec_per_iter,
                "images_per_sec": result.images_per_sec,
                "flops_per_iter": flops,
                "tflops": tflops,
                "peak_share": tflops / peak if tflops and peak else None,
                "peak_mem_mb": result.peak_mem_mb,
            }
        )
    for row in rows:  # each against the authors' iteration of the same kind
        base = next((r for r in rows if r["kind"] == row["kind"] and r["impl"] == "authors"), None)
        row["vs_authors"] = base["sec_per_iter"] / row["sec_per_iter"] if base else None
    return rows


def _dataset(out: Path) -> Path:
    from stargan_v2.procedural import make_dataset

    return make_dataset(out / "data", size=32, per_domain=8, val_per_domain=2, seed=0)


def _train_cmd(data: Path, run_dir: Path, device: str, iters: int, *extra: str) -> list[str]:
    return [
        "-m", "stargan_v2", "train", "--data", str(data / "train"), "--preset", "tiny", "--set", "num_domains=3",
        "--run-dir", str(run_dir), "--iters", str(iters), "--batch-size", "4", "--device", device, "--no-progress",
        "--set", "save_every=1000", "--set", "sample_every=1000", *extra,
    ]  # fmt: skip


def _ddp_run(out: Path, data: Path, device: str, dry_run: bool) -> dict[str, Any]:
    """A short training run under torchrun: NCCL, one process per GPU (gloo on the CPU in a dry run)."""
    nproc = 2 if dry_run else max(1, torch.cuda.device_count())
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    cmd += _train_cmd(data, out / "ddp_run", device, 20)
    t = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=os.environ)
    seconds = time.monotonic() - t
    log = (out / "ddp_run" / "log.txt").read_text() if (out / "ddp_run" / "log.txt").is_file() else ""
    return {
        "processes": nproc,
        "backend": "gloo" if dry_run else "nccl",
        "returncode": done.returncode,
        "seconds": seconds,
        "finished": "stopped at step 20: finished" in log,
        "stderr_tail": done.stderr[-2000:] if done.returncode else "",
    }


def _determinism(out: Path, data: Path, device: str) -> dict[str, Any]:
    """Two --deterministic runs of the same seed: are their final weights bit-identical?"""
    from safetensors.torch import load_file

    states = []
    for k in (1, 2):
        run_dir = out / f"deterministic_{k}"
        cmd = [sys.executable, *_train_cmd(data, run_dir, device, 10, "--deterministic")]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if done.returncode:
            return {"identical": False, "error": done.stderr[-2000:]}
        states.append(load_file(run_dir / "checkpoints" / "state_000010.safetensors"))
    a, b = states
    differing = [k for k in a if not torch.equal(a[k], b[k])]
    return {"identical": not differing and a.keys() == b.keys(), "differing_tensors": differing[:10]}


def _markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# GPU check: {report['device_name']}",
        "",
        f"PyTorch {report['torch']}, CUDA {report['cuda']}; {report['when']}; {report['seconds']:.0f} s in all"
        f"{' (dry run on the CPU, tiny preset)' if report['dry_run'] else ''}.",
        "",
        "| what | impl | precision | layout | compiled | s / iteration | images/s | vs authors | TFLOP/s | of peak "
        "| peak memory |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["speed"]:
        lines.append(
            f"| {r['kind']} | {r['impl']} | {r['precision']} | {'channels_last' if r['channels_last'] else 'NCHW'} "
            f"| {'yes' if r['compile'] else 'no'} | {r['sec_per_iter']:.4f} | {r['images_per_sec']:.1f} "
            f"| {_x(r['vs_authors'])} | {_f(r['tflops'], 2)} | {_pct(r['peak_share'])} | {r['peak_mem_mb']:.0f} MB |"
        )
    d = report.get("ddp")
    if d:
        lines += ["", f"DDP ({d['backend']}, {d['processes']} process(es)): returncode {d['returncode']}, "
                  f"finished: {d['finished']}, {d['seconds']:.0f} s."]  # fmt: skip
    det = report.get("determinism")
    if det:
        lines += ["", f"Determinism (`--deterministic`, two runs): bit-identical weights: {det['identical']}."]
    if report["skipped"]:
        lines += ["", "Skipped: " + "; ".join(report["skipped"]) + "."]
    return "\n".join(lines) + "\n"


def _x(v: float | None) -> str:
    return "" if v is None else f"{v:.2f}x"


def _f(v: float | None, digits: int) -> str:
    return "" if v is None else f"{v:.{digits}f}"


def _pct(v: float | None) -> str:
    return "" if v is None else f"{100 * v:.1f}%"


def main(argv: list[str] | None = None) -> int:
    """Run the check and write ``gpu_check.json`` and ``gpu_check.md``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder for gpu_check.json, gpu_check.md and the runs")
    parser.add_argument("--dry-run", action="store_true", help="every step, tiny, on the CPU")
    parser.add_argument("--budget-s", type=float, default=420.0, help="wall-clock budget in seconds (default 420)")
    args = parser.parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; run it on a GPU machine, or pass --dry-run", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = "cpu" if args.dry_run else "cuda"
    budget, start, skipped = Budget(args.budget_s), time.monotonic(), []
    report: dict[str, Any] = {
        "device_name": torch.cuda.get_device_name(0) if device == "cuda" else "CPU (dry run)",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "dry_run": args.dry_run,
        "skipped": skipped,
    }
    report["speed"] = _speed_rows(device, args.dry_run, budget, skipped)
    data = _dataset(out)
    if budget.fits(60):
        report["ddp"] = _ddp_run(out, data, device, args.dry_run)
    else:
        skipped.append("the DDP run: not enough of the time budget left")
    if budget.fits(40):
        report["determinism"] = _determinism(out, data, device)
    else:
        skipped.append("the determinism check: not enough of the time budget left")
    report["seconds"] = time.monotonic() - start
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (out / "gpu_check.md").write_text(_markdown(report), encoding="utf-8")
    print(_markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
