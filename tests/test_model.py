"""The four networks: shapes, domain heads, AdaIN, the high-pass path, init, and the released sizes."""

from __future__ import annotations

import math

import pytest
import torch

from stargan_v2.config import Config, ModelConfig, apply_overrides, preset
from stargan_v2.model import (
    AdaIN,
    AdainResBlock,
    HighPass,
    ResBlock,
    build_nets,
    conv3x3_avgpool,
    count_parameters,
    num_generator_downsamplings,
    select_domain,
    set_fused_resampling,
    upsample_conv3x3,
)

# PAPER.md's table of the released models.
RELEASED = {
    "afhq": {
        "generator": 33_892_995,
        "mapping_network": 3_259_072,
        "style_encoder": 20_949_760,
        "discriminator": 20_852_803,
    },
    "celeba_hq": {
        "generator": 43_467_395,
        "mapping_network": 2_438_272,
        "style_encoder": 20_916_928,
        "discriminator": 20_852_290,
    },
}


@pytest.mark.parametrize("name", sorted(RELEASED))
def test_parameter_counts_equal_the_released_models(name: str) -> None:
    with torch.device("meta"):
        nets = build_nets(preset(name).model, init=False)
    assert {k: count_parameters(m) for k, m in nets.items()} == RELEASED[name]


def test_shapes(tiny_config: Config) -> None:
    m = tiny_config.model
    nets = build_nets(m)
    x = torch.randn(3, 3, m.img_size, m.img_size)
    y = torch.tensor([0, 1, 1])
    z = torch.randn(3, m.latent_dim)
    s = nets.mapping_network(z, y)
    assert s.shape == (3, m.style_dim)
    assert nets.style_encoder(x, y).shape == (3, m.style_dim)
    assert nets.generator(x, s).shape == x.shape
    assert nets.discriminator(x, y).shape == (3,)


@pytest.mark.parametrize("img_size", [16, 64, 128])
def test_other_sizes_and_domain_counts(img_size: int) -> None:
    cfg = ModelConfig(img_size=img_size, num_domains=4, dim_in=8, max_conv_dim=16, hidden_dim=16)
    nets = build_nets(cfg)
    x = torch.randn(2, 3, img_size, img_size)
    y = torch.tensor([3, 0])
    s = nets.style_encoder(x, y)
    assert nets.generator(x, s).shape == x.shape
    assert nets.discriminator(x, y).shape == (2,)
    assert len(nets.mapping_network.unshared) == 4


@pytest.mark.parametrize(("img_size", "bottleneck", "downs"), [(32, 4, 3), (32, 8, 2), (64, 16, 2), (32, 32, 0)])
def test_g_bottleneck_sets_the_generators_downsamplings(img_size: int, bottleneck: int, downs: int) -> None:
    cfg = ModelConfig(
        img_size=img_size, num_domains=2, dim_in=8, max_conv_dim=32, hidden_dim=16, g_bottleneck=bottleneck
    )
    assert num_generator_downsamplings(cfg) == downs
    g = build_nets(cfg).generator
    assert len(g.encode) == len(g.decode) == downs + 2
    x = torch.randn(2, 3, img_size, img_size)
    feature = g.from_rgb(x)
    for block in g.encode:
        feature = block(feature)
    assert feature.shape[2:] == (bottleneck, bottleneck)
    assert g(x, torch.randn(2, cfg.style_dim)).shape == x.shape


def test_the_released_rule_is_the_default_bottleneck() -> None:
    for name, downs in (("afhq", 4), ("celeba_hq", 5)):
        cfg = preset(name).model
        assert cfg.g_bottleneck is None and num_generator_downsamplings(cfg) == downs
    assert num_generator_downsamplings(ModelConfig(img_size=32)) == 1


def test_select_domain_picks_each_samples_row() -> None:
    per_domain = torch.arange(2 * 3 * 4).view(2, 3, 4)
    picked = select_domain(per_domain, torch.tensor([2, 0]))
    assert torch.equal(picked, torch.stack([per_domain[0, 2], per_domain[1, 0]]))
    with pytest.raises(ValueError, match="shape"):
        select_domain(per_domain, torch.tensor([0, 1, 2]))


def test_each_sample_uses_only_its_own_domain_head(tiny_config: Config) -> None:
    """Changing domain 1's heads must change the outputs of domain-1 samples only."""
    m = tiny_config.model
    nets = build_nets(m)
    x = torch.randn(4, 3, m.img_size, m.img_size)
    z = torch.randn(4, m.latent_dim)
    y = torch.tensor([0, 1, 0, 1])
    with torch.no_grad():
        before = (nets.mapping_network(z, y), nets.style_encoder(x, y), nets.discriminator(x, y))
        nets.mapping_network.unshared[1][-1].bias.add_(1.0)
        nets.style_encoder.unshared[1].bias.add_(1.0)
        nets.discriminator.main[-1].bias[1] += 1.0
        after = (nets.mapping_network(z, y), nets.style_encoder(x, y), nets.discriminator(x, y))
    for b, a in zip(before, after, strict=True):
        assert torch.equal(a[y == 0], b[y == 0])
        assert torch.allclose(a[y == 1], b[y == 1] + 1.0, atol=1e-5)


def test_adain_with_zero_style_projection_is_instance_norm() -> None:
    ada = AdaIN(style_dim=4, num_features=3)
    torch.nn.init.zeros_(ada.fc.weight)
    torch.nn.init.zeros_(ada.fc.bias)
    x = torch.randn(2, 3, 5, 5) * 3 + 1
    out = ada(x, torch.randn(2, 4))
    expected = (x - x.mean((2, 3), keepdim=True)) / torch.sqrt(x.var((2, 3), unbiased=False, keepdim=True) + 1e-5)
    assert torch.allclose(out, expected, atol=1e-5)
    # gamma and beta come from the style: beta = 1 shifts the output by one.
    ada.fc.bias.data[3:] = 1.0
    assert torch.allclose(ada(x, torch.randn(2, 4)), expected + 1.0, atol=1e-5)


def test_resblock_is_scaled_sum_of_shortcut_and_residual() -> None:
    block = ResBlock(4, 8, downsample=True)
    x = torch.randn(1, 4, 8, 8)
    out = block(x)
    assert out.shape == (1, 8, 4, 4)
    assert torch.allclose(out, (block._shortcut(x) + block._residual(x)) / math.sqrt(2))


def test_high_pass_filter_is_a_scaled_laplacian() -> None:
    hpf = HighPass(w_hpf=2.0)
    assert torch.equal(hpf.filter, torch.tensor([[-1.0, -1, -1], [-1, 8, -1], [-1, -1, -1]]) / 2)
    # A Laplacian removes constants (away from the zero-padded border) and is depthwise.
    out = hpf(torch.full((1, 2, 6, 6), 3.0))
    assert torch.allclose(out[..., 1:-1, 1:-1], torch.zeros(1, 2, 4, 4))


def test_high_pass_generator_drops_decoder_shortcuts_and_uses_masks() -> None:
    cfg = ModelConfig(img_size=64, num_domains=2, dim_in=8, max_conv_dim=16, hidden_dim=16, w_hpf=1.0)
    assert (
        num_generator_downsamplings(cfg)
        == num_generator_downsamplings(apply_overrides(Config(model=cfg), ["w_hpf=0"]).model) + 1
    )
    g = build_nets(cfg).generator
    assert all(not block.use_shortcut for block in g.decode)
    x = torch.randn(2, 3, 64, 64)
    s = torch.randn(2, cfg.style_dim)
    zeros = (torch.zeros(2, 1, 256, 256), torch.zeros(2, 1, 256, 256))
    ones = (torch.ones(2, 1, 256, 256), torch.ones(2, 1, 256, 256))
    plain = g(x, s)
    # All-zero masks add nothing; non-zero masks add high-pass features of the encoder.
    assert torch.allclose(g(x, s, masks=zeros), plain)
    assert not torch.allclose(g(x, s, masks=ones), plain)
    with pytest.raises(ValueError, match="high-pass"):
        build_nets(preset("tiny").model).generator(torch.randn(1, 3, 32, 32), torch.randn(1, 16), masks=ones)


def test_he_init() -> None:
    nets = build_nets(ModelConfig(img_size=32, dim_in=32, max_conv_dim=64, hidden_dim=256))
    for _, module in nets.items():
        for layer in module.modules():
            if isinstance(layer, (torch.nn.Conv2d, torch.nn.Linear)):
                if layer.bias is not None:
                    assert torch.count_nonzero(layer.bias) == 0
                fan_in = layer.weight[0].numel()
                if layer.weight.numel() >= 4096:
                    assert layer.weight.std().item() == pytest.approx(math.sqrt(2 / fan_in), rel=0.1)


def test_generator_has_no_tanh(tiny_config: Config) -> None:
    """The released model leaves outputs unbounded; a large bias in to_rgb must pass straight through."""
    torch.manual_seed(0)  # the margin depends on the random weights: fix them
    nets = build_nets(tiny_config.model)
    m = tiny_config.model
    with torch.no_grad():
        nets.generator.to_rgb[2].bias.fill_(50.0)
    out = nets.generator(torch.randn(1, 3, m.img_size, m.img_size), torch.randn(1, m.style_dim))
    assert out.min() > 1.0


def test_folded_resampling_equals_the_separate_operations() -> None:
    """The stride-2 kernels built from a 3x3 conv are the same functions as conv+pool and upsample+conv."""
    g = torch.Generator().manual_seed(0)
    conv = torch.nn.Conv2d(5, 7, 3, 1, 1).double()
    x = torch.randn(2, 5, 12, 10, dtype=torch.float64, generator=g)
    want = torch.nn.functional.avg_pool2d(conv(x), 2)
    torch.testing.assert_close(conv3x3_avgpool(x, conv), want, rtol=0, atol=1e-12)
    want = conv(torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest"))
    torch.testing.assert_close(upsample_conv3x3(x, conv), want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
def test_folded_kernels_keep_the_weights_layout(channels_last: bool) -> None:
    """The 4x4 kernels are one matrix product on the weight's own memory: same values in either layout, and a
    channels_last weight gives a channels_last kernel (so the convolution does not reorder it)."""
    from stargan_v2.model import _fold, _taps

    conv = torch.nn.Conv2d(5, 7, 3, 1, 1).double()
    want = {kind: _fold(conv.weight, _taps(kind, conv.weight.device, torch.float64)) for kind in ("pool", "upsample")}
    if channels_last:
        conv = conv.to(memory_format=torch.channels_last)
    x = torch.randn(2, 5, 8, 6, dtype=torch.float64)
    for kind in ("pool", "upsample"):
        kernel = _fold(conv.weight, _taps(kind, conv.weight.device, torch.float64))
        torch.testing.assert_close(kernel, want[kind], rtol=1e-12, atol=1e-12)
        assert kernel.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    torch.testing.assert_close(conv3x3_avgpool(x, conv), torch.nn.functional.avg_pool2d(conv(x), 2), rtol=0, atol=1e-12)
    up = torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest")
    torch.testing.assert_close(upsample_conv3x3(x, conv), conv(up), rtol=0, atol=1e-12)


def _grads(net: torch.nn.Module, x: torch.Tensor, fused: bool, *extra: torch.Tensor) -> list[torch.Tensor]:
    """Output, input gradient, and the weight gradients of (sum of outputs + squared input-gradient norm)."""
    set_fused_resampling(net, fused)
    net.zero_grad()
    x = x.detach().requires_grad_(True)
    out = net(x, *extra)
    (grad_x,) = torch.autograd.grad(out.sum(), x, create_graph=True)  # R1's double backward goes through it
    (out.sum() + grad_x.pow(2).sum()).backward()
    return [out.detach(), grad_x.detach()] + [p.grad.clone() for p in net.parameters()]


@pytest.mark.parametrize(
    "block, shape, extra",
    [
        (ResBlock(4, 8, normalize=True, downsample=True), (2, 4, 8, 8), ()),
        (ResBlock(6, 6, downsample=True), (2, 6, 8, 8), ()),
        (AdainResBlock(8, 4, style_dim=3, upsample=True), (2, 8, 4, 4), ((2, 3),)),
        (AdainResBlock(6, 6, style_dim=3, upsample=True), (2, 6, 4, 4), ((2, 3),)),
    ],
    ids=["down-1x1-norm", "down", "up-1x1", "up"],
)
def test_fused_blocks_give_the_same_values_and_gradients(
    block: torch.nn.Module, shape: tuple[int, ...], extra: tuple[tuple[int, ...], ...]
) -> None:
    block = block.double()
    torch.manual_seed(1)
    for p in block.parameters():  # non-trivial biases and norms, so every term is exercised
        torch.nn.init.normal_(p, std=0.5)
    x = torch.randn(shape, dtype=torch.float64)
    args = [torch.randn(s, dtype=torch.float64) for s in extra]
    fused, separate = _grads(block, x, True, *args), _grads(block, x, False, *args)
    for a, b in zip(fused, separate, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_fused_networks_match_the_authors_order(tiny_config: Config) -> None:
    """Whole G and D (float64): fused and separate resampling agree; the setting reaches every block."""
    nets = build_nets(tiny_config.model)
    g, d = nets.generator.double(), nets.discriminator.double()
    x = torch.randn(2, 3, tiny_config.model.img_size, tiny_config.model.img_size, dtype=torch.float64)
    s = torch.randn(2, tiny_config.model.style_dim, dtype=torch.float64)
    y = torch.tensor([0, 1])
    outs = []
    for fused in (True, False):
        set_fused_resampling(g, fused)
        set_fused_resampling(d, fused)
        flags = {m.fused_resampling for m in [*g.modules(), *d.modules()] if isinstance(m, (ResBlock, AdainResBlock))}
        assert flags == {fused}
        outs.append((g(x, s), d(x, y)))
    for a, b in zip(*outs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_fused_kernels_first_built_in_inference_mode_still_train() -> None:
    """The folding matrices are cached; one first made under ``inference_mode`` must still serve autograd."""
    from stargan_v2.model import _cached_taps

    _cached_taps.cache_clear()
    block = ResBlock(3, 3, downsample=True).to(torch.float16)  # a dtype no other test caches first
    x = torch.randn(1, 3, 4, 4, dtype=torch.float16)
    with torch.inference_mode():
        block(x)
    block(x.requires_grad_(True)).float().sum().backward()
    assert block.conv1.weight.grad is not None


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda n, c: n.style_encoder(torch.zeros(2, 3, 16, 16), torch.zeros(2, dtype=torch.long)), "E's image x"),
        (lambda n, c: n.discriminator(torch.zeros(2, 1, 32, 32), None), "D's image x"),
        (lambda n, c: n.mapping_network(torch.zeros(2, c.latent_dim + 1), torch.zeros(2, dtype=torch.long)), "F's"),
        (lambda n, c: n.generator(torch.zeros(2, 3, 32, 32), torch.zeros(3, c.style_dim)), "G's style code s"),
        (lambda n, c: n.generator(torch.zeros(2, 3, 31, 31), torch.zeros(2, c.style_dim)), "multiples of"),
    ],
)
def test_a_wrong_input_shape_is_named_where_it_enters(call, message: str) -> None:
    cfg = preset("tiny").model
    nets = build_nets(cfg)
    with pytest.raises(ValueError, match=message):
        call(nets, cfg)
