"""Scale invariance of weights before a normalization (van Laarhoven 2017) and its probe.

Exactness claims are checked in float64 with the normalization's ε set to TINY_EPS = 1e-30 (torch
refuses ε = 0 for BatchNorm in train mode; ε/σ² ≈ 1e-30 is far below float64 resolution): then
L(c·w) = L(w) and ⟨∇L, w⟩ = 0 hold up to rounding (≈ 1e-15 relative), and we assert 1e-6
(identity, cosine) and 1e-8 (one-step norm identity). With the default ε = 1e-5 the loss moves
by ~ε/σ² ≈ 1e-5 (σ² the normalized variance): `test_eps_is_the_only_deviation` shows that this
is exactly the effect of ε (scaling w by c ≡ dividing the following layer's ε by c²) and that it
stays below the probe's automatic tolerance.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

import l2dynamics
from l2dynamics.errors import ConfigError
from l2dynamics.models import WNConv2d, WNLinear, build_model
from l2dynamics.models.norm import bias_before
from l2dynamics.probes.scale import (
    EPS_SAFETY,
    RTOL_CAP,
    ScaleReport,
    auto_rtol,
    detect_scale_invariant,
    unit_norms,
)

F64 = torch.float64
NORM_TYPES = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm)
SHAPES = {"fc": (12,), "cnn": (2, 6, 6)}
TINY_EPS = 1e-30


def make(model: str, norm: str, *, eps: float | None = TINY_EPS, seed: int = 0,
         dtype: torch.dtype = F64, jitter: bool = True) -> nn.Module:
    """A small model; eps=None keeps the default ε; jitter moves every 1-D parameter (BN/LN γ
    and β, biases) off its init (β = 0, b = 0), so that no 1-D tensor is trivially zero."""
    torch.manual_seed(seed)
    m = build_model(model, input_shape=SHAPES[model], num_outputs=5, width=6, depth=2,
                    norm=norm).to(dtype)
    if eps is not None:
        for mod in m.modules():
            if isinstance(mod, NORM_TYPES):
                mod.eps = eps
    if jitter:
        with torch.no_grad():
            for p in m.parameters():
                if p.dim() == 1:
                    p.add_(0.3 * torch.randn_like(p))
    return m


def batch(model: str, n: int = 24, seed: int = 1, dtype: torch.dtype = F64):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, *SHAPES[model], generator=g, dtype=dtype),
            torch.randint(0, 5, (n,), generator=g))


def loss_with(model: nn.Module, x, y, changes: dict[str, torch.Tensor] | None = None) -> float:
    """Train-mode batch loss with some parameters replaced; buffers copied (no side effects)."""
    buffers = {k: b.clone() for k, b in model.named_buffers()}
    with torch.no_grad():
        return float(F.cross_entropy(functional_call(model, ({**(changes or {})}, buffers),
                                                     (x,), strict=False), y))


def grad_of(model: nn.Module, x, y, name: str) -> torch.Tensor:
    """∇_name of the train-mode data loss (no L2), without touching .grad or running stats."""
    params = {n: p.detach().clone().requires_grad_() for n, p in model.named_parameters()}
    buffers = {k: b.clone() for k, b in model.named_buffers()}
    loss = F.cross_entropy(functional_call(model, (params, buffers), (x,)), y)
    return torch.autograd.grad(loss, params[name])[0]


def hidden_weights(model: nn.Module, norm: str) -> list[str]:
    """By architecture: the ≥2-D weights whose layer output goes straight into a normalization
    (the Dense/Conv before BN/LN, or the direction of a WN layer). The readout never."""
    names = []
    if norm == "wn":
        return [f"{n}.weight" for n, m in model.named_modules()
                if isinstance(m, WNLinear | WNConv2d)]
    if norm in ("bn", "ln"):
        mods = list(model.features.named_children())
        for (name, mod), (_, nxt) in zip(mods, mods[1:], strict=False):
            if isinstance(mod, nn.Linear | nn.Conv2d) and isinstance(nxt, NORM_TYPES):
                names.append(f"features.{name}.weight")
    return names


CASES = [("fc", "bn"), ("cnn", "bn"), ("fc", "ln"), ("cnn", "ln"), ("fc", "wn"), ("cnn", "wn")]


# --- 1. the identity L(c·w) = L(w) ------------------------------------------------------------


@pytest.mark.parametrize("model_name,norm", CASES)
def test_exact_identity_whole_and_per_unit(model_name, norm):
    model = make(model_name, norm)
    model.train()
    x, y = batch(model_name)
    base = loss_with(model, x, y)
    names = hidden_weights(model, norm)
    assert len(names) == 2
    params = dict(model.named_parameters())
    worst, worst_unit = 0.0, 0.0
    for name in names:
        w = params[name].detach()
        for c in (0.5, 2.0, 10.0):
            worst = max(worst, abs(loss_with(model, x, y, {name: c * w}) - base) / base)
            if norm == "ln":  # LN is invariant for the tensor only: scaling one row is not
                continue
            for k in range(w.shape[0]):
                scaled = w.clone()
                scaled[k] *= c
                rel = abs(loss_with(model, x, y, {name: scaled}) - base) / base
                worst_unit = max(worst_unit, rel)
    assert worst < 1e-6 and worst_unit < 1e-6, (worst, worst_unit)
    # the readout, scaled the same way, moves the loss by a lot
    rw = params["readout.weight"].detach()
    assert abs(loss_with(model, x, y, {"readout.weight": 2 * rw}) - base) / base > 1e-2


def test_ln_rows_are_not_invariant_one_by_one():
    model = make("fc", "ln")
    x, y = batch("fc")
    report = detect_scale_invariant(model, F.cross_entropy, x, y)
    for name in hidden_weights(model, "ln"):
        assert report[name].invariant
        assert report[name].unit_fraction == 0.0 and report[name].unit_max_rel_change > 1e-2


@pytest.mark.parametrize("norm", ["bn", "ln"])
def test_eps_is_the_only_deviation(norm):
    """Default ε: L(c·W_l; ε) = L(W_l; ε/c² in the norm after W_l) to rounding, the deviation
    from L(W) is real (≫ rounding) yet below the probe's automatic rtol."""
    model = make("fc", norm, eps=None)
    x, y = batch("fc")
    base = loss_with(model, x, y)
    report = detect_scale_invariant(model, F.cross_entropy, x, y, scales=(0.5, 2.0, 10.0))
    norms = [m for m in model.features if isinstance(m, NORM_TYPES)]
    params = dict(model.named_parameters())
    for name, norm_mod in zip(hidden_weights(model, norm), norms, strict=True):
        w = params[name].detach()
        for c in (0.5, 2.0, 10.0):
            scaled = loss_with(model, x, y, {name: c * w})
            norm_mod.eps = 1e-5 / c**2
            try:
                shifted_eps = loss_with(model, x, y)
            finally:
                norm_mod.eps = 1e-5
            assert abs(scaled - shifted_eps) / base < 1e-12
            assert 1e-10 < abs(scaled - base) / base <= report.rtol
        assert report[name].invariant
    assert 0 < report.eps_ratio < 1e-3
    assert report.rtol == auto_rtol(report.eps_ratio, (0.5, 2.0, 10.0), F64)


# --- 2. orthogonality ⟨∇L, w⟩ = 0 ------------------------------------------------------------


@pytest.mark.parametrize("model_name,norm", CASES)
def test_gradient_orthogonal_to_invariant_weights(model_name, norm):
    model = make(model_name, norm)
    x, y = batch(model_name)
    report = detect_scale_invariant(model, F.cross_entropy, x, y)
    params = dict(model.named_parameters())
    for name in params:
        g, w = grad_of(model, x, y, name), params[name].detach()
        cos = abs(float((g * w).sum())) / float(g.norm() * w.norm())
        assert report[name].cos == pytest.approx(cos, rel=1e-9, abs=1e-15)
        if name in hidden_weights(model, norm):
            assert cos < 1e-6
            if norm != "ln":  # per unit: ⟨∇_k L, w_k⟩ = 0 for each row / filter
                assert report[name].unit_max_cos < 1e-6
        elif name.startswith("readout") or w.dim() == 1:
            assert cos > 1e-3, name  # readout, biases, gains, shifts: clearly not orthogonal


# --- 3. detection ----------------------------------------------------------------------------


@pytest.mark.parametrize("model_name,norm", CASES + [("fc", "none"), ("cnn", "none")])
def test_detects_exactly_the_normalized_weights(model_name, norm):
    model = make(model_name, norm, eps=None, dtype=torch.float32)  # default ε, float32
    x, y = batch(model_name, dtype=torch.float32)
    report = detect_scale_invariant(model, F.cross_entropy, x, y)
    expected = hidden_weights(model, norm)
    assert report.invariant_names == expected
    assert report.unit_invariant_names == ([] if norm == "ln" else expected)
    assert not report["readout.weight"].invariant
    assert not any(report[n].invariant for n, p in model.named_parameters() if p.dim() == 1)
    frame = report.to_frame()
    assert list(frame.index) == [n for n, _ in model.named_parameters()]
    assert frame["invariant"].tolist() == [n in expected for n in frame.index]
    if norm in ("bn", "ln"):  # bias_before: the layers before BN/LN carry no bias at all
        assert not bias_before(norm, True)
        assert all(n.replace("weight", "bias") not in frame.index for n in expected)


def test_bias_before_bn_is_absorbed_but_before_ln_breaks_invariance():
    """What `norm.bias_before` avoids: a bias before BN is removed by the mean subtraction
    (zero gradient, the weight stays invariant); a bias before LN makes the weight not invariant
    (only (w, b) jointly are)."""
    torch.manual_seed(0)
    x, y = torch.randn(32, 7, dtype=F64), torch.randint(0, 3, (32,))
    for norm_mod, weight_invariant in ((nn.BatchNorm1d(5), True), (nn.LayerNorm(5), False)):
        model = nn.Sequential(nn.Linear(7, 5), norm_mod, nn.ReLU(), nn.Linear(5, 3)).to(F64)
        with torch.no_grad():
            model[0].bias.normal_()
        report = detect_scale_invariant(model, F.cross_entropy, x, y)
        assert report["0.weight"].invariant is weight_invariant
        bias_grad = grad_of(model, x, y, "0.bias")
        if weight_invariant:  # BN: the loss does not depend on the bias at all
            assert float(bias_grad.abs().max()) < 1e-15 and report["0.bias"].invariant
        else:
            assert float(bias_grad.abs().max()) > 1e-3 and not report["0.bias"].invariant


def test_bn_mode_train_vs_eval():
    """BN invariance needs batch statistics (train mode); with running statistics (eval) the
    weight before BN is not invariant. LN does not depend on the mode."""
    x, y = batch("fc")
    bn, ln = make("fc", "bn", eps=None), make("fc", "ln", eps=None)
    assert detect_scale_invariant(bn, F.cross_entropy, x, y, mode="eval").invariant_names == []
    assert detect_scale_invariant(ln, F.cross_entropy, x, y, mode="eval").invariant_names == \
        hidden_weights(ln, "ln")


def test_gain_of_bn_before_another_bn_is_invariant_when_shift_is_zero():
    """The probe is numerical: at β = 0 (init), BN → ReLU → bias-free Dense → BN makes the first
    BN's gain γ invariant too (ReLU is positively homogeneous); any β ≠ 0 breaks it."""
    model = make("fc", "bn", eps=None, jitter=False)
    x, y = batch("fc")
    report = detect_scale_invariant(model, F.cross_entropy, x, y)
    assert report.invariant_names == ["features.1.weight", "features.2.weight",
                                      "features.4.weight"]
    with torch.no_grad():
        model.features[2].bias.fill_(0.1)
    report = detect_scale_invariant(model, F.cross_entropy, x, y)
    assert report.invariant_names == ["features.1.weight", "features.4.weight"]


def test_wrn_only_the_first_conv_of_each_block_is_invariant():
    """Pre-activation WRN: conv1 feeds norm2 (invariant per filter); conv2, the stem and the
    shortcuts feed the residual sum x + y, which is not."""
    torch.manual_seed(0)
    model = build_model("wrn", input_shape=(3, 8, 8), num_outputs=5, width=1, depth=10)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 1:
                p.add_(0.3 * torch.randn_like(p))
    x, y = torch.randn(16, 3, 8, 8), torch.randint(0, 5, (16,))
    report = detect_scale_invariant(model, F.cross_entropy, x, y, per_unit=False)
    assert report.invariant_names == [f"blocks.{i}.conv1.weight" for i in range(3)]


def test_trainer_digits_batch():
    """Through the package entry points: make_config + Trainer, a real digits batch, float64."""
    cfg = l2dynamics.make_config(dataset="digits", model="fc", norm="bn", width=16, depth=2,
                                 dtype="float64", batch_size=64, lr=0.1, lam=1e-3, steps=5)
    trainer = l2dynamics.Trainer(cfg)
    x, y = trainer.batch(0)
    with torch.no_grad():  # move off init (β = 0 makes the first BN's γ invariant, see above)
        for p in trainer.model.parameters():
            if p.dim() == 1:
                p.add_(0.3 * torch.randn_like(p))
    report = detect_scale_invariant(trainer.model, trainer.loss_fn, x, y)
    assert report.invariant_names == ["features.1.weight", "features.4.weight"]
    assert report.unit_invariant_names == report.invariant_names
    assert report.rtol < RTOL_CAP and not report.notes


# --- 4. one SGD step with coupled L2 ----------------------------------------------------------


@pytest.mark.parametrize("model_name,norm", [("fc", "bn"), ("cnn", "bn"), ("fc", "ln"),
                                             ("fc", "wn")])
def test_one_step_norm_identity(model_name, norm):
    """w' = w − η(∇L + λw) ⇒ ‖w'‖² = (1−ηλ)²‖w‖² + η²‖∇L‖² when ⟨∇L, w⟩ = 0."""
    model = make(model_name, norm)
    x, y = batch(model_name)
    eta, lam = 0.5, 0.05
    params = dict(model.named_parameters())

    def defect(name: str) -> float:
        g, w = grad_of(model, x, y, name), params[name].detach()
        w_new = w - eta * (g + lam * w)  # plain SGD, coupled L2 (λ/2)‖θ‖² → gradient λw
        predicted = (1 - eta * lam) ** 2 * w.pow(2).sum() + eta**2 * g.pow(2).sum()
        # the same step as torch's SGD(weight_decay=λ) (our λ convention), this tensor only
        p = w.clone().requires_grad_()
        p.grad = g.clone()
        torch.optim.SGD([p], lr=eta, weight_decay=lam).step()
        assert torch.allclose(p.detach(), w_new, rtol=1e-14, atol=1e-15)
        assert float(eta**2 * g.pow(2).sum()) > 1e-6 * float(w.pow(2).sum())  # not trivial
        return abs(float(w_new.pow(2).sum() / predicted) - 1.0)

    for name in hidden_weights(model, norm):
        assert defect(name) < 1e-8
    assert defect("readout.weight") > 1e-4  # not invariant: the cross term −2η(1−ηλ)⟨∇L, w⟩


# --- 5. no side effects, errors, helpers ------------------------------------------------------


def test_no_side_effects():
    model = make("cnn", "bn", eps=None, dtype=torch.float32)
    model.train()
    model.features[1].eval()  # mixed flags must come back per module
    flags = [m.training for m in model.modules()]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = batch("cnn", dtype=torch.float32)
    for mode in ("train", "eval"):
        detect_scale_invariant(model, F.cross_entropy, x, y, mode=mode, scales=(0.5, 3.0))
    after = model.state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(after[k], before[k]) and after[k].dtype == before[k].dtype
               for k in before)  # bit-identical, running stats and num_batches_tracked included
    assert [m.training for m in model.modules()] == flags
    assert all(p.grad is None for p in model.parameters())
    assert not any(m._forward_pre_hooks for m in model.modules())

    def bad_loss(out, target):  # fails after the mode switch: flags still restored
        return F.cross_entropy(out, target, reduction="none")

    with pytest.raises(ConfigError, match="scalar"):
        detect_scale_invariant(model, bad_loss, x, y, mode="eval")
    assert [m.training for m in model.modules()] == flags
    assert not any(m._forward_pre_hooks for m in model.modules())


@pytest.mark.parametrize("kwargs,match", [
    (dict(scales=()), "scales"), (dict(scales=(0.5, -2.0)), "scales"),
    (dict(scales=(0,)), "scales"),
    (dict(scales=(1.0,)), "scales"), (dict(scales=(math.nan,)), "scales"),
    (dict(scales=(math.inf,)), "scales"), (dict(scales="2"), "scales"),
    (dict(scales=(True,)), "scales"), (dict(rtol=math.nan), "rtol"), (dict(rtol=-1e-6), "rtol"),
    (dict(rtol=0.0), "rtol"), (dict(rtol=math.inf), "rtol"), (dict(mode="test"), "mode"),
    (dict(per_unit=1), "per_unit"), (dict(names=["nope.weight"]), "names"),
    (dict(names="readout.weight"), "names"), (dict(names=[]), "names"),
    (dict(max_units=0), "max_units"), (dict(max_units=2.5), "max_units"),
])
def test_bad_arguments(kwargs, match):
    model = make("fc", "bn")
    x, y = batch("fc")
    with pytest.raises(ConfigError, match=match):
        detect_scale_invariant(model, F.cross_entropy, x, y, **kwargs)


def test_bad_inputs():
    model = make("fc", "bn")
    x, y = batch("fc")
    with pytest.raises(ConfigError, match="samples"):
        detect_scale_invariant(model, F.cross_entropy, x, y[:-1])
    dropout = nn.Sequential(model, nn.Dropout(0.5))
    with pytest.raises(ConfigError, match="dropout"):
        detect_scale_invariant(dropout, F.cross_entropy, x, y)
    assert detect_scale_invariant(dropout, F.cross_entropy, x, y, mode="eval").mode == "eval"
    with pytest.raises(ConfigError, match="weight"):
        unit_norms(torch.tensor(1.0))


def test_unit_norms_and_options():
    w = torch.randn(4, 3, 2, 2, dtype=F64)
    assert torch.allclose(unit_norms(w), torch.stack([w[k].norm() for k in range(4)]))
    b = torch.tensor([-3.0, 4.0])
    assert unit_norms(b).tolist() == [3.0, 4.0]
    model = make("fc", "wn")
    x, y = batch("fc")
    report = detect_scale_invariant(model, F.cross_entropy, x, y, names=["features.1.weight",
                                                                          "readout.weight"],
                                    max_units=3, rtol=1e-9)
    assert isinstance(report, ScaleReport) and report.rtol == 1e-9
    assert list(report.tensors) == ["features.1.weight", "readout.weight"]
    assert report["features.1.weight"].units == 3 and report.invariant_names == \
        ["features.1.weight"]
    whole = detect_scale_invariant(model, F.cross_entropy, x, y, per_unit=False)
    assert math.isnan(whole["readout.weight"].unit_fraction)
    assert whole["readout.weight"].units == 0
    assert whole.rtol == 100 * torch.finfo(F64).eps  # no ε anywhere: the rounding floor
    # rtol = clip(EPS_SAFETY · max(1, max_c ½|1 − 1/c²|) · ε/σ², 100·eps(dtype), RTOL_CAP)
    assert auto_rtol(1e-5, (0.5, 2.0), torch.float32) == pytest.approx(EPS_SAFETY * 1.5 * 1e-5)
    assert auto_rtol(1e-5, (2.0,), F64) == pytest.approx(EPS_SAFETY * 1e-5)
    assert auto_rtol(0.0, (2.0,), torch.float32) == 100 * torch.finfo(torch.float32).eps
    assert auto_rtol(1.0, (2.0,), F64) == RTOL_CAP
