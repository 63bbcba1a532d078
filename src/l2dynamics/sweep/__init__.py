"""Sweeps: a grid over config keys with an optional step budget, run locally and resumably."""

from l2dynamics.sweep.local import SweepResult, canonical, run_sweep
from l2dynamics.sweep.spec import Budget, Sweep, load_sweep

__all__ = ["Budget", "Sweep", "SweepResult", "canonical", "load_sweep", "run_sweep"]
