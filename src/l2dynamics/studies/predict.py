"""The best λ for a budget from one short run (Lewkowycz & Gur-Ari §3, google/autol2's recipe).

1. Train a short *probe* at a large λ_ref (a few seeds): a large λ peaks early, so it is cheap.
2. Read t*_ref off its test-accuracy curve (:mod:`l2dynamics.analysis.peak`; the probe is
   checked for under-fitting — a λ_ref whose network never fits its training data gives a c
   3–100× too large — and λ_ref is stepped down until it fits).
3. c·η = λ_ref·Φ(t*_ref), with Φ(t) the *effective* physical time of the first t steps,
   Φ(t) = Σ_{s<t} η_s/(1 − μ): the learning-rate schedule enters through η_s, heavy-ball
   momentum μ through its long-time step size η/(1 − μ)
   (:func:`l2dynamics.train.clock.effective_time`).
4. For a full run of T steps (its own schedule and momentum): λ_pred = c·η / Φ_full(T). For a
   constant η and equal momentum this is the released code's λ_pred = c/(η·T) = λ_ref·t*_ref/T.

The interval comes from the seeds' bootstrap CI of t*_ref. The compute is reported as probe
steps (all seeds and attempts) over T.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from l2dynamics.analysis.peak import (
    ESTIMATORS,
    bootstrap_ci,
    estimate_peak,
    reaches_train_accuracy,
)
from l2dynamics.config import Config, make_config
from l2dynamics.errors import ConfigError
from l2dynamics.train import Trainer
from l2dynamics.train.clock import effective_time, momentum_divisor


@dataclass
class ProbeAttempt:
    """One probe λ: its runs' t* (steps) and whether they fit their training data."""

    lam: float
    steps: int
    tstars: list[float]
    fits_train: list[bool]
    censored: list[bool]
    histories: list[Any] = field(repr=False, default_factory=list)
    steps_done: list[int] = field(default_factory=list)  # < steps where under-fitting stopped it


@dataclass
class LambdaPrediction:
    """λ_pred for a T-step run, with its interval, the probe that gave it and what it cost.
    ``ok`` is False (and ``message`` says why and what to try) when no usable t* was seen."""

    ok: bool
    lam: float
    lam_low: float
    lam_high: float
    lam_ref: float
    tstar_ref: float
    c_eta: float
    budget: int
    probe_steps: int
    compute_fraction: float
    estimator: str
    attempts: list[ProbeAttempt]
    message: str = ""


def predict_lambda(config: Config | dict[str, Any], budget: int, *, lam_ref: float | None = None,
                   probe_k: float = 4.0, seeds: Sequence[int] = (0, 1, 2),
                   estimator: str = "onset", train_threshold: float = 0.99,
                   step_down: float = 4.0, max_attempts: int = 4, early_stop: bool = True,
                   max_probe_steps: int | None = None,
                   progress: Callable[[str], None] | None = None) -> LambdaPrediction:
    """Predict the best λ for `budget` steps of `config` from short probe runs.

    `lam_ref` defaults to the λ whose probe of ``probe_k/(η·λ)`` steps is 1/20 of the budget.
    A probe runs to ``probe_k/(η·λ_ref)`` steps (λ·η·t = probe_k, past the plateau for the
    c·η ≈ 3 measured on MNIST-1D). If any seed does not reach `train_threshold` training
    accuracy, λ_ref is divided by `step_down` and the probe repeated (at most `max_attempts`);
    the remaining seeds of a rejected λ are not run, and with `early_stop` a probe that has
    settled below the threshold is ended early (:class:`UnderfitStop`). A step-down whose probe
    would be longer than `max_probe_steps` per seed (default: the budget) is not run: the
    prediction then fails, saying that the best λ lies near the fitting limit.
    ``estimator``: "onset" (default: where accuracy plateaus instead of peaking, as with CE,
    it is the only one that finds a time) or "smoothed"/"raw" (the released code's argmax)."""
    cfg = make_config(config)
    _check_budget(budget)
    _check_options(estimator, seeds, probe_k, step_down)
    lam = lam_ref if lam_ref is not None else 20.0 * probe_k / (cfg.lr * budget)
    if not (math.isfinite(lam) and lam > 0):
        raise ConfigError(f"lam_ref must be a finite number > 0, got {lam!r}")
    cap = budget if max_probe_steps is None else max_probe_steps
    if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
        raise ConfigError(f"max_probe_steps must be an integer ≥ 1, got {max_probe_steps!r}")
    attempts: list[ProbeAttempt] = []
    capped = False
    for _ in range(max_attempts):
        steps = max(10, math.ceil(probe_k / (cfg.lr * lam)))
        if attempts and steps > cap:
            capped = True  # a step-down whose probe outlasts the cap: not worth running
            break
        if progress:
            progress(f"probe λ={lam:.3g}: up to {len(seeds)} seeds × {steps} steps")
        attempts.append(_probe(cfg, lam, steps, seeds, estimator, train_threshold, early_stop))
        if all(attempts[-1].fits_train):
            break
        lam /= step_down
    probe_steps = sum(sum(a.steps_done) for a in attempts)
    last = attempts[-1]
    common = {"budget": budget, "probe_steps": probe_steps,
              "compute_fraction": probe_steps / budget, "estimator": estimator,
              "attempts": attempts, "lam_ref": last.lam}
    nan = math.nan
    if not all(last.fits_train) and capped:
        return LambdaPrediction(False, nan, nan, nan, tstar_ref=nan, c_eta=nan, **common,
                                message=f"the probe under-fits at every λ whose probe is "
                                f"shorter than {cap} steps (down to {last.lam:.3g}): the best "
                                f"λ for this budget is near the largest λ that fits the "
                                f"training data, so a probe would cost more than the run; "
                                f"try a short grid just below {last.lam:.3g} instead")
    if not all(last.fits_train):
        return LambdaPrediction(False, nan, nan, nan, tstar_ref=nan, c_eta=nan, **common,
                                message=f"the probe under-fits at every λ tried (down to "
                                f"{last.lam:.3g}): the network does not reach train accuracy "
                                f"{train_threshold:g}; use a larger model or a smaller lam_ref")
    usable = [t for t, c in zip(last.tstars, last.censored, strict=True) if not c]
    if len(usable) < max(1, (len(last.tstars) + 1) // 2):
        return LambdaPrediction(False, nan, nan, nan, tstar_ref=nan, c_eta=nan, **common,
                                message=f"no usable t* in the probe at λ={last.lam:.3g}: the "
                                f"accuracy had not peaked or plateaued within λ·η·t = "
                                f"{probe_k:g}; try a larger probe_k or estimator 'onset'")
    t_mean, t_low, t_high = bootstrap_ci(usable)
    phi_full = effective_time(cfg, budget)

    def to_lam(t: float) -> float:
        return last.lam * effective_time(cfg, round(t)) / phi_full

    c_eta = last.lam * effective_time(cfg, round(t_mean))
    return LambdaPrediction(True, to_lam(t_mean), to_lam(t_low), to_lam(t_high),
                            tstar_ref=t_mean, c_eta=c_eta, **common)


def _check_budget(budget: Any) -> None:
    if not isinstance(budget, int) or isinstance(budget, bool) or budget < 1:
        raise ConfigError(f"budget must be an integer number of steps ≥ 1, got {budget!r}")


def _check_options(estimator: str, seeds: Sequence[int], probe_k: float,
                   step_down: float) -> None:
    if estimator not in ESTIMATORS:
        raise ConfigError(f"estimator {estimator!r} is not allowed; use {', '.join(ESTIMATORS)}")
    if not seeds:
        raise ConfigError("seeds must name at least one seed")
    for name, value, low in (("probe_k", probe_k, 0.0), ("step_down", step_down, 1.0)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > low):
            raise ConfigError(f"{name} must be a finite number > {low:g}, got {value!r}")


class UnderfitStop:
    """Trainer callback that ends a probe once it has visibly settled below the training
    accuracy it must reach: after λ·Φ ≥ `after` (physical L2 time), when the best training
    accuracy of the second half of λ·Φ so far is not `min_gain` above the best of the first
    half and both are below `threshold`. A run still rising by more than `min_gain` per
    halving is not stopped. Saves part of the cost of a rejected probe λ (that probe then
    counts only the steps it ran)."""

    def __init__(self, lam: float, threshold: float, *, after: float = 2.0,
                 min_gain: float = 0.005):
        self.lam, self.threshold, self.after, self.min_gain = lam, threshold, after, min_gain
        self.stopped_at: int | None = None
        self._seen = 0

    def on_step_end(self, trainer: Any, step: int, loss: Any) -> None:
        rows = [(t, v) for s_, t, name, v in trainer.rows if name == "train_acc"]
        if len(rows) == self._seen:
            return
        self._seen = len(rows)
        lam_time = [self.lam * t for t, _ in rows]
        if lam_time[-1] < self.after:
            return
        cut = lam_time[-1] / 2.0
        recent = [v for x, (_, v) in zip(lam_time, rows, strict=True) if x >= cut]
        before = [v for x, (_, v) in zip(lam_time, rows, strict=True) if x < cut]
        if not before or not recent:
            return
        best = max(max(recent), max(before))
        if best < self.threshold and max(recent) < max(before) + self.min_gain:
            self.stopped_at = step
            trainer.request_stop()


def _probe(cfg: Config, lam: float, steps: int, seeds: Sequence[int], estimator: str,
           train_threshold: float, early_stop: bool = True) -> ProbeAttempt:
    from l2dynamics.analysis.tstar import censored_tstar

    attempt = ProbeAttempt(lam, steps, [], [], [])
    for seed in seeds:
        probe = cfg.replace(lam=lam, steps=steps, seed=int(seed), lam_schedule="constant",
                            eval_per_decade=max(cfg.eval_per_decade, 20),
                            name=f"probe λ={lam:.3g} seed={seed}")
        stopper = (UnderfitStop(lam / momentum_divisor(cfg), train_threshold) if early_stop
                   else None)
        result = Trainer(probe, callbacks=[stopper] if stopper else ()).run()
        history = result.history
        attempt.steps_done.append(int(result.steps_done))
        if "test_acc" not in history:
            raise ConfigError("predict_lambda needs a classification task (it reads the test "
                              "accuracy)")
        est = estimate_peak(history["step"], history["test_acc"])
        t = est.get(estimator)
        attempt.tstars.append(t)
        attempt.fits_train.append(reaches_train_accuracy(history["train_acc"], train_threshold))
        attempt.censored.append(censored_tstar(
            history["step"].to_numpy(float), history["test_acc"].to_numpy(float), t,
            window=0.2, min_drop=None if estimator == "onset" else 0.01))
        attempt.histories.append(history)
        if not attempt.fits_train[-1]:
            break  # one under-fitting seed rejects this λ: spare the other seeds' compute
    return attempt


def ema_timescale_lambda(config: Config | dict[str, Any], budget: int, *,
                         fraction: float = 0.25) -> float:
    """The zero-cost baseline of Wang & Aitchison (2024): choose λ so that the EMA timescale of
    the weights, τ = 1/(η·λ) steps (decoupled decay shrinks θ by (1 − η·λ) per step; coupled
    SGD L2 the same), is a fixed `fraction` of the run. Measured in epochs, τ/E = τ/T, so

        λ = 1 / (fraction · Φ(T)),   Φ(T) = Σ η_t/(1 − μ)   (= 1/(fraction·η·T) at constant η).

    This is the λ_pred = c·η/Φ(T) of :func:`predict_lambda` with c·η *fixed* at 1/fraction
    instead of measured. Their paper gives a range (τ between one epoch and the whole run),
    not a fraction; 0.25 (c·η = 4) is our choice, stated wherever the baseline is reported."""
    cfg = make_config(config)
    _check_budget(budget)
    if not (isinstance(fraction, (int, float)) and math.isfinite(fraction)
            and 0 < fraction <= 1):
        raise ConfigError(f"fraction must be a number in (0, 1], got {fraction!r}")
    return 1.0 / (fraction * effective_time(cfg, budget))
