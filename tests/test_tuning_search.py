"""Optuna with a pruner at a given compute, and the selector as a tuning method: the steps add
up, a pruned trial stops where it was pruned, selection is on the validation split."""

import math

import pytest

from l2dynamics.config import make_config
from l2dynamics.studies.tuning import TuningTask
from l2dynamics.studies.tuning_search import _optuna_seed, _trial_run, make_pruner

BASE = {"dataset": "mnist1d", "n_train": 200, "n_test": 400, "n_val": 200, "model": "fc",
        "width": 8, "lr": 0.2, "batch_size": 64, "norms_per_tensor": False}
TASK = TuningTask("tiny", BASE, budget=120, grid=(1e-3, 1e-2, 1e-1), seeds=(0, 1), evals=6)


class FakeTrial:
    """Records the reports; prunes from the report at `prune_at` on."""

    def __init__(self, prune_at: float = math.inf):
        self.prune_at, self.reports = prune_at, []

    def report(self, value: float, step: int) -> None:
        self.reports.append((step, value))

    def should_prune(self) -> bool:
        return bool(self.reports) and self.reports[-1][0] >= self.prune_at


def test_trial_reports_val_acc_and_stops_when_pruned():
    cfg = make_config(BASE, steps=120, eval_every=20)
    full = _trial_run(cfg, FakeTrial(), cap=120)
    assert full["state"] == "complete" and full["steps"] == 120
    assert 0 <= full["val"] <= 1 and 0 <= full["test"] <= 1
    trial = FakeTrial(prune_at=40)
    pruned = _trial_run(cfg, trial, cap=120)
    assert pruned["state"] == "pruned" and pruned["why"] == "pruned"
    # the loop finishes the update it was measuring before, then stops
    assert pruned["steps"] == trial.reports[-1][0] + 1 and trial.reports[-1][0] >= 40
    assert pruned["steps"] < 120
    capped = _trial_run(cfg, FakeTrial(), cap=50)
    assert capped["state"] == "pruned" and capped["why"] == "out of budget"
    assert capped["steps"] == 50


@pytest.mark.parametrize("pruner", ["median", "hyperband"])
def test_optuna_study_spends_exactly_its_steps(pruner):
    pytest.importorskip("optuna")
    out = _optuna_seed(TASK, 0, pruner, 300)
    assert out["steps"] == 300 == sum(t["steps"] for t in out["trials"])
    done = [t for t in out["trials"] if t["state"] == "complete"]
    assert done and out["lam"] == max(done, key=lambda t: t["val"])["lam"]
    assert all(min(TASK.grid) <= t["lam"] <= max(TASK.grid) for t in out["trials"])


def test_pruner_settings():
    pytest.importorskip("optuna")
    median = make_pruner("median", 1000)
    assert median._n_startup_trials == 2 and median._n_warmup_steps == 250
    hyperband = make_pruner("hyperband", 1000)
    assert hyperband._min_resource == 37 and hyperband._max_resource == 1000


def test_grid_selects_on_validation_and_reports_test(tmp_path):
    from l2dynamics.studies.tuning import _grid_method, _Runner

    runner = _Runner(tmp_path / "s.sqlite", 1, lambda m: None)
    grid, by_lam, best = _grid_method(TASK, runner, lambda m: None)
    assert TASK.selection_metric == "val_acc"
    rows = grid.extra["table"]
    assert best["val_mean"] == max(r["val_mean"] for r in rows)
    assert grid.finals == [r["final"] for r in by_lam[best["lam"]]]
    assert any(r["val"] != r["final"] for runs in by_lam.values() for r in runs)
    assert grid.extra["wall_seconds"] > 0
