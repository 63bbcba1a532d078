"""Input checks shared by the equilibrium modules (:mod:`l2dynamics.analysis.equilibrium`,
:mod:`l2dynamics.analysis.equilibrium_measured`): each raises a ``ConfigError`` that names the
field and says what is allowed. Private to the package."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import numpy as np

from l2dynamics.errors import ConfigError

OPTIMIZERS = ("sgd", "adam", "adamw")


def _real(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{name} must be a real number, got {value!r}")
    out = float(value)
    if not math.isfinite(out):
        raise ConfigError(f"{name} must be finite, got {value!r}")
    return out


def _positive(name: str, value: object) -> float:
    out = _real(name, value)
    if out <= 0:
        raise ConfigError(f"{name} must be > 0, got {value!r}")
    return out


def _nonnegative(name: str, value: object) -> float:
    out = _real(name, value)
    if out < 0:
        raise ConfigError(f"{name} must be >= 0, got {value!r}")
    return out


def _fraction(name: str, value: object) -> float:
    out = _real(name, value)
    if not 0 <= out < 1:
        raise ConfigError(f"{name} must be in [0, 1), got {value!r}")
    return out


def _count(name: str, value: object) -> float:
    out = _real(name, value)
    if out < 1 or not out.is_integer():
        raise ConfigError(f"{name} must be a whole number >= 1, got {value!r}")
    return out


def _product_below(name: str, value: float, bound: float) -> None:
    if value >= bound:
        raise ConfigError(f"{name} must be < {bound:g} (no equilibrium otherwise), "
                          f"got {value:g}")


def _optimizer(optimizer: object) -> str:
    if optimizer not in OPTIMIZERS:
        raise ConfigError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    return str(optimizer)


def _positive_array(name: str, values: Sequence[float]) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name} must be a sequence of numbers") from exc
    if arr.ndim != 1:
        raise ConfigError(f"{name} must be one-dimensional, got shape {arr.shape}")
    bad = ~(np.isfinite(arr) & (arr > 0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ConfigError(f"{name} must be finite and > 0, got {arr[i]!r} at index {i}")
    return arr
