"""Choosing λ for a fixed budget: grid search, the λ selector, the one-short-run prediction,
Optuna with pruning, the EMA-timescale rule, and AutoL2 — the comparison a user needs before
trusting any of them.

For one :class:`TuningTask` (a base config, a budget of T optimizer steps, a λ grid, seeds):

- **selection and report.** When the base config holds out a validation set (``n_val`` > 0,
  carved from the test pool), every method that selects λ selects on the final ``val_acc``
  and is reported by the final ``test_acc`` of the run at its λ; without one (the mini suite's
  designs) the test set both selects and reports, which favours the grid and Optuna.
- **grid**: full T-step runs at λ = 0 and every grid λ, every seed. Its choice: the best mean
  final selection metric; the target is that λ's mean final test accuracy.
- **selector** (:func:`~l2dynamics.studies.choose.choose_lambda`, per seed) and **Optuna TPE
  with a median or Hyperband pruner** at the selector's compute
  (:mod:`l2dynamics.studies.tuning_search`).
- **prediction** (:func:`~l2dynamics.studies.predict.predict_lambda`): probes, then full runs at
  λ_pred. Its compute is the probe steps; a user also pays one final run.
- **EMA rule** (:func:`~l2dynamics.studies.predict.ema_timescale_lambda`): zero-cost λ.
- **AutoL2 variants** (:data:`AUTOL2_VARIANTS`): final accuracy, and the steps needed to reach
  the best constant λ's mean final accuracy, against the steps the best constant needs.

Compute is counted in optimizer steps of the same model (probe steps included as run) and in
wall seconds of each method's runs on this machine. Every grid, prediction and selector run
goes through the one training loop and the store, so an interrupted benchmark resumes where it
stopped (Optuna's studies are cached per task once finished).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from l2dynamics.config import Config, make_config
from l2dynamics.studies.predict import (
    LambdaPrediction,
    effective_time,
    ema_timescale_lambda,
    predict_lambda,
)

# name → predict_lambda options; the first is the default predictor (its cost sets Optuna's
# budget, its λ_pred the AutoL2 floor and the Φ check)
PREDICTORS: dict[str, dict[str, Any]] = {
    "prediction λ_pred": {},
    "prediction λ_pred (probe_k=8)": {"probe_k": 8.0},
}

# name → config overrides (λ₀ = 0.1 in our units unless a preset sets it; `floor` is filled
# with λ_pred when known). The first four start at λ₀ = 0.1 *ours* with refractory 0.1/λ: 20×
# away from the released code's constants (issue 19); the presets are those constants
# converted (released-code) and restated per-step (transfer).
AUTOL2_VARIANTS: dict[str, dict[str, Any]] = {
    "autol2 paper (refractory in steps)": {"autol2_refractory_unit": "steps"},
    "autol2 paper (refractory in η·λ epochs)": {"autol2_refractory_unit": "lr_lam_epochs"},
    "autol2 ema plateau (ours)": {"autol2_plateau": "ema"},
    "autol2 paper + floor λ_pred (ours)": {"autol2_refractory_unit": "steps", "floor": True},
    "autol2 released-code preset (λ₀ = 2, 2/λ steps)": {"autol2_preset": "released-code"},
    "autol2 transfer preset (η·λ₀ = 0.04, 0.04/(η·λ) steps)": {"autol2_preset": "transfer"},
}


@dataclass
class TuningTask:
    """A base config (flat keys), a budget T in optimizer steps, a λ grid (λ = 0 is added)."""

    name: str
    base: dict[str, Any]
    budget: int
    grid: Sequence[float]
    seeds: Sequence[int] = (0, 1, 2)
    evals: int = 30  # evaluations spread evenly over the run (plus the log clock)
    description: str = ""

    def config(self, lam: float = 0.0, seed: int = 0, **changes: Any) -> Config:
        return make_config(self.base, lam=lam, seed=seed, steps=self.budget,
                           eval_every=max(1, self.budget // self.evals), **changes)

    @property
    def lams(self) -> list[float]:
        return [0.0, *sorted(float(x) for x in self.grid)]

    @property
    def selection_metric(self) -> str:
        """``val_acc`` when the base config holds out a validation set, else ``test_acc``."""
        return "val_acc" if int(self.base.get("n_val", 0) or 0) > 0 else "test_acc"


@dataclass
class MethodResult:
    """Final test accuracies of one method (one per seed) and what choosing λ cost."""

    name: str
    lams: list[float]
    finals: list[float]
    select_steps: float  # optimizer steps spent choosing λ (not counting the final run)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def mean(self) -> float:
        return float(np.mean(self.finals)) if self.finals else math.nan

    @property
    def se(self) -> float:
        n = len(self.finals)
        return float(np.std(self.finals, ddof=1) / math.sqrt(n)) if n > 1 else math.nan

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "lams": self.lams, "finals": self.finals, "mean": self.mean,
                "se": self.se, "select_steps": self.select_steps, **self.extra}


class _Runner:
    """Trains configs through the store (resumable), reads back final accuracy and curves."""

    def __init__(self, store_path: str | Path, workers: int,
                 log: Callable[[str], None]):
        self.store_path, self.workers, self.log = Path(store_path), workers, log
        self.wall = 0.0  # seconds spent in run()

    def run(self, configs: Sequence[Config]) -> list[dict[str, Any]]:
        from l2dynamics.studies.runs import train_through_store

        t0 = time.perf_counter()
        runs = train_through_store(configs, self.store_path, workers=self.workers,
                                   names=["test_acc", "val_acc"],
                                   log=lambda msg: self.log(f"  {msg}"))
        self.wall += time.perf_counter() - t0
        out = []
        for run in runs:
            hist = run.history.dropna(subset=["test_acc"]) if "test_acc" in run.history \
                else run.history.iloc[:0]
            steps = hist["step"].to_numpy(int)
            acc = hist["test_acc"].to_numpy(float) if len(hist) else np.zeros(0)
            ok = run.status == "finished" and len(acc)
            final = float(acc[-1]) if ok else 0.0
            val = float(hist["val_acc"].iloc[-1]) if ok and "val_acc" in hist else final
            out.append({"lam": run.config.lam, "seed": run.config.seed, "final": final,
                        "val": val, "steps": steps, "acc": acc, "status": run.status,
                        "run_id": run.run_id})
        return out


def steps_to_reach(steps: np.ndarray, acc: np.ndarray, target: float) -> float:
    """First evaluated step whose test accuracy is ≥ `target` (NaN if never)."""
    hit = np.nonzero(np.asarray(acc) >= target)[0]
    return float(np.asarray(steps)[hit[0]]) if hit.size else math.nan


def run_tuning_task(task: TuningTask, store_path: str | Path, *, workers: int = 2,
                    use_optuna: bool = True, autol2_variants: dict[str, dict] | None = None,
                    predictors: dict[str, dict] | None = None,
                    ema_fraction: float = 0.25, cache_dir: str | Path | None = None,
                    use_selector: bool = False, pruners: Sequence[str] = (),
                    log: Callable[[str], None] = print) -> dict[str, Any]:
    """Every method of the module docstring on `task`; a JSON-ready dict of the results.
    `use_optuna`: TPE without a pruner at the prediction's cost; `use_selector`: the λ
    selector, then Optuna TPE with each of `pruners` at the selector's compute."""
    runner = _Runner(store_path, workers, log)
    T, seeds = task.budget, list(task.seeds)
    variants = AUTOL2_VARIANTS if autol2_variants is None else autol2_variants
    predictors = PREDICTORS if predictors is None else predictors

    grid, by_lam, best = _grid_method(task, runner, log)
    methods: list[MethodResult] = [grid]
    predictions = {}
    for pname, options in predictors.items():
        log(f"[{task.name}] {pname}: short probes")
        pred, info = _cached_prediction(task, cache_dir, log, **options)
        predictions[pname] = info
        if pred.ok:
            wall = runner.wall
            runs = runner.run([task.config(pred.lam, s) for s in seeds])
            methods.append(MethodResult(pname, [pred.lam] * len(seeds),
                                        [r["final"] for r in runs], pred.probe_steps,
                                        extra={"interval": [pred.lam_low, pred.lam_high],
                                               "options": options,
                                               "wall_seconds": info.get("wall_seconds"),
                                               "final_runs_wall": runner.wall - wall}))
    prediction, pred_info = _cached_prediction(task, cache_dir, log,
                                               **predictors[next(iter(predictions))])

    lam_ema = ema_timescale_lambda(task.config(), T, fraction=ema_fraction)
    log(f"[{task.name}] EMA-timescale rule: λ = {lam_ema:.3g}")
    runs = runner.run([task.config(lam_ema, s) for s in seeds])
    methods.append(MethodResult(f"EMA rule (τ = {ema_fraction:g}·run)", [lam_ema] * len(seeds),
                                [r["final"] for r in runs], 0.0))

    if use_selector:
        from l2dynamics.studies.tuning_search import optuna_pruned, selector_method

        selector = selector_method(task, store_path, workers=workers, log=log)
        methods.append(selector)
        for pruner in pruners:
            methods.append(optuna_pruned(task, pruner, selector.extra["steps_per_seed"],
                                         workers=workers, cache_dir=cache_dir, log=log))
    if use_optuna:
        n_trials = max(1, round((prediction.probe_steps + T) / T))
        log(f"[{task.name}] Optuna TPE: {n_trials} full runs per seed (the prediction's cost)")
        methods.append(_optuna(task, runner, n_trials))

    target = best["mean"]
    methods += _autol2_methods(task, runner, variants, prediction, target, store_path, log)
    return {
        "task": task.name, "description": task.description, "budget": T, "seeds": seeds,
        "base": task.base, "grid_lams": task.lams, "selection_metric": task.selection_metric,
        "grid_seed_se": grid.se, "grid_wall_seconds": grid.extra["wall_seconds"],
        "target": target, "best_lam": best["lam"], "lam0_final": float(np.mean(
            [r["final"] for r in by_lam[0.0]])),
        "const_steps_to_target": [steps_to_reach(r["steps"], r["acc"], target)
                                  for r in by_lam[best["lam"]]],
        "const_curves": _curves(by_lam[best["lam"]]),
        "prediction": pred_info, "predictions": predictions, "lam_ema": lam_ema,
        "ema_fraction": ema_fraction,
        "methods": [m.to_dict() for m in methods],
    }


def _grid_method(task: TuningTask, runner: _Runner, log: Callable[[str], None]
                 ) -> tuple[MethodResult, dict[float, list[dict]], dict[str, Any]]:
    """The grid search: its method result, its runs by λ and its best row (highest mean)."""
    T, seeds = task.budget, list(task.seeds)
    log(f"[{task.name}] grid: {len(task.lams)} λ × {len(seeds)} seeds × {T} steps")
    grid_runs = runner.run([task.config(lam, s) for lam in task.lams for s in seeds])
    by_lam: dict[float, list[dict]] = {}
    for r in grid_runs:
        by_lam.setdefault(r["lam"], []).append(r)
    grid_rows = []
    for lam, runs in by_lam.items():
        finals = [r["final"] for r in runs]
        grid_rows.append({"lam": lam, "finals": finals, "mean": float(np.mean(finals)),
                          "se": float(np.std(finals, ddof=1) / math.sqrt(len(finals)))
                          if len(finals) > 1 else math.nan,
                          "val_mean": float(np.mean([r["val"] for r in runs]))})
    best = max(grid_rows, key=lambda row: row["val_mean"])  # selected on val_acc if held out
    grid_steps_per_seed = len(task.lams) * T
    grid = MethodResult("grid best", [best["lam"]] * len(seeds), best["finals"],
                        select_steps=grid_steps_per_seed * len(seeds),
                        extra={"table": grid_rows, "steps_per_seed": grid_steps_per_seed,
                               "selection_metric": task.selection_metric,
                               "wall_seconds": runner.wall})
    return grid, by_lam, best


def _autol2_methods(task: TuningTask, runner: _Runner, variants: dict[str, dict],
                    prediction: LambdaPrediction, target: float, store_path: str | Path,
                    log: Callable[[str], None]) -> list[MethodResult]:
    """One result per AutoL2 variant (those with a λ_pred floor only when the prediction
    succeeded), with the steps each seed took to reach the grid's best accuracy `target`."""
    seeds = list(task.seeds)
    out = []
    for name, overrides in variants.items():
        overrides = dict(overrides)
        if overrides.pop("floor", False):
            if not prediction.ok:
                continue
            overrides["autol2_min_lam"] = prediction.lam
        log(f"[{task.name}] {name}")
        lam0 = 0.1
        if overrides.get("autol2_preset", "none") != "none":  # the preset's λ₀ at this η
            from l2dynamics.config.autol2 import autol2_preset

            cfg = task.config(0.1, seeds[0])
            momentum = cfg.momentum if cfg.optimizer == "sgd" else 0.0
            lam0 = autol2_preset(overrides["autol2_preset"], cfg.lr, momentum)["lam0"]
        cfgs = [task.config(lam0, s, lam_schedule="autol2", **overrides) for s in seeds]
        runs = runner.run(cfgs)
        reach = [steps_to_reach(r["steps"], r["acc"], target) for r in runs]
        decays = _decays(store_path, [r["run_id"] for r in runs])
        out.append(MethodResult(name, [d[-1] if d else lam0 for d in decays],
                                [r["final"] for r in runs], 0.0,
                                extra={"steps_to_target": reach, "decay_lams": decays,
                                       "curves": _curves(runs)}))
    return out


def _curves(runs: Sequence[dict]) -> list[dict[str, list]]:
    return [{"steps": r["steps"].tolist(), "acc": r["acc"].tolist()} for r in runs]


def _decays(store_path: str | Path, ids: Sequence[int]) -> list[list[float]]:
    """λ after each decay of each AutoL2 run (from the stored summary)."""
    from l2dynamics.store import RunStore

    with RunStore(store_path) as store:
        out = []
        for rec in store.list_runs(ids=list(ids)):
            events = (rec.get("summary") or {}).get("lam_decays") or []
            out.append([float(e["lam_after"]) for e in events])
    return out


def _optuna(task: TuningTask, runner: _Runner, n_trials: int) -> MethodResult:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    low, high = min(task.grid), max(task.grid)
    finals, lams, all_trials = [], [], []
    for seed in task.seeds:
        study = optuna.create_study(direction="maximize",
                                    sampler=optuna.samplers.TPESampler(seed=int(seed)))

        tests: dict[int, float] = {}

        def objective(trial: Any, seed: int = int(seed), tests: dict = tests) -> float:
            lam = trial.suggest_float("lam", low, high, log=True)
            run = runner.run([task.config(lam, seed)])[0]
            tests[trial.number] = run["final"]
            return run["val"]

        study.optimize(objective, n_trials=n_trials)
        finals.append(float(tests[study.best_trial.number]))
        lams.append(float(study.best_params["lam"]))
        all_trials.append([float(t.params["lam"]) for t in study.trials])
    return MethodResult(f"Optuna TPE ({n_trials} runs)", lams, finals,
                        select_steps=n_trials * task.budget * len(task.seeds),
                        extra={"n_trials": n_trials, "trial_lams": all_trials,
                               "note": f"the test accuracy of the trial best by "
                                       f"{task.selection_metric}"})


# the version of predict_lambda's recipe: a cached prediction made by another recipe is redone
# (2: Φ of the full run at the budget's own schedule, constant-η probes, t-intervals)
PREDICTION_RECIPE = 2


def _cached_prediction(task: TuningTask, cache_dir: str | Path | None,
                       log: Callable[[str], None], **options: Any
                       ) -> tuple[LambdaPrediction, dict[str, Any]]:
    """predict_lambda for the task and its JSON form, cached (the probes take minutes)."""
    suffix = "".join(f"_{k}{v:g}" for k, v in sorted(options.items()))
    path = Path(cache_dir) / f"{task.name}_prediction{suffix}.json" if cache_dir else None
    key = json.dumps({"base": task.base, "budget": task.budget, "seeds": list(task.seeds),
                      "recipe": PREDICTION_RECIPE, **options}, sort_keys=True)
    if path is not None and path.is_file():
        data = json.loads(path.read_text())
        if data.get("key") == key:
            info = data["prediction"]
            fields_ = {k: v for k, v in info.items()
                       if k not in ("attempt_table", "wall_seconds")}
            return LambdaPrediction(**fields_, attempts=[]), info
    t0 = time.perf_counter()
    pred = predict_lambda(task.config(), task.budget, seeds=task.seeds, progress=log, **options)
    info = _prediction_dict(pred)
    info["wall_seconds"] = time.perf_counter() - t0
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"key": key, "prediction": info}))
        tmp.replace(path)
    return pred, info


def _prediction_dict(pred: LambdaPrediction) -> dict[str, Any]:
    table = [{"lam": a.lam, "steps": a.steps, "steps_done": a.steps_done, "tstars": a.tstars,
              "fits_train": a.fits_train, "censored": a.censored} for a in pred.attempts]
    return {"ok": pred.ok, "lam": pred.lam, "lam_low": pred.lam_low, "lam_high": pred.lam_high,
            "lam_ref": pred.lam_ref, "tstar_ref": pred.tstar_ref, "c_eta": pred.c_eta,
            "budget": pred.budget, "probe_steps": pred.probe_steps,
            "compute_fraction": pred.compute_fraction, "estimator": pred.estimator,
            "message": pred.message, "interval_method": pred.interval_method,
            "seeds": pred.seeds, "probe_schedule": pred.probe_schedule, "attempt_table": table}


SHIFTS = (0.5, 1.0, 2 ** 0.5, 2.0, 2 ** 1.5, 4.0, 10.0)


def curve_shift_rms(reference: Sequence[dict], case: Sequence[dict], lam_low: float,
                    lam_high: float, shifts: Sequence[float] = SHIFTS) -> dict[float, float]:
    """How far the case's accuracy-vs-λ curve is from the reference's moved right by s: the
    RMS over 11 log-spaced λ in [lam_low, lam_high] of acc_case(s·λ) − acc_ref(λ), both
    interpolated in log λ (rows: {"lam", "mean"}; λ = 0 ignored; s·λ beyond the case's grid
    is left out). The s with the smallest RMS is the measured shift of the whole curve, less
    noisy than a ratio of two argmaxes."""
    def xy(rows: Sequence[dict]) -> tuple[np.ndarray, np.ndarray]:
        rows = sorted((r for r in rows if r["lam"] > 0), key=lambda r: r["lam"])
        return np.log([r["lam"] for r in rows]), np.array([r["mean"] for r in rows])

    (rx, ry), (cx, cy) = xy(reference), xy(case)
    points = np.log(np.geomspace(lam_low, lam_high, 11))
    out = {}
    for shift in shifts:
        moved = points + math.log(shift)
        ok = (moved <= cx.max()) & (moved >= cx.min())
        diff = np.interp(moved[ok], cx, cy) - np.interp(points[ok], rx, ry)
        out[float(shift)] = float(np.sqrt(np.mean(diff ** 2))) if ok.any() else math.nan
    return out


def run_phi_experiment(task: TuningTask, prediction: dict[str, Any], store_path: str | Path, *,
                       reference_best: float, reference_rows: Sequence[dict] | None = None,
                       workers: int = 2,
                       log: Callable[[str], None] = print) -> dict[str, Any]:
    """Does Φ's handling of momentum and LR schedules matter the way
    :func:`~l2dynamics.studies.predict.effective_time` claims?

    The probe's c·η (measured at μ = 0, constant η) is carried to two other full runs of the
    same budget: heavy-ball μ = 0.9 with η/10 (same long-time step η/(1 − μ)), and a cosine
    learning-rate schedule. Φ says the best λ moves by Φ_ref(T)/Φ_case(T) (×1 for the momentum
    run, ×2 for cosine, whose Φ is half); the released code's c/(η·T), with η the run's base
    learning rate, says ×10 and ×1. Each case gets its own grid (the task's, extended by 2× and
    4× its largest λ, every seed), so its best λ is measured, and full runs at both predicted
    λ. With `reference_rows` (the reference grid), :func:`curve_shift_rms` also measures the
    shift of the rising side of the curve (from the smallest grid λ to the reference's best)."""
    c_eta, T = prediction["c_eta"], task.budget
    base = task.config()
    cases = {"momentum 0.9, η/10": {"momentum": 0.9, "lr": base.lr / 10},
             "cosine learning rate": {"lr_schedule": "cosine"}}
    runner = _Runner(store_path, workers, log)
    out = []
    for name, change in cases.items():
        cfg = task.config(**change)
        shift_phi = effective_time(base, T) / effective_time(cfg, T)
        shift_naive = base.lr / cfg.lr
        lam_phi, lam_naive = c_eta / effective_time(cfg, T), c_eta / (cfg.lr * T)
        log(f"[{task.name}] Φ check, {name}: grid, λ_Φ = {lam_phi:.3g}, naive {lam_naive:.3g}")
        grid = [*task.lams, 2 * max(task.lams), 4 * max(task.lams)]  # room for a shift up
        lams = [*grid, lam_phi, lam_naive]
        runs = runner.run([task.config(lam, s, **change) for lam in lams for s in task.seeds])
        table: dict[float, list[float]] = {}
        for r in runs:
            table.setdefault(r["lam"], []).append(r["final"])

        def row(lam: float, table: dict = table) -> dict[str, Any]:
            finals = table[lam]
            return {"lam": lam, "finals": finals, "mean": float(np.mean(finals)),
                    "se": float(np.std(finals, ddof=1) / math.sqrt(len(finals)))}

        grid_rows = [row(lam) for lam in grid]
        best = max(grid_rows, key=lambda r: r["mean"])
        shift_rms = (curve_shift_rms(reference_rows, grid_rows, min(task.grid), reference_best)
                     if reference_rows is not None and reference_best > min(task.grid) else {})
        fitted = min(shift_rms, key=shift_rms.get) if shift_rms else math.nan
        out.append({"case": name, "change": change, "phi": row(lam_phi),
                    "curve_shift_rms": {f"{k:.3g}": v for k, v in shift_rms.items()},
                    "curve_shift": fitted,
                    "naive": row(lam_naive), "grid": grid_rows, "best_lam": best["lam"],
                    "best_mean": best["mean"], "measured_shift": (best["lam"] / reference_best
                                       if reference_best > 0 and best["lam"] > 0 else math.nan),
                    "shift_phi": shift_phi, "shift_naive": shift_naive})
    return {"task": task.name, "c_eta": c_eta, "budget": T, "reference_best": reference_best,
            "cases": out}


def _geo_mean(lams: Sequence[float]) -> str:
    positive = [x for x in lams if x > 0]
    return f"{math.exp(np.mean(np.log(positive))):.3g}" if positive else "0"


def format_result(res: dict[str, Any]) -> str:
    """A plain-text table of one task's result (what the CLI and the benchmark print)."""
    grid = res["methods"][0]
    lines = [f"{res['task']}: T = {res['budget']} steps, seeds {res['seeds']}; grid best "
             f"λ = {res['best_lam']:.3g} ({grid['mean']:.4f}); λ = 0 gives "
             f"{res['lam0_final']:.4f}"]
    pred = res["prediction"]
    if pred["ok"]:
        lines.append(f"  λ_pred = {pred['lam']:.3g} [{pred['lam_low']:.3g}, "
                     f"{pred['lam_high']:.3g}] from λ_ref = {pred['lam_ref']:.3g}, c·η = "
                     f"{pred['c_eta']:.3g}; probe {pred['probe_steps']} steps = "
                     f"{pred['compute_fraction']:.2f} runs")
    else:
        lines.append(f"  no prediction: {pred['message']}")
    lines.append(f"  selected on {res.get('selection_metric', 'test_acc')}; reported: test "
                 "accuracy at T; gap = grid − method (positive: the method is worse); compute "
                 "as a share of the grid's, in steps and wall seconds")
    lines.append(f"  {'method':<46} {'λ (geo. mean)':>13} {'final test acc':>16} "
                 f"{'gap (pts)':>9} {'steps':>6} {'wall':>6}")
    grid_wall = grid.get("wall_seconds") or math.nan
    for m in res["methods"]:
        gap = 100 * (grid["mean"] - m["mean"])
        ratio = m["select_steps"] / grid["select_steps"]
        wall = (m.get("wall_seconds") or math.nan) / grid_wall
        lines.append(f"  {m['name']:<46} {_geo_mean(m['lams']):>13} {m['mean']:.4f} ± "
                     f"{m['se']:.4f} {gap:>9.2f} {ratio:>6.3f} {wall:>6.3f}")
        for message in m.get("messages", []):
            lines.append(f"      {message}")
    const = [x for x in res["const_steps_to_target"] if math.isfinite(x)]
    const_median = float(np.median(const)) if const else math.nan
    lines.append(f"  steps to reach the target {res['target']:.4f} (best constant's mean final "
                 f"accuracy); best constant: {res['const_steps_to_target']}")
    for m in res["methods"]:
        if "steps_to_target" in m:
            reached = [x for x in m["steps_to_target"] if math.isfinite(x)]
            ratio = (float(np.median(reached)) / const_median
                     if reached and math.isfinite(const_median) else math.nan)
            lines.append(f"    {m['name']:<42} {m['steps_to_target']} "
                         f"(median/constant's: {ratio:.2f}; final λ {m['lams']})")
    return "\n".join(lines)
