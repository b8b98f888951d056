"""Export the EMA generator with its mapping network and style encoder to ONNX and TorchScript.

Both formats carry the two ways the paper synthesises an image (Section 2):

- latent-guided, ``(x, z, y) -> G(x, F_y(z))``;
- reference-guided, ``(x, x_ref, y) -> G(x, E_y(x_ref))``, where ``y`` is the reference's domain.

``x`` and ``x_ref`` are ``(B, 3, S, S)`` float32 images in [-1, 1] at the model's size ``S``, ``z`` is
``(B, latent_dim)`` float32 and ``y`` is ``(B,)`` int64; the batch size is free.

High-pass (CelebA-HQ, ``w_hpf > 0``) models are refused: their generator needs face masks from the
face-landmark network, whose mask recipe does not trace to a graph, and the generator's high-pass path looks
its skip features up by spatial size and sizes its filter by the channel count, which tracing records as
values instead of constants. Use them through ``stargan_v2.StarGANv2`` in PyTorch.

ONNX has one entry point per graph, so it gets two files, ``NAME_latent.onnx`` and ``NAME_reference.onnx``;
TorchScript gets one file whose module has the methods ``latent`` and ``reference`` (``forward`` is
``latent``). Both record the domain names, image size, latent size and inputs as metadata (ONNX
``metadata_props``; the TorchScript extra file ``stargan_v2.json``).
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import warnings
from collections.abc import Iterator, Sequence
from copy import deepcopy
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ._version import __version__
from .config import ModelConfig
from .model import Nets

PathLike = str | os.PathLike[str]
#: The ONNX operator set written; 17 is read by every onnxruntime since 1.13.
ONNX_OPSET = 17
#: The TorchScript file's extra entry holding the metadata.
TORCHSCRIPT_METADATA = "stargan_v2.json"
#: The graph formats the generator can be exported to (``stargan-v2 export --format``).
GRAPH_FORMATS: tuple[str, ...] = ("onnx", "torchscript")


class ExportError(ValueError):
    """A model that cannot be exported in the asked format; the message says why."""


class LatentGuided(nn.Module):
    """``(x, z, y) -> G(x, F_y(z))``."""

    def __init__(self, nets: Nets) -> None:
        super().__init__()
        self.generator = nets.generator
        self.mapping_network = nets.mapping_network

    def forward(self, x: Tensor, z: Tensor, y: Tensor) -> Tensor:
        return self.generator(x, self.mapping_network(z, y))


class ReferenceGuided(nn.Module):
    """``(x, x_ref, y) -> G(x, E_y(x_ref))``."""

    def __init__(self, nets: Nets) -> None:
        super().__init__()
        self.generator = nets.generator
        self.style_encoder = nets.style_encoder

    def forward(self, x: Tensor, x_ref: Tensor, y: Tensor) -> Tensor:
        return self.generator(x, self.style_encoder(x_ref, y))


class BothEntryPoints(nn.Module):
    """One module with both entry points, for TorchScript: ``latent`` (also ``forward``) and ``reference``."""

    def __init__(self, nets: Nets) -> None:
        super().__init__()
        self.generator = nets.generator
        self.mapping_network = nets.mapping_network
        self.style_encoder = nets.style_encoder

    def forward(self, x: Tensor, z: Tensor, y: Tensor) -> Tensor:
        return self.latent(x, z, y)

    def latent(self, x: Tensor, z: Tensor, y: Tensor) -> Tensor:
        return self.generator(x, self.mapping_network(z, y))

    def reference(self, x: Tensor, x_ref: Tensor, y: Tensor) -> Tensor:
        return self.generator(x, self.style_encoder(x_ref, y))


def example_inputs(config: ModelConfig, batch: int = 2) -> dict[str, tuple[Tensor, ...]]:
    """Inputs of each entry point for tracing (random, CPU): ``{"latent": (x, z, y), "reference": (x, x_ref, y)}``."""
    g = torch.Generator().manual_seed(0)
    size = config.img_size
    x = torch.rand(batch, 3, size, size, generator=g) * 2 - 1
    x_ref = torch.rand(batch, 3, size, size, generator=g) * 2 - 1
    z = torch.randn(batch, config.latent_dim, generator=g)
    y = torch.arange(batch) % config.num_domains
    return {"latent": (x, z, y), "reference": (x, x_ref, y)}


#: The names of each entry point's inputs, in order; the output is called ``image``.
INPUT_NAMES: dict[str, list[str]] = {"latent": ["x", "z", "y"], "reference": ["x", "x_ref", "y"]}


def check_exportable(config: ModelConfig, fmt: str) -> None:
    """Refuse high-pass models with the reason (see the module docstring)."""
    if config.uses_hpf:
        raise ExportError(
            f"{fmt} export supports models without the high-pass path only (this one has w_hpf={config.w_hpf}): "
            "the high-pass generator needs face masks from the face-landmark network, whose mask recipe does not "
            "trace to a graph. Use the model in PyTorch (stargan_v2.StarGANv2, stargan-v2 translate) instead."
        )


def export_metadata(config: ModelConfig, domains: Sequence[str], entry: str | None = None) -> dict[str, Any]:
    """What a user of an exported file needs to know: domains, sizes, inputs, value range."""
    meta: dict[str, Any] = {
        "producer": f"stargan-v2 {__version__}",
        "domains": list(domains),
        "img_size": config.img_size,
        "latent_dim": config.latent_dim,
        "style_dim": config.style_dim,
        "image_range": [-1, 1],
        "inputs": INPUT_NAMES[entry] if entry is not None else INPUT_NAMES,
    }
    if entry is not None:
        meta["entry_point"] = entry
    return meta


@contextlib.contextmanager
def _quiet_export() -> Iterator[None]:
    """Silence the exporters' notices about deprecation and tracing that do not apply here: the graphs have no
    data-dependent control flow (only shape checks, which hold for any batch size), and the instance norms
    use per-image statistics in eval mode too."""
    with warnings.catch_warnings():
        for category in (DeprecationWarning, FutureWarning, UserWarning, torch.jit.TracerWarning):
            warnings.simplefilter("ignore", category)
        yield


def onnx_paths(out: PathLike) -> dict[str, Path]:
    """The two files ``export_onnx`` writes for ``out``: ``NAME_latent.onnx`` and ``NAME_reference.onnx``
    beside ``out`` when it ends in ``.onnx``, else ``latent.onnx`` and ``reference.onnx`` inside folder ``out``."""
    out = Path(out)
    if out.suffix.lower() == ".onnx":
        return {entry: out.with_name(f"{out.stem}_{entry}.onnx") for entry in ("latent", "reference")}
    return {entry: out / f"{entry}.onnx" for entry in ("latent", "reference")}


def export_onnx(nets: Nets, config: ModelConfig, out: PathLike, domains: Sequence[str]) -> list[Path]:
    """Write the latent- and reference-guided graphs (see ``onnx_paths``) with a dynamic batch axis.

    Uses the TorchScript-based exporter, which needs no extra packages and traces these networks exactly.
    """
    try:
        import onnx
    except ImportError:
        raise ImportError("ONNX export needs the onnx package: pip install 'stargan-v2[export]'") from None
    check_exportable(config, "ONNX")
    nets = _cpu_eval(nets)
    modules = {"latent": LatentGuided(nets), "reference": ReferenceGuided(nets)}
    inputs = example_inputs(config)
    names = INPUT_NAMES
    written = []
    for entry, path in onnx_paths(out).items():
        path.parent.mkdir(parents=True, exist_ok=True)
        dynamic = {name: {0: "batch"} for name in [*names[entry], "image"]}
        kwargs: dict[str, Any] = (
            {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
        )
        with _quiet_export(), torch.no_grad():
            torch.onnx.export(
                modules[entry],
                inputs[entry],
                str(path),
                input_names=names[entry],
                output_names=["image"],
                dynamic_axes=dynamic,
                opset_version=ONNX_OPSET,
                **kwargs,
            )
        model = onnx.load(str(path))
        # ONNX metadata values are strings: plain strings stay, everything else is JSON.
        props = {
            k: v if isinstance(v, str) else json.dumps(v) for k, v in export_metadata(config, domains, entry).items()
        }
        onnx.helper.set_model_props(model, props)
        model.doc_string = f"StarGAN v2 {entry}-guided generator: ({', '.join(names[entry])}) -> image in [-1, 1]"
        onnx.checker.check_model(model)
        onnx.save(model, str(path))
        written.append(path)
    return written


def export_torchscript(nets: Nets, config: ModelConfig, out: PathLike, domains: Sequence[str]) -> Path:
    """Write one traced TorchScript module with the methods ``latent`` (= ``forward``) and ``reference``.

    Load it with ``torch.jit.load(path)`` (also from C++ with libtorch); the batch size is free.
    """
    check_exportable(config, "TorchScript")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    module = BothEntryPoints(_cpu_eval(nets))
    inputs = example_inputs(config)
    with _quiet_export():
        with torch.no_grad():
            traced = torch.jit.trace_module(
                module, {"forward": inputs["latent"], "latent": inputs["latent"], "reference": inputs["reference"]}
            )
        meta = json.dumps(export_metadata(config, domains), indent=2)
        torch.jit.save(traced, str(out), _extra_files={TORCHSCRIPT_METADATA: meta})
    return out


def _cpu_eval(nets: Nets) -> Nets:
    """CPU float32 copies in eval mode: the files then do not depend on the device they were made on, and the
    caller's networks stay where they are."""

    def copy(module: nn.Module) -> nn.Module:
        return deepcopy(module).cpu().float().eval()

    return Nets(copy(nets.generator), copy(nets.mapping_network), copy(nets.style_encoder), None)  # type: ignore[arg-type]
