"""Hessian spectrum probe: products and Lanczos extremes against dense float64 Hessians.

Tolerances: with full reorthogonalization, Lanczos run to iters = dimension is backward stable,
so its Ritz values match the eigenvalues to ~dimension·eps·‖H‖ ≈ 1e-13‖H‖ here; we allow 1e-8
relative. Below the dimension, a Ritz value θ with residual r = ‖Hu − θu‖ has an eigenvalue within
r (Krylov–Bogoliubov), and the top converges at the Kaniel–Paige rate.
"""

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call

from l2dynamics.errors import ConfigError
from l2dynamics.l2.params import split_decay
from l2dynamics.probes.hessian import hessian_extremes, hvp

EPS = torch.finfo(torch.float64).eps


def mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """½·Σ_outputs (f − y)², batch mean (as `losses.make_loss("mse", "regression", ·)`)."""
    return 0.5 * (out - y).pow(2).sum(dim=1).mean()


def flat_fn(model: nn.Module, fn):
    """θ_flat ↦ fn(output of model at θ_flat), trainable parameters in named_parameters order."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    buffers = {k: b.clone() for k, b in model.named_buffers()}

    def f(flat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        parts = flat.split([p.numel() for _, p in named])
        params = {n: t.view_as(p) for (n, p), t in zip(named, parts, strict=True)}
        return fn(functional_call(model, (params, buffers), (x,)))

    theta = torch.cat([p.detach().reshape(-1) for _, p in named])
    return f, theta


def dense_hessian(model: nn.Module, loss_fn, x, y) -> np.ndarray:
    f, theta = flat_fn(model, lambda out: loss_fn(out, y))
    return torch.autograd.functional.hessian(lambda t: f(t, x), theta, vectorize=True).numpy()


def tiny_mlp(seed: int = 0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 10), nn.Tanh(), nn.Linear(10, 10), nn.Tanh(),
                          nn.Linear(10, 3)).double()  # 193 parameters
    x = torch.randn(20, 4, dtype=torch.float64)
    y = torch.randint(0, 3, (20,))
    return model, x, y


# ---------------------------------------------------------------- linear regression, closed form

def linear_regression():
    torch.manual_seed(1)
    d_in, d_out, n = 12, 3, 40
    model = nn.Linear(d_in, d_out).double()
    x = torch.randn(n, d_in, dtype=torch.float64) + 2.0  # offset: a well-separated top eigenvalue
    y = torch.randn(n, d_out, dtype=torch.float64)
    # ∇²L = A ⊗ I_out on θ̃ = [W b] rows, A = X̃ᵀX̃/n with X̃ = [X 1]; flat order is W (row-major)
    # then b, so place A's blocks by index.
    xt = torch.cat([x, torch.ones(n, 1, dtype=torch.float64)], 1).numpy()
    a = xt.T @ xt / n
    idx = [[o * d_in + i for i in range(d_in)] + [d_out * d_in + o] for o in range(d_out)]
    h = np.zeros((d_out * (d_in + 1),) * 2)
    for rows in idx:
        h[np.ix_(rows, rows)] = a
    return model, x, y, h, a


def test_linear_regression_matches_closed_form():
    model, x, y, h, a = linear_regression()
    dim = h.shape[0]
    np.testing.assert_allclose(h, dense_hessian(model, mse, x, y), atol=1e-12)  # the formula
    v = torch.randn(dim, dtype=torch.float64)
    np.testing.assert_allclose(hvp(model, mse, x, y, v).numpy(), h @ v.numpy(),
                               atol=1e-12 * np.abs(h).sum())
    lam = 0.05
    exact = np.linalg.eigvalsh(h) + lam
    # the spectrum is A's, each eigenvalue d_out times: Lanczos must restart to see repeats
    np.testing.assert_allclose(exact, np.sort(np.repeat(np.linalg.eigvalsh(a), 3)) + lam,
                               rtol=1e-12)
    spec = hessian_extremes(model, mse, x, y, lam=lam, k=5, iters=dim)
    scale = exact[-1]
    assert spec.iters == dim and spec.num_params == dim
    np.testing.assert_allclose(spec.top, exact[::-1][:5], rtol=0, atol=1e-8 * scale)
    np.testing.assert_allclose(spec.bottom, exact[:5], rtol=0, atol=1e-8 * scale)
    # iters beyond the dimension is capped
    assert hessian_extremes(model, mse, x, y, lam=lam, k=2, iters=dim + 10).iters == dim


def test_top_converges_well_before_dimension():
    model, x, y, h, _ = linear_regression()
    exact = np.unique(np.round(np.linalg.eigvalsh(h), 12))[::-1]  # distinct, descending
    l1, l2, ln = exact[0], exact[1], exact[-1]
    gamma = (l1 - l2) / (l2 - ln)
    # Kaniel–Paige: θ1 ≥ λ1 − (λ1 − λn)·tan²φ0 / T_{m−1}(1 + 2γ)², φ0 the start vector's angle
    # to the top eigenspace; a Gaussian start in `dim` dimensions has tan²φ0 < 1e4·dim except
    # with negligible probability.
    dim = h.shape[0]

    def bound(m: int) -> float:
        cheb = math.cosh((m - 1) * math.acosh(1 + 2 * gamma))
        return (l1 - ln) * 1e4 * dim / cheb**2

    m = next(m for m in range(2, dim) if bound(m) < 1e-10 * l1)
    m = max(m, 4)
    assert m < dim / 3
    spec = hessian_extremes(model, mse, x, y, k=2, iters=m)
    assert abs(spec.top[0] - l1) <= max(bound(m), 1e-12 * l1)
    assert spec.top_residuals[0] <= 1e-6 * l1


# ---------------------------------------------------------------- tiny MLP vs dense Hessian

def test_mlp_hvp_and_extremes_match_dense():
    model, x, y = tiny_mlp()
    ce = nn.functional.cross_entropy
    h = dense_hessian(model, ce, x, y)
    dim = h.shape[0]
    exact = np.linalg.eigvalsh(h)
    scale = np.abs(exact).max()
    gen = torch.Generator().manual_seed(3)
    v = torch.randn(dim, dtype=torch.float64, generator=gen)
    want = h @ v.numpy()
    # products: rounding ~ dim·eps·‖H‖·‖v‖ ≪ 1e-10
    np.testing.assert_allclose(hvp(model, ce, x, y, v).numpy(), want, atol=1e-10, rtol=0)
    chunked = hvp(model, ce, x, y, v, chunk_size=7).numpy()  # 7 ∤ 20: chunks weighted by size
    np.testing.assert_allclose(chunked, want, atol=1e-10, rtol=0)

    spec = hessian_extremes(model, ce, x, y, k=5, iters=dim)
    np.testing.assert_allclose(spec.top, exact[::-1][:5], rtol=0, atol=1e-8 * scale)
    np.testing.assert_allclose(spec.bottom, exact[:5], rtol=0, atol=1e-8 * scale)
    assert np.all(np.diff(spec.top) <= 0) and np.all(np.diff(spec.bottom) >= 0)
    assert exact[0] < 0  # at init the CE Hessian is indefinite: the bottom is a real test


def test_residuals_bound_the_error_below_full_dimension():
    model, x, y = tiny_mlp()
    ce = nn.functional.cross_entropy
    exact = np.linalg.eigvalsh(dense_hessian(model, ce, x, y))
    spec = hessian_extremes(model, ce, x, y, k=5, iters=30)
    for ritz, res in [(spec.top, spec.top_residuals), (spec.bottom, spec.bottom_residuals)]:
        nearest = np.abs(exact[None, :] - ritz[:, None]).min(axis=1)
        assert np.all(nearest <= res + 1e-10)  # an eigenvalue within the residual of each θ
    assert spec.top_residuals[0] < 1e-6 * spec.top[0]  # the top has converged by 30 steps
    # chunked products give the same Krylov run
    chunked = hessian_extremes(model, ce, x, y, k=5, iters=30, chunk_size=8)
    np.testing.assert_allclose(chunked.top, spec.top, atol=1e-10)
    np.testing.assert_allclose(chunked.bottom, spec.bottom, atol=1e-8)
    # the same seed gives the same numbers; another seed converges to the same top
    again = hessian_extremes(model, ce, x, y, k=5, iters=30)
    np.testing.assert_array_equal(again.top, spec.top)
    other = hessian_extremes(model, ce, x, y, k=5, iters=30, seed=1)
    slack = other.top_residuals[0] + spec.top_residuals[0] + 1e-12 * spec.top[0]  # + rounding
    assert abs(other.top[0] - spec.top[0]) <= slack


# ---------------------------------------------------------------- the L2 term

def test_l2_shifts_every_eigenvalue_by_lam():
    model, x, y = tiny_mlp()
    ce = nn.functional.cross_entropy
    lam = 0.3
    # H + λI has H's Krylov spaces (same seed), so even an unconverged run shifts exactly by λ.
    base = hessian_extremes(model, ce, x, y, k=5, iters=25)
    shifted = hessian_extremes(model, ce, x, y, k=5, iters=25, lam=lam)
    np.testing.assert_allclose(shifted.top - base.top, lam, atol=1e-10)
    np.testing.assert_allclose(shifted.bottom - base.bottom, lam, atol=1e-10)
    np.testing.assert_allclose(shifted.bottom_over_lam, shifted.bottom / lam)
    assert shifted.lam == lam and np.all(np.isnan(base.bottom_over_lam))


def test_partial_decay_adds_lam_on_decayed_coordinates_only():
    model, x, y = tiny_mlp()
    ce = nn.functional.cross_entropy
    lam = 0.3
    decayed = split_decay(model, "weights").decayed
    assert decayed and len(decayed) < len(list(model.parameters()))
    mask = torch.cat([torch.full((p.numel(),), float(n in decayed), dtype=torch.float64)
                      for n, p in model.named_parameters()])
    v = torch.randn(mask.numel(), dtype=torch.float64)
    got = hvp(model, ce, x, y, v, lam=lam, decayed=decayed)
    want = hvp(model, ce, x, y, v) + lam * mask * v
    torch.testing.assert_close(got, want, atol=1e-12, rtol=0)
    torch.testing.assert_close(hvp(model, ce, x, y, v, lam=lam, decayed=()),
                               hvp(model, ce, x, y, v), atol=0, rtol=0)


# ---------------------------------------------------------------- the paper's finite-width claim

def test_overparameterized_net_near_minimum_has_bottom_near_lam():
    """§5.4: near a minimum of an over-parameterized net, the smallest curvatures of L + (λ/2)‖θ‖²
    are ≈ λ. Band: for MSE, ∇²L = G + R with G = JᵀJ/n (PSD, rank ≤ n) and R = Σ r_i∇²f_i / n.
    Weyl's inequalities put the P − n smallest eigenvalues of ∇²L in [−‖R‖, ‖R‖], and Cauchy
    interlacing puts the j-th smallest of m Ritz values in [λ_j, λ_{P−m+j}], so for m ≥ k + n the
    bottom k Ritz values of ∇²L + λI lie in λ ± ‖R‖. ‖R‖ ∝ the residuals r, small near zero loss."""
    torch.manual_seed(0)
    n, lam = 6, 0.01
    x = torch.randn(n, 2, dtype=torch.float64)
    y = 0.05 * torch.randn(n, 1, dtype=torch.float64)  # small targets: small residuals
    model = nn.Sequential(nn.Linear(2, 64), nn.Tanh(), nn.Linear(64, 1)).double()  # P = 257
    opt = torch.optim.SGD(model.parameters(), lr=0.2, weight_decay=lam)  # coupled: λ = paper's
    for _ in range(300):
        opt.zero_grad()
        mse(model(x), y).backward()
        opt.step()
    h = dense_hessian(model, mse, x, y)
    f, theta = flat_fn(model, lambda out: out[:, 0])
    jac = torch.autograd.functional.jacobian(lambda t: f(t, x), theta, vectorize=True).numpy()
    r_norm = np.abs(np.linalg.eigvalsh(h - jac.T @ jac / n)).max()
    assert r_norm < 0.5 * lam  # the setup is in the regime the argument is about

    k, iters = 5, 40
    assert iters >= k + n
    spec = hessian_extremes(model, mse, x, y, lam=lam, k=k, iters=iters)
    assert np.all(np.abs(spec.bottom - lam) <= r_norm + 1e-10)
    assert np.all(np.abs(spec.bottom_over_lam - 1) < 0.5)
    assert spec.top[0] > 100 * lam  # the data directions are stiff: a wide spectrum


# ---------------------------------------------------------------- BatchNorm and model state

def test_batchnorm_state_untouched_and_batch_statistics_used():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Linear(8, 3)).double()
    with torch.no_grad():
        model[1].running_mean.fill_(0.3)  # make eval mode differ visibly from batch statistics
        model[1].running_var.fill_(2.0)
    x = torch.randn(16, 4, dtype=torch.float64)
    y = torch.randint(0, 3, (16,))
    ce = nn.functional.cross_entropy
    before = {k: t.clone() for k, t in model.state_dict().items()}
    v = torch.randn(sum(p.numel() for p in model.parameters()), dtype=torch.float64)

    got = hvp(model, ce, x, y, v)  # train mode: full-batch statistics, as training sees
    spec = hessian_extremes(model, ce, x, y, lam=0.1, k=2, iters=10)
    hessian_extremes(model, ce, x, y, k=2, iters=10, chunk_size=5)  # chunks of 4
    assert model.training
    for key, t in model.state_dict().items():
        torch.testing.assert_close(t, before[key], atol=0, rtol=0)
    assert all(p.grad is None for p in model.parameters())
    assert np.all(np.isfinite(spec.top)) and np.all(np.isfinite(spec.bottom))

    h_train = dense_hessian(model, ce, x, y)  # functional_call in train mode, copied buffers
    np.testing.assert_allclose(got.numpy(), h_train @ v.numpy(), atol=1e-10)
    model.eval()
    h_eval = dense_hessian(model, ce, x, y)
    np.testing.assert_allclose(hvp(model, ce, x, y, v).numpy(), h_eval @ v.numpy(), atol=1e-10)
    assert np.abs(h_train - h_eval).max() > 1e-3


# ---------------------------------------------------------------- validation

@pytest.mark.parametrize(("kwargs", "field"), [
    ({"lam": -0.1}, "lam"), ({"lam": math.inf}, "lam"), ({"lam": math.nan}, "lam"),
    ({"lam": True}, "lam"), ({"k": 0}, "k"), ({"k": 2.0}, "k"), ({"k": 3, "iters": 5}, "iters"),
    ({"seed": -1}, "seed"), ({"chunk_size": 0}, "chunk_size"),
    ({"decayed": ["nope.weight"]}, "decayed"), ({"decayed": "0.weight"}, "decayed"),
])
def test_bad_arguments_raise_config_error(kwargs, field):
    model, x, y = tiny_mlp()
    with pytest.raises(ConfigError, match=field) as err:
        hessian_extremes(model, nn.functional.cross_entropy, x, y, **kwargs)
    assert "\n" not in str(err.value)


def test_bad_inputs_raise_config_error():
    model, x, y = tiny_mlp()
    ce = nn.functional.cross_entropy
    with pytest.raises(ConfigError, match="length"):
        hvp(model, ce, x, y, torch.zeros(5, dtype=torch.float64))
    with pytest.raises(ConfigError, match="samples"):
        hvp(model, ce, x, y[:3], torch.zeros(193, dtype=torch.float64))
    with pytest.raises(ConfigError, match="scalar"):
        hvp(model, lambda out, t: out.sum(1), x, y, torch.zeros(193, dtype=torch.float64))
    dropout = nn.Sequential(nn.Linear(4, 5), nn.Dropout(0.5), nn.Linear(5, 3)).double()
    with pytest.raises(ConfigError, match="dropout"):
        hessian_extremes(dropout, ce, x, y)
    dropout.eval()
    assert hessian_extremes(dropout, ce, x, y, k=1, iters=4).iters == 4
    for p in model.parameters():
        p.requires_grad_(False)
    with pytest.raises(ConfigError, match="trainable"):
        hessian_extremes(model, ce, x, y)
