"""The demo: StarGAN v2 learning on the built-in dataset, on a laptop CPU, with nothing downloaded.

``run_demo`` makes the procedural dataset (three animal-head domains), trains the ``demo`` preset for a time
budget while the oracle of the quality benchmark measures it (``train --eval-every``), scores the final model,
and writes a report (``report.md`` and ``report.html``) with enlarged sample grids, one table of figures and
their curve against training steps and minutes. The demo model shipped with the package is shown beside the
freshly trained one, each labelled.
"""

from __future__ import annotations

import html
import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .checkpoint import load_ema
from .config import Config, preset
from .hardware import device_description
from .model import Nets
from .procedural import make_dataset
from .run import RunOptions, list_states, sample_batch, train
from .speed import resolve_speed

#: The issue's bar for a convincing demo (quality figures of the oracle).
TARGETS = {"domain_accuracy": 0.90, "pose_error_center_rel": 0.10}


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
    #: Validation sources per domain of the final quality figures (10 outputs each, 6 tasks, 2 modes).
    eval_sources_per_domain: int = 30
    #: Steps between measurements during training, and the sources per domain they translate.
    eval_every: int = 250
    monitor_sources: int = 8
    #: Show the demo model shipped with the package beside the freshly trained one.
    shipped: bool = True


def run_demo(options: DemoOptions, config: Config | None = None) -> Path:
    """Dataset, training, quality figures and the report; returns the report's path (``report.html``)."""
    from .metrics.quality import quality_report

    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    config = config or preset("demo")
    settings = resolve_speed(options.device, config.model)
    machine = device_description(options.device)
    print(f"machine: {machine}; PyTorch {torch.__version__}; {settings.describe()}", flush=True)

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
    print(f"dataset: {data} ({time.monotonic() - t0:.1f} s)", flush=True)

    # 2. Training, bounded in time; a second demo in the same folder continues the same run. The time budget is
    #    what stops it: the step count is raised to a cap no CPU reaches in the budget, so a longer --minutes or
    #    a second demo gives the model more steps. The diversity weight's decay (ds_iter) stays as configured.
    run_dir = out / "run"
    states = list_states(run_dir)
    start = states[-1][0] if states else 0
    cap = max(config.train.total_iters, start + math.ceil(options.minutes * 60 / 0.02) + 1)
    config = config.override([f"total_iters={cap}"])
    print(
        f"training for {options.minutes:g} minutes (the oracle measures the model every {options.eval_every} steps; "
        "on first use it is trained once, about 2 minutes, before training starts)",
        flush=True,
    )
    result = train(
        config,
        RunOptions(
            run_dir=run_dir,
            data=data / "train",
            val_data=data / "val",
            resume=bool(states),
            num_workers=options.workers,
            device=options.device,
            max_seconds=options.minutes * 60,
            progress=options.progress,
            eval_every=options.eval_every,
            eval_sources=options.monitor_sources,
        ),
        explicit={"total_iters"},
    )
    print(f"training: {result.reason} at step {result.step} ({result.seconds:.0f} s)", flush=True)

    # 3. The quality figures of the EMA nets, and of the shipped model for comparison.
    nets, trained = load_ema(result.ema_path, device=options.device)
    models: dict[str, tuple[Nets, Config, str]] = {
        "this run": (nets, trained, f"trained here: {result.step} steps, {result.seconds / 60:.1f} min")
    }
    if options.shipped:
        from .assets import shipped_demo_model

        shipped = shipped_demo_model(options.device)
        if shipped is not None:
            models["shipped model"] = (shipped[0], shipped[1], shipped[2])
    figures: dict[str, Any] = {}
    t0 = time.monotonic()
    for name, (model_nets, model_config, _) in models.items():
        figures[name] = quality_report(
            model_nets,
            model_config.model,
            data,
            max_sources_per_domain=options.eval_sources_per_domain,
            device=options.device,
        )
    (out / "quality.json").write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    print(f"quality figures ({time.monotonic() - t0:.1f} s): {_summary(figures['this run'])}", flush=True)

    # 4. The report.
    info = {
        "machine": machine,
        "torch": torch.__version__,
        "settings": settings.describe(),
        "step": result.step,
        "stopped": result.reason,
        "train_seconds": result.seconds,
        "minutes": options.minutes,
    }
    return write_report(out, info, figures, models, data, run_dir)


def _summary(report: Mapping[str, Any]) -> str:
    return ", ".join(
        f"{mode} domain accuracy {report[mode]['domain_accuracy']:.2f}" for mode in ("latent", "reference")
    )


# ----------------------------------------------------------------------------------------------------------
# The report
# ----------------------------------------------------------------------------------------------------------

#: The rows of the report's table: (figure, label, target as text).
_ROWS = (
    ("domain_accuracy", "domain accuracy (the oracle sees the target's head shape)", "at least 0.90"),
    ("pose_error_center_rel", "head centre error against the source, in head radii", "at most 0.10"),
    ("style_fur_error", "fur colour error against the reference", "below the error against the source"),
    ("style_fur_error_vs_source", "fur colour error against the source", ""),
    ("diversity_pixels", "diversity of a source's 10 outputs (mean pixel distance)", "higher"),
    ("frechet_distance", "Fréchet distance to real images (oracle features)", "lower"),
)


def figures_table(figures: Mapping[str, Mapping[str, Any]]) -> list[list[str]]:
    """The report's one table: a row per figure; columns latent and reference per model, real images, target."""
    header = ["figure"]
    for name in figures:
        header += [f"{name}: latent", f"{name}: reference"]
    header += ["real images", "target"]
    rows = [header]
    first = next(iter(figures.values()))
    for key, label, target in _ROWS:
        row = [label]
        for report in figures.values():
            row += [_fmt(report["latent"].get(key)), _fmt(report["reference"].get(key))]
        row += [_fmt(first.get("real", {}).get(key) if key != "style_fur_error_vs_source" else None), target]
        rows.append(row)
    return rows


def _fmt(value: Any) -> str:
    return "" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def write_report(
    out: Path,
    info: Mapping[str, Any],
    figures: Mapping[str, Mapping[str, Any]],
    models: Mapping[str, tuple[Nets, Config, str]],
    data: Path,
    run_dir: Path,
) -> Path:
    """``report.md`` and ``report.html`` in ``out`` with the grids and the plot beside them; returns the HTML."""
    from .data import scan_domains
    from .report import latent_table, plot_metrics, read_metrics, reference_table, stacked

    # Fixed sources (two per domain) and one reference per domain from the validation split.
    img_size = next(iter(models.values()))[1].model.img_size
    domains = scan_domains(data / "val", min_size=img_size).domains
    pictures: dict[str, Path] = {}
    for kind in ("latent", "reference"):
        tables = []
        for name, (nets, config, _) in models.items():
            device = next(nets.generator.parameters()).device
            size = config.model.img_size
            batch = sample_batch(scan_domains(data / "val", min_size=size), size, n_src=6, refs_per_domain=1)
            x_src = batch.x_src.to(device)
            if kind == "latent":
                table = latent_table(nets, x_src, domains, config.model.latent_dim, seeds=(0,))
            else:
                table = reference_table(nets, x_src, batch.x_ref.to(device), batch.y_ref.to(device), domains)
            tables.append((name, table))
        pictures[kind] = out / f"{kind}.png"
        stacked(tables).save(pictures[kind])
    plot = plot_metrics(read_metrics(run_dir / "metrics.jsonl"), out / "training.png", TARGETS)

    minutes = info["train_seconds"] / 60
    lead = (
        f"Trained the `demo` preset for {info['step']} steps in {minutes:.1f} minutes (budget {info['minutes']:g}; "
        f"stopped: {info['stopped']}) on {info['machine']}, PyTorch {info['torch']}, {info['settings']}."
    )
    notes = {name: note for name, (_, _, note) in models.items()}
    table = figures_table(figures)
    captions = {
        "latent": "Latent-guided: sources on top; below, each source translated into each domain with one "
        "random style (the same style along a row). The outputs should have the row's head shape and keep "
        "their source's pose.",
        "reference": "Reference-guided: sources on top, one reference per row (left); each output should take "
        "the reference's domain (head shape) and fur colours, and keep its source's pose.",
        "training": "The oracle's figures measured during training (a few sources per domain, so they wobble), "
        "against training steps (bottom) and minutes (top).",
    }

    lines = ["# StarGAN v2 demo", "", lead, ""]
    lines += [f"- **{name}**: {note}" for name, note in notes.items()]
    lines += ["", "## What the models do", ""]
    for kind in ("latent", "reference"):
        lines += [f"### {kind.capitalize()}-guided", "", captions[kind], "", f"![{kind}]({pictures[kind].name})", ""]
    lines += ["## Quality (the paper's protocol, judged by the oracle network)", ""]
    lines += ["| " + " | ".join(table[0]) + " |", "|" + "---|" * len(table[0])]
    lines += ["| " + " | ".join(row) + " |" for row in table[1:]]
    if plot is not None:
        lines += ["", "## During training", "", captions["training"], "", f"![training]({plot.name})"]
    lines += ["", "Full figures: `quality.json`. Measurements during training: `run/metrics.jsonl`. Config: "]
    lines[-1] += "`run/config.json`."
    (out / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")

    body = [f"<h1>StarGAN v2 demo</h1><p>{html.escape(lead)}</p><ul>"]
    body += [f"<li><b>{html.escape(n)}</b>: {html.escape(t)}</li>" for n, t in notes.items()]
    body.append("</ul><h2>What the models do</h2>")
    for kind in ("latent", "reference"):
        body.append(
            f"<h3>{kind.capitalize()}-guided</h3><p>{html.escape(captions[kind])}</p>"
            f'<img src="{pictures[kind].name}" style="image-rendering: pixelated; max-width: 100%">'
        )
    body.append("<h2>Quality (the paper's protocol, judged by the oracle network)</h2><table>")
    body.append("<tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in table[0]) + "</tr>")
    body += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in table[1:]]
    body.append("</table>")
    if plot is not None:
        body.append(f"<h2>During training</h2><p>{html.escape(captions['training'])}</p><img src='{plot.name}'>")
    page = (
        "<!doctype html><meta charset='utf-8'><title>StarGAN v2 demo</title><style>body{font-family:sans-serif;"
        "max-width:1400px;margin:2em auto}td,th{padding:2px 10px;text-align:left}table{border-collapse:collapse}"
        "tr:nth-child(even){background:#f3f3f3}</style>" + "".join(body)
    )
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
