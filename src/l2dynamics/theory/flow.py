"""Infinite-width gradient flow with L2 (Lewkowycz & Gur-Ari 2020, Theorems 1–2; paper notes §5).

Conventions
-----------
- Loss: the *summed* MSE 𝓛 = ½·Σ_a ‖f(x_a) − y_a‖² over the n training points; parameters follow
  gradient flow with coupled L2, θ̇ = −∇𝓛 − λθ (the paper's λ: loss + (λ/2)‖θ‖²).
- Time t is in gradient-flow units of this summed loss (= learning rate × steps for GD on 𝓛).
  A network trained in l2dynamics on the batch-*mean* MSE ½·Σ_outputs (f − y)² (full batch of n,
  learning rate η, coupled λ_ours) takes steps θ ← θ − (η/n)(∇𝓛 + n·λ_ours·θ), i.e. it is this
  flow at t = η·steps/n with λ = n·λ_ours: see `to_flow_units` / `from_flow_units`.
- The network is k-homogeneous in its parameters (bias-free ReLU net with k weight layers,
  k = depth + 1; k = 1 is a linear model). At infinite width (Theorem 1)
      Θ_t = e^{−2(k−1)λt}·Θ₀,    ∂_t f_t(x) = −Θ_t(x, X)(f_t(X) − Y) − kλ·f_t(x),
  for each output independently (the NTK is δ_ij times one scalar kernel across outputs).
- Shapes: Θ₀(X, X) is (n, n), Θ₀(x, X) is (m, n), targets (n, o); outputs are (len(times), ·, o).
  Everything is computed in float64 numpy; numpy or torch inputs are accepted.

Solution (a = kλ, c = 2(k−1)λ, τ(t) = ∫₀ᵗ e^{−cs} ds the "kernel time", Θ₀ = V diag(θ) Vᵀ):
each eigenmode g = Vᵀf(X) obeys ġ_i = −θ_i e^{−ct}(g_i − ỹ_i) − a·g_i, so

    g_i(t) = e^{−at − θ_i τ(t)}·g_i(0) + B_i(t)·ỹ_i,
    B_i(t) = θ_i ∫₀ᵗ e^{−a(t−s)} e^{−θ_i(τ(t)−τ(s))} e^{−cs} ds        (0 ≤ B_i ≤ 1).

For c = 0 (k = 1, or λ = 0) B_i = θ_i/(θ_i + a)·(1 − e^{−(θ_i+a)t}) in closed form. For c > 0 the
integral is accumulated over a time grid with c·Δt ≤ 2, B(t₁) = e^{−aΔt − θΔτ}B(t₀) + J, where J
(substituting y = θ(τ(t₁) − τ(s)), so that e^{c(t₁−s)} = 1 + y·c·e^{ct₁}/θ) becomes

    J = ∫₀^{θΔτ} e^{−y} (1 + y·c·e^{ct₁}/θ)^{−k/(2(k−1))} dy,

a smooth integrand with all exponents ≤ 0 (cut at y = 45, beyond which e^{−y} is below double
precision) integrated by 32-point Gauss–Legendre: every term is positive, stiff modes (θ ≫ 1/t)
cost nothing extra, and nothing overflows.

Test points need no quadrature: e^{at}f_t(x) − f₀(x) and e^{at}f_t(X) − f₀(X) are Θ₀(x, X)·w(t)
and Θ₀(X, X)·w(t) for one w(t), so f_t(x) = e^{−at} f₀(x) + Θ₀(x, X) Θ₀⁺ (f_t(X) − e^{−at} f₀(X)),
exact because a kernel row Θ₀(x, X) is orthogonal to the null space of the Gram matrix. Θ₀⁺ keeps
modes with θ_i > 1e-12·θ_max and the bracket is formed per mode as B_i/θ_i·ỹ_i +
e^{−at}(e^{−θ_i τ} − 1)/θ_i·g_i(0), without cancellation.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import torch

from l2dynamics.errors import ConfigError

__all__ = [
    "effective_time",
    "flow_metrics",
    "from_flow_units",
    "kernel_flow",
    "kernel_scale",
    "peak_time",
    "ridge_limit",
    "to_flow_units",
]

_RANK_RTOL = 1e-12  # modes with θ_i ≤ _RANK_RTOL·θ_max are outside the pseudo-inverse's range
_NEG_RTOL = 1e-6  # eigenvalues above −_NEG_RTOL·θ_max are round-off and clipped to 0
_Y_CUT = 45.0  # e^{−45} ≈ 3e-20: the integrand beyond y = 45 does not count
_MAX_C_STEP = 2.0  # c·Δt per quadrature interval (keeps the integrand's branch point away)
_CT_STOP = 800.0  # beyond c·t = 800, e^{−ct} underflows: no new kernel-driven learning
_GL_X, _GL_W = np.polynomial.legendre.leggauss(32)
_GL_U, _GL_W = (_GL_X + 1.0) / 2.0, _GL_W / 2.0  # nodes and weights on [0, 1]
_CHUNK = 1 << 22  # elements of one (steps, modes, nodes) quadrature block


# --- units ------------------------------------------------------------------------------------


def to_flow_units(lr, steps, n: int, lam):
    """(t, λ_flow) of full-batch GD on the batch-mean MSE: t = lr·steps/n, λ_flow = n·lam.

    lr: learning rate η; steps: optimizer updates; n: training points (the full batch);
    lam: coupled L2 λ_ours on the mean loss (PyTorch SGD ``weight_decay``). The mean loss
    𝓛/n + (λ_ours/2)‖θ‖² has gradient (∇𝓛 + n·λ_ours·θ)/n, so each step advances the flow of the
    summed loss by η/n with λ = n·λ_ours. Arrays broadcast.
    """
    _check_n(n)
    return np.multiply(lr, steps) / n, np.multiply(n, lam)


def from_flow_units(t, lam_flow, lr, n: int):
    """(steps, λ_ours) for flow time t and λ_flow at learning rate lr: the inverse of
    `to_flow_units` (steps = t·n/lr as a float; round it where an integer is needed)."""
    _check_n(n)
    return np.multiply(t, n) / lr, np.divide(lam_flow, n)


def _check_n(n) -> None:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ConfigError(f"n (training points) must be an int >= 1 (got {n!r})")


# --- scalar functions of time -----------------------------------------------------------------


def kernel_scale(t, lam: float, k: int):
    """Θ_t/Θ₀ = e^{−2(k−1)λt} (Theorem 1); same shape as t (float for a scalar)."""
    lam, k = _check_lam_k(lam, k)
    return _like(t, np.exp(-2.0 * (k - 1) * lam * np.asarray(t, np.float64)))


def effective_time(t, lam: float, k: int):
    """τ(t) = ∫₀ᵗ e^{−2(k−1)λs} ds = (1 − e^{−2(k−1)λt})/(2(k−1)λ), in flow-time units.

    The total kernel "learning time" up to t: τ → t when (k−1)λ = 0 and τ(∞) = 1/(2(k−1)λ)
    otherwise. Same shape as t (float for a scalar).
    """
    lam, k = _check_lam_k(lam, k)
    tt = np.asarray(t, np.float64)
    return _like(t, _tau(tt, 2.0 * (k - 1) * lam))


def _tau(t: np.ndarray, c: float) -> np.ndarray:
    return t.copy() if c == 0 else -np.expm1(-c * t) / c


def _phi(x: np.ndarray) -> np.ndarray:
    """(1 − e^{−x})/x, with its limit 1 at x = 0 (accurate for small x)."""
    safe = np.where(x == 0, 1.0, x)
    return np.where(x == 0, 1.0, -np.expm1(-safe) / safe)


def _like(t, value: np.ndarray):
    return float(value) if np.ndim(t) == 0 else value


# --- the flow ---------------------------------------------------------------------------------


def kernel_flow(ntk_train, ntk_test_train, y_train, *, lam: float, k: int, times,
                f0_train=None, f0_test=None) -> tuple[np.ndarray, np.ndarray]:
    """Outputs of the infinite-width k-homogeneous network under gradient flow with L2.

    ntk_train: Θ₀(X, X), (n, n) symmetric PSD; ntk_test_train: Θ₀(x_test, X), (m, n);
    y_train: (n,) or (n, o) targets (1-D means o = 1); lam: λ ≥ 0 in flow units (summed loss,
    see module doc); k ≥ 1: homogeneity degree (depth + 1 for a bias-free ReLU net); times: t ≥ 0
    in flow units, any order; f0_train (n, o) / f0_test (m, o): outputs at t = 0 (default 0).
    Returns (f_train, f_test) of shapes (len(times), n, o) and (len(times), m, o), float64
    numpy, in the order of `times`. Cost: one eigendecomposition plus matrix products.
    """
    lam, k = _check_lam_k(lam, k)
    kxx = _array(ntk_train, "ntk_train")
    kx = _array(ntk_test_train, "ntk_test_train")
    if kxx.ndim != 2 or kxx.shape[0] != kxx.shape[1]:
        raise ConfigError(f"ntk_train must be square (n, n) (got shape {kxx.shape})")
    n = kxx.shape[0]
    if kx.ndim != 2 or kx.shape[1] != n:
        raise ConfigError(f"ntk_test_train must have shape (m, {n}) (got {kx.shape})")
    m = kx.shape[0]
    y = _targets(y_train, n, "y_train")
    o = y.shape[1]
    f0x = np.zeros((n, o)) if f0_train is None else _outputs(f0_train, (n, o), "f0_train")
    f0t = np.zeros((m, o)) if f0_test is None else _outputs(f0_test, (m, o), "f0_test")
    t_all = _times(times)
    t, inverse = np.unique(t_all, return_inverse=True)

    theta, v = _eigh_psd(kxx)
    a, c = k * lam, 2.0 * (k - 1) * lam
    y_m, g0 = v.T @ y, v.T @ f0x  # (n, o) mode coordinates
    tau = _tau(t, c)[:, None]  # (T, 1)
    decay = np.exp(-a * t)[:, None]  # e^{−at}
    amp = np.exp(-a * t[:, None] - theta * tau)  # (T, n): e^{−at − θτ}, the free decay of g(0)
    resp = _response_per_theta(theta, t, a, c)  # (T, n): B/θ
    g = amp[..., None] * g0 + (theta * resp)[..., None] * y_m  # (T, n, o)
    f_train = _apply(v, g)

    keep = theta > _RANK_RTOL * theta.max() if theta.size and theta.max() > 0 else theta > 0
    # e^{−at}(e^{−θτ} − 1)/θ = −e^{−at}·τ·φ(θτ), no cancellation for small θ
    free = -decay * tau * _phi(theta[keep] * tau)
    coef = resp[:, keep, None] * y_m[keep] + free[..., None] * g0[keep]  # (T, r, o)
    f_test = decay[..., None] * f0t + _apply(kx, _apply(v[:, keep], coef))
    if t.size == t_all.size and np.array_equal(t, t_all):
        return f_train, f_test
    return f_train[inverse], f_test[inverse]


def _response_per_theta(theta: np.ndarray, t: np.ndarray, a: float, c: float) -> np.ndarray:
    """R_i(t) = B_i(t)/θ_i = ∫₀ᵗ e^{−a(t−s)} e^{−θ_i(τ(t)−τ(s))} e^{−cs} ds for sorted t ≥ 0.

    Finite at θ_i = 0 (no division by θ anywhere). See the module doc for the method.
    """
    if c == 0.0:
        return t[:, None] * _phi((theta + a) * t[:, None])
    t_end = min(t[-1], _CT_STOP / c)
    t_fill = np.linspace(0.0, t_end, int(np.ceil(c * t_end / _MAX_C_STEP)) + 2)
    grid = np.union1d(np.union1d(t, t_fill), [0.0])
    dt = np.diff(grid)  # (S,)
    dtau = np.exp(-c * grid[:-1]) * -np.expm1(-c * dt) / c  # τ(t₁) − τ(t₀)
    # c·e^{ct₁}·Δτ, the value of y·c·e^{ct₁}/θ at y = θΔτ (capped where Δτ underflows to 0)
    z_end = np.expm1(np.minimum(c * dt, 700.0))
    p = a / c  # = k/(2(k−1))
    steps = len(dt)
    jump = np.empty((steps, theta.size))  # J/θ for each interval
    rows = max(1, _CHUNK // max(1, theta.size * _GL_U.size))
    for i in range(0, steps, rows):
        sl = slice(i, i + rows)
        y_end = theta * dtau[sl, None]  # (s, n): θΔτ
        frac = _Y_CUT / np.maximum(y_end, _Y_CUT)  # the part of [0, θΔτ] that is integrated
        length, z = (y_end * frac)[..., None], (z_end[sl, None] * frac)[..., None]
        integrand = np.exp(-length * _GL_U - p * np.log1p(z * _GL_U))  # (s, n, nodes)
        jump[sl] = dtau[sl, None] * frac * (integrand @ _GL_W)
    carry = np.exp(-a * dt[:, None] - theta * dtau[:, None])  # (S, n)
    want = np.searchsorted(grid, t)
    out = np.empty((t.size, theta.size))
    r = np.zeros(theta.size)
    j_out = 0
    for j in range(steps + 1):
        if j > 0:
            r = carry[j - 1] * r + jump[j - 1]
        while j_out < t.size and want[j_out] == j:
            out[j_out] = r
            j_out += 1
    return out


def _apply(mat: np.ndarray, x: np.ndarray) -> np.ndarray:
    """mat @ x[t] for every t, as one matrix product: (T, p, o) → (T, q, o)."""
    steps, p, o = x.shape
    y = mat @ x.transpose(1, 0, 2).reshape(p, steps * o)
    return np.ascontiguousarray(y.reshape(mat.shape[0], steps, o).transpose(1, 0, 2))


def ridge_limit(ntk_train, ntk_test_train, y_train, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """Kernel ridge regression: (Θ₀(Θ₀ + λI)⁻¹Y, Θ₀(x, X)(Θ₀ + λI)⁻¹Y), shapes (n, o), (m, o).

    The t → ∞ limit of `kernel_flow` for k = 1 and λ > 0 (any f₀); λ in flow units. At λ = 0 it
    is the interpolant Θ₀(x, X)Θ₀⁺Y (train: Y projected on the range of Θ₀).
    """
    lam, _ = _check_lam_k(lam, 1)
    kxx, kx = _array(ntk_train, "ntk_train"), _array(ntk_test_train, "ntk_test_train")
    if kxx.ndim != 2 or kxx.shape[0] != kxx.shape[1]:
        raise ConfigError(f"ntk_train must be square (n, n) (got shape {kxx.shape})")
    if kx.ndim != 2 or kx.shape[1] != kxx.shape[0]:
        raise ConfigError(f"ntk_test_train must have shape (m, {kxx.shape[0]}) (got {kx.shape})")
    y = _targets(y_train, kxx.shape[0], "y_train")
    theta, v = _eigh_psd(kxx)
    keep = theta > _RANK_RTOL * theta.max() if theta.size and theta.max() > 0 else theta > 0
    y_m = v.T @ y
    w = np.zeros_like(theta)
    w[keep] = 1.0 / (theta[keep] + lam)  # (θ + λ)⁻¹ on the kept range
    train = v @ ((theta * w)[:, None] * y_m)
    test = kx @ (v @ (w[:, None] * y_m))
    return train, test


# --- metrics ----------------------------------------------------------------------------------


def flow_metrics(f_test, y_test) -> dict[str, np.ndarray]:
    """Test metrics over time for outputs f_test (T, m, o) (or one time, (m, o)).

    y_test: (m,) integer labels when o > 1 (targets = one-hot), (m,) values when o = 1, or (m, o)
    targets. Returns ``test_loss``: mean over test points of ½·Σ_outputs (f − y)², the convention
    of the training loss; and, when o > 1, ``test_acc``: fraction with argmax f equal to the label
    (or to argmax of the target rows). Arrays of length T.
    """
    f = _array(f_test, "f_test")
    if f.ndim == 2:
        f = f[None]
    if f.ndim != 3:
        raise ConfigError(f"f_test must have shape (T, m, o) or (m, o) (got {f.shape})")
    _, m, o = f.shape
    y = _array(y_test, "y_test")
    if y.shape[0] != m or y.ndim not in (1, 2):
        raise ConfigError(f"y_test must have shape ({m},) or ({m}, {o}) (got {y.shape})")
    labels = None
    if y.ndim == 1 and o > 1:
        labels = y.astype(np.int64)
        if np.any(labels != y) or np.any((labels < 0) | (labels >= o)):
            raise ConfigError(f"1-D y_test with o = {o} outputs must hold integer labels in "
                              f"[0, {o})")
        y = np.eye(o)[labels]
    elif y.ndim == 1:
        y = y[:, None]
    elif y.shape[1] != o:
        raise ConfigError(f"y_test must have shape ({m},) or ({m}, {o}) (got {y.shape})")
    out = {"test_loss": 0.5 * ((f - y) ** 2).sum(-1).mean(-1)}
    if o > 1:
        labels = y.argmax(-1) if labels is None else labels
        out["test_acc"] = (f.argmax(-1) == labels).mean(-1)
    return out


def peak_time(times, values, mode: str = "max") -> tuple[float, float]:
    """(t*, value at t*): the grid point of the largest (mode="max") or smallest ("min") value.

    NaNs are ignored; ties go to the first occurrence in the given order.
    """
    t, v = np.asarray(times, np.float64).ravel(), np.asarray(values, np.float64).ravel()
    if t.size != v.size or t.size == 0:
        raise ConfigError(f"times and values must be non-empty and of equal length "
                          f"(got {t.size} and {v.size})")
    if mode not in ("max", "min"):
        raise ConfigError(f"mode must be 'max' or 'min' (got {mode!r})")
    if np.all(np.isnan(v)):
        raise ConfigError("values are all NaN: no peak")
    i = int(np.nanargmax(v) if mode == "max" else np.nanargmin(v))
    return float(t[i]), float(v[i])


# --- validation -------------------------------------------------------------------------------


def _array(x, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    try:
        out = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{name} must be a numeric array ({err})") from None
    if not np.all(np.isfinite(out)):
        raise ConfigError(f"{name} contains NaN or inf")
    return out


def _targets(y, n: int, name: str) -> np.ndarray:
    y = _array(y, name)
    if y.ndim == 1:
        y = y[:, None]
    if y.ndim != 2 or y.shape[0] != n:
        raise ConfigError(f"{name} must have shape ({n},) or ({n}, o) (got {y.shape})")
    return y


def _outputs(f, shape: tuple[int, int], name: str) -> np.ndarray:
    f = _array(f, name)
    if f.ndim == 1 and shape[1] == 1:
        f = f[:, None]
    if f.shape != shape:
        raise ConfigError(f"{name} must have shape {shape} (got {f.shape})")
    return f


def _times(times) -> np.ndarray:
    t = _array(times, "times")
    if t.ndim > 1:
        raise ConfigError(f"times must be 1-D (got shape {t.shape})")
    t = np.atleast_1d(t)
    if np.any(t < 0):
        raise ConfigError("times must be >= 0")
    return t


def _check_lam_k(lam, k) -> tuple[float, int]:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ConfigError(f"k (homogeneity degree, depth + 1) must be an int >= 1 (got {k!r})")
    try:
        value = float(lam)
    except (TypeError, ValueError):
        value = float("nan")
    if not (np.isfinite(value) and value >= 0):
        raise ConfigError(f"lam must be a finite number >= 0 (got {lam!r})")
    return value, int(k)


def _eigh_psd(kxx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenpairs of a symmetric PSD Gram matrix, round-off negatives clipped to 0.

    LAPACK's MRRR driver (syevr): as accurate as divide and conquer here and several times faster
    on few cores (numpy's syevd takes seconds for n = 1000 on 2 busy cores).
    """
    scale = np.abs(kxx).max() if kxx.size else 0.0
    if np.abs(kxx - kxx.T).max(initial=0.0) > 1e-6 * scale:
        raise ConfigError("ntk_train must be symmetric")
    theta, v = scipy.linalg.eigh(0.5 * (kxx + kxx.T), driver="evr", check_finite=False)
    top = theta.max(initial=0.0)
    if theta.size and theta.min() < -_NEG_RTOL * max(top, 0.0):
        raise ConfigError(f"ntk_train must be positive semi-definite (eigenvalue "
                          f"{theta.min():.3g} vs largest {top:.3g})")
    return np.clip(theta, 0.0, None), v
