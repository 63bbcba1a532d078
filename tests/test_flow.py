"""Infinite-width gradient flow with L2 (`theory.flow`), checked against direct integration."""

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp
from scipy.linalg import expm
from scipy.sparse import diags

from l2dynamics.errors import ConfigError
from l2dynamics.theory import (
    effective_time,
    fc_kernels,
    flow_metrics,
    from_flow_units,
    kernel_flow,
    kernel_scale,
    peak_time,
    ridge_limit,
    to_flow_units,
)

N_TRAIN, N_TEST, OUTPUTS = 30, 10, 3


@pytest.fixture(scope="module")
def problem():
    """NTK of a bias-free depth-2 ReLU net on random inputs, targets and initial outputs."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N_TRAIN + N_TEST, 8)) / 2.0  # θ_max ≈ 15: a mild DOP853 problem
    _, ntk = fc_kernels(x, depth=2)
    y = rng.standard_normal((N_TRAIN, OUTPUTS))
    f0 = 0.3 * rng.standard_normal((N_TRAIN + N_TEST, OUTPUTS))
    return {"kxx": ntk[:N_TRAIN, :N_TRAIN], "kx": ntk[N_TRAIN:, :N_TRAIN], "y": y,
            "f0x": f0[:N_TRAIN], "f0t": f0[N_TRAIN:]}


def brute_force(p, *, lam, k, times):
    """The coupled system ∂_t f = −e^{−2(k−1)λt}Θ₀(·, X)(f_X − Y) − kλf, not diagonalized."""
    kxx, kx, y = p["kxx"], p["kx"], p["y"]
    kall = np.vstack([kxx, kx])

    def rhs(t, z):
        f = z.reshape(-1, OUTPUTS)
        drive = np.exp(-2 * (k - 1) * lam * t) * (kall @ (f[:N_TRAIN] - y))
        return (-drive - k * lam * f).ravel()

    z0 = np.vstack([p["f0x"], p["f0t"]]).ravel()
    sol = solve_ivp(rhs, (0, times.max()), z0, method="DOP853", t_eval=np.sort(times),
                    rtol=1e-12, atol=1e-20)
    assert sol.success
    f = sol.y.T.reshape(len(times), -1, OUTPUTS)
    return f[:, :N_TRAIN], f[:, N_TRAIN:]


def rel_err(a, b):
    """Max over time of ‖a(t) − b(t)‖/‖b(t)‖ (Frobenius over points and outputs)."""
    return float(np.max(np.linalg.norm(a - b, axis=(1, 2)) / np.linalg.norm(b, axis=(1, 2))))


# ---------------------------------------------------------------- the flow itself


@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("lam", [0.05, 0.4])
def test_matches_brute_force_integration(problem, k, lam):
    times = np.array([0.0, 0.01, 0.3, 1.0, 0.5 / lam, 2.0 / lam, 6.0 / lam])
    f_train, f_test = kernel_flow(problem["kxx"], problem["kx"], problem["y"], lam=lam, k=k,
                                  times=times, f0_train=problem["f0x"], f0_test=problem["f0t"])
    ref_train, ref_test = brute_force(problem, lam=lam, k=k, times=times)
    assert f_train.shape == (len(times), N_TRAIN, OUTPUTS)
    assert f_test.shape == (len(times), N_TEST, OUTPUTS)
    # DOP853 at rtol 1e-12 (atol far below the decayed outputs) agrees to ~1e-13 here; 1e-8
    # leaves room for the reference's global error on other platforms.
    assert rel_err(f_train, ref_train) < 1e-8
    assert rel_err(f_test, ref_test) < 1e-8


def test_zero_lambda_is_kernel_regression_flow(problem):
    kxx, kx, y, f0x, f0t = (problem[n] for n in ("kxx", "kx", "y", "f0x", "f0t"))
    times = np.array([0.0, 0.1, 1.0, 10.0])
    for k in (1, 2, 3):
        f_train, f_test = kernel_flow(kxx, kx, y, lam=0.0, k=k, times=times, f0_train=f0x,
                                      f0_test=f0t)
        for i, t in enumerate(times):
            decay = expm(-kxx * t)
            expected = y + decay @ (f0x - y)
            # f_x(t) = f0_x − Θ(x,X) Θ⁻¹ (I − e^{−Θt})(f0_X − Y) (Θ is full rank here)
            expected_test = f0t - kx @ np.linalg.solve(kxx, (np.eye(N_TRAIN) - decay) @ (f0x - y))
            np.testing.assert_allclose(f_train[i], expected, rtol=0, atol=1e-10)
            np.testing.assert_allclose(f_test[i], expected_test, rtol=0, atol=1e-8)


def test_linear_model_converges_to_kernel_ridge(problem):
    lam = 0.3
    times = np.array([100.0 / lam])  # e^{−λt} = e^{−100}: f0 and transients are gone
    f_train, f_test = kernel_flow(problem["kxx"], problem["kx"], problem["y"], lam=lam, k=1,
                                  times=times, f0_train=problem["f0x"], f0_test=problem["f0t"])
    ridge_train, ridge_test = ridge_limit(problem["kxx"], problem["kx"], problem["y"], lam)
    np.testing.assert_allclose(f_train[0], ridge_train, rtol=0, atol=1e-8)
    np.testing.assert_allclose(f_test[0], ridge_test, rtol=0, atol=1e-8)
    direct = problem["kxx"] @ np.linalg.solve(problem["kxx"] + lam * np.eye(N_TRAIN), problem["y"])
    np.testing.assert_allclose(ridge_train, direct, rtol=0, atol=1e-10)


@pytest.mark.parametrize("k", [2, 3])
def test_deep_flow_decays_to_zero_at_rate_k_lambda(problem, k):
    lam = 0.05
    times = np.array([40.0, 50.0, 60.0]) / lam
    f_train, f_test = kernel_flow(problem["kxx"], problem["kx"], problem["y"], lam=lam, k=k,
                                  times=times, f0_train=problem["f0x"], f0_test=problem["f0t"])
    scale = np.linalg.norm(problem["y"])
    for f in (f_train, f_test):
        norms = np.linalg.norm(f, axis=(1, 2))
        assert np.all(norms[1:] < 1e-30 * scale)  # Theorem 2: f_t → 0 on train and test points
        slope = np.diff(np.log(norms)) / np.diff(times)
        # late modes: g ∝ e^{−kλt}·(const + θt) for k = 2 (log-slope −kλ + 1/t), and
        # const + O(e^{−(k−2)λt}) for k ≥ 3
        assert np.all(np.abs(slope + k * lam) < 1.5 / times[:-1])


def test_stiff_modes_against_decoupled_radau():
    """Diagonal kernel with θ from 1e-6 to 1e6: the modes are the coordinates, B_i(t) = f_i(t)."""
    theta = np.logspace(-6, 6, 25)
    times = np.array([1e-7, 1e-3, 0.5, 7.0, 60.0, 400.0])
    for k, lam in ((2, 0.01), (3, 0.02), (4, 0.003)):
        a, c = k * lam, 2 * (k - 1) * lam
        f_train, _ = kernel_flow(np.diag(theta), np.zeros((0, theta.size)), np.ones(theta.size),
                                 lam=lam, k=k, times=times)
        sol = solve_ivp(lambda t, b, a=a, c=c: theta * np.exp(-c * t) * (1 - b) - a * b,
                        (0, times[-1]), np.zeros(theta.size), method="Radau", t_eval=times,
                        rtol=1e-10, atol=1e-16,
                        jac=lambda t, b, a=a, c=c: diags(-theta * np.exp(-c * t) - a))
        assert sol.success
        # Radau's global error at rtol 1e-10 is ~3e-11 relative here
        np.testing.assert_allclose(f_train[..., 0], sol.y.T, rtol=1e-8, atol=0)


def test_stiff_kernel_stays_finite_and_bounded():
    rng = np.random.default_rng(1)
    v, _ = np.linalg.qr(rng.standard_normal((40, 40)))
    theta = np.logspace(-3, 6, 40)
    kxx = (v * theta) @ v.T
    kx = rng.standard_normal((7, 40)) @ kxx / 1e3  # rows in the range of Θ₀
    y = rng.standard_normal((40, 4))
    times = np.concatenate([[0.0], np.logspace(-8, 3, 30)])
    for k in (1, 2, 3):
        f_train, f_test = kernel_flow(kxx, kx, y, lam=0.01, k=k, times=times)
        assert np.all(np.isfinite(f_train)) and np.all(np.isfinite(f_test))
        # from f0 = 0 each mode is B_i·ỹ_i with 0 ≤ B_i ≤ 1
        assert np.all(np.linalg.norm(f_train, axis=1) <= np.linalg.norm(y, axis=0) * (1 + 1e-12))


def test_times_in_any_order_torch_inputs_and_1d_targets(problem):
    kxx, kx, y = problem["kxx"], problem["kx"], problem["y"][:, 0]
    times = np.array([3.0, 0.0, 1.0, 3.0])
    f_train, f_test = kernel_flow(kxx, kx, y, lam=0.1, k=2, times=times)
    assert f_train.shape == (4, N_TRAIN, 1) and f_test.shape == (4, N_TEST, 1)
    np.testing.assert_array_equal(f_train[0], f_train[3])
    assert np.all(f_train[1] == 0) and np.all(f_test[1] == 0)
    sorted_train, _ = kernel_flow(kxx, kx, y, lam=0.1, k=2, times=np.array([1.0, 3.0]))
    np.testing.assert_allclose(f_train[[2, 0]], sorted_train, rtol=1e-13, atol=0)
    t_train, t_test = kernel_flow(torch.from_numpy(kxx).float(), torch.from_numpy(kx), y,
                                  lam=0.1, k=2, times=torch.tensor(times))
    assert isinstance(t_train, np.ndarray) and t_train.dtype == np.float64
    np.testing.assert_allclose(t_train, f_train, rtol=0, atol=1e-5)  # float32 kernel round-off


def test_flow_units_match_gradient_descent_on_mean_loss():
    """A linear model (k = 1, Θ₀ = XXᵀ) trained by GD on the batch-mean MSE with coupled L2."""
    rng = np.random.default_rng(2)
    n, d = 20, 50
    x, x_test = rng.standard_normal((n, d)) / np.sqrt(d), rng.standard_normal((5, d)) / np.sqrt(d)
    y, w = rng.standard_normal((n, 2)), rng.standard_normal((d, 2))
    lr, lam_ours, steps = 0.02, 0.01, 4000
    f0, f0_test = x @ w, x_test @ w
    for _ in range(steps):  # mean loss (1/n)·Σ ½‖f − y‖² + (λ/2)‖w‖²
        w = w - lr * (x.T @ (x @ w - y) / n + lam_ours * w)
    t, lam_flow = to_flow_units(lr, steps, n, lam_ours)
    f_train, f_test = kernel_flow(x @ x.T, x_test @ x.T, y, lam=lam_flow, k=1, times=[t],
                                  f0_train=f0, f0_test=f0_test)
    # Euler steps of size η/n on a flow with rates ≤ θ_max + λ: relative error O(η(θ_max+λ)/n)
    tol = lr * (np.linalg.eigvalsh(x @ x.T).max() + lam_flow) / n
    assert np.abs(f_train[0] - x @ w).max() < tol * np.abs(x @ w).max()
    assert np.abs(f_test[0] - x_test @ w).max() < tol * np.abs(x_test @ w).max()
    assert from_flow_units(t, lam_flow, lr, n) == pytest.approx((steps, lam_ours))


# ---------------------------------------------------------------- scalar functions and metrics


def test_effective_time_and_kernel_scale():
    t = np.array([0.0, 1e-9, 0.5, 3.0, 1e4])
    np.testing.assert_array_equal(effective_time(t, 0.3, 1), t)
    np.testing.assert_array_equal(effective_time(t, 0.0, 4), t)
    for k, lam in ((2, 0.1), (3, 0.02)):
        c = 2 * (k - 1) * lam
        tau = effective_time(t, lam, k)
        assert tau[-1] == pytest.approx(1 / c, rel=1e-14)  # τ(∞) = 1/(2(k−1)λ)
        assert tau[1] == pytest.approx(1e-9, rel=1e-8)  # τ ≈ t − ct²/2 for small t
        assert np.all(np.diff(tau) > 0) and np.all(tau <= t)
        # dτ/dt = Θ_t/Θ₀
        h = 1e-5
        derivative = (effective_time(1.7 + h, lam, k) - effective_time(1.7 - h, lam, k)) / (2 * h)
        assert derivative == pytest.approx(kernel_scale(1.7, lam, k), rel=1e-9)
    assert isinstance(effective_time(2.0, 0.1, 2), float)
    assert kernel_scale(0.0, 0.1, 3) == 1.0 and kernel_scale(5.0, 0.1, 1) == 1.0
    assert kernel_scale(5.0, 0.1, 3) == pytest.approx(np.exp(-2.0))


def test_flow_metrics_on_constructed_outputs():
    labels = np.array([0, 2, 1, 2])
    onehot = np.eye(3)[labels]
    f = np.stack([onehot, onehot[[1, 0, 2, 3]], np.zeros((4, 3))])  # exact, 2 of 4 swapped, zero
    m = flow_metrics(f, labels)
    np.testing.assert_allclose(m["test_loss"], [0.0, 0.5 * 4 / 4, 0.5])
    np.testing.assert_allclose(m["test_acc"][:2], [1.0, 0.5])
    same = flow_metrics(torch.from_numpy(f), onehot)
    np.testing.assert_allclose(same["test_loss"], m["test_loss"])
    np.testing.assert_allclose(same["test_acc"], m["test_acc"])
    scalar = flow_metrics(np.full((2, 4, 1), 1.0), np.array([1.0, 1.0, 3.0, 1.0]))
    np.testing.assert_allclose(scalar["test_loss"], [0.5, 0.5])
    assert "test_acc" not in scalar
    with pytest.raises(ConfigError, match="integer labels"):
        flow_metrics(f, np.array([0, 3, 1, 2]))


def test_peak_time():
    t = np.linspace(0.0, 10.0, 101)
    values = -((t - 3.7) ** 2)
    assert peak_time(t, values) == pytest.approx((3.7, 0.0))
    assert peak_time(t, -values, mode="min") == pytest.approx((3.7, 0.0))
    values[10] = np.nan
    assert peak_time(t, values)[0] == pytest.approx(3.7)
    assert peak_time([1.0, 2.0, 3.0], [0.5, 0.9, 0.9]) == (2.0, 0.9)  # first of ties
    with pytest.raises(ConfigError):
        peak_time(t, values, mode="best")
    with pytest.raises(ConfigError):
        peak_time(t, values[:5])


def test_bad_inputs_raise_config_error(problem):
    kxx, kx, y = problem["kxx"], problem["kx"], problem["y"]
    cases = [
        dict(ntk_train=kxx[:, :5]),
        dict(ntk_test_train=kx[:, :5]),
        dict(y_train=y[:5]),
        dict(lam=-0.1),
        dict(k=0),
        dict(times=[-1.0]),
        dict(f0_test=np.zeros((N_TEST, 2))),
        dict(ntk_train=-kxx),
    ]
    for bad in cases:
        args = dict(ntk_train=kxx, ntk_test_train=kx, y_train=y, lam=0.1, k=2, times=[1.0])
        args.update(bad)
        with pytest.raises(ConfigError):
            kernel_flow(args.pop("ntk_train"), args.pop("ntk_test_train"), args.pop("y_train"),
                        **args)
