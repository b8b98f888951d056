"""``stargan-v2 export --format onnx|torchscript``: the files run and match PyTorch, with a free batch size."""

from __future__ import annotations

import json
import warnings

import numpy as np
import onnxruntime as ort
import pytest
import torch

from stargan_v2.checkpoint import export_official, load_ema
from stargan_v2.cli import main
from stargan_v2.export import TORCHSCRIPT_METADATA, example_inputs, onnx_paths

from .synthesis_helpers import tiny_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def checkpoint(tmp_path):
    return tiny_checkpoint(tmp_path / "tiny.safetensors", domains=["cat", "dog"])


def reference_outputs(nets, inputs: dict[str, tuple[torch.Tensor, ...]]) -> dict[str, np.ndarray]:
    """What the PyTorch networks compute for each entry point."""
    with torch.no_grad():
        x, z, y = inputs["latent"]
        latent = nets.generator(x, nets.mapping_network(z, y))
        x, x_ref, y = inputs["reference"]
        reference = nets.generator(x, nets.style_encoder(x_ref, y))
    return {"latent": latent.numpy(), "reference": reference.numpy()}


def session(path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def test_onnx_matches_pytorch_for_any_batch(capsys, tmp_path, checkpoint):
    out = tmp_path / "exported" / "tiny.onnx"
    assert main(["export", "--format", "onnx", "--checkpoint", str(checkpoint), "--out", str(out)]) == 0
    paths = onnx_paths(out)
    assert paths["latent"].name == "tiny_latent.onnx" and paths["reference"].name == "tiny_reference.onnx"
    assert "tiny_latent.onnx" in capsys.readouterr().out
    nets, config = load_ema(checkpoint)
    for batch in (1, 3):  # the graphs were traced with batch 2
        inputs = example_inputs(config.model, batch)
        expected = reference_outputs(nets, inputs)
        for entry, path in paths.items():
            sess = session(path)
            names = [i.name for i in sess.get_inputs()]
            assert names == (["x", "z", "y"] if entry == "latent" else ["x", "x_ref", "y"])
            (got,) = sess.run(None, {n: t.numpy() for n, t in zip(names, inputs[entry], strict=True)})
            np.testing.assert_allclose(got, expected[entry], atol=1e-4, rtol=0)
    meta = session(paths["latent"]).get_modelmeta().custom_metadata_map
    assert json.loads(meta["domains"]) == ["cat", "dog"] and meta["img_size"] == "32"


@pytest.mark.slow
def test_torchscript_matches_pytorch(tmp_path, checkpoint):
    out = tmp_path / "tiny.pt"
    assert main(["export", "--format", "torchscript", "--checkpoint", str(checkpoint), "--out", str(out)]) == 0
    nets, config = load_ema(checkpoint)
    extra = {TORCHSCRIPT_METADATA: ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated upstream, yet still loads
        module = torch.jit.load(str(out), _extra_files=extra)
    assert json.loads(extra[TORCHSCRIPT_METADATA])["domains"] == ["cat", "dog"]
    inputs = example_inputs(config.model, 3)
    expected = reference_outputs(nets, inputs)
    with torch.no_grad():
        np.testing.assert_allclose(module.latent(*inputs["latent"]).numpy(), expected["latent"], atol=1e-5)
        np.testing.assert_allclose(module(*inputs["latent"]).numpy(), expected["latent"], atol=1e-5)
        np.testing.assert_allclose(module.reference(*inputs["reference"]).numpy(), expected["reference"], atol=1e-5)


def test_authors_file_exports_with_given_domain_names(tmp_path, checkpoint):
    nets, _ = load_ema(checkpoint)
    official = export_official(nets, tmp_path / "000001_nets_ema.ckpt")
    out = tmp_path / "onnx"
    argv = ["export", "--format", "onnx", "--checkpoint", str(official), "--out", str(out), "--domains", "a,b"]
    assert main(argv) == 0
    meta = session(out / "reference.onnx").get_modelmeta().custom_metadata_map
    assert json.loads(meta["domains"]) == ["a", "b"] and meta["entry_point"] == "reference"


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_high_pass_models_are_refused_with_the_reason(capsys, tmp_path, fmt):
    checkpoint = tiny_checkpoint(tmp_path / "hpf.safetensors", w_hpf=1.0)
    code = main(["export", "--format", fmt, "--checkpoint", str(checkpoint), "--out", str(tmp_path / "x.onnx")])
    _, err = capsys.readouterr()
    assert code == 2 and "w_hpf=1.0" in err and "face-landmark" in err
    assert not list(tmp_path.glob("x*"))
