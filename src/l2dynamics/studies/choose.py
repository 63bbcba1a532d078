"""``choose_lambda``: the λ for a budget of T steps, from the dynamics of L2 where its premise
holds and from a plateau-aware search where it does not.

Units: λ is the paper's (loss + λ/2·‖θ‖²); time in optimizer steps; Φ(T) is the effective time
of the budget (Σ η_t/(1 − μ), :func:`~l2dynamics.studies.predict.full_run_time`), so
x = λ·Φ(T) is the number of relaxation times 1/(η·λ) in the budget.

What a run at λ does, and what the selector uses of it: after ≈ c/(η·λ) steps its accuracy
reaches the plateau L2 allows (t* ≈ c/λ, Lewkowycz & Gur-Ari), so a run whose λ is large
enough to reach that plateau early can be *stopped* there — its accuracy at the plateau is
its accuracy at T. Only λ with x ≲ :data:`PLATEAU_K` need full-length runs.

1. **Probes** (one batch, vectorized where the engine can): λ = 0 for the full budget, and
   three λ whose plateau is reached at T/32, T/8 and T/2 (λ·Φ(s) = :data:`PLATEAU_K`).
2. **The premise check** (:class:`PremiseCheck`): do at least two probes fit their training
   data (training accuracy ≥ ``train_threshold``) by their t* (the plateau onset of the
   selection metric), and do their c = λ·Φ(t*) agree within a factor
   :data:`C_AGREEMENT`? That is the t* ∝ 1/λ law the one-short-run prediction rests on.
   The recorded regime map (study ``regime``, ``regime_note``) is cited beside it; where the
   map's verdicts are separated by parameters per training example and this config lies on
   the side where the law failed (``regime_side``), the premise fails whatever the probes
   say. Where the map draws no boundary, the probes decide, and the reason says so.
3. **Prediction** where it holds: λ_pred = ĉ/Φ(T) (ĉ the geometric mean of the probes' c,
   the interval from their range), one full run at λ_pred.
   **Search** where it does not: a full run at x = PLATEAU_K (the smallest λ that plateaus
   within T), then one more λ next to the best so far (x/4 below it if a full-length λ leads,
   the geometric midpoint towards the full-length λ if a probe leads).
4. The best measured λ (selection metric: ``val_acc`` when the config holds out a validation
   set, see the ``n_val`` key; the selector holds one out itself otherwise) is run to T if it
   was a stopped probe; the choice is then the best *full-length* run, so a plateau estimate
   that fails at T (accuracy that peaks and then collapses, as under MSE) cannot win on its
   estimate. Its interval is the span of the λ whose accuracy lies within the evaluation
   noise of the best (prediction: the c range). The premise is checked again on every run
   with λ > 0 (``premise_all``), which tells whether the t* law showed at smaller λ than the
   probes'.

"λ hardly matters" is said when the best beats λ = 0 by less than the evaluation noise,
2·√(2·p(1−p)/n) for n validation examples (seed-to-seed noise is not measured from one seed).
Compute is every optimizer step run (the final full run included) and the wall time.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from l2dynamics.analysis.peak import estimate_peak
from l2dynamics.config import Config, make_config
from l2dynamics.errors import ConfigError
from l2dynamics.studies.predict import full_run_time
from l2dynamics.train.clock import effective_time

PLATEAU_K = 6.0  # relaxation times λ·Φ(s) a stopped probe runs (c·η ≈ 1–3 measured so far)
PROBE_FRACTIONS = (1 / 32, 1 / 8, 1 / 2)  # probe lengths as fractions of the budget
C_AGREEMENT = 2.0  # the largest max/min ratio of the probes' c for the t* law to count
EVALS_PER_RUN = 24  # linear evaluations over a full-length run (plus the log clock)
PLATEAU_WINDOW = 1 / 3  # a stopped probe's accuracy: the mean over this last share of it


@dataclass
class Candidate:
    """One run the selector made: λ, its length, its accuracy estimate and its fit."""

    lam: float
    steps: int
    full: bool  # ran the whole budget (its accuracy is the final one, not a plateau mean)
    role: str  # "λ = 0", "probe", "prediction", "search", "final"
    acc: float  # selection metric: final (full runs) or plateau mean (stopped probes)
    train_acc_max: float
    fits: bool  # training accuracy reached the threshold by t*
    tstar: float  # plateau onset of the selection metric (steps)
    c: float  # λ·Φ(t*), NaN for λ = 0
    run_id: int = -1
    test_acc: float = math.nan  # the test accuracy at the run's last step (reporting only)


@dataclass
class PremiseCheck:
    """Does the t* ∝ 1/λ law hold on the probes? (see the module docstring, step 2)"""

    holds: bool
    fitting_probes: int
    c_values: list[float]
    c_spread: float  # max/min of the fitting probes' c (NaN with < 2)
    reason: str


@dataclass
class LambdaChoice:
    """The chosen λ, why, what it is expected to give, and what choosing it cost."""

    lam: float
    lam_low: float
    lam_high: float
    expected_acc: float  # the selection metric at T of the run at λ
    lam0_acc: float  # the same for λ = 0
    noise: float  # the evaluation-noise band used for "within the noise"
    matters: bool  # best − λ = 0 exceeds the noise
    route: str  # "prediction" | "search"
    metric: str  # "val_acc" (a validation split) | "test_acc"
    premise: PremiseCheck
    premise_all: PremiseCheck  # the same check on every run with λ > 0 (probes and search)
    budget: int
    compute_steps: int  # optimizer steps of every run, the final one included
    wall_seconds: float
    candidates: list[Candidate] = field(default_factory=list)
    message: str = ""
    regime: str = ""  # what the recorded regime map says about this config (study `regime`)

    @property
    def compute_runs(self) -> float:
        """Compute in full runs of the budget."""
        return self.compute_steps / self.budget

    @property
    def final(self) -> Candidate:
        """The full-length run at the chosen λ."""
        return next(c for c in self.candidates if c.full and c.lam == self.lam)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["compute_runs"] = self.compute_runs
        return out


def choose_lambda(config: Config | dict[str, Any], budget: int, *,
                  store: str | Path | None = None, workers: int = 1,
                  train_threshold: float = 0.99,
                  log: Callable[[str], None] | None = None) -> LambdaChoice:
    """The λ for `budget` steps of `config` (its seed), by the route its premise check allows.

    Runs go through the run store `store` (default: a temporary one), so a repeated call is
    read back instead of retrained. Without a validation split in `config` (``n_val`` = 0),
    half the test pool is held out for selection. Classification only."""
    cfg = with_validation(make_config(config))
    phi = full_run_time(cfg, budget)
    say = log or (lambda msg: None)
    root = Path(store) if store is not None else Path(tempfile.mkdtemp()) / "choose.sqlite"
    runner = _Runs(cfg, budget, phi, root, workers, train_threshold, say)

    say(f"probes: λ = 0 for {budget} steps and 3 stopped probes")
    probes = [PLATEAU_K / effective_time(cfg, max(1, round(f * budget)))
              for f in PROBE_FRACTIONS]
    runner.run([(0.0, "λ = 0"), *[(lam, "probe") for lam in probes]])
    premise = check_premise(runner.by_role("probe"))
    from l2dynamics.studies.study_regime import regime_note, regime_side

    regime = regime_note(cfg)  # the premise check cites the recorded map beside the probes
    premise.reason += f". Regime map: {regime}"
    side = regime_side(cfg)
    if premise.holds and side == "failing":
        premise.holds = False  # the map measured the law failing where this config lies
        premise.reason += (" The probes agree, but the map puts this config where t* ∝ 1/λ "
                           "failed: the one-short-run prediction is not used")
    elif side is None:
        premise.reason += " (the map draws no boundary: the probes decide)"
    say(f"premise: {premise.reason}")
    if premise.holds:
        c_hat = math.exp(float(np.mean(np.log(premise.c_values))))
        lam_pred = c_hat / phi
        runner.run([(lam_pred, "prediction")])
        route, interval = "prediction", (min(premise.c_values) / phi,
                                         max(premise.c_values) / phi)
    else:
        route = "search"
        runner.run([(PLATEAU_K / phi, "search")])
        runner.run([(_next_search_lam(runner.candidates, phi), "search")])
        interval = None
    best = max(runner.candidates, key=lambda c: c.acc)
    if not best.full:
        runner.run([(best.lam, "final")])
    # the choice is the best *full-length* run: a plateau estimate that does not hold at T
    # (accuracy that peaks and then collapses, as under MSE) is not trusted over a measurement
    chosen = max((c for c in runner.candidates if c.full), key=lambda c: c.acc)
    every = check_premise([c for c in runner.candidates if c.lam > 0 and c.role != "final"])
    choice = _assemble(runner, chosen.lam, route, interval, premise, every)
    choice.regime = regime
    return choice


class _Runs:
    """The selector's runs through the store, with their accuracy estimates and cost."""

    def __init__(self, cfg: Config, budget: int, phi: float, store: Path, workers: int,
                 threshold: float, log: Callable[[str], None]):
        self.cfg, self.budget, self.phi, self.store = cfg, budget, phi, store
        self.workers, self.threshold, self.log = workers, threshold, log
        self.candidates: list[Candidate] = []
        self.steps = 0
        self.wall = 0.0

    def config(self, lam: float) -> Config:
        steps = self.budget
        if lam > 0:
            steps = min(self.budget, _plateau_steps(self.cfg, lam, self.budget))
        # one evaluation clock for every run (linear every T/EVALS_PER_RUN steps, plus the
        # config's log clock, dense early where short probes live), so that runs differing
        # only in λ and length can train as one vectorized ensemble
        return self.cfg.replace(lam=float(lam), steps=steps,
                                eval_every=max(1, self.budget // EVALS_PER_RUN))

    def run(self, todo: list[tuple[float, str]]) -> None:
        from l2dynamics.studies.runs import train_through_store

        cfgs = [self.config(lam) for lam, _ in todo]
        t0 = time.perf_counter()
        runs = train_through_store(cfgs, self.store, workers=self.workers,
                                   names=["val_acc", "test_acc", "train_acc"],
                                   log=lambda line: self.log(f"  {line}"))
        self.wall += time.perf_counter() - t0
        if any("val_acc" not in run.history for run in runs):
            raise ConfigError("choose needs a classification task (it selects on validation "
                              f"accuracy); {self.cfg.dataset} with loss {self.cfg.loss!r} "
                              "records no accuracy")
        for (lam, role), run in zip(todo, runs, strict=True):
            cand = self._candidate(lam, role, run)
            self.steps += cand.steps
            self.candidates.append(cand)
            self.log(f"  {role}: λ = {lam:.3g}, {cand.steps} steps, val acc {cand.acc:.4f}"
                     f"{'' if cand.full else ' (plateau)'}, fits: {cand.fits}")

    def _candidate(self, lam: float, role: str, run: Any) -> Candidate:
        hist = run.history.dropna(subset=["val_acc"])
        steps_run = int(run.config.steps)
        full = steps_run >= self.budget
        s, acc = hist["step"].to_numpy(float), hist["val_acc"].to_numpy(float)
        train = hist["train_acc"].to_numpy(float)
        if run.status != "finished" or not len(acc):
            return Candidate(lam, steps_run, full, role, 0.0, 0.0, False, math.nan, math.nan,
                             run.run_id)
        est = acc[-1] if full else float(np.mean(acc[s >= (1 - PLATEAU_WINDOW) * s[-1]]))
        tstar = estimate_peak(s, acc).onset
        fits = bool(np.nanmax(train[s <= tstar], initial=0.0) >= self.threshold)
        c = lam * effective_time(self.cfg, max(1, int(tstar))) if lam > 0 else math.nan
        test = hist["test_acc"].to_numpy(float)
        return Candidate(lam, steps_run, full, role, float(est), float(np.nanmax(train)), fits,
                         float(tstar), float(c), run.run_id, float(test[-1]))

    def by_role(self, role: str) -> list[Candidate]:
        return [c for c in self.candidates if c.role == role]


def _plateau_steps(cfg: Config, lam: float, budget: int) -> int:
    """The first step s ≤ budget with λ·Φ(s) ≥ PLATEAU_K (the budget if none)."""
    lo, hi = 1, budget
    if lam * effective_time(cfg, budget) < PLATEAU_K:
        return budget
    while lo < hi:
        mid = (lo + hi) // 2
        if lam * effective_time(cfg, mid) >= PLATEAU_K:
            hi = mid
        else:
            lo = mid + 1
    return max(lo, 10)


def check_premise(probes: list[Candidate]) -> PremiseCheck:
    """The t* law's premise on the stopped probes (module docstring, step 2)."""
    fitting = [p for p in probes if p.fits and math.isfinite(p.c) and p.c > 0]
    cs = [p.c for p in fitting]
    spread = max(cs) / min(cs) if len(cs) >= 2 else math.nan
    n = len(probes)
    if len(cs) < 2:
        unfit = ", ".join(f"λ = {p.lam:.3g} (best training accuracy {p.train_acc_max:.3f})"
                          for p in probes if not p.fits)
        return PremiseCheck(False, len(cs), cs, spread,
                            f"only {len(cs)} of {n} probes fit their training data by their "
                            f"t*; not fitting: {unfit}: the t* law's premise (an "
                            "over-parameterized network that fits first) fails here")
    if spread > C_AGREEMENT:
        return PremiseCheck(False, len(cs), cs, spread,
                            f"{len(cs)} of {n} probes fit, but their c = λ·Φ(t*) span "
                            f"{min(cs):.3g}–{max(cs):.3g} (×{spread:.2f} > ×{C_AGREEMENT:g}): "
                            "t* does not scale as 1/λ here")
    return PremiseCheck(True, len(cs), cs, spread,
                        f"{len(cs)} of {n} probes fit their training data by t*, and their "
                        f"c = λ·Φ(t*) agree ({min(cs):.3g}–{max(cs):.3g}, ×{spread:.2f}): "
                        "the t* ∝ 1/λ law applies")


def _next_search_lam(cands: list[Candidate], phi: float) -> float:
    """The search's last λ: next to the best so far (module docstring, step 3)."""
    best = max(cands, key=lambda c: c.acc)
    if best.full:  # λ = 0 or the x = PLATEAU_K run leads: look a factor 4 below the latter
        return PLATEAU_K / phi / 4
    smaller = [c.lam for c in cands if 0 < c.lam < best.lam]
    return math.sqrt(best.lam * max(smaller)) if smaller else best.lam / 2


def _noise(acc: float, n: int) -> float:
    p = min(max(acc, 0.0), 1.0)
    return 2.0 * math.sqrt(2.0 * p * (1 - p) / max(n, 1))


def _assemble(runner: _Runs, lam: float, route: str, interval: tuple[float, float] | None,
              premise: PremiseCheck, premise_all: PremiseCheck) -> LambdaChoice:
    cands = runner.candidates
    final = next(c for c in cands if c.full and c.lam == lam)
    lam0 = next(c for c in cands if c.lam == 0.0)
    noise = _noise(final.acc, runner.cfg.n_val)
    best_est = max(c.acc for c in cands)
    if interval is None:
        near = [c.lam for c in cands if c.acc >= best_est - noise]
        interval = (min(near), max(near))
    matters = final.acc - lam0.acc > noise
    gain = 100 * (final.acc - lam0.acc)
    if matters:
        message = (f"λ = {lam:.3g} (by {route}; [{interval[0]:.3g}, {interval[1]:.3g}]) is "
                   f"expected to give {final.acc:.4f} at step {runner.budget}, {gain:.2f} "
                   f"points above λ = 0 (noise ±{100 * noise:.2f}).")
    else:
        message = (f"λ hardly matters on this task: the best λ ({lam:.3g}, by {route}) gives "
                   f"{final.acc:.4f} against {lam0.acc:.4f} at λ = 0 ({abs(gain):.2f} points "
                   f"{'above' if gain >= 0 else 'below'} it, "
                   f"within the evaluation noise ±{100 * noise:.2f}).")
    return LambdaChoice(lam, interval[0], interval[1], final.acc, lam0.acc, noise, matters,
                        route, "val_acc", premise, premise_all, runner.budget, runner.steps,
                        runner.wall,
                        list(cands), message)


SEARCH_X = (0.05, 64.0)  # relaxation times λ·Φ(T) a λ search spans without more knowledge


def lambda_search_space(config: Config | dict[str, Any], budget: int, *,
                        choice: LambdaChoice | None = None, widen: float = 4.0
                        ) -> tuple[float, float]:
    """A log-λ range for a search (Optuna or a grid) over a `budget`-step run of `config`.

    With a :class:`LambdaChoice` (from :func:`choose_lambda`): its interval widened by `widen`
    on each side. Without: what the dynamics allow, λ·Φ(T) from 0.05 (L2 barely acts within
    the budget) to 64 relaxation times (the plateau is reached in the first 1/10 of the run),
    Φ(T) the budget's effective time — the EMA rule's λ (4/Φ(T) at constant η) sits inside.
    """
    if not (isinstance(widen, (int, float)) and widen >= 1):
        raise ConfigError(f"widen must be a number ≥ 1, got {widen!r}")
    if choice is not None:
        low = choice.lam_low if choice.lam_low > 0 else choice.lam_high / 16
        if low <= 0:
            phi = full_run_time(make_config(config), budget)
            return SEARCH_X[0] / phi, SEARCH_X[1] / phi
        return low / widen, max(choice.lam_high, low) * widen
    phi = full_run_time(make_config(config), budget)
    return SEARCH_X[0] / phi, SEARCH_X[1] / phi


def suggest_lambda(trial: Any, config: Config | dict[str, Any], budget: int, *,
                   choice: LambdaChoice | None = None, name: str = "lam") -> float:
    """``trial.suggest_float(name, low, high, log=True)`` over :func:`lambda_search_space`:
    λ for one trial of a user's own Optuna study."""
    low, high = lambda_search_space(config, budget, choice=choice)
    return trial.suggest_float(name, low, high, log=True)


def with_validation(cfg: Config) -> Config:
    """`cfg`, with half its test pool held out for selection if it holds none out."""
    if cfg.n_val > 0:
        return cfg
    n_test = cfg.n_test
    if n_test is None:
        from l2dynamics.data import load_dataset

        n_test = load_dataset(cfg.dataset, n_train=cfg.n_train, data_dir=cfg.data_dir,
                              seed=cfg.data_seed, **cfg.data_options).n_test
    if n_test < 2:
        raise ConfigError(f"choose needs a validation split and the test set has {n_test} "
                          "example(s); set n_test ≥ 2 or n_val")
    return cfg.replace(n_val=n_test // 2)


__all__ = ["C_AGREEMENT", "PLATEAU_K", "PROBE_FRACTIONS", "Candidate", "LambdaChoice",
           "PremiseCheck", "SEARCH_X", "check_premise", "choose_lambda", "lambda_search_space",
           "suggest_lambda", "with_validation"]
