"""The infinite-width theory of L2 (Lewkowycz & Gur-Ari §5) against real wide networks.

Units: everything here is in gradient-flow units of the *summed* loss 𝓛 = ½Σ_a‖f(x_a) − y_a‖²
with θ̇ = −∇𝓛 − λθ (see ``theory.flow``). A network trained by l2dynamics with the batch-mean
MSE, full batch of n points, learning rate η and coupled λ_ours is at flow time t = η·steps/n
with λ = n·λ_ours; the study converts once, in :func:`network_config`.

The study:

1. theory curves: test loss/accuracy of the infinite-width flow (k = depth + 1) for a grid of
   λ, and the characteristic times of each curve (accuracy peak, end of the high-accuracy window,
   test-loss minimum), with fitted power laws t ∝ λ^p;
2. the linear model (k = 1, constant kernel) on the same kernel, which converges to kernel ridge
   regression instead of decaying;
3. finite networks (NTK parameterization, bias-free ReLU, full-batch GD with small η) started
   from their own initial outputs, against the flow from the same outputs: test-loss trajectory
   error, t* measured vs predicted, and the kernel norm against Θ_t = e^{−2(k−1)λt}Θ₀, with the
   time at which the network leaves that law (the lazy regime) by more than ``lazy_tolerance``;
4. the finite-width argument (§5.4): the smallest eigenvalues of the regularized training-loss
   Hessian (Lanczos, ``probes.hessian``) during training, in flow units, against λ.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from l2dynamics.analysis.fits import fit_power_law
from l2dynamics.analysis.times import (
    TIME_LABELS,
    TIME_NAMES,
    network_time_fits,
    network_time_summary,
    time_verdict,
)
from l2dynamics.config import Config, make_config
from l2dynamics.config.constraints import Choice, Floats, Int, Ints, Real
from l2dynamics.errors import ConfigError
from l2dynamics.probes.kernel import empirical_ntk
from l2dynamics.resources import check_memory, kernel_memory
from l2dynamics.studies.base import TEXT, param
from l2dynamics.theory import fc_kernels
from l2dynamics.theory.flow import flow_metrics, kernel_flow
from l2dynamics.train import Trainer


@dataclass
class TheoryStudy:
    """Parameters of the theory study. λ values are in flow units (summed loss)."""

    dataset: str = param("mnist1d", TEXT, "dataset of the kernels and networks")
    n_train: int = param(128, Int(ge=1), "training points (full batch)")
    n_test: int = param(1000, Int(ge=1), "test points")
    depth: int = param(2, Int(ge=1), "hidden layers; bias-free ReLU → homogeneity k = depth + 1")
    weight_var: float = param(2.0, Real(gt=0), "weight variance σ_w² of the NTK parameterization")
    lams: tuple[float, ...] = param((0.3, 1.0, 3.0), Floats(Real(gt=0)),
                                    "λ of the trained networks", unit="flow units")
    widths: tuple[int, ...] = param((256, 1024, 2048), Ints(Int(ge=1)),
                                    "network widths (empty: theory only)")
    horizon: float = param(3.0, Real(gt=0), "train networks until λ·t = horizon")
    lr_fraction: float = param(0.5, Real(gt=0, lt=2),
                               "GD step in flow time as a fraction of 1/θ_max (smaller = closer to"
                               " gradient flow, slower)")
    theory_lams: tuple[float, ...] = param(
        tuple(np.round(np.logspace(-2, 1, 13), 6).tolist()), Floats(Real(gt=0)),
        "λ grid of the theory curves", unit="flow units")
    theory_horizon: float = param(20.0, Real(gt=0), "theory curves run to λ·t = theory_horizon")
    theory_init: str = param("zero", Choice(("zero", "nngp")),
                             "initial outputs of the theory curves (nngp: a sample)")
    label_scale: float = param(1.0, Real(gt=0),
                               "theory curves fit label_scale·one-hot (networks: unit one-hot)")
    record_points: int = param(40, Int(ge=3), "log-spaced network snapshots")
    kernel_points: int = param(32, Int(ge=1),
                               "training points on which the empirical NTK is tracked")
    window_delta: float = param(0.01, Real(ge=0, lt=1),
                                "high-accuracy window: accuracy ≥ peak − window_delta")
    lazy_tolerance: float = param(0.1, Real(gt=0),
                                  "departure from the lazy regime: |Θ_t/Θ₀ − e^{−2(k−1)λt}| > "
                                  "tol·e^{−2(k−1)λt}")
    hessian_points: int = param(6, Int(ge=0),
                                "snapshots with extreme Hessian eigenvalues (0: none)")
    hessian_k: int = param(5, Int(ge=1), "extreme eigenvalues kept at each end")
    hessian_iters: int = param(40, Int(ge=1), "Lanczos iterations")
    seed: int = param(0, Int(), "seed of the NNGP sample of the theory curves (theory_init=nngp)")
    seeds: tuple[int, ...] = param((0,), Ints(Int(ge=0)),
                                   "network init seeds; times get CIs over them")
    data_seed: int = param(0, Int(), "seed of the data subset")

    @property
    def k(self) -> int:
        return self.depth + 1

    def check(self) -> None:
        _check_study(self)


@dataclass
class TheoryResult:
    study: TheoryStudy
    theta_max: float
    lr_flow: float
    theory_curves: pd.DataFrame  # per (model, lam, t): test_loss, test_acc
    theory_times: pd.DataFrame  # per (model, lam): characteristic times
    fits: pd.DataFrame  # power-law fits of each characteristic time vs λ
    networks: pd.DataFrame  # per (width, lam, t): net and flow test loss/acc, kernel ratio
    comparisons: pd.DataFrame  # per (width, lam): errors, t*, lazy departure
    hessian: pd.DataFrame  # per (width, lam, t, rank): extreme eigenvalues (flow units)
    summary: dict[str, Any] = field(default_factory=dict)
    network_times: pd.DataFrame = field(default_factory=pd.DataFrame)  # per run and source
    network_time_summary: pd.DataFrame = field(default_factory=pd.DataFrame)  # CIs over seeds
    network_time_fits: pd.DataFrame = field(default_factory=pd.DataFrame)  # t ∝ λ^p
    time_verdict: pd.DataFrame = field(default_factory=pd.DataFrame)
    # the names and labels of the characteristic times, for the figures
    time_labels: dict[str, str] = field(default_factory=lambda: dict(TIME_LABELS))
    description: str = ""  # what was run (set by the study unit)
    design: dict[str, Any] = field(default_factory=dict)  # the settings the report shows


# --- theory -------------------------------------------------------------------------------------


def one_hot(labels: torch.Tensor, classes: int) -> np.ndarray:
    return torch.nn.functional.one_hot(labels.cpu(), classes).double().numpy()


def theory_curve(kernels: tuple[np.ndarray, np.ndarray], y_train: np.ndarray,
                 labels_test: np.ndarray, *, lam: float, k: int, times: np.ndarray,
                 f0: tuple[np.ndarray, np.ndarray] | None = None) -> pd.DataFrame:
    """Test loss/accuracy of the infinite-width flow over `times` (flow units)."""
    ntk_train, ntk_test_train = kernels
    f0_train, f0_test = f0 if f0 is not None else (None, None)
    _, f_test = kernel_flow(ntk_train, ntk_test_train, y_train, lam=lam, k=k, times=times,
                            f0_train=f0_train, f0_test=f0_test)
    metrics = flow_metrics(f_test, labels_test)
    return pd.DataFrame({"t": times, "lam_t": lam * times, "test_loss": metrics["test_loss"],
                         "test_acc": metrics["test_acc"]})


def characteristic_times(curve: pd.DataFrame, *, window_delta: float = 0.01) -> dict[str, float]:
    """Times (flow units) that describe one test curve.

    - ``t_peak``: first time of maximal test accuracy;
    - ``t_window_end``: first time after the peak at which accuracy drops below
      peak − window_delta (NaN if it never does within the curve);
    - ``t_loss_min``: time of the global test-loss minimum; ``t_loss_min_late``: the last local
      minimum of the test loss (equal to the global one when there is a single minimum).
    """
    t = curve["t"].to_numpy()
    acc = curve["test_acc"].to_numpy()
    loss = curve["test_loss"].to_numpy()
    i_peak = int(np.argmax(acc))
    below = np.nonzero(acc[i_peak:] < acc[i_peak] - window_delta)[0]
    t_end = float(t[i_peak + below[0]]) if below.size else math.nan
    interior = np.nonzero((loss[1:-1] < loss[:-2]) & (loss[1:-1] <= loss[2:]))[0] + 1
    i_min = int(np.argmin(loss))
    i_late = int(interior[-1]) if interior.size else i_min
    return {"t_peak": float(t[i_peak]), "peak_acc": float(acc[i_peak]),
            "t_window_end": t_end, "t_loss_min": float(t[i_min]),
            "min_loss": float(loss[i_min]), "t_loss_min_late": float(t[i_late])}


def nngp_sample(nngp: np.ndarray, outputs: int, seed: int) -> np.ndarray:
    """Initial outputs drawn from the NNGP prior N(0, K) (independent per output), shape
    (n_points, outputs); K is the joint train+test covariance."""
    values, vectors = np.linalg.eigh(nngp)
    root = vectors * np.sqrt(np.clip(values, 0.0, None))
    rng = np.random.default_rng(seed)
    return root @ rng.standard_normal((nngp.shape[0], outputs))


def theory_grid(study: TheoryStudy, kernels: tuple[np.ndarray, np.ndarray], y_train: np.ndarray,
                labels_test: np.ndarray, f0: tuple[np.ndarray, np.ndarray] | None = None
                ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Curves, characteristic times and power-law fits for the deep (k) and linear (k=1) flows.

    `f0` (train, test) initial outputs; None means zero (the infinite-width mean)."""
    curves, times_rows = [], []
    for model, k in (("deep", study.k), ("linear", 1)):
        for lam in study.theory_lams:
            t = np.geomspace(1e-3, study.theory_horizon / lam, 500)
            curve = theory_curve(kernels, study.label_scale * y_train, labels_test, lam=lam,
                                 k=k, times=t, f0=f0)
            curves.append(curve.assign(model=model, lam=lam))
            times_rows.append({"model": model, "lam": lam,
                               **characteristic_times(curve, window_delta=study.window_delta),
                               "final_acc": float(curve["test_acc"].iloc[-1]),
                               "final_loss": float(curve["test_loss"].iloc[-1])})
    curves_df, times_df = pd.concat(curves, ignore_index=True), pd.DataFrame(times_rows)
    fits = []
    deep = times_df[times_df["model"] == "deep"]
    for name in ("t_peak", "t_window_end", "t_loss_min", "t_loss_min_late"):
        for label, sel in (("all λ", deep["lam"] > 0), ("λ < 0.1", deep["lam"] < 0.1 - 1e-12),
                           ("λ ≥ 0.1", deep["lam"] >= 0.1 - 1e-12)):
            fits.append({"time": name, "range": label,
                         **fit_power_law(deep.loc[sel, "lam"], deep.loc[sel, name])})
    return curves_df, times_df, pd.DataFrame(fits)


# --- finite networks ----------------------------------------------------------------------------


def network_config(study: TheoryStudy, *, width: int, lam: float, lr_flow: float,
                   steps: int, seed: int | None = None) -> Config:
    """The l2dynamics run of one finite network, converted from flow units once, here.

    Full-batch mean loss at rate η: flow time η·steps/n and λ_flow = n·λ_ours (see module doc).
    """
    n = study.n_train
    return make_config(
        dataset=study.dataset, n_train=n, n_test=study.n_test, data_seed=study.data_seed,
        model="fc", width=width, depth=study.depth, activation="relu", bias=False,
        parameterization="ntk", weight_var=study.weight_var, loss="mse", optimizer="sgd",
        lr=lr_flow * n, lam=lam / n, batch_size=n, steps=steps,
        seed=study.seeds[0] if seed is None else seed,
        eval_per_decade=2, norms_per_tensor=False, dtype="float32",
        name=f"theory width={width} λ_flow={lam:g}")


class FlowRecorder:
    """Callback: network outputs, the empirical NTK norm and (at `hessian_steps`) the extreme
    eigenvalues of the regularized training-loss Hessian, converted to flow units (× n)."""

    def __init__(self, steps: Sequence[int], lr_flow: float, kernel_x: torch.Tensor,
                 hessian_steps: Sequence[int] = (), hessian_k: int = 5, hessian_iters: int = 40):
        self.steps = set(int(s) for s in steps) | set(int(s) for s in hessian_steps)
        self.hessian_steps = set(int(s) for s in hessian_steps)
        self.hessian_k, self.hessian_iters = hessian_k, hessian_iters
        self.lr_flow = lr_flow
        self.kernel_x = kernel_x
        self.rows: list[dict[str, Any]] = []
        self.hessian_rows: list[dict[str, Any]] = []

    def record_hessian(self, trainer: Trainer, step: int) -> None:
        from l2dynamics.probes.hessian import hessian_extremes

        n = trainer.data.x_train.shape[0]
        spectrum = hessian_extremes(trainer.model, trainer.loss_fn, trainer.data.x_train,
                                    trainer.data.y_train, lam=trainer.penalty.lam,
                                    decayed=trainer.decay.decayed, k=self.hessian_k,
                                    iters=self.hessian_iters, seed=step)
        self.hessian_rows.append({"step": step, "t": step * self.lr_flow,
                                  "bottom": (np.asarray(spectrum.bottom) * n).tolist(),
                                  "top": (np.asarray(spectrum.top) * n).tolist()})

    def record(self, trainer: Trainer, step: int) -> None:
        model = trainer.model
        with torch.no_grad():
            f_test = model(trainer.data.x_test).double().cpu().numpy()
            f_train = model(trainer.data.x_train).double().cpu().numpy()
        ntk = empirical_ntk(model, self.kernel_x)
        self.rows.append({"step": step, "t": step * self.lr_flow, "f_test": f_test,
                          "f_train": f_train,
                          "kernel_norm": float(torch.linalg.matrix_norm(ntk.double()))})

    def on_step_end(self, trainer: Trainer, step: int, loss: torch.Tensor) -> None:
        if step in self.steps:
            self.record(trainer, step)
        if step in self.hessian_steps:
            self.record_hessian(trainer, step)


def run_network(study: TheoryStudy, *, width: int, lam: float, lr_flow: float,
                kernels: tuple[np.ndarray, np.ndarray], seed: int | None = None,
                progress: Callable[[str], None] | None = None
                ) -> tuple[pd.DataFrame, dict, pd.DataFrame]:
    """Train one finite network and compare it with the flow started from its own outputs."""
    seed = study.seeds[0] if seed is None else seed
    t_end = study.horizon / lam
    steps = max(2, int(math.ceil(t_end / lr_flow)))
    cfg = network_config(study, width=width, lam=lam, lr_flow=lr_flow, steps=steps, seed=seed)
    record_steps = np.unique(np.round(np.geomspace(1, steps, study.record_points)).astype(int))
    hessian_steps = np.unique(np.round(np.geomspace(1, steps, study.hessian_points)).astype(int)
                              ) if study.hessian_points else []
    trainer = Trainer(cfg)
    kernel_x = trainer.data.x_train[:study.kernel_points]
    recorder = FlowRecorder(record_steps, lr_flow, kernel_x, hessian_steps, study.hessian_k,
                            study.hessian_iters)
    trainer.callbacks.append(recorder)
    recorder.record(trainer, 0)
    if progress:
        progress(f"width {width}, λ={lam:g}, seed {seed}: {steps} full-batch steps")
    trainer.run()
    rows = recorder.rows
    labels_test = trainer.data.y_test.cpu().numpy()
    y_train = one_hot(trainer.data.y_train, trainer.data.num_outputs)
    times = np.array([r["t"] for r in rows])
    f_net = np.stack([r["f_test"] for r in rows])
    net = flow_metrics(f_net, labels_test)
    flow = theory_curve(kernels, y_train, labels_test, lam=lam, k=study.k, times=times,
                        f0=(rows[0]["f_train"], rows[0]["f_test"]))
    kernel_ratio = np.array([r["kernel_norm"] for r in rows]) / rows[0]["kernel_norm"]
    predicted_ratio = np.exp(-2 * (study.k - 1) * lam * times)
    frame = pd.DataFrame({
        "width": width, "lam": lam, "seed": seed, "step": [r["step"] for r in rows], "t": times,
        "lam_t": lam * times, "net_test_loss": net["test_loss"], "net_test_acc": net["test_acc"],
        "flow_test_loss": flow["test_loss"].to_numpy(), "flow_test_acc":
        flow["test_acc"].to_numpy(), "kernel_ratio": kernel_ratio,
        "kernel_ratio_theory": predicted_ratio,
    })
    hessian = pd.DataFrame([
        {"width": width, "lam": lam, "seed": seed, "step": h["step"], "t": h["t"],
         "lam_t": lam * h["t"],
         "rank": i, "bottom": b, "bottom_over_lam": b / lam, "top": top}
        for h in recorder.hessian_rows
        for i, (b, top) in enumerate(zip(h["bottom"], h["top"], strict=True))])
    return frame, compare_network(frame, study), hessian


def compare_network(frame: pd.DataFrame, study: TheoryStudy) -> dict[str, Any]:
    """Errors of one network against the flow, while lazy and overall."""
    deviation = np.abs(frame["kernel_ratio"] / frame["kernel_ratio_theory"] - 1.0)
    left = np.nonzero(deviation.to_numpy() > study.lazy_tolerance)[0]
    lazy = np.ones(len(frame), bool)
    if left.size:
        lazy[left[0]:] = False
    flow_loss, net_loss = frame["flow_test_loss"].to_numpy(), frame["net_test_loss"].to_numpy()
    rel = np.abs(net_loss - flow_loss) / np.abs(flow_loss)
    i_net, i_flow = int(np.argmax(frame["net_test_acc"])), int(np.argmax(frame["flow_test_acc"]))
    t = frame["t"].to_numpy()
    return {
        "width": int(frame["width"].iloc[0]), "lam": float(frame["lam"].iloc[0]),
        "seed": int(frame["seed"].iloc[0]) if "seed" in frame else 0,
        "loss_rel_err_lazy_max": float(rel[lazy].max()) if lazy.any() else math.nan,
        "loss_rel_err_all_max": float(rel.max()),
        "loss_rel_err_all_rms": float(np.sqrt(np.mean(rel**2))),
        "t_star_net": float(t[i_net]), "t_star_flow": float(t[i_flow]),
        "t_star_rel_err": float(abs(t[i_net] - t[i_flow]) / t[i_flow]) if t[i_flow] else math.nan,
        "peak_acc_net": float(frame["net_test_acc"].iloc[i_net]),
        "peak_acc_flow": float(frame["flow_test_acc"].iloc[i_flow]),
        "lazy_until_lam_t": float(frame["lam_t"].iloc[left[0]]) if left.size else math.nan,
        "kernel_ratio_end": float(frame["kernel_ratio"].iloc[-1]),
        "kernel_ratio_theory_end": float(frame["kernel_ratio_theory"].iloc[-1]),
    }


# --- characteristic times of the networks, over seeds --------------------------------------------

def network_times(networks: pd.DataFrame, comparisons: pd.DataFrame, study: TheoryStudy
                  ) -> pd.DataFrame:
    """Characteristic times (flow units) of every trained network and of the flow started from
    its own initial outputs: one row per (width, λ, seed, source ∈ {network, flow}).

    A time that falls on the last snapshot, or never happens within the horizon (NaN), is
    ``censored_<name>``: the run was too short to see it, and fits leave it out. The departure
    from the lazy regime is the first snapshot where ‖Θ_t‖/‖Θ₀‖ differs from e^{−2(k−1)λt} by
    more than ``lazy_tolerance`` (the flow never departs, by construction)."""
    if networks.empty:
        return pd.DataFrame()
    rows = []
    lazy = comparisons.set_index(["width", "lam", "seed"])["lazy_until_lam_t"]
    for (width, lam, seed), d in networks.groupby(["width", "lam", "seed"]):
        d = d.sort_values("t")
        t_last = float(d["t"].iloc[-1])
        for source in ("network", "flow"):
            prefix = "net" if source == "network" else "flow"
            curve = pd.DataFrame({"t": d["t"], "test_acc": d[f"{prefix}_test_acc"],
                                  "test_loss": d[f"{prefix}_test_loss"]})
            times = characteristic_times(curve, window_delta=study.window_delta)
            lazy_t = (float(lazy.get((width, lam, seed), math.nan)) / lam
                      if source == "network" else math.nan)
            times["t_lazy_end"] = lazy_t
            row = {"width": int(width), "lam": float(lam), "seed": int(seed), "source": source,
                   "t_last": t_last, "peak_acc": times["peak_acc"], "min_loss": times["min_loss"]}
            for name in TIME_NAMES:
                value = times[name]
                row[name] = value
                row[f"censored_{name}"] = bool(not math.isfinite(value)
                                               or value >= t_last * (1 - 1e-9))
            rows.append(row)
    return pd.DataFrame(rows)


# --- the study ----------------------------------------------------------------------------------


def _check_study(study: TheoryStudy) -> None:
    """Refuse bad sizes and horizons, and kernels that cannot fit, before any data exists."""
    for name in ("n_train", "n_test"):
        value = getattr(study, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
    for name in ("horizon", "theory_horizon"):
        value = getattr(study, name)
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ConfigError(f"{name} must be a finite number > 0 (λ·t), got {value!r}")
    if not (math.isfinite(study.window_delta) and 0 <= study.window_delta < 1):
        raise ConfigError(f"window_delta must be in [0, 1), got {study.window_delta}")
    if study.theory_init not in ("zero", "nngp"):
        raise ConfigError(f"theory_init must be 'zero' or 'nngp', got {study.theory_init!r}")
    if not (math.isfinite(study.lr_fraction) and 0 < study.lr_fraction < 2):
        raise ConfigError(f"lr_fraction must be in (0, 2) (GD is unstable beyond), "
                          f"got {study.lr_fraction}")
    if not (math.isfinite(study.label_scale) and study.label_scale > 0):
        raise ConfigError(f"label_scale must be a finite number > 0, got {study.label_scale}")
    if not study.seeds or len(set(study.seeds)) != len(study.seeds):
        raise ConfigError(f"seeds must be distinct integers, at least one; got {study.seeds}")
    n = study.n_train + study.n_test
    check_memory(kernel_memory(n, n, matrices=2), what="computing the theory study's kernels",
                 knob=f"fewer points (n_train + n_test = {n}; --n-train, --n-test)")


def run_theory_study(study: TheoryStudy | None = None,
                     progress: Callable[[str], None] | None = None) -> TheoryResult:
    """Run the whole study (theory grid, linear contrast, finite networks)."""
    study = study or TheoryStudy()
    _check_study(study)
    base = Trainer(network_config(study, width=16, lam=1.0, lr_flow=1.0, steps=1))
    x_train = base.data.x_train.double()
    x_test = base.data.x_test.double()
    x_all = torch.cat([x_train, x_test])
    nngp_all, ntk_all = (k.cpu().numpy() for k in fc_kernels(x_all, depth=study.depth,
                                                             weight_var=study.weight_var))
    n = x_train.shape[0]
    ntk_train, ntk_test_train = ntk_all[:n, :n], ntk_all[n:, :n]
    kernels = (ntk_train, ntk_test_train)
    y_train = one_hot(base.data.y_train, base.data.num_outputs)
    labels_test = base.data.y_test.cpu().numpy()
    theta_max = float(np.linalg.eigvalsh(ntk_train)[-1])
    lr_flow = study.lr_fraction / theta_max
    if progress:
        progress(f"kernels: n={study.n_train}, θ_max={theta_max:.4g}, η_flow={lr_flow:.3g}")
    f0 = None
    if study.theory_init == "nngp":
        sample = nngp_sample(nngp_all, y_train.shape[1], study.seed)
        f0 = (sample[:n], sample[n:])
    curves, times, fits = theory_grid(study, kernels, y_train, labels_test, f0)
    frames, comparisons, hessians = [], [], []
    for width in study.widths:
        for lam in study.lams:
            for seed in study.seeds:
                frame, comparison, hessian = run_network(study, width=width, lam=lam,
                                                         lr_flow=lr_flow, kernels=kernels,
                                                         seed=seed, progress=progress)
                frames.append(frame)
                comparisons.append(comparison)
                hessians.append(hessian)
    networks = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    comparisons_df = pd.DataFrame(comparisons)
    net_times = network_times(networks, comparisons_df, study)
    net_summary = network_time_summary(net_times) if not net_times.empty else pd.DataFrame()
    net_fits = network_time_fits(net_times) if not net_times.empty else pd.DataFrame()
    verdict = time_verdict(net_fits) if not net_fits.empty else pd.DataFrame()
    summary = {"study": asdict(study), "theta_max": theta_max, "lr_flow": lr_flow,
               "fits": fits.to_dict("records"), "comparisons": comparisons_df.to_dict("records"),
               "network_time_summary": net_summary.to_dict("records"),
               "network_time_fits": net_fits.to_dict("records"),
               "time_verdict": verdict.to_dict("records")}
    hessian_df = pd.concat(hessians, ignore_index=True) if hessians else pd.DataFrame()
    return TheoryResult(study, theta_max, lr_flow, curves, times, fits, networks,
                        comparisons_df, hessian_df, summary, net_times, net_summary, net_fits,
                        verdict)
