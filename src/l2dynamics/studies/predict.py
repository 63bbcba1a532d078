"""The best λ for a budget from one short run (Lewkowycz & Gur-Ari §3, google/autol2's recipe).

1. Train a short *probe* at a large λ_ref (a few seeds): a large λ peaks early, so it is cheap.
2. Read t*_ref off its test-accuracy curve (:mod:`l2dynamics.analysis.peak`; the probe is
   checked for under-fitting — a λ_ref whose network never fits its training data gives a c
   3–100× too large — and λ_ref is stepped down until it fits).
3. c·η = λ_ref·Φ_probe(t*_ref), with Φ(t) the *effective* physical time of the first t
   steps, Φ(t) = Σ_{s<t} η_s/(1 − μ): the learning-rate schedule enters through η_s,
   heavy-ball momentum μ through its long-time step size η/(1 − μ)
   (:func:`l2dynamics.train.clock.effective_time`).
4. For the full run of T steps: λ_pred = c·η / Φ_full(T), where Φ_full is the effective time
   of the config run *with steps = T* (:func:`full_run_time`): a step or cosine schedule is
   laid out over the run's own length (milestones at fractions of T), never over the config's
   ``steps``, which the budget replaces. For a constant η and equal momentum this is the
   released code's λ_pred = c/(η·T) = λ_ref·t*_ref/T.

**The probe's learning rate.** The probe runs at the schedule's *initial* η: constant
``lr`` after the config's linear warm-up (kept, in steps, as in the full run), whatever
``lr_schedule`` says (:func:`probe_config`). A step or cosine schedule squeezed into the short
probe would change η during the probe — a drop at 30 % of a probe is not the drop at 30 % of
the run — while the paper's probe is a short run at large λ in the early, constant-η phase of
training. Φ_probe counts the probe's own η_s, so c·η is in physical time either way.

The interval is the small-sample seed interval of t*_ref
(:func:`l2dynamics.analysis.intervals.seed_interval`: a 95 % t-interval for ≥ 3 usable seeds,
the seed range for 2, the single value for 1), mapped through the same formula; its method
and the number of seeds are kept with the prediction. The compute is reported as probe steps
(all seeds and attempts) over T.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from l2dynamics.analysis.intervals import seed_interval
from l2dynamics.analysis.peak import ESTIMATORS, estimate_peak, reaches_train_accuracy
from l2dynamics.analysis.tstar import c_eta_of
from l2dynamics.config import Config, make_config
from l2dynamics.errors import ConfigError
from l2dynamics.train import Trainer
from l2dynamics.train.clock import effective_time, momentum_divisor, physical_time


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
    interval_method: str = ""  # "t-interval" (≥ 3 usable seeds), "seed range" (2), "single seed"
    seeds: int = 0  # usable probe seeds behind t*_ref and the interval
    probe_schedule: str = ""  # the probe's learning rate in words (the schedule's initial η)


def predict_lambda(config: Config | dict[str, Any], budget: int, *, lam_ref: float | None = None,
                   probe_k: float = 4.0, seeds: Sequence[int] = (0, 1, 2),
                   estimator: str = "onset", train_threshold: float = 0.99,
                   step_down: float = 4.0, max_attempts: int = 4, early_stop: bool = True,
                   max_probe_steps: int | None = None,
                   progress: Callable[[str], None] | None = None) -> LambdaPrediction:
    """Predict the best λ for `budget` steps of `config` from short probe runs.

    `lam_ref` defaults to the λ whose probe of ``probe_k/(η·λ)`` steps is 1/20 of the budget.
    A probe runs to ``probe_k/(η·λ_ref)`` steps (λ·η·t = probe_k, past the plateau for the
    c·η ≈ 3 measured on MNIST-1D) at the schedule's *initial* η — the config's warm-up, then
    constant ``lr``; a step/cosine schedule is not squeezed into the probe
    (:func:`probe_config`) — while Φ_full(T) lays the schedule out over the budget
    (:func:`full_run_time`). The interval is the small-sample seed interval of t*_ref
    (``interval_method``, ``seeds``). If any seed does not reach `train_threshold` training
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
    phi_full = full_run_time(cfg, budget)
    lam = lam_ref if lam_ref is not None else 20.0 * probe_k / (cfg.lr * budget)
    if not (math.isfinite(lam) and lam > 0):
        raise ConfigError(f"lam_ref must be a finite number > 0, got {lam!r}")
    cap = budget if max_probe_steps is None else max_probe_steps
    if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
        raise ConfigError(f"max_probe_steps must be an integer ≥ 1, got {max_probe_steps!r}")
    attempts: list[ProbeAttempt] = []
    capped = False
    for _ in range(max_attempts):
        steps = probe_length(cfg, lam, probe_k)
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
              "attempts": attempts, "lam_ref": last.lam,
              "probe_schedule": describe_probe_schedule(cfg)}
    failure = _failure(last, capped, cap, train_threshold, probe_k)
    if failure is not None:
        nan = math.nan
        return LambdaPrediction(False, nan, nan, nan, tstar_ref=nan, c_eta=nan, **common,
                                message=failure)
    usable = [t for t, c in zip(last.tstars, last.censored, strict=True) if not c]
    interval = seed_interval(usable, level=0.95)
    probe = probe_config(cfg, last.lam, last.steps)

    def c_eta_at(t: float) -> float:  # c·η = λ_ref·Φ_probe(t*), t* rounded to whole steps, ≥ 0
        return c_eta_of(last.lam, physical_time(probe, max(0, round(t))), probe.momentum,
                        probe.optimizer)

    return LambdaPrediction(True, c_eta_at(interval.mean) / phi_full,
                            c_eta_at(interval.low) / phi_full, c_eta_at(interval.high) / phi_full,
                            tstar_ref=interval.mean, c_eta=c_eta_at(interval.mean), **common,
                            interval_method=interval.method, seeds=interval.n)


def _failure(last: ProbeAttempt, capped: bool, cap: int, train_threshold: float,
             probe_k: float) -> str | None:
    """Why the last probe gives no prediction (what to try instead), or None if it does."""
    if not all(last.fits_train) and capped:
        return (f"the probe under-fits at every λ whose probe is shorter than {cap} steps "
                f"(down to {last.lam:.3g}): the best λ for this budget is near the largest λ "
                f"that fits the training data, so a probe would cost more than the run; try a "
                f"short grid just below {last.lam:.3g} instead")
    if not all(last.fits_train):
        return (f"the probe under-fits at every λ tried (down to {last.lam:.3g}): the network "
                f"does not reach train accuracy {train_threshold:g}; use a larger model or a "
                f"smaller lam_ref")
    usable = [t for t, c in zip(last.tstars, last.censored, strict=True) if not c]
    if len(usable) < max(1, (len(last.tstars) + 1) // 2):
        return (f"no usable t* in the probe at λ={last.lam:.3g}: the accuracy had not peaked "
                f"or plateaued within λ·η·t = {probe_k:g}; try a larger probe_k or estimator "
                f"'onset'")
    return None


def full_run_time(cfg: Config, budget: int) -> float:
    """Φ_full(T): the effective time of `cfg` run for ``steps = budget`` — its schedule laid out
    over the budget (milestones at fractions of T, cosine over T), not over ``cfg.steps``."""
    _check_budget(budget)
    if budget <= cfg.warmup_steps:
        raise ConfigError(f"budget={budget} must be longer than the warm-up "
                          f"(warmup_steps={cfg.warmup_steps})")
    return effective_time(cfg.replace(steps=budget), budget)


def probe_config(cfg: Config, lam: float, steps: int, seed: int | None = None) -> Config:
    """The probe run of `cfg` at λ = `lam` for `steps` steps: the schedule's initial η (the
    config's warm-up, then constant ``lr``; no step/cosine decay squeezed into the probe),
    constant λ, a denser evaluation clock."""
    changes: dict[str, Any] = {} if seed is None else {
        "seed": int(seed), "name": f"probe λ={lam:.3g} seed={seed}"}
    return cfg.replace(lam=lam, steps=steps, lam_schedule="constant", lr_schedule="constant",
                       eval_per_decade=max(cfg.eval_per_decade, 20), **changes)


def probe_length(cfg: Config, lam: float, probe_k: float) -> int:
    """Steps for a probe at `lam` to reach λ·Σηₜ = `probe_k` (λ·η·t = probe_k at constant η;
    a warm-up of W steps adds (W − 1)/2 steps), at least 10 and past the warm-up."""
    warm = cfg.warmup_steps
    extra = (warm - 1) / 2 if warm else 0.0
    return max(10, warm + 1, math.ceil(probe_k / (cfg.lr * lam) + extra))


def describe_probe_schedule(cfg: Config) -> str:
    """The probe's learning rate in words, for reports."""
    warm = f" after a {cfg.warmup_steps}-step warm-up" if cfg.warmup_steps else ""
    note = ("" if cfg.lr_schedule == "constant" else
            f" (the initial η of the run's {cfg.lr_schedule} schedule, which the probe does "
            f"not follow)")
    return f"constant η = {cfg.lr:g}{warm}{note}"


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
        probe = probe_config(cfg, lam, steps, seed)
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
    instead of measured; Φ(T) is that of the run with ``steps = budget``
    (:func:`full_run_time`: a learning-rate schedule is laid out over the budget). Their paper
    gives a range (τ between one epoch and the whole run), not a fraction; 0.25 (c·η = 4) is
    our choice, stated wherever the baseline is reported."""
    cfg = make_config(config)
    _check_budget(budget)
    if not (isinstance(fraction, (int, float)) and math.isfinite(fraction)
            and 0 < fraction <= 1):
        raise ConfigError(f"fraction must be a number in (0, 1], got {fraction!r}")
    return 1.0 / (fraction * full_run_time(cfg, budget))
