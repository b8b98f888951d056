"""``export --format official`` writes ``_optims.ckpt``, so the authors' code can resume training from our run.

The authors' code builds one ``torch.optim.Adam(net.parameters(), lr, betas=[beta1, beta2], weight_decay)``
per network and loads ``{name: optimizer.state_dict()}`` into them. An optimiser's state dict refers to
parameters by position in ``net.parameters()``, so the file is only right if our modules list their
parameters in the authors' order; the last test checks that against their files' key order.
"""

from __future__ import annotations

import pytest
import torch

from stargan_v2.checkpoint import export_official_optimizers, load_official
from stargan_v2.cli import main
from stargan_v2.config import preset
from stargan_v2.model import build_nets
from stargan_v2.train import init_train_state, train_step
from stargan_v2.training_state import save_training_state

from .conftest import make_inputs, shared_dir


@pytest.fixture
def trained(tiny_config):
    """A tiny training state after two steps (so every Adam state is set and not at its start)."""
    torch.manual_seed(0)
    state = init_train_state(tiny_config)
    for seed in range(2):
        train_step(state, make_inputs(tiny_config, seed=seed))
    return state


def _authors_optimizer(module: torch.nn.Module, config, name: str) -> torch.optim.Adam:
    """An optimiser built as the authors' solver builds it (a list for the betas, f_lr for F)."""
    t = config.train
    lr = t.f_lr if name == "mapping_network" else t.lr
    return torch.optim.Adam(params=module.parameters(), lr=lr, betas=[t.beta1, t.beta2], weight_decay=t.weight_decay)


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_export_writes_optims_that_adam_loads_into_modules_built_like_theirs(capsys, tmp_path, trained, legacy):
    path = save_training_state(trained, tmp_path / "state.safetensors")
    out = tmp_path / "official"
    argv = ["export", "--format", "official", "--checkpoint", str(path), "--out", str(out)]
    assert main(argv + (["--legacy"] if legacy else [])) == 0, capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["000002_nets.ckpt", "000002_nets_ema.ckpt", "000002_optims.ckpt"]
    assert "000002_optims.ckpt" in capsys.readouterr().out

    optims = torch.load(out / "000002_optims.ckpt", weights_only=True)  # tensors, ints, floats, lists only
    assert list(optims) == ["generator", "mapping_network", "style_encoder", "discriminator"]
    nets = load_official(out / "000002_nets.ckpt").nets  # the training nets, as their code resumes them
    for name, module in nets.items():
        saved = optims[name]
        assert set(saved) == {"state", "param_groups"} and len(saved["param_groups"]) == 1
        group = saved["param_groups"][0]
        assert set(group) == {"lr", "betas", "eps", "weight_decay", "amsgrad", "params"}
        assert group["betas"] == [trained.config.train.beta1, trained.config.train.beta2]
        assert all(isinstance(s["step"], int) for s in saved["state"].values())

        theirs = _authors_optimizer(module, trained.config, name)
        theirs.load_state_dict(saved)
        # Every parameter's moments are the ones our optimiser holds for the parameter of the same name.
        ours = trained.optimizers[name]
        ours_by_name = dict(zip([n for n, _ in getattr(trained.nets, name).named_parameters()],
                                getattr(trained.nets, name).parameters(), strict=True))  # fmt: skip
        for param_name, param in module.named_parameters():
            mine, loaded = ours.state[ours_by_name[param_name]], theirs.state[param]
            assert int(loaded["step"]) == int(mine["step"]) >= 2
            assert torch.equal(loaded["exp_avg"], mine["exp_avg"]), f"{name}.{param_name}"
            assert torch.equal(loaded["exp_avg_sq"], mine["exp_avg_sq"]), f"{name}.{param_name}"
        assert theirs.param_groups[0]["lr"] == ours.param_groups[0]["lr"]


def test_resuming_from_the_exported_file_continues_as_our_optimiser_would(tmp_path, trained):
    """One more Adam step from the exported state gives the same weights as one more step of ours."""
    export_official_optimizers(trained.optimizers, tmp_path / "000002_optims.ckpt")
    saved = torch.load(tmp_path / "000002_optims.ckpt", weights_only=True)
    name = "style_encoder"
    ours_module = getattr(trained.nets, name)
    theirs_module = build_nets(trained.config.model, init=False).style_encoder
    theirs_module.load_state_dict(ours_module.state_dict())
    theirs = _authors_optimizer(theirs_module, trained.config, name)
    theirs.load_state_dict(saved[name])
    g = torch.Generator().manual_seed(7)
    for p_ours, p_theirs in zip(ours_module.parameters(), theirs_module.parameters(), strict=True):
        grad = torch.randn(p_ours.shape, generator=g)
        p_ours.grad, p_theirs.grad = grad.clone(), grad.clone()
    trained.optimizers[name].step()
    theirs.step()
    # Ours is the fused Adam, theirs the per-parameter loop: the same update up to float rounding.
    for (key, a), b in zip(ours_module.named_parameters(), theirs_module.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-7, msg=key)


def test_an_ema_file_exports_without_optims_and_says_why(capsys, tmp_path, trained):
    from stargan_v2.checkpoint import save_ema

    ema = save_ema(trained.nets_ema, trained.config, tmp_path / "ema.safetensors", step=2)
    assert main(["export", "--format", "official", "--checkpoint", str(ema), "--out", str(tmp_path / "o")]) == 0
    assert [p.name for p in (tmp_path / "o").iterdir()] == ["000002_nets_ema.ckpt"]
    assert "_optims.ckpt" in capsys.readouterr().out


def test_an_optimiser_unlike_the_authors_is_refused(trained):
    from stargan_v2.checkpoint import CheckpointError

    sgd = {"generator": torch.optim.SGD(trained.nets.generator.parameters(), lr=0.1)}
    with pytest.raises(CheckpointError, match=r"generator.*Adam"):
        export_official_optimizers(sgd, "unused.ckpt")


def _authors_key_order() -> dict[tuple[str, str], list[str]]:
    """``(model, network) -> state-dict keys`` in the order of the authors' released files."""
    shared = shared_dir()
    if shared is None or not (shared / "official_checkpoint_keys.txt").is_file():
        pytest.skip("shared/official_checkpoint_keys.txt is not here (set STARGAN_V2_SHARED)")
    keys: dict[tuple[str, str], list[str]] = {}
    for line in (shared / "official_checkpoint_keys.txt").read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        model, network, key, _ = line.split("\t")
        keys.setdefault((model, network), []).append(key)
    return keys


@pytest.mark.parametrize("model", ["afhq", "celeba_hq"])
def test_our_parameters_are_in_the_order_of_the_authors_modules(model):
    """Their Adam indexes ``net.parameters()``: the same names in the same order make the indices agree."""
    keys = _authors_key_order()
    with torch.device("meta"):
        nets = build_nets(preset(model).model, init=False)
    for name, module in nets.items():
        ours = [n for n, _ in module.named_parameters()]
        theirs = [k for k in keys[(model, name)] if k in set(ours)]
        assert theirs == ours, name
        # Everything else in their files is a buffer of ours (hpf.filter), not a parameter we lack.
        buffers = {n for n, _ in module.named_buffers()}
        assert set(keys[(model, name)]) - set(ours) <= buffers, name
