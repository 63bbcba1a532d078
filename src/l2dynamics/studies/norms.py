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
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from l2dynamics.config import Config, make_config
from l2dynamics.errors import ConfigError

BASE = {"dataset": "mnist1d", "n_train": 4000, "n_test": 2000, "model": "fc", "width": 128,
        "depth": 2, "norm": "bn", "batch_size": 128, "norms_per_tensor": True,
        "norm_probes": True, "eval_per_decade": 2, "decay_params": "weights"}

CASES: dict[str, dict[str, Any]] = {
    "sgd": {"optimizer": "sgd", "lr": 0.1, "lam": 5e-3},
    "sgdm": {"optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "lam": 5e-3},
    "adam_l2": {"optimizer": "adam", "lr": 1e-3, "lam": 5e-3},
    "adamw": {"optimizer": "adamw", "lr": 1e-3, "decoupled_wd": 0.5},
}


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
        trainer = Trainer(cfg)
        if progress:
            progress(f"{name}: {steps} steps (relaxation ≈ {tau:.0f}), tensors {tensors}")
        hist = trainer.run().history
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
                seed: int = 0, progress: Callable[[str], None] | None = None
                ) -> dict[str, Any]:
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
        trainer = Trainer(cfg)
        params = dict(trainer.named_params)
        if progress:
            progress(f"λ = {lam:g}: {steps} steps")
        hist = trainer.run().history
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
                     progress: Callable[[str], None] | None = None) -> pd.DataFrame:
    """Study 3 (van Laarhoven's Fig. 3): final test error against λ with plain L2 and with the
    ‖w‖ = const update (each unit of the detected scale-invariant weights held at its initial
    norm after every step). The claim: with the projection, λ barely matters unless it is
    large enough for the L2 gradient to dominate Adam's second moment."""
    from l2dynamics.train import Trainer

    rows = []
    for mode in ("plain", "projected"):
        for lam in lams:
            for seed in seeds:
                cfg = make_config({**BASE, "norm_probes": False, **(base or {})},
                                  optimizer=optimizer, lr=lr, lam=lam, steps=steps, seed=seed,
                                  project_norm="init" if mode == "projected" else "none")
                if progress:
                    progress(f"{mode}, λ = {lam:g}, seed {seed}")
                result = Trainer(cfg).run()
                hist = result.history
                final = float(hist["test_acc"].iloc[-1]) if result.status == "finished" else 0.0
                rows.append({"mode": mode, "lam": lam, "seed": seed, "status": result.status,
                             "test_error": 1.0 - final,
                             "train_error": 1.0 - float(hist["train_acc"].iloc[-1])})
    return pd.DataFrame(rows)
