"""Sweeps: a grid over config keys with an optional step budget, run resumably on this machine
(local processes) or as Ray tasks on a cluster (``executor="ray"``)."""

from l2dynamics.sweep.local import (
    ENGINES,
    EXECUTORS,
    SweepResult,
    canonical,
    check_executor,
    check_sweep_memory,
    engine_units,
    run_sweep,
)
from l2dynamics.sweep.spec import Budget, Sweep, load_sweep

__all__ = ["ENGINES", "EXECUTORS", "Budget", "Sweep", "SweepResult", "canonical", "check_executor",
           "check_sweep_memory", "engine_units", "load_sweep", "run_sweep"]
