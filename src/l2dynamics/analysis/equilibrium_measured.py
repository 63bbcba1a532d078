"""Equilibrium predictions from what the optimizer really sees (van Laarhoven 2017 and its
follow-ups; :mod:`l2dynamics.analysis.equilibrium` has the random-walk closed forms).

The closed forms above are the *random-walk* model: white, isotropic gradients ⟂ w, a
stationary norm. A network departs from each premise in a measurable way, and the one-step
identity ‖w_{t+1}‖² = ‖w_t‖² − 2η⟨w_t, u_t⟩ + η²‖u_t‖² (step η·u_t) says how. The functions
below put the measured statistic in place of the assumed one, one premise at a time:

- drift D = mean change of ‖w‖² per update over the window (all optimizers): a norm still
  falling is not yet in equilibrium, and its identity has −D on the growth side;
- SGDM: K = E⟨b_{t−1}, ∇L_t⟩, the correlation of the momentum buffer with the next gradient
  (0 for white gradients; negative when consecutive gradients are anticorrelated);
- Adam + L2: the per-element L2 step ηλ·w_i/√v̂_i (not one RMS gradient per tensor), the
  update power E‖m̂/√v̂‖² (not its white-noise value d(1 − β₁)/(1 + β₁)) and the cross term
  X = E⟨w, ∇L/√v̂⟩ (∇L ⟂ w, but the preconditioned gradient need not be);
- AdamW: the update power, i.e. an effective dimension d_eff = E‖m̂/√v̂‖²·(1 + β₁)/(1 − β₁),
  and the same X.

Each form reduces to its closed form when the statistic takes its random-walk value (tested).
What remains assumed: scale invariance (⟨w, ∇L⟩ = 0), Adam's v̂ varying slowly against the
momentum's memory, and stationary secondary moments (⟨w, b⟩, ‖b‖²). ``tests/test_equilibrium.py``
simulates each departure (anisotropic v, anticorrelated gradients, fewer effective
dimensions) where the closed form misses and the measured form does not.

Conventions as in :mod:`l2dynamics.analysis.equilibrium`: η per step, λ ours (gradient λw),
λ_d decoupled, μ PyTorch heavy ball, angles in radians per step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from l2dynamics.analysis._checks import (
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
    "STATIONARY_DRIFT",
    "adam_l2_norm_sq_measured",
    "adam_update_angle_measured",
    "adamw_norm_sq_measured",
    "arrival_steps",
    "drift_fraction",
    "drift_per_relaxation",
    "sgdm_angle_measured",
    "sgdm_norm_sq_measured",
    "white_noise_update_sq",
]


#: The stationarity test before any equilibrium verdict: the largest |trend of ‖w‖²| per
#: relaxation time, as a fraction of its mean (:func:`drift_per_relaxation`). A norm that
#: follows a slowly moving equilibrium lags it by ≈ τ × its rate of change, so this bounds the
#: lag at 2 % of ‖w‖².
STATIONARY_DRIFT = 0.02


def drift_per_relaxation(norm_sq_means: Sequence[float], centers: Sequence[float],
                         relaxation_steps: float) -> float:
    """The trend of ‖w‖² per relaxation time, as a fraction of its mean: the least-squares
    slope of pooled means of ‖w‖² (``norm_sq_means``, e.g. over consecutive pieces of a
    measured span) against their centre steps, times τ (``relaxation_steps``), over the mean.

    Pooled means, not the span's end points: ‖w‖² fluctuates by several % on the time-scale
    of a few steps (gradient spikes), and a difference of two instants carries those
    fluctuations (on the mini suite's SGD case the end points gave −4.0 % and +1.7 % in two
    runs of one design whose 5-piece trends were −2.9 % and −3.9 %)."""
    y = _positive_array("norm_sq_means", norm_sq_means)
    x = np.asarray(centers, dtype=float)
    if x.shape != y.shape or len(y) < 2:
        raise ConfigError("norm_sq_means and centers must be equal-length sequences of ≥ 2")
    tau = _positive("relaxation_steps", relaxation_steps)
    slope = float(np.polyfit(x, y, 1)[0])
    return slope * tau / float(y.mean())


def drift_fraction(norm_sq_start: float, norm_sq_end: float, norm_sq_mean: float) -> float:
    """(‖w‖² at the end − ‖w‖² at the start of a span) / mean ‖w‖² over it: the change of a
    measured span, signed (negative: shrinking), from its two end points (the D of the
    drift-corrected identities times the span's updates). Noisy as a stationarity test: see
    :func:`drift_per_relaxation`."""
    mean = _positive("norm_sq_mean", norm_sq_mean)
    return (_real("norm_sq_end", norm_sq_end) - _real("norm_sq_start", norm_sq_start)) / mean


def sgdm_norm_sq_measured(lr: float, lam: float, grad_sq: float, momentum: float = 0.0, *,
                          mom_grad: float = 0.0, drift: float = 0.0) -> float:
    """E‖w‖² of heavy-ball SGD with coupled L2 from the measured gradient, momentum–gradient
    correlation and drift (plain SGD at ``momentum=0``).

    E‖w‖² = η(1+μ)·[G + 2μK − (D/η²)·((1−μ)² + 2μηλ/(1+μ))] / (λ(1−μ)(2(1+μ) − ηλ)),

    G = E‖∇L‖² (``grad_sq``, data loss, per update), K = E⟨b_{t−1}, ∇L_t⟩ (``mom_grad``),
    D = mean change of ‖w‖² per update (``drift``), η per step, λ ours, μ PyTorch heavy ball
    b_t = μb_{t−1} + ∇L_t + λw_t, w_{t+1} = w_t − ηb_t. Derivation: the exact one-step moments
    of ‖w‖², ⟨w, b⟩ and ‖b‖² with ⟨w_t, ∇L_t⟩ = 0 (scale invariance), with ‖w‖² changing by D
    per update and ⟨w, b⟩, ‖b‖² stationary. At μ = 0 it is the exact identity
    E‖w‖² = (η²G − D)/(ηλ(2 − ηλ)); at K = D = 0 it is :func:`sgdm_norm` with G = E‖∇L‖²
    (``sgdm_norm(η, λ, G, μ)**4``). The same moments give E‖b‖² = 2λE‖w‖²/(η(1+μ)) at D = 0.
    """
    lr, lam = _positive("lr", lr), _positive("lam", lam)
    G, mu = _nonnegative("grad_sq", grad_sq), _fraction("momentum", momentum)
    K, D = _real("mom_grad", mom_grad), _real("drift", drift)
    _product_below("lr*lam/(1+momentum)", lr * lam / (1.0 + mu), 2.0)
    growth = G + 2.0 * mu * K - D / lr**2 * ((1.0 - mu) ** 2 + 2.0 * mu * lr * lam / (1.0 + mu))
    return lr * (1.0 + mu) * growth / (lam * (1.0 - mu) * (2.0 * (1.0 + mu) - lr * lam))


def sgdm_angle_measured(lr: float, lam: float, momentum: float = 0.0, *,
                        rel_drift: float = 0.0) -> float:
    """RMS angular update per step (radians) of heavy-ball SGD with coupled L2 whose ‖w‖²
    changes by a fraction ``rel_drift`` = D/E‖w‖² per update.

    arccos[(1 − ηλ/(1+μ) + r·μ/(1+μ)) / √(1 + r)],  r = ``rel_drift``;

    at r = 0 this is :func:`sgdm_angle`; at μ = 0 it is exact per step for SGD
    (cos θ = (1 − ηλ)‖w_t‖/‖w_{t+1}‖). From ⟨w_t, w_{t+1}⟩ = ‖w_t‖² − η⟨w_t, b_t⟩ with the same
    moments as :func:`sgdm_norm_sq_measured`. Independent of the gradient and of K.
    """
    lr, lam, mu = _positive("lr", lr), _positive("lam", lam), _fraction("momentum", momentum)
    r = _real("rel_drift", rel_drift)
    if r <= -1.0:
        raise ConfigError(f"rel_drift must be > -1, got {rel_drift!r}")
    _product_below("lr*lam/(1+momentum)", lr * lam / (1.0 + mu), 2.0)
    cos = (1.0 - lr * lam / (1.0 + mu) + r * mu / (1.0 + mu)) / math.sqrt(1.0 + r)
    return math.acos(max(-1.0, min(1.0, cos)))


def white_noise_update_sq(d: int, beta1: float = 0.9) -> float:
    """E‖m̂/√v̂‖² per step of Adam on white gradients: d(1 − β₁)/(1 + β₁) (the closed forms'
    assumption; the measured update power ũ is E‖m̂/√v̂‖² divided by this)."""
    b1 = _fraction("beta1", beta1)
    return _count("d", d) * (1.0 - b1) / (1.0 + b1)


def adam_l2_norm_sq_measured(lr: float, lam: float, *, update_sq: float, decay_weight: float,
                             norm_sq: float, beta1: float = 0.9, precond_cross: float = 0.0,
                             drift: float = 0.0) -> float:
    """E‖w‖² of Adam with coupled L2 from the per-element L2 step and the measured update power.

    The L2 step shrinks ‖w‖² by 2ηλ·Σ_i w_i²/(√v̂_i + ε) per update (``decay_weight`` = its
    window mean A, with ``norm_sq`` = E‖w‖² over the same updates); the steps add
    η²·P·(1 + β₁)/(1 − β₁) (P = E‖m̂/(√v̂ + ε)‖², ``update_sq``, the step the optimizer
    applied). The stationary moments of ‖w‖², ⟨w, m̂/√v̂⟩ and ‖m̂/√v̂‖² (v̂ slowly varying) give
    the balance

        2ηλ·A = η²P(1 + β₁)/(1 − β₁) − 2ηX − D,
        E‖w‖² = (η²P(1 + β₁)/(1 − β₁) − 2ηX − D) / (2ηλ·A/E‖w‖²),

    X = E⟨w_t, ∇L_t/(√v̂_t + ε)⟩ (``precond_cross``; 0 when the preconditioned gradient stays
    ⟂ w), D the drift of ‖w‖² per update. The ratio measured/predicted is therefore
    shrinkage/growth inverted: 1 when the L2 step balances the steps as the per-element model
    says. With v̂ isotropic (√v̂_i = ‖∇L‖/√d), X = 0 and P at its white-noise value
    (:func:`white_noise_update_sq`) this is the closed form :func:`adam_l2_norm`:
    ‖w‖² = η√d‖∇L‖/(2λ). Per tensor that form over-predicts ‖w‖ by √κ, κ =
    A·√(mean v̂)/E‖w‖² ≥ 1 (the anisotropy of v̂ the L2 step sees), and by 1/√ũ, ũ = P over its
    white-noise value.
    """
    lr, lam = _positive("lr", lr), _positive("lam", lam)
    P, A = _positive("update_sq", update_sq), _positive("decay_weight", decay_weight)
    W, b1 = _positive("norm_sq", norm_sq), _fraction("beta1", beta1)
    X, D = _real("precond_cross", precond_cross), _real("drift", drift)
    growth = lr * lr * P * (1.0 + b1) / (1.0 - b1) - 2.0 * lr * X - D
    return growth / (2.0 * lr * lam * A / W)


def adamw_norm_sq_measured(lr: float, wd: float, *, update_sq: float, beta1: float = 0.9,
                           precond_cross: float = 0.0, drift: float = 0.0) -> float:
    """E‖w‖² of AdamW from the measured update power P = E‖m̂/(√v̂ + ε)‖², the preconditioned
    cross term X and the drift D.

    E‖w‖² = (η²P(1 + aβ₁)/(1 − aβ₁) − 2aη(1 − β₁)X/(1 − aβ₁) − D)/(1 − a²),  a = 1 − ηλ_d;

    X = E⟨w_t, ∇L_t/(√v̂_t + ε)⟩ (``precond_cross``). From the stationary moments of ‖w‖²,
    ⟨w, m̂/√v̂⟩ and ‖m̂/√v̂‖² with v̂ slowly varying. At P = d(1 − β₁)/(1 + β₁), X = D = 0 this
    is :func:`adamw_norm` squared: the closed form with an effective dimension
    d_eff = P(1 + β₁)/(1 − β₁) in place of d. η per step, λ_d decoupled (``wd``)."""
    lr, wd = _positive("lr", lr), _positive("wd", wd)
    P, b1 = _positive("update_sq", update_sq), _fraction("beta1", beta1)
    X, D = _real("precond_cross", precond_cross), _real("drift", drift)
    _product_below("lr*wd", lr * wd, 2.0)
    a = 1.0 - lr * wd
    growth = (lr * lr * P * (1.0 + a * b1) - 2.0 * a * lr * (1.0 - b1) * X) / (1.0 - a * b1)
    return (growth - D) / (1.0 - a * a)


def adam_update_angle_measured(lr: float, *, update_sq: float, norm_sq: float) -> float:
    """RMS angular update per step (radians) of Adam or AdamW from the measured update power
    and norm: η·√(E‖m̂/(√v̂ + ε)‖² / E‖w‖²) (the step is ⟂ w up to the small L2 part).

    At the closed forms' P = d(1 − β₁)/(1 + β₁) and ‖w‖ = ‖w*‖ it is :func:`adam_l2_angle` /
    :func:`adamw_angle` to leading order."""
    lr = _positive("lr", lr)
    return lr * math.sqrt(_positive("update_sq", update_sq) / _positive("norm_sq", norm_sq))


def arrival_steps(lr: float, lam: float, optimizer: str = "sgd", momentum: float = 0.0, *,
                  w0_norm: float, w_star_norm: float, d: int | None = None) -> float:
    """Steps for ‖w‖ to come from ‖w_0‖ down to the equilibrium ‖w*‖ (0 when it starts below:
    the gradient noise then raises it within a few relaxation times).

    - ``"sgd"`` (λ ours, heavy ball μ): (1−μ)·ln(‖w_0‖/‖w*‖)/(ηλ) — the decay alone shrinks
      ‖w‖ by the factor 1 − ηλ/(1−μ) per step, and the gradient noise only slows it;
    - ``"adamw"`` (``lam`` = λ_d): ln(‖w_0‖/‖w*‖)/(ηλ_d);
    - ``"adam"`` (coupled L2, needs ``d``): d‖w‖²/dt = η²d(1 − ‖w‖³/‖w*‖³) gives
      (2‖w*‖²/(η²d))·(1 − ‖w*‖/‖w_0‖) to leading order in ‖w*‖/‖w_0‖.

    Burn-in before any equilibrium measurement = this + several :func:`relaxation_steps`.
    """
    lr, lam, opt = _positive("lr", lr), _positive("lam", lam), _optimizer(optimizer)
    w0, ws = _positive("w0_norm", w0_norm), _positive("w_star_norm", w_star_norm)
    mu = _fraction("momentum", momentum)
    if w0 <= ws:
        return 0.0
    if opt == "sgd":
        return (1.0 - mu) * math.log(w0 / ws) / (lr * lam)
    if opt == "adamw":
        return math.log(w0 / ws) / (lr * lam)
    if d is None:
        raise ConfigError("d is required for optimizer='adam'")
    return 2.0 * ws * ws / (lr * lr * _count("d", d)) * (1.0 - ws / w0)
