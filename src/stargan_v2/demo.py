"""The demo: StarGAN v2 learning on the built-in dataset, on a laptop CPU, with nothing downloaded.

``run_demo`` makes the procedural dataset (three animal-head domains), trains the ``demo`` preset for a bounded
time, measures the translations with the quality benchmark (``stargan_v2.metrics.quality``) and writes a
report (``report.md`` and ``report.html``) with the sample grids and the figures into one folder.
"""

from __future__ import annotations

import html
import json
import math
import platform
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .checkpoint import load_ema
from .config import Config, preset
from .procedural import make_dataset
from .run import RunOptions, list_states, train


@dataclass(frozen=True)
class DemoOptions:
    """What the demo does; the defaults are the README's command."""

    out: Path = Path("demo_output")
    minutes: float = 10.0
    seed: int = 0
    per_domain: int = 1000
    val_per_domain: int = 100
    data_size: int = 64
    device: str = "cpu"
    workers: int = 0
    progress: bool = True
    eval_sources_per_domain: int = 30


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    threads = torch.get_num_threads()
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)}"
    return f"CPU {cpu}, {threads} torch threads"


def run_demo(options: DemoOptions, config: Config | None = None) -> Path:
    """Dataset, training, quality figures and the report; returns the report's path (``report.html``)."""
    from .metrics.quality import quality_report

    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    config = config or preset("demo")

    # 1. The built-in dataset (re-used when it already exists with the same arguments).
    t0 = time.monotonic()
    data = make_dataset(
        out / "data",
        size=options.data_size,
        per_domain=options.per_domain,
        val_per_domain=options.val_per_domain,
        seed=options.seed,
        workers=2,
    )
    print(f"dataset: {data} ({time.monotonic() - t0:.1f} s)")

    # 2. Training, bounded in time; a second demo in the same folder continues the same run. The time budget is
    #    what stops it: the step count is raised to a cap that assumes 0.25 s a step (about what a 2-core CPU
    #    does), so a longer --minutes or a second demo gives the model more steps. The diversity weight's decay
    #    (ds_iter) stays as configured.
    run_dir = out / "run"
    states = list_states(run_dir)
    start = states[-1][0] if states else 0
    cap = max(config.train.total_iters, start + math.ceil(options.minutes * 60 / 0.25) + 1)
    config = config.override([f"total_iters={cap}"])
    result = train(
        config,
        RunOptions(
            run_dir=run_dir,
            data=data / "train",
            val_data=data / "val",
            resume=bool(list_states(run_dir)),
            num_workers=options.workers,
            device=options.device,
            max_seconds=options.minutes * 60,
            progress=options.progress,
        ),
        explicit={"total_iters"},
    )
    print(f"training: {result.reason} at step {result.step} ({result.seconds:.0f} s)")

    # 3. The quality figures of the EMA nets.
    nets, trained = load_ema(result.ema_path, device=options.device)
    t0 = time.monotonic()
    figures = quality_report(
        nets,
        trained.model,
        data,
        max_sources_per_domain=options.eval_sources_per_domain,
        device=options.device,
    )
    figures["seconds"] = time.monotonic() - t0
    (out / "quality.json").write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")

    # 4. The report, with the newest sample grids copied beside it.
    samples = {}
    for kind in ("reference", "latent", "cycle"):
        found = sorted((run_dir / "samples").glob(f"*_{kind}.png"))
        if found:
            samples[kind] = shutil.copyfile(found[-1], out / f"{kind}.png")
    info = {
        "step": result.step,
        "stopped": result.reason,
        "train_seconds": round(result.seconds, 1),
        "machine": _machine(),
        "config": trained.to_dict(),
    }
    return write_report(out, info, figures, samples)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _tables(figures: dict[str, Any]) -> list[tuple[str, list[tuple[str, str]]]]:
    tables = []
    for section in ("latent", "reference", "real", "oracle"):
        values = figures.get(section)
        if isinstance(values, dict):
            tables.append((section, [(k, _fmt(v)) for k, v in values.items() if not isinstance(v, (dict, list))]))
    return tables


def write_report(out: Path, info: dict[str, Any], figures: dict[str, Any], samples: dict[str, Path]) -> Path:
    """``report.md`` and ``report.html`` in ``out``; returns the HTML file's path."""
    captions = {
        "reference": "Reference-guided: sources across the top, one row per reference (left); each output "
        "should have the reference's domain (head shape) and colours, and the source's pose and background.",
        "latent": "Latent-guided: sources on top, then rows per target domain (cat, dog, fox), each row one "
        "random style code.",
        "cycle": "Cycle: sources, their translations, and the translations mapped back with the source's style.",
    }
    lines = [
        "# StarGAN v2 demo",
        "",
        f"Trained the `demo` preset for {info['step']} steps ({info['train_seconds']} s, stopped: "
        f"{info['stopped']}) on {info['machine']}.",
        "",
    ]
    for kind, path in samples.items():
        lines += [f"## {kind.capitalize()}", "", captions[kind], "", f"![{kind}]({path.name})", ""]
    lines += ["## Quality (built-in dataset, the paper's protocol with an oracle network)", ""]
    for section, rows in _tables(figures):
        lines += [f"### {section}", "", "| figure | value |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in rows]
        lines.append("")
    lines += ["Full figures: `quality.json`. Config: `run/config.json`.", ""]
    (out / "report.md").write_text("\n".join(lines), encoding="utf-8")

    body = [f"<h1>StarGAN v2 demo</h1><p>{html.escape(lines[2])}</p>"]
    for kind, path in samples.items():
        body.append(
            f"<h2>{kind.capitalize()}</h2><p>{html.escape(captions[kind])}</p>"
            f'<img src="{path.name}" style="image-rendering: pixelated; width: min(100%, 960px)">'
        )
    body.append("<h2>Quality</h2>")
    for section, rows in _tables(figures):
        cells = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in rows)
        body.append(f"<h3>{section}</h3><table>{cells}</table>")
    page = (
        "<!doctype html><meta charset='utf-8'><title>StarGAN v2 demo</title>"
        "<style>body{font-family:sans-serif;max-width:1000px;margin:2em auto}td{padding:2px 12px}</style>"
        + "".join(body)
    )
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
