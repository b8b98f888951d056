"""The ``stargan-v2`` command. It only parses arguments and calls the library; the config does the rest."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from .checkpoint import (
    EMA_FORMAT,
    TRAINING_FORMAT,
    CheckpointError,
    checkpoint_kind,
    export_official,
    export_official_optimizers,
    load_ema,
    load_official,
    load_training_state,
    read_config,
    read_domains,
    read_metadata,
    save_ema,
)
from .config import PRESETS, Config, ConfigError, preset
from .fan import load_fan
from .malloc import MALLOC_MODES, malloc_mode_from_env, tune_malloc
from .metrics.fid import FEATURE_NET_CHOICES
from .model import build_nets, count_parameters
from .run import ON_NAN_CHOICES
from .speed import MEMORY_FORMATS, PRECISIONS, RESAMPLINGS

# Argument types. argparse reports their errors as "argument --flag: <message>", shows the usage and exits
# with status 2, so every bad number names its flag without more code in the commands.


def positive_int(text: str) -> int:
    """An integer >= 1 (counts, sizes, steps)."""
    return _int_at_least(text, 1, "a positive integer")


def _add_speed_args(p: argparse.ArgumentParser, resampling: bool = True) -> None:
    """The speed settings (``stargan_v2.speed``), each ``auto`` by default: chosen by the device and model."""
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="bf16: bfloat16 autocast; auto (default): bf16 where the hardware computes in it natively and it is "
        "faster, else fp32",
    )
    if resampling:
        p.add_argument(
            "--resampling",
            choices=RESAMPLINGS,
            default="auto",
            help="fused (= auto, default): fold 2x2 pooling and 2x upsampling into the 3x3 convs (the same "
            "function up to rounding); separate: the authors' order",
        )
    p.add_argument(
        "--memory-format",
        choices=MEMORY_FORMATS,
        default="auto",
        help="channels_last or contiguous weights and feature maps; auto (default): channels_last on the CPU",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile G, F and E (D stays eager for R1); compiling takes minutes",
    )


def eval_metric_list(text: str) -> tuple[str, ...]:
    """A comma-separated list of what ``train --eval-every`` measures (``stargan_v2.run.EVAL_METRICS``)."""
    from .run import EVAL_METRICS

    names = tuple(t.strip() for t in text.split(",") if t.strip())
    bad = [n for n in names if n not in EVAL_METRICS]
    if not names or bad:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of {', '.join(EVAL_METRICS)} (got {text!r})")
    return names


def nonnegative_int(text: str) -> int:
    """An integer >= 0 (worker processes, seeds, optional extra passes)."""
    return _int_at_least(text, 0, "an integer >= 0")


def _int_at_least(text: str, minimum: int, wanted: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {wanted} (got {text!r})") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be {wanted} (got {value})")
    return value


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


def _default_device() -> str:
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


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="afhq", choices=sorted(PRESETS), help="named configuration (default: afhq)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any config field, e.g. --set num_domains=4 --set lambda_ds=1 (repeatable)",
    )


def _config(args: argparse.Namespace) -> Config:
    return preset(args.preset).override(args.overrides)


def cmd_summary(args: argparse.Namespace) -> int:
    """Print each network's parameter count (and the resolved architecture)."""
    cfg = _config(args)
    # Build on the meta device: shapes only, no memory and no initialisation cost.
    with torch.device("meta"):
        nets = build_nets(cfg.model, init=False)
    counts = {name: count_parameters(module) for name, module in nets.items()}
    if args.json:
        print(json.dumps(counts, indent=2))
        return 0
    m = cfg.model
    print(
        f"preset {args.preset}: {m.img_size} px, {m.num_domains} domains, latent {m.latent_dim}, style "
        f"{m.style_dim}, widths {m.first_dim}..{m.max_conv_dim}, w_hpf {m.w_hpf}"
    )
    for name, n in counts.items():
        print(f"  {name:<16} {n:>12,}")
    print(f"  {'total':<16} {sum(counts.values()):>12,}")
    if m.uses_hpf:
        print("  (+ the frozen face-landmark network, FAN, loaded from wing.ckpt: 6,333,603)")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    """Print the resolved config as JSON."""
    print(_config(args).to_json())
    return 0


def _domain_names(args: argparse.Namespace) -> list[str] | None:
    """``--domains cat,dog,wild``: names for a checkpoint's domain labels, in order."""
    if not getattr(args, "domains", None):
        return None
    names = [name.strip() for name in args.domains.split(",")]
    if not all(names) or len(set(names)) != len(names):
        raise ValueError(f"--domains {args.domains!r}: expected distinct, non-empty names separated by commas")
    return names


def _export_graph(args: argparse.Namespace) -> int:
    """ONNX or TorchScript files of the EMA generator with its mapping network and style encoder."""
    from .api import checkpoint_domains
    from .checkpoint import load_for_synthesis
    from .export import export_onnx, export_torchscript

    # No face network is loaded: high-pass models are refused by the exporters, with the reason.
    loaded = load_for_synthesis(args.checkpoint, device="cpu", require_fan=False)
    domains = checkpoint_domains(loaded.source, loaded.config, _domain_names(args))
    if args.format == "onnx":
        written = export_onnx(loaded.nets, loaded.config, args.out, domains)
    else:
        written = [export_torchscript(loaded.nets, loaded.config, args.out, domains)]
    for path in written:
        print(f"wrote {path}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Convert between our checkpoints and the authors' format, or export the generator to ONNX / TorchScript."""
    if args.format in ("onnx", "torchscript"):
        return _export_graph(args)
    src, out = Path(args.checkpoint), Path(args.out)
    kind = checkpoint_kind(src)
    if args.format == "official":
        if kind not in (TRAINING_FORMAT, EMA_FORMAT):
            raise CheckpointError(f"{src} is already in the authors' format (or is not a stargan-v2 checkpoint)")
        config = read_config(src)
        fan = None
        if config.model.uses_hpf:
            # The authors' loader reads a "fan" entry from every file of a high-pass model.
            if args.fan is None:
                raise ConfigError(
                    f"{src} is a high-pass model (w_hpf={config.model.w_hpf}); the authors' code expects the "
                    "face-landmark network inside the exported files: pass --fan wing.ckpt"
                )
            fan = load_fan(args.fan)
        if kind == TRAINING_FORMAT:
            state = load_training_state(src, restore_rng=False)
            out.mkdir(parents=True, exist_ok=True)
            written = [
                export_official(state.nets_ema, out / f"{state.step:06d}_nets_ema.ckpt", args.legacy, fan),
                export_official(state.nets, out / f"{state.step:06d}_nets.ckpt", args.legacy, fan),
                # With the optimisers the authors' code can resume training from this run (--resume_iter).
                export_official_optimizers(state.optimizers, out / f"{state.step:06d}_optims.ckpt", args.legacy),
            ]
        else:
            nets, _ = load_ema(src)
            step = int(read_metadata(src).get("step", 0))
            target = out / f"{step:06d}_nets_ema.ckpt" if out.suffix != ".ckpt" else out
            written = [export_official(nets, target, args.legacy, fan)]
            print(
                f"{src} is an EMA-only file: it has no training nets or optimiser states, so only _nets_ema.ckpt "
                "is written (export a training state, state_NNNNNN.safetensors, for _nets.ckpt and _optims.ckpt)"
            )
    else:  # ema
        if kind == TRAINING_FORMAT:
            state = load_training_state(src, restore_rng=False)
            domains = _domain_names(args) or read_domains(src)
            written = [save_ema(state.nets_ema, state.config, out, step=state.step, domains=domains)]
        elif kind == "official":
            model = load_official(src)
            written = [save_ema(model.nets, Config(model=model.config), out, domains=_domain_names(args))]
        else:
            raise CheckpointError(f"{src} is already an EMA-only file")
    for path in written:
        print(f"wrote {path}")
    return 0


def _explicit_keys(args: argparse.Namespace) -> set[str]:
    """Config fields the user set on purpose (``--set`` and the shortcut flags)."""
    keys = {item.split("=", 1)[0].strip().split(".")[-1] for item in args.overrides if "=" in item}
    if getattr(args, "iters", None) is not None:
        keys.add("total_iters")
    if getattr(args, "batch_size", None) is not None:
        keys.add("batch_size")
    return keys


def cmd_train(args: argparse.Namespace) -> int:
    """Train on folders of images, one sub-folder per domain."""
    from .run import RunOptions, train

    overrides = list(args.overrides)
    if args.iters is not None:
        overrides.append(f"total_iters={args.iters}")
    if args.batch_size is not None:
        overrides.append(f"batch_size={args.batch_size}")
    config = preset(args.preset).override(overrides)
    options = RunOptions(
        run_dir=Path(args.run_dir),
        data=Path(args.data),
        val_data=Path(args.val_data) if args.val_data else None,
        resume=args.resume,
        num_workers=args.workers,
        skip_bad_images=args.skip_bad_images,
        device=args.device,
        minutes=args.minutes,
        progress=not args.no_progress,
        wing=Path(args.wing) if args.wing else None,
        precision=args.precision,
        resampling=args.resampling,
        memory_format=args.memory_format,
        compile=args.compile,
        keep=args.keep,
        on_nan=args.on_nan,
        deterministic=args.deterministic,
        wandb=args.wandb,
        eval_every=args.eval_every,
        eval_metrics=args.eval_metrics,
        eval_sources=args.eval_sources,
        keep_best=args.keep_best,
        weights_dir=Path(args.weights_dir) if args.weights_dir else None,
        fid_net=args.fid_net,
    )
    result = train(config, options, explicit=_explicit_keys(args))
    if result.state_path is not None:  # rank 0 (the only process that writes) reports
        print(f"{result.reason} at step {result.step} after {result.seconds:.0f} s")
        print(f"run directory: {result.run_dir} (samples in samples/, checkpoints in checkpoints/)")
        if result.bad_images:
            print(f"skipped {result.bad_images} unreadable images")
    return 130 if result.reason == "interrupted" else 0


def cmd_sample(args: argparse.Namespace) -> int:
    """Reference- and latent-guided grids from any checkpoint."""
    from .checkpoint import load_for_synthesis
    from .data import scan_domains
    from .run import sample_batch
    from .synthesis import latent_grid, reference_grid, save_image

    model = load_for_synthesis(args.checkpoint, fan_path=args.wing, device=args.device)
    cfg = model.config
    src = scan_domains(args.src, num_domains=cfg.num_domains)
    ref = scan_domains(args.ref, num_domains=cfg.num_domains)
    sources = sample_batch(src, cfg.img_size, n_src=args.num_src, refs_per_domain=1)
    refs = sample_batch(ref, cfg.img_size, n_src=1, refs_per_domain=args.refs_per_domain)
    mask_fn = model.fan.masks if model.fan is not None else None
    device = torch.device(args.device)
    x_src = sources.x_src.to(device)
    out = Path(args.out)
    written = [
        save_image(
            reference_grid(model.nets, x_src, refs.x_ref.to(device), refs.y_ref.to(device), mask_fn=mask_fn),
            out / "reference.png",
        ),
        save_image(
            latent_grid(model.nets, x_src, cfg.num_domains, cfg.latent_dim, args.styles, args.seed, mask_fn, args.psi),
            out / "latent.png",
        ),
    ]
    for path in written:
        print(f"wrote {path}")
    return 0


def cmd_translate(args: argparse.Namespace) -> int:
    """Translate an image or a folder of images, latent-guided (--domain, --seeds) or reference-guided (--ref)."""
    from tqdm.auto import tqdm

    from .api import StarGANv2, find_references, list_images, parse_seeds

    if args.ref is None and args.domain is None:
        raise ValueError("pass --domain NAME (latent-guided) or --ref IMG_OR_DIR (reference-guided)")
    if args.ref is not None and (args.psi != 1.0 or args.seeds is not None):
        raise ValueError("--seeds and --psi are for latent-guided translation (--domain without --ref)")
    inputs = list_images(args.input)
    checkpoint = args.checkpoint if args.checkpoint is not None else default_checkpoint("translate")
    model = StarGANv2.from_checkpoint(checkpoint, device=args.device, fan_path=args.wing, domains=_domain_names(args))
    # The styles are computed once and used for every input image.
    if args.ref is not None:
        ref_domain = model.domains[model.domain_index(args.domain)] if args.domain is not None else None
        refs, labels = find_references(args.ref, model.domains, ref_domain)
        style = model.style_from_reference(refs, labels, batch_size=args.batch_size)
        names = [f"ref-{model.domains[k]}-{path.stem}" for path, k in zip(refs, labels, strict=True)]
    else:
        domain = model.domains[model.domain_index(args.domain)]
        seeds = parse_seeds(args.seeds if args.seeds is not None else "0")
        style = model.style_from_latent(domain, seeds, psi=args.psi)
        names = [f"{domain}-seed{k}" for k in seeds]
    root = Path(args.input) if Path(args.input).is_dir() else None
    out = Path(args.out)
    written = 0
    with tqdm(total=len(inputs), desc="translate", unit="image", disable=args.no_progress) as bar:
        for start in range(0, len(inputs), args.batch_size):
            chunk = inputs[start : start + args.batch_size]
            results = model.translate(chunk, style=style, paste_back=args.paste_back, batch_size=args.batch_size)
            for path, row in zip(chunk, results, strict=True):
                folder = out / path.parent.relative_to(root) if root is not None else out
                folder.mkdir(parents=True, exist_ok=True)
                for name, image in zip(names, row, strict=True):
                    image.save(folder / f"{path.stem}_{name}.png")
                    written += 1
            bar.update(len(chunk))
    print(f"wrote {written} image{'s' if written != 1 else ''} to {out}")
    return 0


def cmd_video(args: argparse.Namespace) -> int:
    """The reference interpolation video: sources translated with styles moving from reference to reference."""
    from .api import StarGANv2, find_references, list_images, spread
    from .video import reference_video

    model = StarGANv2.from_checkpoint(
        args.checkpoint, device=args.device, fan_path=args.wing, domains=_domain_names(args)
    )
    sources = spread(list_images(args.src), args.num_src)
    ref_domain = model.domains[model.domain_index(args.domain)] if args.domain is not None else None
    refs, labels = find_references(args.ref, model.domains, ref_domain)
    picked = spread(list(zip(refs, labels, strict=True)), args.max_refs)
    path = reference_video(
        model,
        sources,
        [p for p, _ in picked],
        [k for _, k in picked],
        args.out,
        fps=args.fps,
        hold_frames=args.hold_frames,
        transition_frames=args.transition_frames,
        progress=not args.no_progress,
    )
    print(f"wrote {path} ({len(sources)} sources, {len(picked)} references)")
    return 0


def cmd_make_dataset(args: argparse.Namespace) -> int:
    """Write the built-in procedural dataset (cat, dog, fox heads) in the layout of a user's data."""
    from .procedural import make_dataset

    start = time.monotonic()
    path = make_dataset(
        args.out,
        size=args.size,
        per_domain=args.per_domain,
        val_per_domain=args.val_per_domain,
        seed=args.seed,
        workers=args.workers,
    )
    print(f"wrote {path} ({time.monotonic() - start:.1f} s): train with --data {path / 'train'}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Dataset, bounded training, quality figures and a report, in one folder."""
    from .demo import DemoOptions, run_demo

    options = DemoOptions(
        out=Path(args.out),
        minutes=args.minutes,
        seed=args.seed,
        device=args.device,
        workers=args.workers,
        progress=not args.no_progress,
    )
    config = preset("demo").override(args.overrides)
    report = run_demo(options, config)
    print(f"\nreport: {report}\n(also {report.with_suffix('.md')}; grids and quality.json beside it)")
    return 0


def cmd_bench_speed(args: argparse.Namespace) -> int:
    """Seconds per training iteration or synthesis batch, images/s, peak memory and FLOP/s."""
    from .bench import bench_synth, bench_train, to_json

    overrides = list(args.overrides)
    if args.img_size is not None:
        overrides.append(f"img_size={args.img_size}")
    config = preset(args.preset).override(overrides)
    batch = args.batch_size if args.batch_size is not None else config.train.batch_size
    if batch < 1:
        raise ConfigError(f"--batch-size must be at least 1 (got {batch})")
    if args.repeats < 1 or args.warmup < 0:
        raise ConfigError(f"--repeats must be >= 1 and --warmup >= 0 (got {args.repeats}, {args.warmup})")
    common = dict(
        preset_name=args.preset,
        batch_size=batch,
        device=args.device,
        precision=args.precision,
        memory_format=args.memory_format,
        compile_nets=args.compile,
        warmup=args.warmup,
        repeats=args.repeats,
        count_flops=not args.no_flops,
    )
    if args.bench == "train":
        result = bench_train(config, impl=args.impl, resampling=args.resampling, **common)
    else:
        result = bench_synth(config, impl=args.impl, mode=args.mode, **common)
    print(json.dumps(to_json(result)) if args.json else result.summary())
    return 0


def cmd_bench_quality(args: argparse.Namespace) -> int:
    """Quality figures of a checkpoint on the built-in dataset (an oracle judges the translations)."""
    from .checkpoint import load_for_synthesis
    from .metrics.quality import quality_report

    model = load_for_synthesis(args.checkpoint, device=args.device)
    figures = quality_report(
        model.nets,
        model.config,
        args.data,
        num_outputs=args.num_outputs,
        max_sources_per_domain=args.max_sources,
        seed=args.seed,
        device=args.device,
    )
    figures["checkpoint"] = str(model.source)
    text = json.dumps(figures, indent=2)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """FID and LPIPS by the paper's protocol: every ordered pair of domains, 10 outputs per source image."""
    from .checkpoint import load_for_synthesis
    from .metrics.evaluate import MODES, evaluate, format_table, write_report
    from .metrics.fid import load_inception
    from .metrics.lpips import load_lpips
    from .metrics.oracle import default_cache_dir

    # The feature networks first: a missing weight file should stop the command before any other work.
    feature_net = load_inception(args.fid_net, args.weights_dir, args.device)
    lpips = load_lpips(args.weights_dir, args.device)
    model = load_for_synthesis(args.checkpoint, fan_path=args.wing, device=args.device)
    out = Path(args.out)
    report = evaluate(
        model.nets,
        model.config,
        args.train_data,
        args.val_data,
        feature_net,
        lpips,
        modes=MODES if args.mode == "both" else (args.mode,),
        num_outputs=args.num_outs,
        seed=args.seed,
        device=args.device,
        batch_size=args.batch_size,
        workers=args.workers,
        mask_fn=model.fan.masks if model.fan is not None else None,
        max_sources_per_domain=args.max_sources,
        cache_dir=Path(args.cache_dir) if args.cache_dir else default_cache_dir() / "fid_stats",
        save_images=out / "images" if args.save_images else None,
        progress=not args.no_progress,
        lpips_batch=args.lpips_batch,
    )
    report = {"checkpoint": str(model.source), **report}
    path = write_report(report, out / "eval.json")
    print(format_table(report))
    print(f"FID features: {feature_net.describe()['comparable_with']}")
    print(f"FID resizing to 299 px: {feature_net.describe()['resize_description']}")
    print(f"LPIPS: the authors' mean over batches of {args.lpips_batch} sources; LPIPS/src: the mean over sources")
    print(f"wrote {path}")
    return 0


def cmd_fid(args: argparse.Namespace) -> int:
    """FID between two folders of images or .npz statistics files, as pytorch-fid; or --save-stats of one folder."""
    from .metrics.fid_folders import fid_of_paths, save_folder_statistics

    common = dict(
        fid_net=args.fid_net,
        weights_dir=args.weights_dir,
        device=args.device,
        img_size=args.img_size,
        batch_size=args.batch_size,
        workers=args.workers,
        progress=not args.no_progress,
    )
    if args.save_stats is not None:
        if len(args.paths) != 1:
            raise ValueError(f"--save-stats FILE takes one folder of images, got {len(args.paths)} paths")
        path, stats = save_folder_statistics(args.paths[0], args.save_stats, **common)
        for note in stats.notes:
            print(f"note: {note}", file=sys.stderr)
        if args.json:
            print(json.dumps({"statistics": str(path), "num_images": stats.num_images, "feature_net": stats.feature_net,
                              "preprocessing": stats.preprocessing}))  # fmt: skip
        else:
            print(f"wrote {path} ({stats.num_images} images, {stats.feature_net}, {stats.preprocessing})")
        return 0
    if len(args.paths) != 2:
        raise ValueError(
            f"expected two paths (folders of images or .npz statistics files), got {len(args.paths)}; "
            "with one folder, pass --save-stats FILE.npz to write its statistics"
        )
    report = fid_of_paths(args.paths[0], args.paths[1], **common)
    for note in report["notes"]:
        print(f"note: {note}", file=sys.stderr)
    print(json.dumps(report, indent=2) if args.json else f"FID: {report['fid']:.6f}")
    return 0


def cmd_align(args: argparse.Namespace) -> int:
    """Warp face photos onto the CelebA-HQ mean landmarks (for the released CelebA-HQ model)."""
    from .align import FaceAligner, align_folder, fan_landmark_fn, load_mean_landmarks, mean_landmarks_path

    mean = load_mean_landmarks(mean_landmarks_path(args.lm_mean, args.fan))
    fan = load_fan(args.fan).to(args.device)
    aligner = FaceAligner(fan_landmark_fn(fan, args.device), mean, size=args.size, refine=args.refine)
    result = align_folder(args.input, args.out, aligner, progress=not args.no_progress)
    print(f"aligned {len(result.written)} image(s) into {args.out}")
    for path, reason in result.skipped:
        print(f"skipped {path}: {reason}")
    return 0 if result.written else 1


#: Where ``stargan-v2 demo`` writes its run by default: ``serve`` and ``translate`` use that model when given no
#: checkpoint, or the demo model shipped with the package when there is no demo run.
DEMO_RUN = Path("demo_output") / "run"


def default_checkpoint(command: str) -> Path:
    """The model of a command given no ``--checkpoint``: the newest demo run (``demo_output/run``, what ``make
    demo`` trains), else the demo model shipped with the package; says which on stderr."""
    from .assets import shipped_demo_path, shipped_demo_record
    from .run import list_states

    if list_states(DEMO_RUN):
        print(
            f"{command}: no --checkpoint given, using the demo run {DEMO_RUN} (what `make demo` trained)",
            file=sys.stderr,
        )
        return DEMO_RUN
    shipped = shipped_demo_path()
    if shipped is None:
        raise FileNotFoundError(
            f"no --checkpoint given, no demo run in {DEMO_RUN} and no shipped demo model in this installation: run "
            "`make demo` first (it trains one on the built-in dataset) or pass --checkpoint FILE"
        )
    steps = shipped_demo_record().get("steps", "?")
    print(
        f"{command}: no --checkpoint given and no demo run in {DEMO_RUN}: using the demo model shipped with the "
        f"package ({steps} steps of the demo preset on the built-in dataset; {shipped})",
        file=sys.stderr,
    )
    return shipped


def cmd_serve(args: argparse.Namespace) -> int:
    """The web demo (a Gradio page) for a checkpoint, by default the newest demo run or the shipped demo model."""
    checkpoint = args.checkpoint if args.checkpoint is not None else default_checkpoint("serve")
    from .run import list_states

    try:
        from .serve import UploadLimits, example_images, serve
    except ModuleNotFoundError as e:
        print(
            f"stargan-v2 serve: error: {e}; install the web demo's extra: pip install 'stargan-v2[serve]'",
            file=sys.stderr,
        )
        return 2
    limits = UploadLimits(max_mb=args.max_upload_mb, max_pixels=args.max_pixels)
    examples = example_images(args.examples) if args.examples else None
    if examples is None and args.checkpoint is None and not list_states(DEMO_RUN):
        # The shipped model with no dataset on disk: a few pictures of its kind, drawn here.
        from .assets import example_sources
        from .metrics.oracle import default_cache_dir

        examples = example_sources(default_cache_dir() / "examples")
    serve(
        checkpoint,
        host=args.host,
        port=args.port,
        device=args.device,
        domains=_domain_names(args),
        examples=examples,
        fan_path=args.wing,
        limits=limits,
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``stargan-v2`` command."""
    parser = argparse.ArgumentParser(
        prog="stargan-v2", description="StarGAN v2: diverse image-to-image translation for multiple domains"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("summary", help="parameter count of each network")
    _add_config_args(p)
    p.add_argument("--json", action="store_true", help="print {network: parameter count} as JSON")
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser("config", help="print the resolved config as JSON")
    _add_config_args(p)
    p.set_defaults(func=cmd_config)

    p = sub.add_parser(
        "export",
        help="convert checkpoints (ours <-> the authors' format, EMA-only), or export the generator to ONNX / "
        "TorchScript",
    )
    p.add_argument("--format", required=True, choices=("official", "ema", "onnx", "torchscript"), help="what to write")
    p.add_argument(
        "--checkpoint",
        required=True,
        help="training state, EMA file, run dir (onnx, torchscript), or (not for official) an authors' file",
    )
    p.add_argument(
        "--out",
        required=True,
        help="official: a folder (gets {step:06d}_nets_ema.ckpt [+ _nets.ckpt and _optims.ckpt from a training "
        "state]); ema: the .safetensors file; "
        "onnx: NAME.onnx (writes NAME_latent.onnx and NAME_reference.onnx) or a folder (latent.onnx, "
        "reference.onnx); torchscript: the .pt file (methods latent and reference)",
    )
    p.add_argument("--domains", help="domain names to record, comma-separated in label order (e.g. cat,dog,wild)")
    p.add_argument("--legacy", action="store_true", help="official: use the legacy torch serialisation (as released)")
    p.add_argument("--fan", metavar="WING_CKPT", help="official, high-pass models: the authors' wing.ckpt to include")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("train", help="train on folders of images (one sub-folder per domain)")
    p.add_argument("--data", required=True, help="training images: DIR/<domain>/**/*.{jpg,png,...}")
    p.add_argument("--val-data", help="validation images in the same layout (used for the sample grids)")
    p.add_argument("--run-dir", required=True, help="where config, logs, samples and checkpoints go")
    _add_config_args(p)
    p.add_argument("--iters", type=positive_int, help="total training steps (same as --set total_iters=N)")
    p.add_argument("--batch-size", type=positive_int, help="images per step (same as --set batch_size=N)")
    p.add_argument("--resume", action="store_true", help="continue from the run directory's newest checkpoint")
    p.add_argument("--workers", type=nonnegative_int, default=0, help="data-loading worker processes (default: 0)")
    p.add_argument("--device", type=device_name, default=_default_device(), help="torch device")
    p.add_argument("--skip-bad-images", action="store_true", help="skip unreadable images with a warning")
    p.add_argument("--wing", help="the authors' wing.ckpt (face-landmark network) for w_hpf > 0 models")
    p.add_argument("--minutes", type=positive_float, help="stop (and save) after this much training time")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_speed_args(p)
    p.add_argument(
        "--keep", type=positive_int, default=3, help="training-state checkpoints kept (default 3; older pruned)"
    )
    p.add_argument(
        "--on-nan",
        choices=ON_NAN_CHOICES,
        default="stop",
        help="on a non-finite loss or gradient: stop (default), or reload the last checkpoint with halved lr",
    )
    p.add_argument("--deterministic", action="store_true", help="deterministic kernels (bit-identical CPU reruns)")
    p.add_argument("--wandb", metavar="PROJECT", help="also log to this Weights & Biases project (pip install wandb)")
    p.add_argument(
        "--eval-every",
        type=positive_int,
        metavar="N",
        help="measure the EMA nets every N steps into metrics.jsonl and TensorBoard (default: never)",
    )
    p.add_argument(
        "--eval-metrics",
        type=eval_metric_list,
        default=(),
        metavar="LIST",
        help="what --eval-every measures, comma-separated: oracle (built-in dataset only), fid_lpips (needs "
        "--val-data and the weight files); default: oracle on the built-in dataset, else fid_lpips",
    )
    p.add_argument(
        "--eval-sources",
        type=positive_int,
        default=10,
        help="validation images per domain that --eval-every translates (10 outputs each; default 10)",
    )
    p.add_argument(
        "--keep-best",
        metavar="METRIC",
        help="keep the EMA nets with the best value of a measured figure as checkpoints/best_ema.safetensors, "
        "e.g. oracle/latent/domain_accuracy or fid/latent",
    )
    p.add_argument(
        "--fid-net",
        choices=FEATURE_NET_CHOICES,
        default="torchvision",
        help="FID features of --eval-every: torchvision (alias inception; the authors', default) or pt_inception",
    )
    p.add_argument("--weights-dir", help="folder of the FID/LPIPS weight files (default: the torch cache)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("sample", help="reference- and latent-guided grids from a checkpoint")
    p.add_argument("--checkpoint", required=True, help="run dir, our checkpoint, or the authors' *_nets_ema.ckpt")
    p.add_argument("--src", required=True, help="source images, one sub-folder per domain")
    p.add_argument("--ref", required=True, help="reference images, one sub-folder per domain")
    p.add_argument("--out", required=True, help="output folder (reference.png, latent.png)")
    p.add_argument("--num-src", type=positive_int, default=8, help="number of source images (default 8)")
    p.add_argument("--refs-per-domain", type=positive_int, default=2, help="reference rows per domain (default 2)")
    p.add_argument("--styles", type=positive_int, default=3, help="latent-guided rows per domain (default 3)")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="seed of the latent codes")
    p.add_argument("--psi", type=finite_float, default=1.0, help="truncation towards the mean style (1 = none)")
    p.add_argument("--wing", help="the authors' wing.ckpt for high-pass (CelebA-HQ) models")
    p.add_argument("--device", type=device_name, default=_default_device(), help="torch device")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("translate", help="translate images (latent-guided with seeds, or reference-guided)")
    p.add_argument(
        "--checkpoint",
        help=f"run dir, our checkpoint, or the authors' *_nets_ema.ckpt (default: the demo run {DEMO_RUN}, else the "
        "demo model shipped with the package)",
    )
    p.add_argument("--input", required=True, help="an image, or a folder of images (searched recursively)")
    p.add_argument("--out", required=True, help="output folder (PNG files named <input>_<domain>-seed<k>.png ...)")
    p.add_argument("--domain", help="target domain (latent-guided), or the references' domain with --ref")
    p.add_argument("--seeds", help="latent-guided: seeds of the styles, e.g. 0-9 or 0,3,5 (default 0)")
    p.add_argument(
        "--psi", type=finite_float, default=1.0, help="latent-guided: truncation towards the mean style (1 = none)"
    )
    p.add_argument("--ref", help="reference image or folder (one sub-folder per domain, or flat with --domain)")
    p.add_argument("--paste-back", action="store_true", help="put each result back into its input at the original size")
    p.add_argument("--domains", help="names of the checkpoint's domains, comma-separated (if it stores none)")
    p.add_argument("--batch-size", type=positive_int, default=16, help="images per batch (default 16)")
    p.add_argument("--wing", help="the authors' wing.ckpt for high-pass (CelebA-HQ) models")
    p.add_argument("--device", type=device_name, default=_default_device(), help="torch device")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_translate)

    p = sub.add_parser("video", help="reference interpolation video (styles morph from reference to reference)")
    p.add_argument("--checkpoint", required=True, help="run dir, our checkpoint, or the authors' *_nets_ema.ckpt")
    p.add_argument("--src", required=True, help="source image or folder (searched recursively)")
    p.add_argument("--ref", required=True, help="reference folder: one sub-folder per domain, or flat with --domain")
    p.add_argument("--out", required=True, help="video file (.mp4, .mkv, .mov or .avi)")
    p.add_argument("--domain", help="the references' domain (a flat --ref folder), or the one sub-folder to use")
    p.add_argument(
        "--num-src", type=positive_int, default=5, help="source images shown, spread over the folder (default 5)"
    )
    p.add_argument(
        "--max-refs", type=positive_int, help="at most this many references, spread over the folder (default all)"
    )
    p.add_argument("--fps", type=positive_float, default=30, help="frames per second (default 30)")
    p.add_argument("--hold-frames", type=positive_int, default=10, help="frames showing each reference (default 10)")
    p.add_argument(
        "--transition-frames",
        type=nonnegative_int,
        default=30,
        help="frames from one reference to the next (default 30)",
    )
    p.add_argument("--domains", help="names of the checkpoint's domains, comma-separated (if it stores none)")
    p.add_argument("--wing", help="the authors' wing.ckpt for high-pass (CelebA-HQ) models")
    p.add_argument("--device", type=device_name, default=_default_device(), help="torch device")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_video)

    p = sub.add_parser("make-dataset", help="write the built-in procedural dataset (3 animal-head domains)")
    p.add_argument("--out", required=True, help="folder to create (train/ and val/ inside)")
    p.add_argument("--size", type=positive_int, default=64, help="image size: 32, 64 (default) or 128")
    p.add_argument("--per-domain", type=positive_int, default=1000, help="training images per domain (default 1000)")
    p.add_argument(
        "--val-per-domain", type=nonnegative_int, default=100, help="validation images per domain (default 100)"
    )
    p.add_argument("--seed", type=nonnegative_int, default=0, help="random seed (default 0)")
    p.add_argument("--workers", type=nonnegative_int, default=0, help="worker processes (default 0)")
    p.set_defaults(func=cmd_make_dataset)

    p = sub.add_parser("demo", help="make the built-in dataset, train on it for a while, and write a report")
    p.add_argument("--out", default="demo_output", help="output folder (default: demo_output)")
    p.add_argument("--minutes", type=positive_float, default=10.0, help="training time budget (default 10)")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="dataset seed (default 0)")
    p.add_argument("--workers", type=nonnegative_int, default=0, help="data-loading worker processes (default 0)")
    p.add_argument("--device", type=device_name, default=_default_device(), help="torch device")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override the demo preset"
    )
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("bench", help="benchmarks")
    bench = p.add_subparsers(dest="bench", required=True)
    q = bench.add_parser("quality", help="translation quality on the built-in dataset, judged by an oracle net")
    q.add_argument("--checkpoint", required=True, help="run dir, our checkpoint, or the authors' *_nets_ema.ckpt")
    q.add_argument("--data", required=True, help="the built-in dataset folder (from make-dataset)")
    q.add_argument(
        "--num-outputs", type=positive_int, default=10, help="outputs per source image (default 10, the paper's)"
    )
    q.add_argument("--max-sources", type=positive_int, help="cap on source images per domain (default: all val images)")
    q.add_argument("--seed", type=nonnegative_int, default=0, help="seed of latents and reference choices")
    q.add_argument("--out", help="also write the figures to this JSON file")
    q.add_argument("--device", type=device_name, default=_default_device(), help="torch device")
    q.set_defaults(func=cmd_bench_quality)
    for name, what in (("train", "training iterations (all four updates + EMA)"), ("synth", "synthesis batches")):
        b = bench.add_parser(name, help=f"speed and memory of {what}")
        _add_config_args(b)
        b.add_argument("--img-size", type=positive_int, help="image size (same as --set img_size=N)")
        b.add_argument("--batch-size", type=positive_int, help="images per iteration (default: the preset's)")
        b.add_argument("--device", type=device_name, default=_default_device(), help="torch device")
        _add_speed_args(b, resampling=name == "train")
        b.add_argument("--warmup", type=nonnegative_int, default=1, help="untimed iterations first (default 1)")
        b.add_argument("--repeats", type=positive_int, default=3 if name == "train" else 5, help="timed iterations")
        b.add_argument("--no-flops", action="store_true", help="skip counting FLOPs (one more iteration)")
        b.add_argument("--json", action="store_true", help="print one JSON object")
        b.add_argument(
            "--impl",
            choices=["ours", "authors"],
            default="ours",
            help="authors: the same work done the authors' way (the baseline)",
        )
        b.add_argument(
            "--malloc",
            choices=list(MALLOC_MODES),
            help="tuned: keep freed memory in the process (glibc; default for ours); "
            "system: the C library's defaults (default for --impl authors)",
        )
        if name == "synth":
            b.add_argument("--mode", choices=["latent", "reference"], default="latent", help="style source")
        b.set_defaults(func=cmd_bench_speed)

    p = sub.add_parser("eval", help="FID and LPIPS by the paper's protocol (latent- and reference-guided)")
    p.add_argument("--checkpoint", required=True, help="run dir, our checkpoint, or the authors' *_nets_ema.ckpt")
    p.add_argument("--train-data", required=True, help="training images, one sub-folder per domain (FID's reals)")
    p.add_argument("--val-data", required=True, help="validation images, same domains (sources and references)")
    p.add_argument("--mode", choices=("latent", "reference", "both"), default="both", help="default: both")
    p.add_argument("--out", default="eval_output", help="output folder for eval.json (default: eval_output)")
    p.add_argument(
        "--num-outs", type=positive_int, default=10, help="outputs per source image (default 10, the paper's)"
    )
    p.add_argument("--batch-size", type=positive_int, default=50, help="images per forward pass (default 50)")
    p.add_argument(
        "--fid-net",
        choices=FEATURE_NET_CHOICES,
        default="torchvision",
        help="FID features: torchvision's Inception v3 (alias inception; as the authors' evaluation, default) or "
        "the TF FID Inception of pytorch-fid",
    )
    p.add_argument(
        "--weights-dir", help="folder holding the weight files (default: the torch cache, $TORCH_HOME/hub/checkpoints)"
    )
    p.add_argument("--cache-dir", help="cache of real-image statistics (default: ~/.cache/stargan-v2/fid_stats)")
    p.add_argument("--save-images", action="store_true", help="also write every output as PNG under OUT/images/")
    p.add_argument("--max-sources", type=positive_int, help="cap on source images per domain (default: all)")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="seed of latents and reference choices (default 0)")
    p.add_argument(
        "--lpips-batch",
        type=positive_int,
        default=32,
        help="sources per LPIPS average, as the authors' --val_batch_size (default 32); the per-source mean is "
        "reported beside it",
    )
    p.add_argument("--wing", help="the authors' wing.ckpt for high-pass (CelebA-HQ) models")
    p.add_argument(
        "--workers", type=nonnegative_int, default=min(4, os.cpu_count() or 1), help="image-reading worker processes"
    )
    p.add_argument("--device", type=device_name, default=_default_device(), help="torch device")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser(
        "fid",
        help="FID between two folders of images or .npz statistics files (as pytorch-fid)",
        description="FID between two folders of images (searched recursively, any size) or .npz statistics "
        "files (mu, sigma; pytorch-fid's format). With pt_inception (the default) the numbers are pytorch-fid's; "
        "with inception (torchvision's, the authors' evaluation) images are resized as the authors' code does.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="two folders or .npz files (one folder with --save-stats)")
    p.add_argument(
        "--fid-net",
        choices=FEATURE_NET_CHOICES,
        help="pt_inception: the TF FID Inception with pytorch-fid's resizing (default); inception (= torchvision): "
        "torchvision's Inception v3 with the authors' PIL resizing",
    )
    p.add_argument(
        "--img-size",
        type=positive_int,
        help="first squash every image to N x N (PIL bilinear, 8 bits), as the authors' evaluation does at the "
        "model's size; default: none (as pytorch-fid)",
    )
    p.add_argument("--save-stats", metavar="FILE.npz", help="write the statistics of the one folder given to FILE.npz")
    p.add_argument("--batch-size", type=positive_int, default=50, help="images per forward pass (default 50)")
    p.add_argument("--device", type=device_name, default=_default_device(), help="torch device")
    p.add_argument(
        "--workers", type=nonnegative_int, default=min(4, os.cpu_count() or 1), help="image-reading worker processes"
    )
    p.add_argument(
        "--weights-dir", help="folder holding the weight files (default: the torch cache, $TORCH_HOME/hub/checkpoints)"
    )
    p.add_argument("--json", action="store_true", help="print a JSON object (FID, paths, image counts, network)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_fid)

    p = sub.add_parser("align", help="align face photos to the CelebA-HQ framing (for the CelebA-HQ model)")
    p.add_argument("--input", required=True, help="an image, or a folder of images (searched recursively)")
    p.add_argument("--out", required=True, help="output folder (same relative paths, as PNG)")
    p.add_argument("--fan", "--wing", dest="fan", required=True, help="the face-landmark network, wing.ckpt")
    p.add_argument("--lm-mean", help="the CelebA-HQ mean landmarks, celeba_lm_mean.npz (default: beside --fan)")
    p.add_argument("--size", type=positive_int, default=256, help="output size in pixels (default 256)")
    p.add_argument(
        "--refine", type=nonnegative_int, default=1, help="extra landmark passes on the aligned face (default 1)"
    )
    p.add_argument("--device", type=device_name, default=_default_device(), help="torch device")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_align)

    p = sub.add_parser("serve", help="the web demo: translate uploaded pictures in the browser (Gradio)")
    p.add_argument(
        "--checkpoint",
        help=f"run dir, our checkpoint, or the authors' *_nets_ema.ckpt (default: the demo run {DEMO_RUN}, else the "
        "demo model shipped with the package)",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=port_number, default=7860, help="port (default 7860)")
    p.add_argument("--examples", help="folder of example source images to offer (default: the demo's, if any)")
    p.add_argument("--domains", help="names of the checkpoint's domains, comma-separated (if it stores none)")
    p.add_argument("--max-upload-mb", type=positive_float, default=10.0, help="largest upload in MB (default 10)")
    p.add_argument(
        "--max-pixels", type=positive_int, default=4096 * 4096, help="largest image in pixels (default 4096x4096)"
    )
    p.add_argument("--wing", help="the authors' wing.ckpt for high-pass (CelebA-HQ) models")
    p.add_argument("--device", type=device_name, default=_default_device(), help="torch device")
    p.set_defaults(func=cmd_serve)
    return parser


def _malloc_mode(args: argparse.Namespace) -> str:
    """The allocator setting of this command: ``bench --malloc``, else ``$STARGAN_V2_MALLOC`` (default tuned).

    The benchmark's ``--impl authors`` baseline keeps the C library's defaults unless told otherwise, as the
    authors' code does.
    """
    chosen = getattr(args, "malloc", None)
    if chosen is not None:
        return chosen
    if getattr(args, "impl", None) == "authors":
        return "system"
    return malloc_mode_from_env()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``stargan-v2`` console script; returns the exit status."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse has printed the usage and the error (or --help): return its status
        return exc.code if isinstance(exc.code, int) else 2
    try:
        if _malloc_mode(args) == "tuned":
            tune_malloc()
        return args.func(args)
    except (ConfigError, CheckpointError, FileNotFoundError, FileExistsError, ValueError) as exc:
        print(f"stargan-v2 {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
