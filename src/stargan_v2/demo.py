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
import shutil
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
from .procedural import is_procedural_dataset, make_dataset
from .run import RunError, RunOptions, RunResult, sample_batch, train
from .rundir import list_states
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


def _demo_dataset(folder: Path, options: DemoOptions) -> tuple[Path, bool]:
    """The demo's dataset in ``folder``, and whether it replaced one: a dataset the demo wrote earlier with
    other arguments or by an older version of the generator is made again (the folder is the demo's own and
    the files are a function of the arguments); anything else in the folder is left alone."""

    def make() -> Path:
        return make_dataset(
            folder,
            size=options.data_size,
            per_domain=options.per_domain,
            val_per_domain=options.val_per_domain,
            seed=options.seed,
            workers=2,
        )

    try:
        return make(), False
    except FileExistsError:
        if not is_procedural_dataset(folder):
            raise
    print(f"dataset: replacing {folder}, made with other arguments or by an older version of the generator")
    shutil.rmtree(folder)
    return make(), True


def demo_folders(out: Path, options: DemoOptions) -> tuple[Path, Path]:
    """The demo's dataset (made, re-used or replaced) and its run directory under ``out``. A run trained on a
    dataset that had to be replaced is kept under another name (``run.before-<time>``) rather than continued
    on data it was not trained on."""
    data, replaced = _demo_dataset(out / "data", options)
    run_dir = out / "run"
    if replaced and run_dir.exists():
        kept = run_dir.with_name(f"run.before-{time.strftime('%Y%m%d-%H%M%S')}")
        run_dir.rename(kept)
        print(f"training: the earlier run was trained on the replaced dataset; kept as {kept}, starting afresh")
    return data, run_dir


def run_demo(options: DemoOptions, config: Config | None = None) -> Path:
    """Dataset, training, quality figures and the report; returns the report's path (``report.html``)."""
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    config = config or preset("demo")
    settings = resolve_speed(options.device, config.model)
    machine = device_description(options.device)
    print(f"machine: {machine}; PyTorch {torch.__version__}; {settings.describe()}", flush=True)

    # 1. The built-in dataset (re-used when it already exists with the same arguments).
    t0 = time.monotonic()
    data, run_dir = demo_folders(out, options)
    print(f"dataset: {data} ({time.monotonic() - t0:.1f} s)", flush=True)

    # 2. Training for the time budget, measured by the oracle as it goes.
    result = _train_demo(options, config, data, run_dir)
    if result.ema_path is None:
        raise RunError(f"the demo run in {run_dir} saved no EMA checkpoint ({result.reason}); run the demo again")

    # 3. The quality figures of the EMA nets, and of the shipped model for comparison.
    nets, trained = load_ema(result.ema_path, device=options.device)
    models: dict[str, tuple[Nets, Config, str]] = {
        "this run": (nets, trained, f"trained here: {result.step} steps, {result.seconds / 60:.1f} min")
    }
    if options.shipped:
        from .assets import shipped_demo_model

        shipped = shipped_demo_model(options.device)
        if shipped is not None:
            models["shipped model"] = shipped
    figures = _score(models, data, options)
    (out / "quality.json").write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")

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


def _train_demo(options: DemoOptions, config: Config, data: Path, run_dir: Path) -> RunResult:
    """Train for the time budget; a second demo in the same folder continues the same run.

    The time budget is what stops it: the step count is raised to a cap no CPU reaches in the budget, so a
    longer ``--minutes`` or a second demo gives the model more steps. The diversity weight's decay (``ds_iter``)
    stays as configured.
    """
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
            minutes=options.minutes,
            progress=options.progress,
            eval_every=options.eval_every,
            eval_sources=options.monitor_sources,
        ),
        explicit={"total_iters"},
    )
    print(f"training: {result.reason} at step {result.step} ({result.seconds:.0f} s)", flush=True)
    return result


def _score(models: Mapping[str, tuple[Nets, Config, str]], data: Path, options: DemoOptions) -> dict[str, Any]:
    """The quality benchmark's figures of every model (``quality.json``)."""
    from .metrics.quality import quality_report

    t0 = time.monotonic()
    figures = {
        name: quality_report(
            nets, config.model, data, max_sources_per_domain=options.eval_sources_per_domain, device=options.device
        )
        for name, (nets, config, _) in models.items()
    }
    print(f"quality figures ({time.monotonic() - t0:.1f} s): {_summary(figures['this run'])}", flush=True)
    return figures


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


#: What each picture of the report shows.
_CAPTIONS = {
    "latent": "Latent-guided: sources on top; below, each source translated into each domain with one random "
    "style (the same style along a row). The outputs should have the row's head shape and keep their source's "
    "pose.",
    "reference": "Reference-guided: sources on top, one reference per row (left); each output should take the "
    "reference's domain (head shape) and fur colours, and keep its source's pose.",
    "training": "The oracle's figures measured during training (a few sources per domain, so they wobble), "
    "against training steps (bottom) and minutes (top).",
}
_QUALITY = "Quality (the paper's protocol, judged by the oracle network)"


def write_report(
    out: Path,
    info: Mapping[str, Any],
    figures: Mapping[str, Mapping[str, Any]],
    models: Mapping[str, tuple[Nets, Config, str]],
    data: Path,
    run_dir: Path,
) -> Path:
    """``report.md`` and ``report.html`` in ``out`` with the grids and the plot beside them; returns the HTML."""
    from .report import plot_metrics, read_metrics

    pictures = write_grids(out, models, data)
    plot = plot_metrics(read_metrics(run_dir / "metrics.jsonl"), out / "training.png", TARGETS)
    lead = (
        f"Trained the `demo` preset for {info['step']} steps in {info['train_seconds'] / 60:.1f} minutes (budget "
        f"{info['minutes']:g}; stopped: {info['stopped']}) on {info['machine']}, PyTorch {info['torch']}, "
        f"{info['settings']}."
    )
    notes = {name: note for name, (_, _, note) in models.items()}
    table = figures_table(figures)
    (out / "report.md").write_text(_markdown(lead, notes, pictures, table, plot), encoding="utf-8")
    path = out / "report.html"
    path.write_text(_html(lead, notes, pictures, table, plot), encoding="utf-8")
    return path


def write_grids(out: Path, models: Mapping[str, tuple[Nets, Config, str]], data: Path) -> dict[str, Path]:
    """``latent.png`` and ``reference.png``: each model's grid (six validation sources, two per domain; one
    reference per domain), enlarged and labelled, one model above the other."""
    from .data import scan_domains
    from .report import latent_table, reference_table, stacked

    pictures: dict[str, Path] = {}
    for kind in ("latent", "reference"):
        tables = []
        for name, (nets, config, _) in models.items():
            device = next(nets.generator.parameters()).device
            size = config.model.img_size
            folders = scan_domains(data / "val", min_size=size)
            batch = sample_batch(folders, size, n_src=6, refs_per_domain=1)
            x_src = batch.x_src.to(device)
            if kind == "latent":
                table = latent_table(nets, x_src, folders.domains, config.model.latent_dim, seeds=(0,))
            else:
                table = reference_table(nets, x_src, batch.x_ref.to(device), batch.y_ref.to(device), folders.domains)
            tables.append((name, table))
        pictures[kind] = out / f"{kind}.png"
        stacked(tables).save(pictures[kind])
    return pictures


def _markdown(
    lead: str, notes: Mapping[str, str], pictures: Mapping[str, Path], table: list[list[str]], plot: Path | None
) -> str:
    lines = ["# StarGAN v2 demo", "", lead, ""]
    lines += [f"- **{name}**: {note}" for name, note in notes.items()]
    lines += ["", "## What the models do", ""]
    for kind, picture in pictures.items():
        lines += [f"### {kind.capitalize()}-guided", "", _CAPTIONS[kind], "", f"![{kind}]({picture.name})", ""]
    lines += [f"## {_QUALITY}", "", "| " + " | ".join(table[0]) + " |", "|" + "---|" * len(table[0])]
    lines += ["| " + " | ".join(row) + " |" for row in table[1:]]
    if plot is not None:
        lines += ["", "## During training", "", _CAPTIONS["training"], "", f"![training]({plot.name})"]
    lines += ["", "Full figures: `quality.json`. Measurements during training: `run/metrics.jsonl`. Config: "]
    lines[-1] += "`run/config.json`."
    return "\n".join(lines) + "\n"


def _html(
    lead: str, notes: Mapping[str, str], pictures: Mapping[str, Path], table: list[list[str]], plot: Path | None
) -> str:
    e = html.escape
    body = [f"<h1>StarGAN v2 demo</h1><p>{e(lead)}</p><ul>"]
    body += [f"<li><b>{e(name)}</b>: {e(note)}</li>" for name, note in notes.items()]
    body.append("</ul><h2>What the models do</h2>")
    for kind, picture in pictures.items():
        body.append(
            f"<h3>{kind.capitalize()}-guided</h3><p>{e(_CAPTIONS[kind])}</p>"
            f'<img src="{picture.name}" style="image-rendering: pixelated; max-width: 100%">'
        )
    body.append(f"<h2>{e(_QUALITY)}</h2><table>")
    body.append("<tr>" + "".join(f"<th>{e(c)}</th>" for c in table[0]) + "</tr>")
    body += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in table[1:]]
    body.append("</table>")
    if plot is not None:
        body.append(f"<h2>During training</h2><p>{e(_CAPTIONS['training'])}</p><img src='{plot.name}'>")
    return (
        "<!doctype html><meta charset='utf-8'><title>StarGAN v2 demo</title><style>body{font-family:sans-serif;"
        "max-width:1400px;margin:2em auto}td,th{padding:2px 10px;text-align:left}table{border-collapse:collapse}"
        "tr:nth-child(even){background:#f3f3f3}</style>" + "".join(body)
    )
