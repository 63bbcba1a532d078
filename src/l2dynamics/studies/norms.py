"""Normalization studies (van Laarhoven 2017): do scale-invariant weights reach the predicted
equilibrium norm and angular update?

:func:`equilibrium_check` trains one BN network per optimizer case with the per-tensor norm
probes on (reading the optimizer's state), finds its scale-invariant weights numerically, runs
a burn-in (the arrival of ‖w‖ at equilibrium plus `relax_times` relaxation times), and compares
— per tensor, pooled over the measured windows by sums and counts — the measured norm and RMS
angular update with two predictions from :mod:`l2dynamics.analysis.equilibrium`:

- the **random-walk closed forms** (:func:`predictions`): ``sgd`` the stationary identity
  E‖w‖² = η·E‖∇L‖²/(λ(2 − ηλ)) and θ = arccos(1 − ηλ); ``sgdm`` the heavy-ball forms;
  ``adam_l2`` ‖w‖² = η√d·‖∇L‖/(2λ) (one RMS gradient per tensor) and its angle; ``adamw``
  ‖w‖² ≈ η·d/(2λ_d) with the β₁ correction and θ ≈ √(2ηλ_d(1 − β₁)/(1 + β₁));
- the **predictions from the measured statistics** (:func:`measured_predictions`): the same
  balances with the drift of ‖w‖², SGDM's momentum–gradient correlation, Adam's per-element
  L2 step, update power and preconditioned cross term measured instead of assumed.

Verdicts are given only on tensors that pass the stationarity test
(:func:`~l2dynamics.analysis.equilibrium.drift_per_relaxation`). The formulas' derivations and
their simulation checks are in :mod:`l2dynamics.analysis.equilibrium`,
``tests/test_equilibrium.py`` and ``tests/test_equilibrium_measured.py``.

λ is ours (loss + λ/2·‖θ‖²). The default decays weight tensors only (``decay_params:
weights``, as van Laarhoven did): L2 on the BN gains shrinks the next layer's inputs until BN's
ε breaks its scale invariance (on digits, |cos(w, ∇L)| of the second layer rose to 0.04 and its
norm ratio to 1.40).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from l2dynamics.config import Config, make_config
from l2dynamics.errors import ConfigError
from l2dynamics.studies.runs import train_through_store

BASE = {"dataset": "mnist1d", "n_train": 4000, "n_test": 2000, "model": "fc", "width": 128,
        "depth": 2, "norm": "bn", "batch_size": 128, "norms_per_tensor": True,
        "norm_probes": True, "eval_per_decade": 2, "decay_params": "weights"}

CASES: dict[str, dict[str, Any]] = {
    "sgd": {"optimizer": "sgd", "lr": 0.1, "lam": 5e-3},
    "sgdm": {"optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "lam": 5e-3},
    "adam_l2": {"optimizer": "adam", "lr": 1e-3, "lam": 5e-3},
    "adamw": {"optimizer": "adamw", "lr": 1e-3, "decoupled_wd": 0.5},
}


def _train(configs: Sequence[Config], store: str | Path | None, workers: int = 1
           ) -> list[tuple[str, pd.DataFrame]]:
    """(status, history) per config: through the store when one is given (finished runs are
    reused), else in this process without recording."""
    if store is not None:
        return [(r.status, r.history) for r in train_through_store(configs, store,
                                                                    workers=workers)]
    from l2dynamics.train import Trainer

    out = []
    for cfg in configs:
        result = Trainer(cfg).run()
        out.append((result.status, result.history))
    return out


def case_relaxation_steps(cfg: Config, *, d: int, gbar_norm: float) -> float:
    """Relaxation time in steps; Adam + L2's depends on ‖ḡ‖, estimated at initialization."""
    from l2dynamics.analysis.equilibrium import relaxation_steps

    if cfg.optimizer == "adamw":
        return relaxation_steps(cfg.lr, cfg.decoupled_wd, optimizer="adamw",
                                beta2=cfg.betas[1])
    if cfg.optimizer == "adam":
        return relaxation_steps(cfg.lr, cfg.lam, optimizer="adam", d=d, gbar_norm=gbar_norm,
                                beta2=cfg.betas[1])
    return relaxation_steps(cfg.lr, cfg.lam, optimizer="sgd", momentum=cfg.momentum)


def _closed_form_norm(cfg: Config, *, d: int, gbar_norm: float) -> float:
    """The random-walk equilibrium ‖w*‖ of one tensor from its unit gradient ‖ḡ‖ (used at
    initialization, to plan the burn-in)."""
    from l2dynamics.analysis import equilibrium as eq

    if cfg.optimizer == "adamw":
        return eq.adamw_norm(cfg.lr, cfg.decoupled_wd, d, cfg.betas[0])
    if cfg.optimizer == "adam":
        return eq.adam_l2_norm(cfg.lr, cfg.lam, d, gbar_norm)
    return eq.sgdm_norm(cfg.lr, cfg.lam, gbar_norm ** 2, cfg.momentum)


def burn_in_steps(cfg: Config, *, d: int, w0_norm: float, gbar_norm: float,
                  relax_times: float) -> tuple[float, float, float]:
    """(burn-in, relaxation time τ, arrival time) in steps for one tensor: the arrival of ‖w‖
    from ‖w_0‖ at its equilibrium (:func:`~l2dynamics.analysis.equilibrium.arrival_steps`, with
    ‖w*‖ from the gradient at initialization) plus `relax_times` relaxation times."""
    from l2dynamics.analysis.equilibrium_measured import arrival_steps

    tau = case_relaxation_steps(cfg, d=d, gbar_norm=gbar_norm)
    lam = cfg.decoupled_wd if cfg.optimizer == "adamw" else cfg.lam
    opt = cfg.optimizer
    arrival = arrival_steps(cfg.lr, lam, opt, cfg.momentum if opt == "sgd" else 0.0,
                            w0_norm=w0_norm,
                            w_star_norm=_closed_form_norm(cfg, d=d, gbar_norm=gbar_norm), d=d)
    return arrival + relax_times * tau, tau, arrival


def predictions(cfg: Config, *, norm_ms: float, grad_ms: float, numel: int
                ) -> tuple[float, float]:
    """(predicted ‖w‖, predicted RMS angle per step) of the *random-walk* closed forms for one
    tensor of `cfg`'s run, from the window means of ‖w‖² and ‖∇L‖².

    The norm formulas are written in G = E‖ḡ‖², the gradient at unit norm. Substituting
    ḡ = ‖w‖·∇L and solving for ‖w‖ gives each one in the measured ‖∇L‖ alone, e.g. for SGD the
    stationary identity ‖w‖² = η·E‖∇L‖²/(λ(2 − ηλ)) = ``sgd_norm(η, λ, G=E‖∇L‖²)``⁴. That is
    the strict form: the measured ‖w‖ does not enter its own prediction (with G = ‖w‖²·‖∇L‖²
    the ratio would be only the 4th root of this one). AdamW's norm needs no gradient."""
    from l2dynamics.analysis import equilibrium as eq

    if cfg.optimizer == "adamw":
        return (eq.adamw_norm(cfg.lr, cfg.decoupled_wd, numel, cfg.betas[0]),
                eq.adamw_angle(cfg.lr, cfg.decoupled_wd, cfg.betas[0]))
    if cfg.optimizer == "adam":
        # ‖w‖³ = η√d·‖w‖‖∇L‖/(2λ)  ⇒  ‖w‖² = adam_l2_norm(G^½ = ‖∇L‖)³
        gbar = math.sqrt(norm_ms * grad_ms)
        return (eq.adam_l2_norm(cfg.lr, cfg.lam, numel, math.sqrt(grad_ms)) ** 1.5,
                eq.adam_l2_angle(cfg.lr, cfg.lam, numel, gbar, cfg.betas[0]))
    if cfg.momentum:
        return (eq.sgdm_norm(cfg.lr, cfg.lam, grad_ms, cfg.momentum) ** 2,
                eq.sgdm_angle(cfg.lr, cfg.lam, cfg.momentum))
    return eq.sgd_norm(cfg.lr, cfg.lam, grad_ms) ** 2, eq.sgd_angle(cfg.lr, cfg.lam)


#: window statistics pooled over a span, each as the update-weighted mean of its windows
_POOLED = ("norm_ms", "grad_ms", "norm_drift", "mom_grad", "mom_sq", "update_sq",
           "precond_cross", "decay_weight")


def pooled_span(windows: pd.DataFrame, tensor: str) -> dict[str, float]:
    """One tensor's statistics over a span of probe windows, pooled by sums and counts (each
    window's mean weighted by its number of updates, ``probe_updates``; never a mean of means):
    the means of :data:`_POOLED`, ``angle_rms`` (√ of the pooled mean square), ``aniso`` (the
    ratio of the pooled sums), ``updates`` and ``drift_fraction`` (the change of ‖w‖² over the
    span / its mean ‖w‖²)."""
    n = windows["probe_updates"].to_numpy(float)
    total = float(n.sum())
    out: dict[str, float] = {"updates": total}
    for key in _POOLED:
        col = f"{key}/{tensor}"
        out[key] = (float((windows[col].to_numpy(float) * n).sum()) / total
                    if col in windows else math.nan)
    angle = windows[f"angle_rms/{tensor}"].to_numpy(float)
    out["angle_rms"] = math.sqrt(float((angle ** 2 * n).sum()) / total)
    if f"aniso/{tensor}" in windows:
        weight = windows[f"decay_weight/{tensor}"].to_numpy(float)
        ref = weight / windows[f"aniso/{tensor}"].to_numpy(float)
        out["aniso"] = float((weight * n).sum() / (ref * n).sum())
    else:
        out["aniso"] = math.nan
    out["drift_fraction"] = out["norm_drift"] * total / out["norm_ms"]
    return out


def measured_predictions(cfg: Config, span: Mapping[str, float], numel: int
                         ) -> dict[str, float]:
    """The predictions from what the optimizer really sees
    (:mod:`l2dynamics.analysis.equilibrium_measured`) for one tensor over a pooled span
    (:func:`pooled_span`): ``pred_norm`` (√ of the predicted E‖w‖²), ``pred_angle`` (RMS, rad
    per step) and the statistics that explain a departure from the random walk:
    ``mom_corr`` = 2μK/G (SGDM), ``u_tilde`` = the update power over its white-noise value and
    ``d_eff`` = the effective dimension (Adam, AdamW), ``kappa`` (Adam + L2's anisotropy) and
    ``cross_share`` = 2X/(ηP(1 + β₁)/(1 − β₁)), the share of the steps' growth of ‖w‖² that the
    preconditioned cross term X cancels (Adam, AdamW)."""
    from l2dynamics.analysis import equilibrium_measured as eqm

    W, D = span["norm_ms"], span["norm_drift"]
    out = {"mom_corr": math.nan, "u_tilde": math.nan, "d_eff": math.nan, "kappa": math.nan,
           "cross_share": math.nan}
    if cfg.optimizer == "sgd":
        K = span["mom_grad"] if cfg.momentum else 0.0
        W_pred = eqm.sgdm_norm_sq_measured(cfg.lr, cfg.lam, span["grad_ms"], cfg.momentum,
                                          mom_grad=K, drift=D)
        angle = eqm.sgdm_angle_measured(cfg.lr, cfg.lam, cfg.momentum, rel_drift=D / W)
        if cfg.momentum:
            out["mom_corr"] = 2 * cfg.momentum * K / span["grad_ms"]
    else:
        b1, P, X = cfg.betas[0], span["update_sq"], span["precond_cross"]
        if cfg.optimizer == "adam":
            W_pred = eqm.adam_l2_norm_sq_measured(cfg.lr, cfg.lam, update_sq=P,
                                                 decay_weight=span["decay_weight"],
                                                 norm_sq=W, beta1=b1, precond_cross=X,
                                                 drift=D)
            out["kappa"] = span["aniso"]
        else:
            W_pred = eqm.adamw_norm_sq_measured(cfg.lr, cfg.decoupled_wd, update_sq=P,
                                               beta1=b1, precond_cross=X, drift=D)
        # the part of the steps' growth of ‖w‖² that the preconditioned cross term cancels
        out["cross_share"] = 2 * X / (cfg.lr * P * (1 + b1) / (1 - b1))
        angle = eqm.adam_update_angle_measured(cfg.lr, update_sq=P, norm_sq=W)
        out["u_tilde"] = P / eqm.white_noise_update_sq(numel, b1)
        out["d_eff"] = P * (1 + b1) / (1 - b1)
    out["pred_norm"] = math.sqrt(W_pred) if W_pred > 0 else math.nan
    out["pred_angle"] = angle
    return out


def _batches(cfg: Config, windows: pd.DataFrame, tensor: str, numel: int, batches: int,
             tau: float) -> dict[str, float]:
    """Batch means: the measured span cut into `batches` consecutive pieces, each pooled and
    with its own drift-corrected predictions. A 95 % t-interval (n = `batches`) of the mean
    ratio of ‖w‖ and of the RMS angle, and the stationarity statistic: the trend of the
    pieces' mean ‖w‖² per relaxation time τ (``drift_per_tau_pct``,
    :func:`~l2dynamics.analysis.equilibrium.drift_per_relaxation`) and over the whole span
    (``drift_pct``), in % of ‖w‖²."""
    from l2dynamics.analysis.equilibrium_measured import drift_per_relaxation
    from l2dynamics.analysis.intervals import seed_interval

    norm_r, angle_r, means, centers = [], [], [], []
    for piece in np.array_split(np.arange(len(windows)), batches):
        if len(piece) == 0:
            continue
        rows = windows.iloc[piece]
        span = pooled_span(rows, tensor)
        pred = measured_predictions(cfg, span, numel)
        norm_r.append(math.sqrt(span["norm_ms"]) / pred["pred_norm"])
        angle_r.append(span["angle_rms"] / pred["pred_angle"])
        n = rows["probe_updates"].to_numpy(float)
        means.append(span["norm_ms"])
        centers.append(float(((rows["step"].to_numpy(float) - n / 2) * n).sum() / n.sum()))
    n_iv, a_iv = seed_interval(norm_r), seed_interval(angle_r)
    per_tau = drift_per_relaxation(means, centers, tau) if len(means) >= 2 else math.nan
    span_steps = float(windows["probe_updates"].sum())
    return {"norm_ratio_low": n_iv.low, "norm_ratio_high": n_iv.high,
            "angle_ratio_low": a_iv.low, "angle_ratio_high": a_iv.high, "batches": n_iv.n,
            "drift_per_tau_pct": 100 * per_tau, "drift_pct": 100 * per_tau * span_steps / tau}


def _plan_case(name: str, cfg: Config, relax_times: float
               ) -> tuple[list[str], dict[str, int], tuple[float, float, float]]:
    """One case's scale-invariant weight tensors (detected on its first batch), their sizes,
    and (burn-in, τ, arrival) in steps, the longest over the tensors (:func:`burn_in_steps`,
    from ‖w_0‖ and the gradient at initialization)."""
    from l2dynamics.probes.scale import detect_scale_invariant
    from l2dynamics.train import Trainer

    if cfg.optimizer == "sgd" and cfg.nesterov:
        raise ConfigError(f"case {name!r}: the equilibrium forms are for heavy-ball "
                          "momentum; nesterov=true is not covered")
    trainer = Trainer(cfg)
    xb, yb = trainer.batch(0)
    report = detect_scale_invariant(trainer.model, trainer.loss_fn, xb, yb, per_unit=False)
    params = dict(trainer.named_params)
    tensors = [n for n in report.invariant_names if params[n].ndim >= 2]
    if not tensors:
        raise ConfigError(f"case {name!r}: the model has no scale-invariant weights")
    trainer.loss_fn(trainer.model(xb), yb).backward()
    plans = []
    for tensor in tensors:
        w = params[tensor]
        w0 = float(w.detach().double().norm())
        gbar = w0 * float(w.grad.detach().double().norm())
        plans.append(burn_in_steps(cfg, d=w.numel(), w0_norm=w0, gbar_norm=gbar,
                                   relax_times=relax_times))
    return tensors, {t: params[t].numel() for t in tensors}, max(plans)


def equilibrium_check(cases: Mapping[str, Mapping[str, Any]] | None = None, *,
                      base: Mapping[str, Any] | None = None, relax_times: float = 10.0,
                      measure_times: float = 5.0, windows: int = 50, batches: int = 5,
                      seed: int = 0, store: str | Path | None = None,
                      progress: Callable[[str], None] | None = None) -> pd.DataFrame:
    """One run per case: a burn-in (the arrival of ‖w‖ at its equilibrium plus `relax_times`
    relaxation times, :func:`burn_in_steps`, longest over the tensors), then `measure_times`
    relaxation times measured in `windows` probe windows. One row per scale-invariant tensor:

    - the stationarity test: ``drift_per_tau_pct`` (the trend of ‖w‖² per relaxation time, %
      of its mean, from the pooled means of `batches` consecutive pieces), ``drift_pct`` (the
      same trend over the whole measured span) and ``stationary`` (|trend per τ| ≤
      ``STATIONARY_DRIFT``);
    - the random-walk closed forms (:func:`predictions`): ``pred_norm_rw``, ``norm_ratio_rw``,
      ``pred_angle_rw``, ``angle_ratio_rw``;
    - the predictions from the measured statistics (:func:`measured_predictions`):
      ``pred_norm``, ``norm_ratio``, ``pred_angle``, ``angle_ratio`` with batch-means 95 %
      t-intervals (``*_low``/``*_high``, n = `batches`), and ``mom_corr``, ``u_tilde``,
      ``d_eff``, ``kappa``, ``cross_share`` — why a tensor departs from the random walk."""
    from l2dynamics.analysis.equilibrium_measured import STATIONARY_DRIFT

    rows = []
    for name, case in (CASES if cases is None else cases).items():
        cfg = make_config({**BASE, **(base or {})}, **case, seed=seed)
        tensors, numels, (burn, tau, arrival) = _plan_case(name, cfg, relax_times)
        window = max(1, int(measure_times * tau) // windows)
        steps = int(math.ceil(burn / window)) * window + windows * window
        cfg = cfg.replace(steps=steps, eval_every=window)
        if progress:
            progress(f"{name}: {steps} steps (arrival ≈ {arrival:.0f}, relaxation ≈ "
                     f"{tau:.0f}, measured from step {steps - windows * window}), "
                     f"tensors {tensors}")
        _, hist = _train([cfg], store)[0]
        measured = hist.dropna(subset=["probe_updates"])
        measured = measured[measured["step"] - measured["probe_updates"] >= steps - windows
                            * window]
        for tensor in tensors:
            numel = numels[tensor]
            span = pooled_span(measured, tensor)
            rw_norm, rw_angle = predictions(cfg, norm_ms=span["norm_ms"],
                                            grad_ms=span["grad_ms"], numel=numel)
            pred = measured_predictions(cfg, span, numel)
            norm = math.sqrt(span["norm_ms"])
            batch = _batches(cfg, measured, tensor, numel, batches, tau)
            rows.append({
                "case": name, "tensor": tensor, "optimizer": cfg.optimizer, "lr": cfg.lr,
                "lam": cfg.lam, "decoupled_wd": cfg.decoupled_wd, "momentum": cfg.momentum,
                "steps": steps, "burn_in": steps - windows * window, "arrival_steps": arrival,
                "relaxation_steps": tau, "windows": len(measured),
                "norm": norm, "pred_norm_rw": rw_norm, "norm_ratio_rw": norm / rw_norm,
                "pred_norm": pred["pred_norm"], "norm_ratio": norm / pred["pred_norm"],
                "angle_rms": span["angle_rms"], "pred_angle_rw": rw_angle,
                "angle_ratio_rw": span["angle_rms"] / rw_angle,
                "pred_angle": pred["pred_angle"],
                "angle_ratio": span["angle_rms"] / pred["pred_angle"],
                **batch,
                "stationary": bool(abs(batch["drift_per_tau_pct"]) <= 100 * STATIONARY_DRIFT),
                "mom_corr": pred["mom_corr"], "u_tilde": pred["u_tilde"],
                "d_eff": pred["d_eff"], "kappa": pred["kappa"],
                "cross_share": pred["cross_share"]})
    return pd.DataFrame(rows)


def norm_traces(lams: tuple[float, ...] = (0.0, 1e-3, 5e-3, 2e-2), *,
                base: Mapping[str, Any] | None = None, lr: float = 0.1, steps: int = 6000,
                seed: int = 0, store: str | Path | None = None,
                progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Study 1: plain SGD on the BN net for each λ (λ = 0 included); per scale-invariant
    tensor and window: ‖w‖, the effective LR η/‖w‖², the RMS angle, and the predictions —
    the equilibrium norm from that window's measured gradient (√(η·E‖∇L‖²/(λ(2 − ηλ)))), the
    angle arccos(1 − ηλ), and for λ = 0 the growth law ‖w_t‖⁴ = ‖w_0‖⁴ + 2η²·Σ_s ‖ḡ_s‖²
    (from the measured gradients) and its effective LR → 1/√(2Gt). Each run also keeps its
    window sums (``updates``, ``norm_ms``, ``grad_ms``, ``norm_drift``) and, for λ > 0, its
    relaxation time, for the drift-corrected identity over a span (:func:`pooled_span`)."""
    from l2dynamics.analysis import equilibrium as eq
    from l2dynamics.train import Trainer

    out: dict[str, Any] = {"lr": lr, "steps": steps, "runs": []}
    for lam in lams:
        cfg = make_config({**BASE, **(base or {})}, optimizer="sgd", lr=lr, lam=lam,
                          steps=steps, eval_every=max(1, steps // 100), seed=seed)
        params = dict(Trainer(cfg).named_params)
        if progress:
            progress(f"λ = {lam:g}: {steps} steps")
        _, hist = _train([cfg], store)[0]
        tensors = [n for n, p in params.items() if p.ndim >= 2 and n != "readout.weight"]
        for tensor in tensors:
            h = hist.dropna(subset=[f"grad_ms/{tensor}"]).copy()
            steps_ = h["step"].to_numpy(float)
            norm = np.sqrt(h[f"norm_ms/{tensor}"].to_numpy(float))
            grad_ms = h[f"grad_ms/{tensor}"].to_numpy(float)
            row: dict[str, Any] = {"lam": lam, "tensor": tensor, "step": steps_.tolist(),
                                   "norm": norm.tolist(),
                                   "eff_lr": (lr / norm ** 2).tolist(),
                                   "angle_rms": h[f"angle_rms/{tensor}"].tolist(),
                                   # the window sums, for the drift-corrected identity
                                   "updates": h["probe_updates"].tolist(),
                                   "norm_ms": h[f"norm_ms/{tensor}"].tolist(),
                                   "grad_ms": grad_ms.tolist(),
                                   "norm_drift": h[f"norm_drift/{tensor}"].tolist()}
            if lam > 0:
                row["pred_norm"] = np.sqrt(lr * grad_ms / (lam * (2 - lr * lam))).tolist()
                row["pred_angle"] = eq.sgd_angle(lr, lam)
                row["relaxation_steps"] = eq.relaxation_steps(lr, lam)
            else:
                # Σ_s ‖ḡ_s‖² over the updates so far, from the windows' means (window lengths
                # from the clock), then ‖w‖⁴ = ‖w_0‖⁴ + 2η²Σ‖ḡ‖²
                lengths = np.diff(np.concatenate([[0.0], steps_]))
                gbar_sq = grad_ms * norm ** 2
                cum = np.cumsum(lengths * gbar_sq)
                w0 = float(hist[f"norm/{tensor}"].dropna().iloc[0])
                row["pred_norm"] = ((w0 ** 4 + 2 * lr ** 2 * cum) ** 0.25).tolist()
            out["runs"].append(row)
    return out


def projection_vs_l2(lams: tuple[float, ...] = (0.0, 1e-4, 1e-3, 1e-2, 1e-1, 1.0), *,
                     base: Mapping[str, Any] | None = None, optimizer: str = "adam",
                     lr: float = 1e-3, steps: int = 3000, seeds: tuple[int, ...] = (0, 1),
                     store: str | Path | None = None, workers: int = 1,
                     progress: Callable[[str], None] | None = None) -> pd.DataFrame:
    """Study 3 (van Laarhoven's Fig. 3): final test error against λ with plain L2 and with the
    ‖w‖ = const update (each unit of the detected scale-invariant weights held at its initial
    norm after every step). The claim: with the projection, λ barely matters unless it is
    large enough for the L2 gradient to dominate Adam's second moment."""
    keys = [(mode, lam, seed) for mode in ("plain", "projected") for lam in lams
            for seed in seeds]
    configs = [make_config({**BASE, "norm_probes": False, **(base or {})}, optimizer=optimizer,
                           lr=lr, lam=lam, steps=steps, seed=seed,
                           project_norm="init" if mode == "projected" else "none")
               for mode, lam, seed in keys]
    if progress:
        progress(f"{len(configs)} runs of {steps} steps (plain and projected)")
    rows = []
    for (mode, lam, seed), (status, hist) in zip(keys, _train(configs, store, workers),
                                                strict=True):
        acc, train = hist["test_acc"].dropna(), hist["train_acc"].dropna()
        final = float(acc.iloc[-1]) if status == "finished" and len(acc) else 0.0
        rows.append({"mode": mode, "lam": lam, "seed": seed, "status": status,
                     "test_error": 1.0 - final,
                     "train_error": 1.0 - float(train.iloc[-1]) if len(train) else 1.0})
    return pd.DataFrame(rows)


# --- study 4: the bridge to Lewkowycz & Gur-Ari — t* with and without BN --------------------

BRIDGE_BASE = {"dataset": "digits", "n_train": 600, "data_options": {"image": True},
               "model": "cnn", "width": 16, "depth": 2, "optimizer": "sgd", "lr": 0.1,
               "batch_size": 128, "eval_per_decade": 20, "norms_per_tensor": False}


def bn_bridge(lams: Sequence[float] = (2.5e-3, 5e-3, 1e-2, 2e-2, 4e-2), *, store: str | Path,
              base: Mapping[str, Any] | None = None, steps: int = 4000,
              seeds: Sequence[int] = (0, 1), workers: int = 1,
              progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Study 4: the same CNN without and with BN, trained under the same λ grid (L2 on every
    parameter, SGD); per norm the t* table (:func:`~l2dynamics.analysis.tstar.tstar_table`,
    smoothed estimator), the fit of log t* on log λ and its verdict against t* ∝ 1/λ, and the
    peak test accuracy per λ (its spread across λ is the paper's "performance at t* hardly
    depends on λ").

    With BN, λ acts on the conv weights only through their norm (the effective LR), so the
    paper's mechanism (λ shrinks the weights until the kernel decays) is not the one at work
    there; whether t* ∝ 1/λ survives is what this measures."""
    from l2dynamics.analysis.tstar import tstar_fits, tstar_summary, tstar_table
    from l2dynamics.store import RunStore

    if not lams or any(not (math.isfinite(x) and x > 0) for x in lams):
        raise ConfigError(f"the bridge's λ grid must be non-empty, finite and > 0 (got {lams})")
    out: dict[str, Any] = {"lams": list(lams), "steps": steps, "seeds": list(seeds),
                           "norms": {}}
    for norm in ("none", "bn"):
        configs = [make_config({**BRIDGE_BASE, **(base or {})}, norm=norm, lam=lam, seed=seed,
                               steps=steps) for lam in lams for seed in seeds]
        if progress:
            progress(f"CNN, norm={norm}: {len(configs)} runs of {steps} steps")
        runs = train_through_store(configs, store, workers=workers, names=["test_acc"],
                                   log=progress)
        with RunStore(store) as st:
            table = tstar_table(st, [r.run_id for r in runs])
        fits = tstar_fits(table)
        fit = fits.iloc[0].to_dict() if len(fits) else {}
        summary = tstar_summary(table)
        peak = summary["peak_acc"].to_numpy(float)
        out["norms"][norm] = {
            "table": table.to_dict(orient="list"),
            "summary": summary.to_dict(orient="list"),
            "fit": {k: (float(v) if isinstance(v, int | float | np.floating) else v)
                    for k, v in fit.items()},
            "verdict": fit.get("verdict", "undetermined"),
            "peak_acc_range": float(peak.max() - peak.min()) if len(peak) else math.nan,
            "curves": [{"lam": r.config.lam, "seed": r.config.seed,
                        "step": r.history["step"].tolist(),
                        "test_acc": r.history["test_acc"].tolist()} for r in runs]}
    return out
