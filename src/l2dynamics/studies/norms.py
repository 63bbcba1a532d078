"""Normalization studies (van Laarhoven 2017): do scale-invariant weights reach the predicted
equilibrium norm and angular update?

:func:`equilibrium_check` trains one BN network per optimizer case with the per-tensor norm
probes on, finds its scale-invariant weights numerically, and compares — per tensor, averaged
over the windows after `relax_times` relaxation times — the measured norm and RMS angular
update with :mod:`l2dynamics.analysis.equilibrium`:

- ``sgd``: E‖w‖² = η·E‖∇L‖²/(λ(2 − ηλ)) (the exact stationary identity, with the measured
  gradient) and θ = arccos(1 − ηλ) (≈ √(2ηλ));
- ``sgdm``: heavy-ball μ: the norm with the measured gradient, θ = arccos(1 − ηλ/(1 + μ))
  (≈ √(2ηλ/(1 + μ)));
- ``adam_l2``: Adam with coupled L2, ‖w‖³ = η√d·‖ḡ‖/(2λ) with d = the tensor's size and
  ‖ḡ‖ = ‖w‖·‖∇L‖, i.e. ‖w‖² = η√d·‖∇L‖/(2λ) (a per-tensor reading of a per-unit formula:
  an approximation), and its angle;
- ``adamw``: ‖w‖² ≈ η·d/(2λ_d) (with the β₁ correction of ``adamw_norm``) summed over the
  tensor's units, θ ≈ √(2ηλ_d(1 − β₁)/(1 + β₁)).

The formulas' derivations and their simulation checks are in
:mod:`l2dynamics.analysis.equilibrium` and ``tests/test_equilibrium.py``.

λ is ours (loss + λ/2·‖θ‖²); only windows after ``relax_times × relaxation_steps`` count.
The default decays weight tensors only (``decay_params: weights``, as van Laarhoven did): L2 on
the BN gains shrinks the next layer's inputs until BN's ε breaks its scale invariance (on
digits, |cos(w, ∇L)| of the second layer rose to 0.04 and its norm ratio to 1.40).
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


def _relaxation(cfg: Config, *, d: int, gbar_norm: float) -> float:
    """Relaxation time in steps; Adam + L2's depends on ‖ḡ‖, estimated at initialization."""
    from l2dynamics.analysis.equilibrium import relaxation_steps

    if cfg.optimizer == "adamw":
        return relaxation_steps(cfg.lr, cfg.decoupled_wd, optimizer="adamw",
                                beta2=cfg.betas[1])
    if cfg.optimizer == "adam":
        return relaxation_steps(cfg.lr, cfg.lam, optimizer="adam", d=d, gbar_norm=gbar_norm,
                                beta2=cfg.betas[1])
    return relaxation_steps(cfg.lr, cfg.lam, optimizer="sgd", momentum=cfg.momentum)


def predictions(cfg: Config, *, norm_ms: float, grad_ms: float, numel: int
                ) -> tuple[float, float]:
    """(predicted ‖w‖, predicted RMS angle per step) for one tensor of `cfg`'s run, from the
    window means of ‖w‖² and ‖∇L‖².

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


def equilibrium_check(cases: Mapping[str, Mapping[str, Any]] | None = None, *,
                      base: Mapping[str, Any] | None = None, relax_times: float = 10.0,
                      measure_times: float = 5.0, windows: int = 50, seed: int = 0,
                      store: str | Path | None = None,
                      progress: Callable[[str], None] | None = None) -> pd.DataFrame:
    """One run per case for ``(relax_times + measure_times)`` relaxation times; a table of
    measured/predicted norm and RMS angle per scale-invariant tensor."""
    from l2dynamics.probes.scale import detect_scale_invariant
    from l2dynamics.train import Trainer

    rows = []
    for name, case in (CASES if cases is None else cases).items():
        cfg = make_config({**BASE, **(base or {})}, **case, seed=seed)
        trainer = Trainer(cfg)
        xb, yb = trainer.batch(0)
        report = detect_scale_invariant(trainer.model, trainer.loss_fn, xb, yb, per_unit=False)
        params = dict(trainer.named_params)
        tensors = [n for n in report.invariant_names if params[n].ndim >= 2]
        if not tensors:
            raise ConfigError(f"case {name!r}: the model has no scale-invariant weights")
        w = params[tensors[0]]
        trainer.loss_fn(trainer.model(xb), yb).backward()
        gbar = float(w.detach().double().norm() * w.grad.detach().double().norm())
        tau = _relaxation(cfg, d=w.numel(), gbar_norm=gbar)
        steps = int(math.ceil((relax_times + measure_times) * tau))
        cfg = cfg.replace(steps=steps, eval_every=max(1, int(measure_times * tau) // windows))
        if progress:
            progress(f"{name}: {steps} steps (relaxation ≈ {tau:.0f}), tensors {tensors}")
        _, hist = _train([cfg], store)[0]
        late = hist[hist["step"] >= relax_times * tau]
        for tensor in tensors:
            cols = [f"{k}/{tensor}" for k in ("norm_ms", "grad_ms", "angle_rms", "norm")]
            window = late.dropna(subset=cols[:3])
            norm_ms = float(window[cols[0]].mean())
            grad_ms = float(window[cols[1]].mean())
            angle_rms = float(np.sqrt((window[cols[2]] ** 2).mean()))
            pred_norm, pred_angle = predictions(cfg, norm_ms=norm_ms, grad_ms=grad_ms,
                                                numel=params[tensor].numel())
            measured_norm = math.sqrt(norm_ms)
            rows.append({"case": name, "tensor": tensor, "optimizer": cfg.optimizer,
                         "lr": cfg.lr, "lam": cfg.lam, "decoupled_wd": cfg.decoupled_wd,
                         "momentum": cfg.momentum, "steps": steps, "relaxation_steps": tau,
                         "windows": len(window), "norm": measured_norm,
                         "pred_norm": pred_norm, "norm_ratio": measured_norm / pred_norm,
                         "angle_rms": angle_rms, "pred_angle": pred_angle,
                         "angle_ratio": angle_rms / pred_angle})
    return pd.DataFrame(rows)


def norm_traces(lams: tuple[float, ...] = (0.0, 1e-3, 5e-3, 2e-2), *,
                base: Mapping[str, Any] | None = None, lr: float = 0.1, steps: int = 6000,
                seed: int = 0, store: str | Path | None = None,
                progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Study 1: plain SGD on the BN net for each λ (λ = 0 included); per scale-invariant
    tensor and window: ‖w‖, the effective LR η/‖w‖², the RMS angle, and the predictions —
    the equilibrium norm from that window's measured gradient (√(η·E‖∇L‖²/(λ(2 − ηλ)))), the
    angle arccos(1 − ηλ), and for λ = 0 the growth law ‖w_t‖⁴ = ‖w_0‖⁴ + 2η²·Σ_s ‖ḡ_s‖²
    (from the measured gradients) and its effective LR → 1/√(2Gt)."""
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
                                   "angle_rms": h[f"angle_rms/{tensor}"].tolist()}
            if lam > 0:
                row["pred_norm"] = np.sqrt(lr * grad_ms / (lam * (2 - lr * lam))).tolist()
                row["pred_angle"] = eq.sgd_angle(lr, lam)
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


# --- study 2: the η×λ grid and the effective-learning-rate collapse -------------------------

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
        taus.append(_relaxation(cfg, d=w.numel(), gbar_norm=gbar))
    return max(taus)


def eta_lam_grid(optimizer: str, lrs: Sequence[float], lams: Sequence[float], *,
                 store: str | Path, base: Mapping[str, Any] | None = None, steps: int = 3000,
                 seeds: Sequence[int] = (0,), late_fraction: float = 0.2,
                 relax_times: float = 10.0, workers: int = 1,
                 progress: Callable[[str], None] | None = None) -> pd.DataFrame:
    """Study 2: train the BN net at every (η, λ) of the grid (``optimizer`` "sgd" or "adam",
    coupled L2 on the weights) through the store; one row per run.

    Columns: lr, lam, seed, status, test_error (final), eff_lr (the late effective LR: the
    geometric mean over the scale-invariant tensors of each one's median ``eff_lr`` over the
    last `late_fraction` of training — η/‖w‖² for SGD, η/‖w‖ for Adam), norm (the same for
    ‖w‖), gbar (the same for the RMS gradient at unit norm ‖ḡ‖ = ‖w‖·‖∇L‖), relaxation_steps
    (τ, from initialization) and relaxed = steps ≥ `relax_times`·τ (only those runs can have
    reached the equilibrium the collapse relies on: the gradient scale keeps falling while a
    net fits its data, and a norm that lags behind steepens the fitted exponents — on the SGD
    grid 0.72/0.63 at 3τ, 0.53/0.52 at 10τ, 0.50/0.51 at 20τ against the predicted ½, ½)."""
    from l2dynamics.train import Trainer

    if optimizer not in EFFECTIVE_LR_EXPONENTS:
        raise ConfigError(f"optimizer must be one of {', '.join(EFFECTIVE_LR_EXPONENTS)} "
                          f"(got {optimizer!r})")
    if not lrs or not lams:
        raise ConfigError("the η×λ grid needs at least one η and one λ")
    if any(not (math.isfinite(x) and x > 0) for x in (*lrs, *lams)):
        raise ConfigError(f"every η and λ of the grid must be finite and > 0 (got η {lrs}, "
                          f"λ {lams})")
    common = {**BASE, **(base or {}), "optimizer": optimizer, "steps": steps,
              "eval_every": max(1, steps // 50)}
    configs = [make_config(common, lr=lr, lam=lam, seed=seed)
               for lr in lrs for lam in lams for seed in seeds]
    tensors = invariant_weights(Trainer(configs[0]))
    if not tensors:
        raise ConfigError("the grid's model has no scale-invariant weights (use norm: bn)")
    if progress:
        progress(f"{optimizer}: {len(configs)} runs of {steps} steps; invariant {tensors}")
    runs = train_through_store(configs, store, workers=workers, log=progress)
    rows = []
    for run in runs:
        cfg, hist = run.config, run.history
        late = hist[hist["step"] >= (1.0 - late_fraction) * cfg.steps]
        eff = [late[f"eff_lr/{t}"].dropna().median() for t in tensors]
        norm = [np.sqrt(late[f"norm_ms/{t}"].dropna().median()) for t in tensors]
        gbar = [np.sqrt(late[f"norm_ms/{t}"].dropna().median()
                        * late[f"grad_ms/{t}"].dropna().median()) for t in tensors]
        acc = hist["test_acc"].dropna()
        final = float(acc.iloc[-1]) if run.status == "finished" and len(acc) else 0.0
        tau = _initial_relaxation(cfg, tensors)
        rows.append({"optimizer": optimizer, "lr": cfg.lr, "lam": cfg.lam, "seed": cfg.seed,
                     "status": run.status, "run_id": run.run_id, "test_error": 1.0 - final,
                     "eff_lr": float(np.exp(np.mean(np.log(eff)))),
                     "norm": float(np.exp(np.mean(np.log(norm)))),
                     "gbar": float(np.exp(np.mean(np.log(gbar)))),
                     "relaxation_steps": tau, "relaxed": cfg.steps >= relax_times * tau})
    return pd.DataFrame(rows)


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

    ``fit``: eff_lr ∝ η^p·λ^q over the finished, relaxed runs; ``fit_gbar_normalized``: the
    same for eff_lr·‖ḡ‖^a (``GBAR_POWER``), the law at a fixed gradient scale
    (:func:`~l2dynamics.analysis.equilibrium.fit_power_law_exponents`), with `level` CIs and
    the verdict for each predicted exponent (inside its CI or not); for Adam also whether the
    CI of q holds +⅓ (ours), −⅓ (the disputed form), both or neither.
    ``collapse_r2``: R² of test error on a quadratic in log x for x = the predicted combination
    η^p·λ^q, the measured effective LR, η alone and λ alone (finished runs): the collapse holds
    when the combination explains much more than either knob alone."""
    from l2dynamics.analysis.equilibrium import fit_power_law_exponents

    optimizer = str(table["optimizer"].iloc[0])
    p0, q0 = EFFECTIVE_LR_EXPONENTS[optimizer]
    ok = table[table["status"] == "finished"]
    relaxed = ok[ok["relaxed"]]
    out: dict[str, Any] = {"optimizer": optimizer, "predicted_p": p0, "predicted_q": q0,
                           "runs": len(table), "finished": len(ok), "relaxed": len(relaxed)}
    values = {"fit": relaxed["eff_lr"]}
    if "gbar" in relaxed:
        values["fit_gbar_normalized"] = relaxed["eff_lr"] * relaxed["gbar"] ** GBAR_POWER[
            optimizer]
    for key, y in values.items():
        try:
            fit = fit_power_law_exponents(relaxed["lr"], relaxed["lam"], y, level=level)
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
