"""Closed-form equilibrium predictions for scale-invariant weight vectors.

A weight vector w followed by a normalization layer (BN, LN, WN: per output unit for BN/LN)
gives a loss with L₀(c·w) = L₀(w) for every c > 0. Hence (van Laarhoven 2017, section 1 of
``/work/shared/papers/vanlaarhoven2017.md``) the gradient is orthogonal to w and scales as
1/‖w‖: ∇L₀(w) = ḡ/‖w‖ with ḡ the gradient at unit norm. L2 then does not regularize the
function; it sets ‖w‖ and through it the *effective* learning rate. This module gives the
equilibrium values of the random-walk model of that picture.

Conventions (every function states which it uses):

- η (``lr``): learning rate per optimizer step; times are in steps.
- λ (``lam``): **our** coupled L2, loss + (λ/2)·‖w‖², gradient λ·w = PyTorch
  ``weight_decay=λ`` in ``SGD``/``Adam``. van Laarhoven writes λ_vL·‖w‖², so λ = 2·λ_vL; the
  follow-ups' λ' (Li et al. 2022, Wan et al., Kosson et al.) is our λ.
- λ_d (``wd``): decoupled decay, w ← w − η·λ_d·w per step (``torch.optim.AdamW``).
- G = E‖ḡ‖² (``G``): expected squared gradient norm at unit weight norm, ḡ = ‖w‖·∇L₀(w);
  ``gbar_norm`` = √G.
- d: number of elements of the scale-invariant vector.
- α (``momentum``): PyTorch heavy ball, buf ← α·buf + g + λw, w ← w − η·buf.
- Angles are per step, θ_t = ∠(w_t, w_{t+1}) in radians; the predictions are RMS values.

Model: each step the loss gradient is ḡ_t/‖w_t‖ with ḡ_t ⟂ w_t of random direction. The
predictions assume stationary G and, for Adam, ε ≪ √v and an L2 gradient that does not dominate
v (λ‖w‖² ≪ ‖ḡ‖; beyond it Adam+L2 collapses). They hold per scale-invariant vector; layer
norms² add over units. ``tests/test_equilibrium.py`` checks each against ``torch.optim``
simulations of the model; the measured deviations are quoted in the docstrings.

Corrections relative to the formulas usually quoted (section 5 of the paper notes):

- SGD angle: the exact equilibrium angle is arccos(1 − ηλ); √(ηλ(2−ηλ)) is its *sine*.
- SGDM norm: the second-moment balance gives ‖w*‖⁴ = ηG(1+α)/(λ(1−α)(2(1+α) − ηλ)), which
  equals the SGD value exactly at α = 0 and Kosson et al.'s ηG/(2λ(1−α)) to leading order.
- AdamW norm: decay acting on w while momentum is still in flight lowers ‖w*‖² by a relative
  ≈ ηλ_d·β₁/(1−β₁) (−1.9 % at ηλ_d = 2e-3, β₁ = 0.9); :func:`adamw_norm` includes it.
- Relaxation of Adam/AdamW: v lags the 1/‖w‖² gradient scale; when 2ηλ_d is not ≪ 1 − β₂ the
  norm relaxes much more slowly than 1/(2ηλ_d) (see :func:`relaxation_steps`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from l2dynamics.analysis._checks import (
    OPTIMIZERS,
    _count,
    _fraction,
    _nonnegative,
    _optimizer,
    _positive,
    _positive_array,
    _product_below,
    _real,
)
from l2dynamics.errors import ConfigError

__all__ = [
    "OPTIMIZERS",
    "PowerLawFit",
    "adam_l2_angle",
    "adam_l2_effective_lr",
    "adam_l2_norm",
    "adamw_angle",
    "adamw_norm",
    "effective_lr",
    "fit_power_law_exponents",
    "no_decay_adam_norm",
    "no_decay_sgd_norm",
    "relaxation_steps",
    "sgd_angle",
    "sgd_norm",
    "sgdm_angle",
    "sgdm_norm",
]


# ---------------------------------------------------------------------------------------------
# SGD and SGD with momentum, coupled L2


def sgd_norm(lr: float, lam: float, G: float) -> float:
    """Equilibrium ‖w*‖ for plain SGD with coupled L2: ‖w*‖⁴ = ηG/(λ(2 − ηλ)).

    η per step, λ ours (gradient λw), G = E‖ḡ‖². From the exact recursion
    ‖w_{t+1}‖² = (1−ηλ)²‖w_t‖² + η²‖ḡ_t‖²/‖w_t‖² (ḡ ⟂ w). ≈ ηG/(2λ) for ηλ ≪ 1. In van
    Laarhoven's λ_vL = λ/2 this is ηG/(4λ_vL(1 − ηλ_vL)). Simulation: within 0.03 %.
    """
    lr, lam, G = _positive("lr", lr), _positive("lam", lam), _positive("G", G)
    _product_below("lr*lam", lr * lam, 2.0)
    return (lr * G / (lam * (2.0 - lr * lam))) ** 0.25


def sgd_angle(lr: float, lam: float) -> float:
    """Equilibrium angular update per step (radians) for SGD with coupled L2: arccos(1 − ηλ).

    η per step, λ ours. At equilibrium ‖w_{t+1}‖ = ‖w_t‖ and ⟨w_t, w_{t+1}⟩ = (1−ηλ)‖w_t‖², so
    cos θ = 1 − ηλ exactly (for fixed ‖ḡ‖; the RMS over random ‖ḡ‖ agrees to < 0.1 %). Its sine
    is the follow-ups' √(ηλ(2−ηλ)) (= 2√(ηλ_vL(1−ηλ_vL)) in van Laarhoven's λ_vL); both are
    ≈ √(2ηλ). The sine form is low by a relative ≈ ηλ/3 (3 % at ηλ = 0.09, where the arccos
    form matches the simulation to 0.05 %). Independent of G: the rotation speed is set by ηλ.
    """
    return sgdm_angle(lr, lam, 0.0)


def sgdm_norm(lr: float, lam: float, G: float, momentum: float) -> float:
    """Equilibrium ‖w*‖ for heavy-ball SGD (PyTorch ``SGD(momentum=α, weight_decay=λ)``).

    ‖w*‖⁴ = ηG(1+α) / (λ(1−α)(2(1+α) − ηλ))  ≈  ηG/(2λ(1−α))  (Kosson et al.'s form).

    η per step, λ ours, G = E‖ḡ‖², α = ``momentum`` in PyTorch's convention
    buf ← α·buf + g + λw, w ← w − η·buf (no dampening). Derivation: stationarity of E‖w‖²,
    E‖buf‖² and E⟨w_t, buf_{t−1}⟩ with E‖g‖² = G/E‖w‖² (g ⟂ w, zero mean) gives this closed form;
    at α = 0 it is exactly :func:`sgd_norm`. Simulation: within 0.1 % for ηλ ≤ 1e-3 and α up
    to 0.9, and within 0.3 % at ηλ = 0.1–0.2 where the leading form is 1–1.7 % low.
    """
    lr, lam, G = _positive("lr", lr), _positive("lam", lam), _positive("G", G)
    alpha = _fraction("momentum", momentum)
    _product_below("lr*lam/(1+momentum)", lr * lam / (1.0 + alpha), 2.0)
    return (lr * G * (1.0 + alpha)
            / (lam * (1.0 - alpha) * (2.0 * (1.0 + alpha) - lr * lam))) ** 0.25


def sgdm_angle(lr: float, lam: float, momentum: float) -> float:
    """Equilibrium RMS angular update per step (radians) for heavy-ball SGD with coupled L2.

    arccos(1 − ηλ/(1+α))  ≈  √(2ηλ/(1+α))  (Wan et al. 2021; Kosson et al.'s ``avg_rotation``).

    η per step, λ ours, α PyTorch heavy ball. The stationary moments give
    E⟨w_t, w_{t+1}⟩ = (1 − ηλ/(1+α))·E‖w‖², hence this form; it is exact at α = 0
    (:func:`sgd_angle`) and equals the quoted √(2ηλ/(1+α)) to leading order in ηλ. Simulation:
    within 0.1 % for ηλ ≤ 1e-3; at ηλ = 0.1, α = 0.5 within 0.15 % (leading form 0.7 % low).
    """
    lr, lam = _positive("lr", lr), _positive("lam", lam)
    alpha = _fraction("momentum", momentum)
    x = lr * lam / (1.0 + alpha)
    _product_below("lr*lam/(1+momentum)", x, 2.0)
    return math.acos(1.0 - x)


# ---------------------------------------------------------------------------------------------
# Adam with coupled L2, AdamW


def adam_l2_norm(lr: float, lam: float, d: int, gbar_norm: float) -> float:
    """Equilibrium ‖w*‖ for Adam with coupled L2 (``torch.optim.Adam(weight_decay=λ)``).

    ‖w*‖³ = η√d‖ḡ‖/(2λ)  (van Laarhoven's λ_vL: η√d‖ḡ‖/(4λ_vL)), so ‖w*‖ ∝ (η/λ)^{1/3}.

    η per step, λ ours, d elements, ``gbar_norm`` = ‖ḡ‖ = √G. Adam's √v ≈ ‖ḡ‖/(‖w‖√d), so the
    decay step ηλw/√v shrinks ‖w‖² by 2ηλ√d‖w‖³/‖ḡ‖ per step while the normalized gradient
    steps add η²d; β₁ and β₂ drop out. Needs ε ≪ √v and λ‖w*‖² ≪ ‖ḡ‖. Simulation (d = 64):
    ‖w‖ 0.1–0.2 % low at β₂ = 0.999 and 0.3–0.6 % low at β₂ = 0.99 (noise in v, O(1−β₂)).
    """
    lr, lam = _positive("lr", lr), _positive("lam", lam)
    d, gbar = _count("d", d), _positive("gbar_norm", gbar_norm)
    return (lr * math.sqrt(d) * gbar / (2.0 * lam)) ** (1.0 / 3.0)


def adam_l2_effective_lr(lr: float, lam: float, d: int, gbar_norm: float) -> float:
    """Equilibrium effective learning rate η/‖w*‖ of Adam with coupled L2 (per step).

    = (2λη²/(√d‖ḡ‖))^{1/3} ∝ (η²λ)^{1/3}, λ ours. The paper's premises give this exponent; the
    review [V] quotes (η²/λ)^{1/3}. :func:`fit_power_law_exponents` settles it on data.
    """
    return _positive("lr", lr) / adam_l2_norm(lr, lam, d, gbar_norm)


def adam_l2_angle(lr: float, lam: float, d: int, gbar_norm: float, beta1: float = 0.9) -> float:
    """Equilibrium RMS angular update per step (radians) for Adam with coupled L2.

    θ* ≈ η√(d(1−β₁)/(1+β₁)) / ‖w*‖ with ‖w*‖ from :func:`adam_l2_norm` (λ ours). Depends on
    ‖ḡ‖, so it differs between units with different gradient sizes (unlike AdamW). Simulation:
    within 0.3 %.
    """
    b1 = _fraction("beta1", beta1)
    step = _positive("lr", lr) * math.sqrt(_count("d", d) * (1.0 - b1) / (1.0 + b1))
    return step / adam_l2_norm(lr, lam, d, gbar_norm)


def adamw_norm(lr: float, wd: float, d: int, beta1: float = 0.9) -> float:
    """Equilibrium ‖w*‖ for AdamW (decoupled decay w ← w − η·λ_d·w per step).

    ‖w*‖² = η²d(1−β₁)(1+aβ₁) / ((1+β₁)(1−aβ₁)(1−a²)),  a = 1 − ηλ_d,
            ≈ ηd/(2λ_d)  (Kosson et al.) for ηλ_d·β₁/(1−β₁) ≪ 1.

    η per step, λ_d = ``wd`` (PyTorch AdamW ``weight_decay``), d elements, β₁ Adam's first beta.
    Each normalized gradient step has E‖m̂/√v̂‖² = d(1−β₁)/(1+β₁); the exact stationary
    second moments of w ← a·w − η·m, m ← β₁m + (1−β₁)h with h ⟂ w, E‖h‖² = d give the form
    above. The decay shrinks w while a gradient's momentum is still being applied, which lowers
    ‖w*‖² by ≈ ηλ_d·β₁/(1−β₁) relative to the leading form. Not included: noise in v lowers
    ‖w*‖² by a further ≈ 1−β₂ (Gaussian gradient coordinates). Simulation, β₁ = 0.9: ‖w*‖²
    within 0.2 % at β₂ = 0.999 (leading form 1.1 % high at ηλ_d = 1e-3, 3.6 % at 4e-3), and
    ‖w*‖ 0.3–0.5 % low at β₂ = 0.99.
    """
    lr, wd = _positive("lr", lr), _positive("wd", wd)
    d, b1 = _count("d", d), _fraction("beta1", beta1)
    _product_below("lr*wd", lr * wd, 2.0)
    a = 1.0 - lr * wd
    sq = (lr * lr * d * (1.0 - b1) * (1.0 + a * b1)
          / ((1.0 + b1) * (1.0 - a * b1) * (1.0 - a * a)))
    return math.sqrt(sq)


def adamw_angle(lr: float, wd: float, beta1: float = 0.9) -> float:
    """Equilibrium RMS angular update per step (radians) for AdamW: √(2ηλ_d(1−β₁)/(1+β₁)).

    η per step, λ_d decoupled (``wd``). Independent of d and ‖ḡ‖, so balanced across units
    (Kosson et al., ``rotational_adamw.py``). Simulation: within 0.1 % up to ηλ_d = 4e-3.
    """
    lr, wd, b1 = _positive("lr", lr), _positive("wd", wd), _fraction("beta1", beta1)
    _product_below("lr*wd", lr * wd, 2.0)
    return math.sqrt(2.0 * lr * wd * (1.0 - b1) / (1.0 + b1))


# ---------------------------------------------------------------------------------------------
# no weight decay: the norm grows


def no_decay_sgd_norm(t: float, w0_norm: float, lr: float, G: float) -> float:
    """‖w_t‖ after t steps of SGD without L2: (‖w_0‖⁴ + 2η²Gt)^{1/4}.

    η per step, G = E‖ḡ‖². From ‖w_{t+1}‖² = ‖w_t‖² + η²‖ḡ_t‖²/‖w_t‖² (exact, ḡ ⟂ w), dropping
    η⁴Σ‖ḡ‖⁴/‖w‖⁴ (relative size ≈ η²G/‖w‖⁴). Effective LR η/‖w_t‖² → 1/√(2Gt), free of η.
    Plain SGD; heavy-ball momentum α acts as η → η/(1−α) here (checked: 2η²G·101 at α = 0.9).
    """
    t, w0 = _nonnegative("t", t), _positive("w0_norm", w0_norm)
    lr, G = _positive("lr", lr), _positive("G", G)
    return (w0**4 + 2.0 * lr * lr * G * t) ** 0.25


def no_decay_adam_norm(t: float, w0_norm: float, lr: float, d: int) -> float:
    """‖w_t‖ after t steps of Adam without decay: √(‖w_0‖² + η²dt).

    η per step, d elements: every gradient moves w by ≈ η·(unit-RMS per coordinate) ⟂ w, adding
    η²d to ‖w‖². Assumes v tracks the current gradient scale, i.e. the relative growth rate
    η²d/‖w‖² ≪ 1 − β₂. While it is not (early on with β₂ = 0.999) v lags the shrinking gradient
    and ‖w_t‖² falls short by ≈ η²d/(1−β₂)·ln(‖w_t‖²/‖w_0‖²). Effective LR η/‖w_t‖ → 1/√(dt).
    """
    t, w0 = _nonnegative("t", t), _positive("w0_norm", w0_norm)
    lr, d = _positive("lr", lr), _count("d", d)
    return math.sqrt(w0 * w0 + lr * lr * d * t)


# ---------------------------------------------------------------------------------------------
# time scales and effective learning rates


def _slow_rate(k: float, k2: float, c: float) -> float:
    """Slowest decay rate of d(δx, δy)/dt = [[−2k, −ck], [−k2, −k2]](δx, δy).

    δx = relative deviation of ‖w‖², δy = of Adam's v; k2 = ∞ means v follows at once.
    """
    if math.isinf(k2):
        return (2.0 - c) * k
    b = 2.0 * k + k2
    return 2.0 * (2.0 - c) * k * k2 / (b + math.sqrt(b * b - 4.0 * (2.0 - c) * k * k2))


def relaxation_steps(lr: float, lam: float, optimizer: str = "sgd", momentum: float = 0.0, *,
                     d: int | None = None, gbar_norm: float | None = None,
                     beta2: float = 0.999) -> float:
    """e-folding time, in steps, of small deviations of ‖w‖² (and ‖w‖) from equilibrium.

    Wait ~10 of these before comparing a run with the equilibrium formulas.

    - ``"sgd"`` (λ ours, α = ``momentum``): (1−α)/(4ηλ). Linearizing
      r' = (1−ηλ)²r + η²G/r (r = ‖w‖²) at r* gives the factor 2(1−ηλ)² − 1 ≈ 1 − 4ηλ per step:
      shrinkage (2ηλ) plus the 1/r fall of the growth term (another 2ηλ). Momentum makes the
      long-run step η/(1−α). Leading order in ηλ/(1−α)² (−8 % at ηλ/(1−α)² = 0.02).
      van Laarhoven's λ_vL: 1/(8ηλ_vL); the paper's "O(1/(ηλ))".
    - ``"adamw"`` (``lam`` = λ_d): 1/(2ηλ_d) if v followed the gradient scale at once; coupled
      to v (rate k₂ = −ln β₂) the slowest mode of [[−2k, −k], [−k₂, −k₂]], k = 2ηλ_d: ≈ 1/(2ηλ_d)
      for 2ηλ_d ≪ 1−β₂, but → 2/(1−β₂) when 2ηλ_d ≫ 1−β₂ (2133 vs 250 steps at η = 0.02,
      λ_d = 0.1, β₂ = 0.999). Not the paper's "≈ 1/(ηλ_d)".
    - ``"adam"`` (coupled L2, needs ``d`` and ``gbar_norm``): k = η²d/‖w*‖², instant-v value
      2‖w*‖²/(3η²d) ∝ η^{-4/3}λ^{-2/3}, coupled to v as above with [[−2k, −k/2], [−k₂, −k₂]].

    Momentum must be 0 for Adam/AdamW (β₁ does not set these times to leading order). The Adam
    values are linearized mean-field modes; simulated runs e-fold 5–20 % faster.
    """
    lr, lam, opt = _positive("lr", lr), _positive("lam", lam), _optimizer(optimizer)
    alpha = _fraction("momentum", momentum)
    b2 = _fraction("beta2", beta2)
    if opt == "sgd":
        return (1.0 - alpha) / (4.0 * lr * lam)
    if alpha != 0.0:
        raise ConfigError(f"momentum applies to optimizer='sgd' only, got {momentum!r} "
                          f"with optimizer={opt!r}")
    k2 = math.inf if b2 == 0.0 else -math.log(b2)
    if opt == "adamw":
        return 1.0 / _slow_rate(2.0 * lr * lam, k2, 1.0)
    if d is None or gbar_norm is None:
        raise ConfigError("d and gbar_norm are required for optimizer='adam'")
    norm = adam_l2_norm(lr, lam, d, gbar_norm)
    return 1.0 / _slow_rate(lr * lr * _count("d", d) / norm**2, k2, 0.5)


def effective_lr(lr: float, norm: float, optimizer: str = "sgd", momentum: float = 0.0) -> float:
    """Effective learning rate of a scale-invariant vector of norm ``norm`` (per step).

    ``"sgd"``: η/((1−α)‖w‖²) — the normalized vector moves like SGD on the unit sphere with
    this step (gradient ∝ 1/‖w‖ and rotation per displacement ∝ 1/‖w‖; heavy ball multiplies the
    long-run step by 1/(1−α)). ``"adam"``/``"adamw"``: η/‖w‖ (Adam cancels the first 1/‖w‖ only).
    """
    lr, norm, opt = _positive("lr", lr), _positive("norm", norm), _optimizer(optimizer)
    alpha = _fraction("momentum", momentum)
    if opt == "sgd":
        return lr / ((1.0 - alpha) * norm * norm)
    if alpha != 0.0:
        raise ConfigError(f"momentum applies to optimizer='sgd' only, got {momentum!r} "
                          f"with optimizer={opt!r}")
    return lr / norm


# ---------------------------------------------------------------------------------------------
# exponent fit


@dataclass(frozen=True)
class PowerLawFit:
    """Least-squares fit log value = intercept + p·log η + q·log λ.

    ``se_*`` are standard errors; ``ci_p``/``ci_q`` two-sided t-intervals at ``level``. With
    exactly three points there are no degrees of freedom left and the errors are NaN.
    """

    intercept: float
    p: float
    q: float
    se_intercept: float
    se_p: float
    se_q: float
    ci_p: tuple[float, float]
    ci_q: tuple[float, float]
    level: float
    r2: float
    n: int

    @property
    def prefactor(self) -> float:
        """e^intercept: the value at η = λ = 1."""
        return math.exp(self.intercept)


def fit_power_law_exponents(etas: Sequence[float], lams: Sequence[float],
                            values: Sequence[float], level: float = 0.95) -> PowerLawFit:
    """Fit value ∝ η^p·λ^q over a grid of runs, with standard errors and a `level` CI.

    For the disputed Adam+L2 law: the effective LR η/‖w*‖ ∝ (η²λ)^{1/3} predicts p = 2/3,
    q = +1/3; the review's (η²/λ)^{1/3} predicts q = −1/3. Drop collapsed runs before fitting.
    η, λ in any one convention (a constant factor moves only the intercept).
    """
    x_eta, x_lam = _positive_array("etas", etas), _positive_array("lams", lams)
    y = _positive_array("values", values)
    if not len(x_eta) == len(x_lam) == len(y):
        raise ConfigError(f"etas, lams and values must have equal lengths, got "
                          f"{len(x_eta)}, {len(x_lam)}, {len(y)}")
    if len(y) < 3:
        raise ConfigError(f"values must hold at least 3 points, got {len(y)}")
    level = _real("level", level)
    if not 0 < level < 1:
        raise ConfigError(f"level must be in (0, 1), got {level!r}")
    X = np.column_stack([np.ones_like(y), np.log(x_eta), np.log(x_lam)])
    if np.linalg.matrix_rank(X) < 3:
        raise ConfigError("etas and lams must vary independently (a 2-D grid of runs)")
    ly = np.log(y)
    coef, *_ = np.linalg.lstsq(X, ly, rcond=None)
    resid = ly - X @ coef
    n, dof = len(y), len(y) - 3
    if dof > 0:
        cov = float(resid @ resid) / dof * np.linalg.inv(X.T @ X)
        se = np.sqrt(np.diag(cov))
        half = stats.t.ppf(0.5 + level / 2.0, dof) * se
    else:
        se = half = np.full(3, math.nan)
    tss = float(((ly - ly.mean()) ** 2).sum())
    r2 = 1.0 - float(resid @ resid) / tss if tss > 0 else math.nan
    return PowerLawFit(
        intercept=float(coef[0]), p=float(coef[1]), q=float(coef[2]),
        se_intercept=float(se[0]), se_p=float(se[1]), se_q=float(se[2]),
        ci_p=(float(coef[1] - half[1]), float(coef[1] + half[1])),
        ci_q=(float(coef[2] - half[2]), float(coef[2] + half[2])),
        level=level, r2=r2, n=n)
