"""Study 2 of the normalization studies (van Laarhoven 2017): the η×λ grid and the
effective-learning-rate collapse. :func:`eta_lam_grid` trains the BN network of
:mod:`l2dynamics.studies.norms` at every (η, λ) and reads each cell's late statistics;
:func:`collapse_summary` fits the equilibrium effective LR's exponents and measures how well the
test error collapses onto the predicted combination.
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
from l2dynamics.studies.norms import BASE, case_relaxation_steps, pooled_span
from l2dynamics.studies.runs import train_through_store

#: The power of ‖ḡ‖ in each equilibrium effective LR: SGD √(ηλ(2 − ηλ))/‖ḡ‖, Adam + L2
#: (2λη²/(√d·‖ḡ‖))^⅓. Multiplying the measured effective LR by ‖ḡ‖^a removes the gradient,
#: which itself changes across the grid (runs that fit their data have small gradients).
GBAR_POWER = {"sgd": 1.0, "adam": 1.0 / 3.0}

#: Predicted exponents (p, q) of the equilibrium effective LR ∝ η^p·λ^q of a scale-invariant
#: weight: SGD η/‖w*‖² = √(ηλ(2 − ηλ)/G) ≈ (ηλ)^½; Adam + L2 η/‖w*‖ ∝ (η²λ)^⅓ (our
#: derivation), against the disputed (η²/λ)^⅓ (q = −⅓) of the review the summary cites.
EFFECTIVE_LR_EXPONENTS = {"sgd": (0.5, 0.5), "adam": (2.0 / 3.0, 1.0 / 3.0)}
DISPUTED_ADAM_Q = -1.0 / 3.0

#: The CLI's grids. Adam's uses β₂ = 0.99: Adam + L2's relaxation time has a floor ≈ 2/(1 − β₂)
#: steps (the second moment must follow the shrinking gradient; see ``relaxation_steps``),
#: 2000 steps at the default 0.999, which would leave most of a CPU-sized grid unrelaxed.
GRIDS: dict[str, dict[str, Any]] = {
    "adam": {"lrs": (1e-3, 3e-3, 1e-2, 3e-2), "lams": (1e-3, 1e-2, 3e-2, 1e-1),
             "steps": 6000, "base": {"betas": (0.9, 0.99)}},
    "sgd": {"lrs": (0.03, 0.1, 0.3, 1.0), "lams": (1e-3, 3e-3, 1e-2, 3e-2), "steps": 3000,
            "base": {}},
}


def invariant_weights(trainer: Any) -> list[str]:
    """Names of the trainer's scale-invariant weight tensors (ndim ≥ 2), detected numerically
    on its first batch."""
    from l2dynamics.probes.scale import detect_scale_invariant

    xb, yb = trainer.batch(0)
    report = detect_scale_invariant(trainer.model, trainer.loss_fn, xb, yb, per_unit=False)
    params = dict(trainer.named_params)
    return [n for n in report.invariant_names if params[n].ndim >= 2]


def _initial_relaxation(cfg: Config, tensors: list[str]) -> float:
    """Relaxation time (steps) of `cfg`'s run, Adam's from ‖ḡ‖ at initialization (largest
    over the tensors)."""
    from l2dynamics.train import Trainer

    trainer = Trainer(cfg)
    xb, yb = trainer.batch(0)
    trainer.loss_fn(trainer.model(xb), yb).backward()
    params = dict(trainer.named_params)
    taus = []
    for name in tensors:
        w = params[name]
        gbar = float(w.detach().double().norm() * w.grad.detach().double().norm())
        taus.append(case_relaxation_steps(cfg, d=w.numel(), gbar_norm=gbar))
    return max(taus)


def eta_lam_grid(optimizer: str, lrs: Sequence[float], lams: Sequence[float], *,
                 store: str | Path, base: Mapping[str, Any] | None = None, steps: int = 3000,
                 seeds: Sequence[int] = (0,), late_fraction: float = 0.2,
                 relax_times: float = 10.0, workers: int = 1,
                 progress: Callable[[str], None] | None = None) -> pd.DataFrame:
    """Study 2: train the BN net at every (η, λ) of the grid (``optimizer`` "sgd" or "adam",
    coupled L2 on the weights) through the store; one row per run.

    Columns: lr, lam, seed, status, test_error (final), the late statistics of
    :func:`_late_cell` over the windows in the last `late_fraction` of training (eff_lr, norm,
    gbar, gbar_elem, normalizer, angle_rms, kappa, u_tilde, cross_share, dead_fraction,
    l2_ratio), relaxation_steps (τ, from initialization), small_angle (Adam: the largest RMS
    angle ≤ :data:`SMALL_ANGLE`; always true for SGD, whose arccos form holds at any angle),
    relaxed = steps ≥ `relax_times`·τ (only those runs can have reached the equilibrium the
    collapse relies on: the gradient scale keeps falling while a net fits its data, and a norm
    that lags behind steepens the fitted exponents — on the SGD grid 0.72/0.63 at 3τ,
    0.53/0.52 at 10τ, 0.50/0.51 at 20τ against the predicted ½, ½) and in_fit = relaxed and
    small_angle. The runs record the per-unit probes (for the dead-unit fraction)."""
    from l2dynamics.train import Trainer

    if optimizer not in EFFECTIVE_LR_EXPONENTS:
        raise ConfigError(f"optimizer must be one of {', '.join(EFFECTIVE_LR_EXPONENTS)} "
                          f"(got {optimizer!r})")
    if not lrs or not lams:
        raise ConfigError("the η×λ grid needs at least one η and one λ")
    if any(not (math.isfinite(x) and x > 0) for x in (*lrs, *lams)):
        raise ConfigError(f"every η and λ of the grid must be finite and > 0 (got η {lrs}, "
                          f"λ {lams})")
    common = {**BASE, "norm_probes_per_unit": True, **(base or {}), "optimizer": optimizer,
              "steps": steps, "eval_every": max(1, steps // 50)}
    configs = [make_config(common, lr=lr, lam=lam, seed=seed)
               for lr in lrs for lam in lams for seed in seeds]
    trainer = Trainer(configs[0])
    tensors = invariant_weights(trainer)
    if not tensors:
        raise ConfigError("the grid's model has no scale-invariant weights (use norm: bn)")
    numel = {name: p.numel() for name, p in trainer.named_params if name in tensors}
    if progress:
        progress(f"{optimizer}: {len(configs)} runs of {steps} steps; invariant {tensors}")
    runs = train_through_store(configs, store, workers=workers, log=progress)
    rows = []
    for run in runs:
        cfg, hist = run.config, run.history
        windows = hist.dropna(subset=["probe_updates"])
        late = windows[windows["step"] - windows["probe_updates"]
                       >= (1.0 - late_fraction) * cfg.steps]
        acc = hist["test_acc"].dropna()
        final = float(acc.iloc[-1]) if run.status == "finished" and len(acc) else 0.0
        tau = _initial_relaxation(cfg, tensors)
        row = {"optimizer": optimizer, "lr": cfg.lr, "lam": cfg.lam, "seed": cfg.seed,
               "status": run.status, "run_id": run.run_id, "test_error": 1.0 - final,
               "relaxation_steps": tau, "relaxed": cfg.steps >= relax_times * tau}
        row.update(_late_cell(cfg, late, tensors, numel) if len(late) else _EMPTY_CELL)
        row["small_angle"] = bool(optimizer != "adam" or row["angle_rms"] <= SMALL_ANGLE)
        row["in_fit"] = bool(row["relaxed"] and row["small_angle"])
        rows.append(row)
    return pd.DataFrame(rows)


#: Adam + L2 cells enter the exponent fit only when every scale-invariant tensor turns by at
#: most this RMS angle per step (rad): beyond it w turns by more than ≈ √10·0.1 ≈ 0.3 rad
#: within the momentum's memory 1/(1 − β₁) = 10 steps, where the derivation's m̂ ≈ λw + noise
#: fails. Stated with the per-element normalizer (issue 18), before the grid was rerun.
SMALL_ANGLE = 0.1

_EMPTY_CELL = {k: math.nan for k in ("eff_lr", "norm", "gbar", "gbar_elem", "normalizer",
                                     "angle_rms", "kappa", "u_tilde", "cross_share",
                                     "dead_fraction", "l2_ratio")}


def _late_cell(cfg: Config, late: pd.DataFrame, tensors: list[str],
               numel: Mapping[str, int]) -> dict[str, float]:
    """One grid cell's late statistics, each tensor's pooled by sums and counts over the late
    windows (:func:`pooled_span`), then across tensors: the geometric mean of the effective LR
    (η/((1−μ)‖w‖²) SGD, η/‖w‖ Adam), ‖w‖, ‖ḡ‖ = ‖w‖·‖∇L‖ and the per-element ḡ of Adam + L2
    (``gbar_elem`` = ‖w‖·√d·E‖w‖²/A, A = E Σ w_i²/(√v̂_i + ε): the unit gradient that Adam's
    L2 step sees); ``normalizer`` is the one the fit uses (‖ḡ‖ for SGD, ``gbar_elem`` for
    Adam). The largest over the tensors of the RMS angle per step, the dead-unit fraction and
    λ‖w‖/‖∇L‖ (``l2_ratio``: the L2 gradient against the data gradient), and the geometric
    mean of κ, ũ and the cross term's share (Adam) — the statistics that place the cell."""
    from l2dynamics.analysis.equilibrium_measured import white_noise_update_sq

    per: dict[str, list[float]] = {k: [] for k in _EMPTY_CELL}
    for t in tensors:
        span = pooled_span(late, t)
        W, G = span["norm_ms"], span["grad_ms"]
        norm = math.sqrt(W)
        per["norm"].append(norm)
        per["gbar"].append(math.sqrt(W * G))
        per["eff_lr"].append(cfg.lr / ((1.0 - cfg.momentum) * W) if cfg.optimizer == "sgd"
                             else cfg.lr / norm)
        per["angle_rms"].append(span["angle_rms"])
        per["l2_ratio"].append(cfg.lam * math.sqrt(W / G) if G > 0 else math.inf)
        dead = late.get(f"unit_dead_fraction/{t}")
        per["dead_fraction"].append(float(dead.max()) if dead is not None else math.nan)
        if cfg.optimizer == "adam" and math.isfinite(span["decay_weight"]):
            b1, P = cfg.betas[0], span["update_sq"]
            per["gbar_elem"].append(norm * math.sqrt(numel[t]) * W / span["decay_weight"])
            per["kappa"].append(span["aniso"])
            per["u_tilde"].append(P / white_noise_update_sq(numel[t], b1))
            per["cross_share"].append(2 * span["precond_cross"]
                                      / (cfg.lr * P * (1 + b1) / (1 - b1)))

    def geo(xs: list[float]) -> float:
        arr = np.asarray(xs, float)
        return float(np.exp(np.mean(np.log(arr)))) if len(arr) and (arr > 0).all() \
            else math.nan

    out = {k: geo(per[k]) for k in ("eff_lr", "norm", "gbar", "gbar_elem", "kappa",
                                    "u_tilde")}
    out["cross_share"] = float(np.mean(per["cross_share"])) if per["cross_share"] \
        else math.nan
    for k in ("angle_rms", "dead_fraction", "l2_ratio"):
        out[k] = float(np.max(per[k]))
    out["normalizer"] = out["gbar_elem"] if cfg.optimizer == "adam" else out["gbar"]
    return out


def _quadratic_r2(x: np.ndarray, y: np.ndarray) -> float:
    """R² of y on a quadratic in log x (how much of y one variable explains)."""
    lx = np.log(x)
    if len(np.unique(lx)) < 3:
        return math.nan
    coef = np.polyfit(lx, y, 2)
    resid = y - np.polyval(coef, lx)
    tss = float(((y - y.mean()) ** 2).sum())
    return 1.0 - float(resid @ resid) / tss if tss > 0 else math.nan


def collapse_summary(table: pd.DataFrame, level: float = 0.95) -> dict[str, Any]:
    """The fitted effective-LR exponents and how well test error collapses.

    ``fit``: eff_lr ∝ η^p·λ^q over the finished, relaxed runs in the small-angle regime
    (``in_fit``, where the table has it); ``fit_gbar_normalized``: the same for
    eff_lr·g^a (``GBAR_POWER``) with g the table's ``normalizer`` (SGD ‖ḡ‖; Adam + L2 the
    per-element ḡ its L2 step sees) or else ``gbar``, the law at a fixed gradient scale
    (:func:`~l2dynamics.analysis.equilibrium.fit_power_law_exponents`), with `level` CIs and
    the verdict for each predicted exponent (inside its CI or not); for Adam also whether the
    CI of q holds +⅓ (ours), −⅓ (the disputed form), both or neither, and ``fit_measured``:
    the same with g·ũ, the update power ũ = E‖m̂/√v̂‖² over its white-noise value (the
    per-element balance ‖w‖³ = η√d·ũ·ḡ_elem/(2λ): ũ carries the effective dimension d·ũ).
    ``collapse_r2``: R² of test error on a quadratic in log x for x = the predicted combination
    η^p·λ^q, the measured effective LR, η alone and λ alone (finished runs): the collapse holds
    when the combination explains much more than either knob alone."""
    from l2dynamics.analysis.equilibrium import fit_power_law_exponents

    optimizer = str(table["optimizer"].iloc[0])
    p0, q0 = EFFECTIVE_LR_EXPONENTS[optimizer]
    ok = table[table["status"] == "finished"]
    relaxed = ok[ok["relaxed"]]
    fitted = relaxed[relaxed["in_fit"]] if "in_fit" in relaxed else relaxed
    out: dict[str, Any] = {"optimizer": optimizer, "predicted_p": p0, "predicted_q": q0,
                           "runs": len(table), "finished": len(ok), "relaxed": len(relaxed),
                           "in_fit": len(fitted),
                           "outside_small_angle": len(relaxed) - len(fitted)}
    values = {"fit": fitted["eff_lr"]}
    column = "normalizer" if "normalizer" in fitted else "gbar" if "gbar" in fitted else None
    if column is not None:
        values["fit_gbar_normalized"] = fitted["eff_lr"] * fitted[column] ** GBAR_POWER[
            optimizer]
        out["normalizer"] = ("per-element ḡ of the L2 step" if column == "normalizer"
                             and optimizer == "adam" else "‖ḡ‖ per tensor")
    if optimizer == "adam" and "u_tilde" in fitted and "normalizer" in fitted:
        # the per-element balance ‖w‖³ = η√d·ũ·ḡ_elem/(2λ): ũ carries the effective dimension
        # d·ũ, which falls where BN units stop receiving gradient
        values["fit_measured"] = fitted["eff_lr"] * (fitted["normalizer"]
                                                     * fitted["u_tilde"]) ** GBAR_POWER["adam"]
    for key, y in values.items():
        try:
            fit = fit_power_law_exponents(fitted["lr"], fitted["lam"], y, level=level)
        except ConfigError as exc:
            out[key] = None
            out[f"{key}_error"] = str(exc)
            continue
        out[key] = {"p": fit.p, "q": fit.q, "ci_p": list(fit.ci_p), "ci_q": list(fit.ci_q),
                    "r2": fit.r2, "n": fit.n, "level": fit.level,
                    "p_holds": bool(fit.ci_p[0] <= p0 <= fit.ci_p[1]),
                    "q_holds": bool(fit.ci_q[0] <= q0 <= fit.ci_q[1])}
        if optimizer == "adam":
            ours = fit.ci_q[0] <= q0 <= fit.ci_q[1]
            disputed = fit.ci_q[0] <= DISPUTED_ADAM_Q <= fit.ci_q[1]
            out[key]["supports"] = ("both" if ours and disputed else "(η²λ)^1/3" if ours
                                    else "(η²/λ)^1/3" if disputed else "neither")
    y = ok["test_error"].to_numpy(float)
    combo = ok["lr"].to_numpy(float) ** p0 * ok["lam"].to_numpy(float) ** q0
    out["collapse_r2"] = {
        "predicted_combination": _quadratic_r2(combo, y),
        "measured_eff_lr": _quadratic_r2(ok["eff_lr"].to_numpy(float), y),
        "lr_alone": _quadratic_r2(ok["lr"].to_numpy(float), y),
        "lam_alone": _quadratic_r2(ok["lam"].to_numpy(float), y)}
    return out
