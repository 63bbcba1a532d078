"""The tuning benchmark's searchers that spend compute adaptively: the λ selector
(:func:`~l2dynamics.studies.choose.choose_lambda`) and Optuna TPE with a pruner, at the
selector's compute (see :mod:`l2dynamics.studies.tuning` for the protocol).

Both select on the validation metric (``val_acc``, the task's ``n_val`` examples held out of the
test pool) and are reported by the test accuracy at T of the run at the λ they chose.

**Optuna with a pruner.** One TPE study per seed (sampler seeded by it), λ log-uniform over the
task's grid range, each trial a full-length run that reports ``val_acc`` at every evaluation
and is stopped when the pruner says so. Pruners, for budgets of a few runs:
``MedianPruner(n_startup_trials=2, n_warmup_steps=T/4)`` (λ acts late in a run, so an earlier
judgement compares noise; Optuna's default of 5 start-up trials would never prune within a
few runs) and
``HyperbandPruner(min_resource=T/27, max_resource=T, reduction_factor=3)``. A seed's study
gets exactly the steps the selector spent on that seed: trials start while steps are left, and
the last one is stopped when they run out (a stopped trial counts as pruned). Its choice is the
completed trial with the best final ``val_acc``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from l2dynamics.studies.tuning import MethodResult, TuningTask

PRUNERS = ("median", "hyperband")


def selector_method(task: TuningTask, store_path: str | Path, *, workers: int,
                    log: Callable[[str], None]) -> MethodResult:
    """:func:`choose_lambda` once per seed (each seed chooses on its own runs)."""
    from l2dynamics.studies.choose import choose_lambda
    from l2dynamics.studies.tuning import MethodResult

    choices = []
    for seed in task.seeds:
        log(f"[{task.name}] selector, seed {seed}")
        choice = choose_lambda(task.config(0.0, seed), task.budget, store=store_path,
                               workers=workers, log=lambda m: log(f"  {m}"))
        log(f"  {choice.message}")
        choices.append(choice)
    return MethodResult(
        "selector (choose_lambda)", [c.lam for c in choices],
        [c.final.test_acc for c in choices], float(sum(c.compute_steps for c in choices)),
        extra={"wall_seconds": sum(c.wall_seconds for c in choices),
               "steps_per_seed": [c.compute_steps for c in choices],
               "routes": [c.route for c in choices], "matters": [c.matters for c in choices],
               "messages": [c.message for c in choices],
               "premise": [c.premise.reason for c in choices],
               "premise_all": [c.premise_all.reason for c in choices],
               "intervals": [[c.lam_low, c.lam_high] for c in choices],
               "expected_val": [c.expected_acc for c in choices],
               "candidates": [[_candidate_row(x) for x in c.candidates] for c in choices]})


def _candidate_row(c: Any) -> dict[str, Any]:
    return {"lam": c.lam, "steps": c.steps, "role": c.role, "val": c.acc, "fits": c.fits,
            "tstar": c.tstar, "c": c.c, "test": c.test_acc}


def optuna_pruned(task: TuningTask, pruner: str, steps_per_seed: Sequence[int], *,
                  workers: int, cache_dir: str | Path | None,
                  log: Callable[[str], None]) -> MethodResult:
    """Optuna TPE with `pruner` ("median" | "hyperband"), one study per seed, each with the
    steps of `steps_per_seed` (the module docstring); cached in `cache_dir` by design."""
    from l2dynamics.studies.tuning import MethodResult

    if pruner not in PRUNERS:
        raise ValueError(f"pruner must be one of {PRUNERS}, got {pruner!r}")
    key = json.dumps({"base": task.base, "budget": task.budget, "grid": list(task.grid),
                      "evals": task.evals, "pruner": pruner, "seeds": list(task.seeds),
                      "steps": [int(s) for s in steps_per_seed]}, sort_keys=True)
    path = (Path(cache_dir) / f"{task.name}_optuna_{pruner}.json") if cache_dir else None
    seeds = None
    if path is not None and path.is_file() and json.loads(path.read_text())["key"] == key:
        seeds = json.loads(path.read_text())["seeds"]
    if seeds is None:
        log(f"[{task.name}] Optuna TPE + {pruner} pruner, steps per seed {list(steps_per_seed)}")
        jobs = [(task, int(s), pruner, int(b)) for s, b in zip(task.seeds, steps_per_seed,
                                                                  strict=True)]
        with ProcessPoolExecutor(max_workers=max(1, min(workers, len(jobs)))) as pool:
            seeds = list(pool.map(_optuna_seed, *zip(*jobs, strict=True)))
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"key": key, "seeds": seeds}))
    return MethodResult(
        f"Optuna TPE + {pruner} pruner (selector's compute)", [s["lam"] for s in seeds],
        [s["test"] for s in seeds], float(sum(s["steps"] for s in seeds)),
        extra={"wall_seconds": sum(s["wall_seconds"] for s in seeds),
               "trials": [s["trials"] for s in seeds],
               "completed": [sum(t["state"] == "complete" for t in s["trials"]) for s in seeds]})


def make_pruner(name: str, budget: int) -> Any:
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=budget // 4)
    return optuna.pruners.HyperbandPruner(min_resource=max(1, budget // 27),
                                          max_resource=budget, reduction_factor=3)


def _optuna_seed(task: TuningTask, seed: int, pruner: str, steps: int) -> dict[str, Any]:
    """One seed's Optuna study within `steps` optimizer steps (runs in a worker process)."""
    import optuna
    import torch

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    t0 = time.perf_counter()
    study = optuna.create_study(direction="maximize", pruner=make_pruner(pruner, task.budget),
                                sampler=optuna.samplers.TPESampler(seed=seed))
    low, high = min(task.grid), max(task.grid)
    spent, trials = 0, []
    while spent < steps:
        trial = study.ask()
        lam = trial.suggest_float("lam", low, high, log=True)
        out = _trial_run(task.config(lam, seed), trial, min(task.budget, steps - spent))
        spent += out["steps"]
        if out["state"] == "complete":
            study.tell(trial, out["val"])
        else:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        trials.append({"lam": lam, **out})
    done = [t for t in trials if t["state"] == "complete"]
    best = max(done, key=lambda t: t["val"]) if done else {"lam": math.nan, "test": 0.0}
    return {"lam": best["lam"], "test": best["test"], "steps": spent, "trials": trials,
            "wall_seconds": time.perf_counter() - t0}


def _trial_run(cfg: Any, trial: Any, cap: int) -> dict[str, Any]:
    """Train `cfg`, reporting val_acc to `trial`; stop when pruned or after `cap` steps."""
    from l2dynamics.train import Trainer

    trainer = Trainer(cfg)
    why = {"stop": ""}

    def progress(step: int, total: int, metrics: Any) -> None:
        if metrics is not None and "val_acc" in metrics and step > 0:
            trial.report(float(metrics["val_acc"]), step)
            if trial.should_prune():
                why["stop"] = "pruned"
                trainer.request_stop()
        if step >= cap and cap < cfg.steps:
            why["stop"] = why["stop"] or "out of budget"
            trainer.request_stop()

    trainer.progress = progress
    result = trainer.run()
    if result.status != "finished":
        state = "pruned" if why["stop"] or result.status == "interrupted" else result.status
        return {"state": state, "why": why["stop"] or result.status,
                "steps": int(result.steps_done), "val": math.nan, "test": math.nan}
    hist = result.history.dropna(subset=["val_acc"])
    return {"state": "complete", "why": "", "steps": int(result.steps_done),
            "val": float(hist["val_acc"].iloc[-1]), "test": float(hist["test_acc"].iloc[-1])}


__all__ = ["PRUNERS", "make_pruner", "optuna_pruned", "selector_method"]
