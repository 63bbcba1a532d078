"""Equilibrium formulas for scale-invariant weights against torch.optim simulations.

The model (van Laarhoven 2017; Li et al. 2022; Kosson et al.): each row of a (n, d) float64
parameter is a scale-invariant vector whose loss gradient is ḡ/‖w‖ with ḡ ⟂ w of random
direction. SGD and Adam act elementwise, so the rows are n independent copies. Every comparison
is made after ≥ 10 relaxation times (``relaxation_steps``) from a start off equilibrium.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from l2dynamics.analysis import equilibrium as eq
from l2dynamics.analysis import equilibrium_measured as eqm
from l2dynamics.errors import ConfigError
from l2dynamics.l2.conventions import lam_from_vanlaarhoven

D = 64


def _tangent_grad(w: torch.Tensor, gen: torch.Generator, gbar: float,
                  random_norm: bool) -> torch.Tensor:
    """ḡ/‖w‖ per row with ḡ ⟂ w; ‖ḡ‖ = gbar, or Gaussian with E‖ḡ‖² = gbar² (random_norm)."""
    z = torch.randn(w.shape, generator=gen, dtype=w.dtype)
    norm = w.norm(dim=1, keepdim=True)
    u = w / norm
    z = z - (z * u).sum(1, keepdim=True) * u
    if random_norm:
        z = z * (gbar / math.sqrt(w.shape[1] - 1))
    else:
        z = z * (gbar / z.norm(dim=1, keepdim=True))
    return z / norm


def _angle(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Angle between rows, accurate for small angles."""
    a = a / a.norm(dim=1, keepdim=True)
    b = b / b.norm(dim=1, keepdim=True)
    return 2.0 * torch.atan2((a - b).norm(dim=1), (a + b).norm(dim=1))


def _start(n: int, w0_norm: float, seed: int) -> tuple[torch.nn.Parameter, torch.Generator]:
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(n, D, generator=gen, dtype=torch.float64)
    return torch.nn.Parameter(w * (w0_norm / w.norm(dim=1, keepdim=True))), gen


def _simulate(make_opt, *, w0_norm: float, burn: int, steps: int, n: int = 32, seed: int = 0,
              gbar: float = 1.0, random_norm: bool = False) -> tuple[float, float]:
    """Time-averaged ‖w‖ (mean over rows) and RMS angle per step after `burn` steps."""
    w, gen = _start(n, w0_norm, seed)
    opt = make_opt([w])
    norm_sum = torch.zeros((), dtype=torch.float64)
    angle_sq_sum = torch.zeros((), dtype=torch.float64)
    for t in range(burn + steps):
        prev = w.detach().clone()
        w.grad = _tangent_grad(prev, gen, gbar, random_norm)
        opt.step()
        if t >= burn:
            cur = w.detach()
            norm_sum += cur.norm(dim=1).mean()
            angle_sq_sum += (_angle(prev, cur) ** 2).mean()
    return float(norm_sum) / steps, math.sqrt(float(angle_sq_sum) / steps)


# ---------------------------------------------------------------------------------------------
# SGD and SGD with momentum


@pytest.mark.parametrize("lr,lam", [(0.1, 0.02), (0.3, 0.3)])
def test_sgd_equilibrium_matches_simulation(lr, lam):
    G = 1.0
    tau = eq.relaxation_steps(lr, lam, "sgd")
    norm, angle = _simulate(lambda p: torch.optim.SGD(p, lr=lr, weight_decay=lam),
                            w0_norm=1.5 * eq.sgd_norm(lr, lam, G), burn=max(int(10 * tau), 200),
                            steps=1500, random_norm=True)
    assert norm == pytest.approx(eq.sgd_norm(lr, lam, G), rel=5e-3)
    assert angle == pytest.approx(eq.sgd_angle(lr, lam), rel=5e-3)
    if lr * lam > 0.05:  # the sine form √(ηλ(2−ηλ)) is measurably low here; arccos is not
        assert angle / math.sqrt(lr * lam * (2 - lr * lam)) > 1.02


@pytest.mark.parametrize("lr,lam,momentum", [(0.1, 0.01, 0.9), (0.05, 0.02, 0.5),
                                             (0.5, 0.2, 0.5)])
def test_sgdm_equilibrium_matches_simulation(lr, lam, momentum):
    """PyTorch heavy ball (buf = α·buf + g + λw; w -= η·buf) against the closed forms."""
    G = 1.0
    tau = eq.relaxation_steps(lr, lam, "sgd", momentum)
    opt = lambda p: torch.optim.SGD(p, lr=lr, momentum=momentum, weight_decay=lam)  # noqa: E731
    norm, angle = _simulate(opt, w0_norm=1.5 * eq.sgdm_norm(lr, lam, G, momentum),
                            burn=max(int(10 * tau), 300), steps=1500, random_norm=True)
    assert norm == pytest.approx(eq.sgdm_norm(lr, lam, G, momentum), rel=5e-3)
    assert angle == pytest.approx(eq.sgdm_angle(lr, lam, momentum), rel=5e-3)
    kosson_norm = (lr * G / (2 * lam * (1 - momentum))) ** 0.25
    wan_angle = math.sqrt(2 * lr * lam / (1 + momentum))
    if lr * lam <= 1e-3:  # the quoted leading-order forms, in the PyTorch convention
        assert norm == pytest.approx(kosson_norm, rel=5e-3)
        assert angle == pytest.approx(wan_angle, rel=5e-3)
    else:  # ηλ = 0.1: the leading-order norm is off by ~1 %, the refined one is not
        assert norm / kosson_norm > 1.006


# ---------------------------------------------------------------------------------------------
# Adam with coupled L2, AdamW


@pytest.mark.parametrize("lr,lam,beta1", [(0.01, 0.04, 0.9), (0.02, 0.02, 0.0)])
def test_adam_l2_equilibrium_matches_simulation(lr, lam, beta1):
    gbar, beta2 = 1.0, 0.99
    tau = eq.relaxation_steps(lr, lam, "adam", d=D, gbar_norm=gbar, beta2=beta2)
    opt = lambda p: torch.optim.Adam(p, lr=lr, betas=(beta1, beta2), weight_decay=lam)  # noqa: E731
    norm, angle = _simulate(opt, w0_norm=1.3 * eq.adam_l2_norm(lr, lam, D, gbar),
                            burn=int(10 * tau), steps=1500)
    # measured 0.35–0.6 % low here (v noise at β₂ = 0.99, finite d); 0–0.15 % at β₂ = 0.999
    assert norm == pytest.approx(eq.adam_l2_norm(lr, lam, D, gbar), rel=1e-2)
    assert angle == pytest.approx(eq.adam_l2_angle(lr, lam, D, gbar, beta1), rel=1e-2)
    assert lr / norm == pytest.approx(eq.adam_l2_effective_lr(lr, lam, D, gbar), rel=1e-2)


@pytest.mark.parametrize("lr,wd,beta1", [(0.02, 0.1, 0.9), (0.02, 0.1, 0.0)])
def test_adamw_equilibrium_matches_simulation(lr, wd, beta1):
    beta2 = 0.99
    tau = eq.relaxation_steps(lr, wd, "adamw", beta2=beta2)
    opt = lambda p: torch.optim.AdamW(p, lr=lr, betas=(beta1, beta2), weight_decay=wd)  # noqa: E731
    norm, angle = _simulate(opt, w0_norm=1.3 * eq.adamw_norm(lr, wd, D, beta1),
                            burn=int(10 * tau), steps=1500)
    # v noise lowers ‖w‖ by ≈ (1−β₂)/2 (measured 0.35–0.6 % here, 0–0.2 % at β₂ = 0.999)
    assert norm == pytest.approx(eq.adamw_norm(lr, wd, D, beta1), rel=1e-2)
    assert angle == pytest.approx(eq.adamw_angle(lr, wd, beta1), rel=5e-3)
    if lr * wd * beta1 / (1 - beta1) > 0.01:  # √(ηd/(2λ_d)) misses the momentum-lag term
        assert norm / math.sqrt(lr * D / (2 * wd)) < 0.993


# ---------------------------------------------------------------------------------------------
# relaxation times


def _relaxation_fit(devs: np.ndarray, lo: int, hi: int) -> float:
    t = np.arange(len(devs))
    keep = (t >= lo) & (t < hi)
    return -1.0 / np.polyfit(t[keep], np.log(np.abs(devs[keep])), 1)[0]


def test_sgd_relaxation_time():
    """Fixed ‖ḡ‖ makes ‖w‖² deterministic: its deviation e-folds in (1−α)/(4ηλ) steps."""
    lr, lam, G = 0.1, 0.01, 1.0
    tau = eq.relaxation_steps(lr, lam, "sgd")
    r_star = eq.sgd_norm(lr, lam, G) ** 2
    w, gen = _start(8, 1.05 * math.sqrt(r_star), seed=1)
    opt = torch.optim.SGD([w], lr=lr, weight_decay=lam)
    devs = []
    for _ in range(int(3 * tau)):
        w.grad = _tangent_grad(w.detach(), gen, 1.0, random_norm=False)
        opt.step()
        devs.append(float((w.detach() ** 2).sum(1).mean()) / r_star - 1)
    assert _relaxation_fit(np.array(devs), int(tau), int(3 * tau)) == pytest.approx(tau, rel=2e-2)


def test_sgdm_relaxation_time():
    lr, lam, momentum, G = 0.02, 0.01, 0.5, 1.0
    tau = eq.relaxation_steps(lr, lam, "sgd", momentum)
    assert tau == pytest.approx(625.0)
    r_star = eq.sgdm_norm(lr, lam, G, momentum) ** 2
    w, gen = _start(64, 1.2 * math.sqrt(r_star), seed=2)
    opt = torch.optim.SGD([w], lr=lr, momentum=momentum, weight_decay=lam)
    devs = []
    for _ in range(int(2.5 * tau)):
        w.grad = _tangent_grad(w.detach(), gen, 1.0, random_norm=False)
        opt.step()
        devs.append(float((w.detach() ** 2).sum(1).mean()) / r_star - 1)
    assert _relaxation_fit(np.array(devs), int(0.5 * tau), int(2.5 * tau)) == pytest.approx(
        tau, rel=0.1)


def test_adamw_relaxation_is_slowed_by_second_moment_lag():
    """With 2ηλ_d > 1−β₂, v lags the 1/‖w‖² gradient scale and the norm relaxes in ~2× 1/(2ηλ_d).

    A settled run is perturbed (w × 1.2 and v / 1.44, i.e. consistent with the new gradient
    scale) and the decay of ‖w‖² fitted. The linearized mean-field slow mode is an upper bound
    that simulations undercut by 5–20 %.
    """
    lr, wd, beta2 = 0.02, 0.1, 0.995
    tau = eq.relaxation_steps(lr, wd, "adamw", beta2=beta2)
    instant_v = eq.relaxation_steps(lr, wd, "adamw", beta2=0.0)
    assert instant_v == pytest.approx(250.0) and tau > 2.0 * instant_v
    r_star = eq.adamw_norm(lr, wd, D, 0.9) ** 2
    w, gen = _start(64, math.sqrt(r_star), seed=3)
    opt = torch.optim.AdamW([w], lr=lr, betas=(0.9, beta2), weight_decay=wd)
    base = []
    for t in range(2000):  # > 10/(1−β₂): bias correction and v settled
        w.grad = _tangent_grad(w.detach(), gen, 1.0, random_norm=False)
        opt.step()
        if t >= 1000:
            base.append(float((w.detach() ** 2).sum(1).mean()))
    r_base = float(np.mean(base))
    assert r_base == pytest.approx(r_star, rel=5e-3)
    with torch.no_grad():
        w.mul_(1.2)
        opt.state[w]["exp_avg_sq"].div_(1.44)
    devs = []
    for _ in range(int(2.5 * tau)):
        w.grad = _tangent_grad(w.detach(), gen, 1.0, random_norm=False)
        opt.step()
        devs.append(float((w.detach() ** 2).sum(1).mean()) / r_base - 1)
    fitted = _relaxation_fit(np.array(devs), int(0.7 * tau), int(2.3 * tau))
    assert 0.75 * tau < fitted < 1.05 * tau


# ---------------------------------------------------------------------------------------------
# no decay: growth laws


def test_no_decay_sgd_growth():
    lr, G, w0 = 0.1, 1.0, 1.0
    w, gen = _start(32, w0, seed=4)
    opt = torch.optim.SGD([w], lr=lr)
    for t in range(1, 3001):
        w.grad = _tangent_grad(w.detach(), gen, math.sqrt(G), random_norm=True)
        opt.step()
        if t in (300, 3000):
            norm = float(w.detach().norm(dim=1).mean())
            assert norm == pytest.approx(eq.no_decay_sgd_norm(t, w0, lr, G), rel=2e-3)
    assert eq.effective_lr(lr, norm) == pytest.approx(1 / math.sqrt(2 * G * 3000), rel=0.1)


def test_no_decay_adam_growth():
    """‖w‖² grows by η²d per step once v tracks the gradient scale (β₂ = 0.9 here)."""
    lr, w0 = 0.01, 1.0
    w, gen = _start(32, w0, seed=5)
    opt = torch.optim.Adam([w], lr=lr, betas=(0.9, 0.9))
    for t in range(1, 4001):
        w.grad = _tangent_grad(w.detach(), gen, 1.0, random_norm=False)
        opt.step()
        if t in (1000, 4000):
            norm = float(w.detach().norm(dim=1).mean())
            # predicted lag deficit in ‖w‖²: 10·η²d·ln(‖w‖²/‖w0‖²) ≈ 0.8 % at t = 4000
            assert norm == pytest.approx(eq.no_decay_adam_norm(t, w0, lr, D), rel=1e-2)


# ---------------------------------------------------------------------------------------------
# exponents


def test_fit_recovers_known_exponents():
    etas, lams = np.meshgrid([1e-3, 3e-3, 1e-2, 3e-2], [1e-4, 1e-3, 1e-2, 1e-1])
    etas, lams = etas.ravel(), lams.ravel()
    exact = 3.0 * etas**0.5 * lams**-0.25
    fit = eq.fit_power_law_exponents(etas, lams, exact)
    assert (fit.p, fit.q, fit.prefactor) == pytest.approx((0.5, -0.25, 3.0), abs=1e-10)
    assert fit.n == 16 and fit.r2 == pytest.approx(1.0)
    # 5 % log-normal noise: the 95 % intervals cover the true exponents ~95 % of the time
    rng = np.random.default_rng(0)
    fits = [eq.fit_power_law_exponents(etas, lams, exact * np.exp(rng.normal(0, 0.05, 16)))
            for _ in range(400)]
    cover_p = np.mean([f.ci_p[0] < 0.5 < f.ci_p[1] for f in fits])
    cover_q = np.mean([f.ci_q[0] < -0.25 < f.ci_q[1] for f in fits])
    assert 0.92 < cover_p < 0.98 and 0.92 < cover_q < 0.98
    fit = fits[0]
    assert fit.level == 0.95 and 0 < fit.se_p < 0.05 and 0 < fit.se_q < 0.05
    assert fit.p == pytest.approx(0.5, abs=4 * fit.se_p)
    assert fit.ci_p[1] - fit.p == pytest.approx(fit.se_p * 2.160, rel=1e-3)  # t(0.975, 13 dof)
    three = eq.fit_power_law_exponents([1, 2, 1], [1, 1, 2], [1.0, 2.0, 4.0])
    assert (three.p, three.q) == pytest.approx((1.0, 2.0))
    assert math.isnan(three.se_p) and math.isnan(three.ci_q[0])


def test_adam_l2_exponents_from_simulation():
    """Adam + coupled L2 over a 3×3 (η, λ) grid: ‖w*‖ ∝ η^{1/3}λ^{-1/3}, so the effective LR
    η/‖w*‖ ∝ (η²λ)^{1/3}, not the review's (η²/λ)^{1/3}."""
    beta2, n = 0.99, 8
    grid = [(lr, lam) for lr in (0.01, 0.02, 0.04) for lam in (0.02, 0.04, 0.08)]
    gen = torch.Generator().manual_seed(6)
    params, groups = [], []
    for lr, lam in grid:
        w = torch.randn(n, D, generator=gen, dtype=torch.float64)
        w = torch.nn.Parameter(w * (1.2 * eq.adam_l2_norm(lr, lam, D, 1.0)
                                    / w.norm(dim=1, keepdim=True)))
        params.append(w)
        groups.append({"params": [w], "lr": lr, "weight_decay": lam})
    opt = torch.optim.Adam(groups, betas=(0.9, beta2))
    burn = int(10 * max(eq.relaxation_steps(lr, lam, "adam", d=D, gbar_norm=1.0, beta2=beta2)
                        for lr, lam in grid))
    sums = torch.zeros(len(grid), dtype=torch.float64)
    steps = 1000
    for t in range(burn + steps):
        for w in params:
            w.grad = _tangent_grad(w.detach(), gen, 1.0, random_norm=False)
        opt.step()
        if t >= burn:
            sums += torch.stack([w.detach().norm(dim=1).mean() for w in params])
    norms = (sums / steps).numpy()
    etas, lams = np.array(grid).T
    fit = eq.fit_power_law_exponents(etas, lams, norms)
    assert fit.p == pytest.approx(1 / 3, abs=0.02) and fit.q == pytest.approx(-1 / 3, abs=0.02)
    elr = eq.fit_power_law_exponents(etas, lams, etas / norms)
    assert elr.p == pytest.approx(2 / 3, abs=0.02) and elr.q == pytest.approx(1 / 3, abs=0.02)
    assert elr.ci_q[0] > 0  # excludes q = −1/3 (and 0) by a wide margin


# ---------------------------------------------------------------------------------------------
# conventions and closed-form identities


def test_vanlaarhoven_convention():
    """The paper's λ_vL·‖w‖² formulas equal ours at λ = 2·λ_vL."""
    lr, G, d, gbar = 0.1, 2.5, 256, 1.7
    for lam_vl in (1e-4, 1e-3, 5e-2):
        lam = lam_from_vanlaarhoven(lam_vl)
        assert lam == 2 * lam_vl
        assert eq.sgd_norm(lr, lam, G) ** 4 == pytest.approx(
            lr * G / (4 * lam_vl * (1 - lr * lam_vl)), rel=1e-12)
        assert math.sin(eq.sgd_angle(lr, lam)) == pytest.approx(
            2 * math.sqrt(lr * lam_vl * (1 - lr * lam_vl)), rel=1e-12)
        assert eq.adam_l2_norm(lr, lam, d, gbar) ** 3 == pytest.approx(
            lr * math.sqrt(d) * gbar / (4 * lam_vl), rel=1e-12)
        assert eq.relaxation_steps(lr, lam) == pytest.approx(1 / (8 * lr * lam_vl))
        # equilibrium effective LR, paper: 2√(ηλ_vL(1−ηλ_vL))/√G
        assert eq.effective_lr(lr, eq.sgd_norm(lr, lam, G)) == pytest.approx(
            2 * math.sqrt(lr * lam_vl * (1 - lr * lam_vl) / G), rel=1e-12)


def test_closed_form_limits():
    lr, lam, G, d = 0.05, 0.02, 3.0, 100
    # momentum 0 reduces to plain SGD exactly; small ηλ gives the quoted leading orders
    assert eq.sgdm_norm(lr, lam, G, 0.0) == pytest.approx(eq.sgd_norm(lr, lam, G), rel=1e-14)
    assert eq.sgdm_angle(lr, lam, 0.0) == eq.sgd_angle(lr, lam)
    assert eq.sgd_norm(lr, 1e-6, G) ** 4 == pytest.approx(lr * G / (2e-6), rel=1e-7)
    assert eq.sgdm_norm(1e-3, 1e-3, G, 0.9) ** 4 == pytest.approx(
        1e-3 * G / (2e-3 * 0.1), rel=1e-6)
    assert eq.sgdm_angle(1e-3, 1e-3, 0.9) == pytest.approx(math.sqrt(2e-6 / 1.9), rel=1e-6)
    # AdamW: β₁ = 0 gives the exact ηd/(λ_d(2 − ηλ_d)); ηλ_d → 0 gives ηd/(2λ_d)
    assert eq.adamw_norm(lr, 0.1, d, 0.0) ** 2 == pytest.approx(
        lr * d / (0.1 * (2 - lr * 0.1)), rel=1e-12)
    assert eq.adamw_norm(1e-4, 1e-3, d, 0.9) ** 2 == pytest.approx(1e-4 * d / 2e-3, rel=1e-5)
    # Adam + L2: instant-v relaxation 2‖w*‖²/(3η²d); AdamW: 1/(2ηλ_d)
    norm = eq.adam_l2_norm(lr, lam, d, 1.0)
    assert eq.relaxation_steps(lr, lam, "adam", d=d, gbar_norm=1.0, beta2=0.0) == pytest.approx(
        2 * norm**2 / (3 * lr * lr * d))
    assert eq.relaxation_steps(lr, lam, "adamw", beta2=0.0) == pytest.approx(1 / (2 * lr * lam))
    assert eq.relaxation_steps(1e-4, 1e-2, "adamw") == pytest.approx(1 / 2e-6, rel=0.01)
    assert eq.adam_l2_effective_lr(lr, lam, d, 1.0) == pytest.approx(lr / norm)
    assert eq.effective_lr(lr, 2.0, "adam") == lr / 2.0
    assert eq.effective_lr(lr, 2.0, "sgd", momentum=0.9) == pytest.approx(lr / (0.1 * 4.0))
    assert eq.no_decay_sgd_norm(0, 1.3, lr, G) == pytest.approx(1.3)
    assert eq.no_decay_adam_norm(100, 1.0, lr, d) == pytest.approx(math.sqrt(1 + lr * lr * d * 100))


# ---------------------------------------------------------------------------------------------
# input validation


@pytest.mark.parametrize("call,field", [
    (lambda: eq.sgd_norm(0.0, 0.1, 1.0), "lr"),
    (lambda: eq.sgd_norm(-0.1, 0.1, 1.0), "lr"),
    (lambda: eq.sgd_norm(float("nan"), 0.1, 1.0), "lr"),
    (lambda: eq.sgd_norm(float("inf"), 0.1, 1.0), "lr"),
    (lambda: eq.sgd_norm("0.1", 0.1, 1.0), "lr"),
    (lambda: eq.sgd_norm(True, 0.1, 1.0), "lr"),
    (lambda: eq.sgd_norm(0.1, 0.0, 1.0), "lam"),
    (lambda: eq.sgd_norm(0.1, 0.1, float("nan")), "G"),
    (lambda: eq.sgd_norm(10.0, 0.3, 1.0), "lr\\*lam"),
    (lambda: eq.sgd_angle(0.1, -1.0), "lam"),
    (lambda: eq.sgdm_norm(0.1, 0.1, 1.0, 1.0), "momentum"),
    (lambda: eq.sgdm_angle(0.1, 0.1, -0.1), "momentum"),
    (lambda: eq.adam_l2_norm(0.1, 0.1, 0, 1.0), "d"),
    (lambda: eq.adam_l2_norm(0.1, 0.1, 2.5, 1.0), "d"),
    (lambda: eq.adam_l2_norm(0.1, 0.1, 10, 0.0), "gbar_norm"),
    (lambda: eq.adam_l2_angle(0.1, 0.1, 10, 1.0, beta1=1.0), "beta1"),
    (lambda: eq.adamw_norm(0.1, float("inf"), 10), "wd"),
    (lambda: eq.adamw_angle(0.1, 0.1, beta1=float("nan")), "beta1"),
    (lambda: eq.no_decay_sgd_norm(-1, 1.0, 0.1, 1.0), "t"),
    (lambda: eq.no_decay_adam_norm(10, 0.0, 0.1, 10), "w0_norm"),
    (lambda: eq.relaxation_steps(0.1, 0.1, "rmsprop"), "optimizer"),
    (lambda: eq.relaxation_steps(0.1, 0.1, "adam"), "gbar_norm"),
    (lambda: eq.relaxation_steps(0.1, 0.1, "adamw", momentum=0.9), "momentum"),
    (lambda: eq.relaxation_steps(0.1, 0.1, "adamw", beta2=1.0), "beta2"),
    (lambda: eq.effective_lr(0.1, 0.0), "norm"),
    (lambda: eq.effective_lr(0.1, 1.0, "adam", momentum=0.5), "momentum"),
    (lambda: eq.fit_power_law_exponents([1, 2, 3], [1, 2, 3, 4], [1, 2, 3]), "lengths"),
    (lambda: eq.fit_power_law_exponents([1, 2, 3], [1, 2, 3], [1, -2, 3]), "values"),
    (lambda: eq.fit_power_law_exponents([1, 2, float("nan")], [1, 2, 3], [1, 2, 3]), "etas"),
    (lambda: eq.fit_power_law_exponents([1, 2, 4, 8], [1, 2, 4, 8], [1, 2, 3, 4]), "lams"),
    (lambda: eq.fit_power_law_exponents([1, 2], [1, 2], [1, 2]), "values"),
    (lambda: eq.fit_power_law_exponents([1, 2, 1], [1, 1, 2], [1, 2, 4], level=1.0), "level"),
    (lambda: eqm.sgdm_norm_sq_measured(0.1, 0.1, -1.0), "grad_sq"),
    (lambda: eqm.sgdm_norm_sq_measured(0.1, 0.1, 1.0, mom_grad=float("nan")), "mom_grad"),
    (lambda: eqm.sgdm_angle_measured(0.1, 0.1, rel_drift=-1.0), "rel_drift"),
    (lambda: eqm.adam_l2_norm_sq_measured(0.1, 0.1, update_sq=0.0, decay_weight=1.0,
                                         norm_sq=1.0), "update_sq"),
    (lambda: eqm.adam_l2_norm_sq_measured(0.1, 0.1, update_sq=1.0, decay_weight=1.0,
                                         norm_sq=1.0, precond_cross=float("inf")),
     "precond_cross"),
    (lambda: eqm.adamw_norm_sq_measured(0.1, 0.1, update_sq=1.0, drift="x"), "drift"),
    (lambda: eqm.adam_update_angle_measured(0.1, update_sq=1.0, norm_sq=0.0), "norm_sq"),
    (lambda: eqm.arrival_steps(0.1, 0.1, "adam", w0_norm=2.0, w_star_norm=1.0), "d"),
    (lambda: eqm.arrival_steps(0.1, 0.1, w0_norm=0.0, w_star_norm=1.0), "w0_norm"),
    (lambda: eqm.drift_per_relaxation([1.0, 2.0], [0.0, 1.0], 0.0), "relaxation_steps"),
])
def test_bad_inputs_raise_config_error_naming_the_field(call, field):
    with pytest.raises(ConfigError, match=field):
        call()
