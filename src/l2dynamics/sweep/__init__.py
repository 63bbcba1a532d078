"""Sweeps: a grid over config keys with an optional step budget, run resumably on this machine
(local processes) or as Ray tasks on a cluster (``executor="ray"``)."""

from l2dynamics.sweep.ledger import SweepResult, canonical, completed_runs
from l2dynamics.sweep.local import engine_units
from l2dynamics.sweep.runner import (
    ENGINES,
    EXECUTORS,
    check_executor,
    check_sweep_memory,
    run_sweep,
)
from l2dynamics.sweep.spec import Budget, Sweep, load_sweep

__all__ = ["ENGINES", "EXECUTORS", "Budget", "Sweep", "SweepResult", "canonical", "check_executor",
           "check_sweep_memory", "completed_runs", "engine_units", "load_sweep", "run_sweep"]
