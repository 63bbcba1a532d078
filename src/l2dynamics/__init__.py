"""l2dynamics: training dynamics of deep networks with L2 regularization.

λ (``lam``) is always the paper's: loss + (λ/2)·‖θ‖². See ``l2dynamics.l2.conventions`` for the
conversions to PyTorch, AdamW and van Laarhoven conventions.

The public names below are imported on first use (PEP 562), so ``import l2dynamics`` — and the
commands that need no tensors, such as ``l2dynamics keys`` — do not pay for importing torch.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from typing import TYPE_CHECKING, Any

# where each public name is defined; imported from there on first use
_EXPORTS = {
    name: module
    for module, names in {
        "l2dynamics.config": ("CONFIG_KEYS", "Config", "make_config"),
        "l2dynamics.data": ("Dataset", "available_datasets", "load_dataset"),
        "l2dynamics.errors": ("ConfigError", "DataError", "L2DynamicsError", "StoreError"),
        "l2dynamics.l2": ("AutoL2", "L2Penalty", "StepSchedule", "WeightDecaySchedule",
                          "decay_param_groups", "split_decay"),
        "l2dynamics.models": ("build_model",),
        "l2dynamics.probes.monitor": ("Monitor",),
        "l2dynamics.store": ("RunStore", "load_runs", "load_series"),
        "l2dynamics.studies.choose": ("LambdaChoice", "choose_lambda"),
        "l2dynamics.studies.predict": ("LambdaPrediction", "ema_timescale_lambda",
                                       "predict_lambda"),
        "l2dynamics.train": ("RunResult", "Trainer", "eval_steps", "train"),
    }.items()
    for name in names
}

__all__ = [  # the same names, spelled out for type checkers and `from l2dynamics import *`
    "AutoL2",
    "CONFIG_KEYS",
    "Config",
    "ConfigError",
    "DataError",
    "Dataset",
    "L2DynamicsError",
    "L2Penalty",
    "LambdaChoice",
    "LambdaPrediction",
    "Monitor",
    "RunResult",
    "RunStore",
    "StepSchedule",
    "StoreError",
    "Trainer",
    "WeightDecaySchedule",
    "available_datasets",
    "build_model",
    "choose_lambda",
    "decay_param_groups",
    "ema_timescale_lambda",
    "eval_steps",
    "load_dataset",
    "load_runs",
    "load_series",
    "make_config",
    "predict_lambda",
    "split_decay",
    "train",
]


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            value = version("l2dynamics")
        except PackageNotFoundError:  # run from a source tree that was never installed
            value = "0.0.0+unknown"
    elif name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    elif name.isidentifier() and not name.startswith("__") and importlib.util.find_spec(
            f"{__name__}.{name}"):
        value = importlib.import_module(f"{__name__}.{name}")  # a subpackage: l2dynamics.data
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # once: later look-ups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__, "__version__"})


class _Package(types.ModuleType):
    """`train` names both a subpackage and its main function; the public name is the function
    (``l2d.train(...)``, ``from l2dynamics import train``), so importing the subpackage, which
    sets the attribute on its parent, must not replace the function with the module."""

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and _EXPORTS.get(name) == value.__name__:
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

if TYPE_CHECKING:  # what the names are, for type checkers and IDEs
    from l2dynamics.config import CONFIG_KEYS, Config, make_config
    from l2dynamics.data import Dataset, available_datasets, load_dataset
    from l2dynamics.errors import ConfigError, DataError, L2DynamicsError, StoreError
    from l2dynamics.l2 import (
        AutoL2,
        L2Penalty,
        StepSchedule,
        WeightDecaySchedule,
        decay_param_groups,
        split_decay,
    )
    from l2dynamics.models import build_model
    from l2dynamics.probes.monitor import Monitor
    from l2dynamics.store import RunStore, load_runs, load_series
    from l2dynamics.studies.choose import LambdaChoice, choose_lambda
    from l2dynamics.studies.predict import LambdaPrediction, ema_timescale_lambda, predict_lambda
    from l2dynamics.train import RunResult, Trainer, eval_steps, train

    __version__: str
