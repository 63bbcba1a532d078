"""Models: shapes, parameterizations, parameter counts, homogeneity, scale invariance, errors."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from l2dynamics.errors import ConfigError
from l2dynamics.models import (
    MODEL_NAMES,
    WideResNet,
    WNConv2d,
    WNLinear,
    build_model,
    model_defaults,
)

IMAGE = (3, 32, 32)
SMALL = {"fc": dict(width=32), "cnn": dict(width=8), "convnet4": dict(width=4),
         "wrn": dict(width=1, depth=10)}
NORMS = {"fc": ["none", "bn", "ln", "wn"], "cnn": ["none", "bn", "ln", "wn"],
         "convnet4": ["none", "bn", "ln", "wn"], "wrn": ["none", "bn"]}
COMBOS = [(name, norm) for name in MODEL_NAMES for norm in NORMS[name]]


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name,norm", COMBOS)
def test_forward_shapes(name, norm):
    torch.manual_seed(0)
    shapes = [(40,), IMAGE] if name == "fc" else [IMAGE]
    for shape in shapes:
        model = build_model(name, input_shape=shape, num_outputs=10, norm=norm, **SMALL[name])
        out = model(torch.randn(4, *shape))
        assert out.shape == (4, 10) and torch.isfinite(out).all()


def test_paper_shortcut_forward_and_count():
    model = WideResNet(IMAGE, 10, depth=10, width=1, paper_shortcut=True)
    assert model(torch.randn(2, *IMAGE)).shape == (2, 10)
    # 3×3 shortcuts replace 1×1 ones where the shape changes (16→32 and 32→64 here).
    plain = WideResNet(IMAGE, 10, depth=10, width=1)
    assert n_params(model) - n_params(plain) == 8 * (16 * 32 + 32 * 64)


def test_defaults_are_documented_and_used():
    assert model_defaults("fc") == {"width": 512, "depth": 2, "norm": "none"}
    assert model_defaults("cnn") == {"width": 64, "depth": 4, "norm": "none"}
    assert model_defaults("convnet4") == {"width": 32, "depth": 4, "norm": "bn"}
    assert model_defaults("wrn") == {"width": 4, "depth": 16, "norm": "bn"}
    fc = build_model("fc", input_shape=(40,), num_outputs=10)
    assert n_params(fc) == 40 * 512 + 512 + 512 * 512 + 512 + 512 * 10 + 10
    cnn = build_model("cnn", input_shape=IMAGE, num_outputs=10)
    assert n_params(cnn) == 3 * 64 * 9 + 64 + 3 * (64 * 64 * 9 + 64) + 64 * 10 + 10
    convnet = build_model("convnet4", input_shape=IMAGE, num_outputs=10)
    bn = 2 * (32 + 64 + 128)  # γ, β; convs are bias-free before BN
    assert n_params(convnet) == (3 * 32 + 32 * 64 + 64 * 128) * 9 + bn + 128 * 10 + 10
    assert any(isinstance(m, nn.BatchNorm2d) for m in convnet.modules())


def test_wrn_28_10_parameter_count():
    # Zagoruyko & Komodakis report 36.5M for WRN-28-10 on CIFAR-10 (1×1 shortcuts).
    model = build_model("wrn", input_shape=IMAGE, num_outputs=10, depth=28, width=10)
    assert abs(n_params(model) / 36.5e6 - 1) < 0.01
    assert abs(n_params(WideResNet(IMAGE, 10, depth=28, width=10, paper_shortcut=True))
               / 38.55e6 - 1) < 0.01


def test_cnn_pooling_schedule():
    deep = build_model("cnn", input_shape=IMAGE, num_outputs=2, width=4, depth=8)
    assert deep.features(torch.randn(1, *IMAGE)).shape[-2:] == (4, 4)  # at most three pools
    default = build_model("cnn", input_shape=IMAGE, num_outputs=2, width=4)
    assert default.features(torch.randn(1, *IMAGE)).shape[-2:] == (8, 8)
    tiny = build_model("cnn", input_shape=(1, 3, 3), num_outputs=2, width=4, depth=8)
    assert tiny(torch.randn(2, 1, 3, 3)).shape == (2, 2)  # pools skipped once maps are 1×1


@pytest.mark.parametrize("activation", ["relu", "erf", "tanh", "gelu", "linear"])
@pytest.mark.parametrize("bias", [True, False])
def test_ntk_and_standard_parameterizations_agree_at_init(activation, bias):
    kw = dict(input_shape=(6, 5), num_outputs=3, width=64, depth=2, activation=activation,
              bias=bias, weight_var=1.7, bias_var=0.3)
    torch.set_default_dtype(torch.float64)  # draw in float64 so the init scales round alike
    try:
        torch.manual_seed(0)
        ntk = build_model("fc", parameterization="ntk", **kw)
        torch.manual_seed(0)
        std = build_model("fc", parameterization="standard", **kw)
    finally:
        torch.set_default_dtype(torch.float32)
    x = torch.randn(8, 6, 5, dtype=torch.float64)
    torch.testing.assert_close(ntk(x), std(x), rtol=1e-12, atol=1e-12)
    # Gradient scales differ: ∂f/∂W_ntk = sqrt(weight_var/fan_in)·∂f/∂W_std (and sqrt(bias_var)).
    ntk(x).sum().backward()
    std(x).sum().backward()
    layers = [m for m in ntk.modules() if isinstance(m, nn.Linear)]
    std_layers = [m for m in std.modules() if isinstance(m, nn.Linear)]
    assert [m.in_features for m in layers] == [30, 64, 64]
    for a, b in zip(layers, std_layers, strict=True):
        torch.testing.assert_close(a.weight.grad, math.sqrt(1.7 / a.in_features) * b.weight.grad)
        if bias:
            torch.testing.assert_close(a.bias.grad, math.sqrt(0.3) * b.bias.grad)


def test_ntk_parameterization_draws_unit_normals():
    torch.manual_seed(0)
    model = build_model("fc", input_shape=(300,), num_outputs=300, width=300, depth=1,
                        parameterization="ntk", bias_var=0.5)
    for p in model.parameters():
        assert abs(p.std().item() - 1) < 0.15  # ≥ 300 draws each: std error ≤ 0.04
    torch.manual_seed(0)
    std = build_model("fc", input_shape=(300,), num_outputs=300, width=300, depth=1)
    assert abs(std.readout.weight.std().item() - math.sqrt(2 / 300)) < 0.05 * math.sqrt(2 / 300)
    assert (std.readout.bias == 0).all()  # bias_var = 0 → zeros


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_bias_false_removes_layer_biases(name):
    norm = "none" if name == "wrn" else "wn"  # wn keeps conv/linear biases when bias=True
    with_bias = build_model(name, input_shape=IMAGE, num_outputs=3, norm=norm, **SMALL[name])
    without = build_model(name, input_shape=IMAGE, num_outputs=3, norm=norm, bias=False,
                          **SMALL[name])
    layers = (nn.Linear, nn.Conv2d)
    assert all(m.bias is not None for m in with_bias.modules() if isinstance(m, layers))
    assert all(m.bias is None for m in without.modules() if isinstance(m, layers))
    assert not any(n.endswith("bias") for n, _ in without.named_parameters())


def test_convs_before_batch_or_layer_norm_have_no_bias():
    for name in ("cnn", "convnet4", "wrn"):
        for norm in NORMS[name]:
            if norm in ("bn", "ln"):
                model = build_model(name, input_shape=IMAGE, num_outputs=3, norm=norm,
                                    **SMALL[name])
                assert all(m.bias is None for m in model.modules() if isinstance(m, nn.Conv2d))
                assert model.readout.bias is not None


@pytest.mark.parametrize("name,depth,degree", [("fc", 1, 2), ("fc", 3, 4), ("cnn", 3, 4),
                                               ("convnet4", 4, 4)])
def test_positive_homogeneity(name, depth, degree):
    torch.manual_seed(0)
    shape = (5, 7) if name == "fc" else (2, 8, 8)
    model = build_model(name, input_shape=shape, num_outputs=3, width=8, depth=depth,
                        bias=False, norm="none").double()
    assert model.homogeneity_degree == degree
    x = torch.randn(4, *shape, dtype=torch.float64)
    out = model(x)
    alpha = 1.7
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(alpha)
    torch.testing.assert_close(model(x), alpha**degree * out, rtol=1e-12, atol=1e-12)


def test_homogeneity_degree_is_none_when_not_homogeneous():
    base = dict(input_shape=(10,), num_outputs=2, width=8)
    assert build_model("fc", bias=False, **base).homogeneity_degree == 3
    assert build_model("fc", **base).homogeneity_degree is None  # biases
    assert build_model("fc", bias=False, activation="tanh", **base).homogeneity_degree is None
    assert build_model("fc", bias=False, norm="bn", **base).homogeneity_degree is None
    assert build_model("wrn", input_shape=IMAGE, num_outputs=2, bias=False, norm="none",
                       **SMALL["wrn"]).homogeneity_degree is None


def _invariant_convs(model: nn.Module) -> list[nn.Conv2d]:
    """Convs whose output goes straight into a BatchNorm/GroupNorm in a Sequential."""
    convs = []
    for seq in model.modules():
        if isinstance(seq, nn.Sequential):
            for a, b in zip(seq, list(seq)[1:], strict=False):
                if isinstance(a, nn.Conv2d) and isinstance(b, nn.BatchNorm2d | nn.GroupNorm):
                    convs.append(a)
    return convs


@pytest.mark.parametrize("name,norm", [("cnn", "bn"), ("convnet4", "bn"), ("cnn", "ln"),
                                       ("convnet4", "ln")])
def test_normalized_conv_weights_are_scale_invariant(name, norm):
    # van Laarhoven T1, train mode, float64. BN's ε = 1e-5 breaks invariance by ~ε/Var(Xw), so
    # the baseline is taken at 10× the init scale (Var ≈ 100, ε/Var ≈ 1e-7); then scaling by
    # another 10 (BN: a different factor per filter, which it normalizes separately) must not
    # change the output beyond 1e-6.
    torch.manual_seed(0)
    model = build_model(name, input_shape=IMAGE, num_outputs=5, norm=norm,
                        **SMALL[name]).double().train()
    convs = _invariant_convs(model)
    assert len(convs) == (4 if name == "cnn" else 3)
    x = torch.randn(8, *IMAGE, dtype=torch.float64)
    with torch.no_grad():
        for conv in convs:
            conv.weight.mul_(10.0)
    ref = model(x)
    for conv in convs:
        factor = torch.full((conv.out_channels, 1, 1, 1), 10.0, dtype=torch.float64)
        if norm == "bn":
            factor = torch.linspace(3.0, 30.0, conv.out_channels, dtype=torch.float64)
        with torch.no_grad():
            conv.weight.mul_(factor.view(-1, 1, 1, 1))
        torch.testing.assert_close(model(x), ref, rtol=1e-6, atol=1e-6)


def test_wrn_first_conv_of_each_block_is_scale_invariant():
    torch.manual_seed(0)
    model = build_model("wrn", input_shape=IMAGE, num_outputs=5, **SMALL["wrn"]).double()
    x = torch.randn(8, *IMAGE, dtype=torch.float64)
    with torch.no_grad():
        for block in model.blocks:
            block.conv1.weight.mul_(10.0)
        ref = model(x)
        for block in model.blocks:
            block.conv1.weight.mul_(10.0)
        torch.testing.assert_close(model(x), ref, rtol=1e-6, atol=1e-6)


def test_weight_norm_conv_semantics():
    torch.manual_seed(0)
    conv = WNConv2d(3, 5, 3, padding=1, weight_var=2.0).double()
    assert [n for n, _ in conv.named_parameters()] == ["weight", "bias", "gain"]
    w = conv.effective_weight()
    torch.testing.assert_close(w.flatten(1).norm(dim=1), conv.gain)  # ‖w_o‖ = g_o
    torch.testing.assert_close(conv.gain, torch.full((5,), math.sqrt(2.0), dtype=torch.float64))
    with torch.no_grad():
        conv.gain.copy_(torch.tensor([0.5, 1.0, 2.0, -1.0, 3.0]))
        conv.bias.normal_()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    out = conv(x)
    w = conv.effective_weight()
    torch.testing.assert_close(out, F.conv2d(x, w, conv.bias, padding=1))
    torch.testing.assert_close(w.flatten(1).norm(dim=1), conv.gain.abs())
    # The direction's scale (per filter) does not matter, and its gradient is ⟂ to it.
    with torch.no_grad():
        conv.weight.mul_(torch.linspace(0.1, 10, 5, dtype=torch.float64).view(-1, 1, 1, 1))
    torch.testing.assert_close(conv(x), out)
    (conv(x) ** 2).sum().backward()
    dots = (conv.weight.grad * conv.weight).flatten(1).sum(1)
    scale = conv.weight.grad.flatten(1).norm(dim=1) * conv.weight.flatten(1).norm(dim=1)
    assert (dots.abs() < 1e-12 * scale).all()


def test_weight_norm_linear_semantics():
    torch.manual_seed(0)
    layer = WNLinear(7, 4, bias=False).double()
    assert [n for n, _ in layer.named_parameters()] == ["weight", "gain"]
    x = torch.randn(3, 7, dtype=torch.float64)
    w = layer.weight / layer.weight.norm(dim=1, keepdim=True) * layer.gain[:, None]
    torch.testing.assert_close(layer(x), x @ w.T)
    out = layer(x)
    with torch.no_grad():
        layer.weight.mul_(5.0)
    torch.testing.assert_close(layer(x), out)


def test_same_seed_same_model():
    models = []
    for _ in range(2):
        torch.manual_seed(3)
        models.append(build_model("convnet4", input_shape=IMAGE, num_outputs=10, width=4))
    for (n, a), (_, b) in zip(models[0].named_parameters(), models[1].named_parameters(),
                              strict=True):
        assert torch.equal(a, b), n


@pytest.mark.parametrize("name,kwargs,match", [
    ("resnet", {}, "name must be one of"),
    ("cnn", {"parameterization": "ntk"},
     r"parameterization='ntk' is only implemented for model 'fc' \(got 'cnn'\)"),
    ("fc", {"parameterization": "mup"}, "parameterization must be one of"),
    ("fc", {"width": 0}, "width must be a positive int"),
    ("fc", {"depth": 1.5}, "depth must be a positive int"),
    ("fc", {"num_outputs": -1}, "num_outputs must be a positive int"),
    ("fc", {"activation": "swish"}, "activation must be one of"),
    ("fc", {"norm": "gn"}, "norm must be one of"),
    ("fc", {"norm": "wn", "parameterization": "ntk"}, "norm='wn' requires"),
    ("fc", {"weight_var": 0.0}, "weight_var"),
    ("fc", {"bias_var": -1.0}, "bias_var"),
    ("wrn", {"depth": 20}, r"\(depth - 4\) % 6 == 0"),
    ("wrn", {"norm": "ln"}, "norm must be one of 'none', 'bn' for model 'wrn'"),
    ("convnet4", {"depth": 6}, "depth is fixed at 4"),
    ("cnn", {"input_shape": (40,)}, r"input_shape must be \(C, H, W\)"),
])
def test_bad_arguments_raise_config_error(name, kwargs, match):
    args = {"input_shape": IMAGE, "num_outputs": 10, **kwargs}
    with pytest.raises(ConfigError, match=match):
        build_model(name, **args)
    with pytest.raises(ConfigError):
        model_defaults("resnet")
