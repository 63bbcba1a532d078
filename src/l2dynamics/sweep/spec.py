"""Sweep specs: a base config, a grid over config keys, and an optional step budget rule.

A spec (YAML file or dict)::

    name: lam-grid                       # optional (default: the file's stem, else "sweep")
    base: {dataset: digits, lr: 0.1}     # any config keys, flat or nested in sections
    grid: {lam: [0, 1e-3], seed: [0, 1]} # cartesian product over flat config keys
    budget: {rule: inverse_lam, k: 0.5, physical: true, min_steps: 20, max_steps: 200}

Expansion order is deterministic: grid keys in the spec's order, the last key varying fastest
(like nested for-loops). Budget rule ``inverse_lam`` (Lewkowycz & Gur-Ari: t* ∝ 1/λ) sets::

    steps = clip(ceil(k / (λ·η)), min_steps, max_steps)   physical: true (k in λ·η·steps units)
    steps = clip(ceil(k / λ), min_steps, max_steps)       physical: false (k in λ·steps units)

and λ = 0 gets ``max_steps``. Everything is validated at load time, with one-line errors that
name the field; :meth:`Sweep.configs` returns validated :class:`~l2dynamics.config.Config`\\ s.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from l2dynamics.config import CONFIG_KEYS, Config, flatten, load_config_file, make_config
from l2dynamics.errors import ConfigError

SPEC_KEYS = ("name", "base", "grid", "budget")
BUDGET_RULES = ("fixed", "inverse_lam")
BUDGET_KEYS = ("rule", "k", "physical", "min_steps", "max_steps")


@dataclass(frozen=True)
class Budget:
    """How many steps each run gets. ``fixed``: the config's ``steps``."""

    rule: str = "fixed"
    k: float = 1.0
    physical: bool = True
    min_steps: int = 1
    max_steps: int = 100_000

    def steps(self, lam: float, lr: float) -> int | None:
        """Steps for a run at (λ, η), or None under the fixed rule (keep the config's)."""
        if self.rule == "fixed":
            return None
        if lam == 0:
            return self.max_steps
        raw = self.k / (lam * lr) if self.physical else self.k / lam
        steps = math.ceil(round(raw, 9)) if math.isfinite(raw) else self.max_steps
        return int(min(max(steps, self.min_steps), self.max_steps))


@dataclass
class Sweep:
    """A validated sweep: base config (flat), grid (flat key → values) and budget."""

    name: str
    base: dict[str, Any]
    grid: dict[str, list[Any]]
    budget: Budget = field(default_factory=Budget)

    def points(self) -> list[dict[str, Any]]:
        """The grid points in expansion order (last key fastest)."""
        keys = list(self.grid)
        return [dict(zip(keys, values, strict=True))
                for values in itertools.product(*(self.grid[k] for k in keys))]

    def run_name(self, point: Mapping[str, Any]) -> str:
        pairs = " ".join(f"{k}={_fmt(v)}" for k, v in point.items())
        return f"{self.name} {pairs}".strip()

    def configs(self) -> list[Config]:
        """One validated config per grid point, in expansion order."""
        out = []
        for point in self.points():
            try:
                cfg = make_config(self.base, point, name=self.run_name(point))
                steps = self.budget.steps(cfg.lam, cfg.lr)
                if steps is not None:
                    cfg = cfg.replace(steps=steps)
            except ConfigError as exc:
                where = ", ".join(f"{k}={_fmt(v)}" for k, v in point.items())
                raise ConfigError(f"sweep point ({where}): {exc}") from None
            out.append(cfg)
        return out

    def __len__(self) -> int:
        return math.prod(len(v) for v in self.grid.values())


def _fmt(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _canonical(value: Any) -> str:
    """Equal config values give equal strings (0 and 0.0, [0.9, 0.99] and (0.9, 0.99))."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return repr(float(value))
        except OverflowError:
            return repr(value)
    return json.dumps(value, sort_keys=True, default=repr)


def load_sweep(spec: str | Path | Mapping[str, Any] | Sweep) -> Sweep:
    """Read and validate a sweep spec (YAML/JSON path or mapping); expand it once to check
    every config. Raises :class:`ConfigError` with one line naming the offending field."""
    if isinstance(spec, Sweep):
        return spec
    default_name = "sweep"
    if isinstance(spec, (str, Path)):
        default_name = Path(spec).stem
        spec = load_config_file(spec, what="sweep spec")
    if not isinstance(spec, Mapping):
        raise ConfigError(f"sweep spec must be a mapping, got {type(spec).__name__}")
    unknown = [k for k in spec if k not in SPEC_KEYS]
    if unknown:
        raise ConfigError(f"unknown sweep key '{unknown[0]}'; allowed: {', '.join(SPEC_KEYS)}")

    name = spec.get("name", default_name)
    if name is None or not isinstance(name, (str, int, float)) or not str(name).strip():
        raise ConfigError("sweep name must be a non-empty string")
    base = _load_base(spec.get("base") or {})
    grid = _load_grid(spec.get("grid"), base)
    budget = _load_budget(spec.get("budget"))
    if budget.rule != "fixed":
        for where, keys in (("base", base), ("grid", grid)):
            if "steps" in keys:
                raise ConfigError(f"sweep {where}.steps conflicts with budget.rule "
                                  f"{budget.rule}, which sets steps; remove one")
    sweep = Sweep(name=str(name).strip(), base=base, grid=grid, budget=budget)
    sweep.configs()  # validate every point now, before anything runs
    return sweep


def _load_base(raw_base: Any) -> dict[str, Any]:
    if not isinstance(raw_base, Mapping):
        raise ConfigError("sweep base must be a mapping of config keys to values")
    try:
        base = flatten(raw_base)
    except ConfigError as exc:
        raise ConfigError(f"sweep base: {exc}") from None
    if "name" in base:
        raise ConfigError("sweep base.name is not allowed: run names come from the sweep's "
                          "top-level name and the grid values")
    return base


def _load_grid(raw_grid: Any, base: Mapping[str, Any]) -> dict[str, list[Any]]:
    if not isinstance(raw_grid, Mapping) or not raw_grid:
        raise ConfigError("sweep grid must be a non-empty mapping of config keys to lists, "
                          "e.g. {lam: [0, 1e-3]}")
    grid: dict[str, list[Any]] = {}
    for key, values in raw_grid.items():
        if not isinstance(key, str) or key not in CONFIG_KEYS or key == "name":
            raise ConfigError(f"sweep grid.{key}: not a config key; run `l2dynamics keys` "
                              "to list them")
        if not isinstance(values, (list, tuple)) or len(values) == 0:
            raise ConfigError(f"sweep grid.{key} must be a non-empty list of values")
        if key in base:
            raise ConfigError(f"sweep grid.{key} conflicts with base.{key}: set it in one place")
        seen = [_canonical(v) for v in values]
        again = [v for i, v in enumerate(values) if seen[i] in seen[:i]]
        if again:
            raise ConfigError(f"sweep grid.{key} lists {_fmt(again[0])} twice; each value must "
                              "appear once (a repeated run would be skipped as already done)")
        grid[key] = list(values)
    return grid


def _load_budget(raw: Any) -> Budget:
    if raw is None:
        return Budget()
    if not isinstance(raw, Mapping):
        raise ConfigError("sweep budget must be a mapping, e.g. {rule: inverse_lam, k: 0.5}")
    unknown = [k for k in raw if k not in BUDGET_KEYS]
    if unknown:
        raise ConfigError(f"unknown sweep key 'budget.{unknown[0]}'; allowed: "
                          f"{', '.join(BUDGET_KEYS)}")
    rule = raw.get("rule", "fixed")
    if rule not in BUDGET_RULES:
        raise ConfigError(f"sweep budget.rule {rule!r} is not allowed; use one of "
                          f"{', '.join(BUDGET_RULES)}")
    if rule == "fixed":
        extra = [k for k in raw if k != "rule"]
        if extra:
            raise ConfigError(f"sweep budget.{extra[0]} needs budget.rule inverse_lam")
        return Budget()
    k = raw.get("k", 1.0)
    if isinstance(k, bool) or not isinstance(k, (int, float)) or not math.isfinite(k) or k <= 0:
        raise ConfigError(f"sweep budget.k must be a positive number, got {k!r}")
    physical = raw.get("physical", True)
    if not isinstance(physical, bool):
        raise ConfigError(f"sweep budget.physical must be true or false, got {physical!r}")
    bounds = {}
    for key, default in (("min_steps", Budget.min_steps), ("max_steps", Budget.max_steps)):
        value = raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"sweep budget.{key} must be an integer ≥ 1, got {value!r}")
        bounds[key] = value
    if bounds["min_steps"] > bounds["max_steps"]:
        raise ConfigError(f"sweep budget.min_steps ({bounds['min_steps']}) exceeds "
                          f"budget.max_steps ({bounds['max_steps']})")
    return Budget(rule=rule, k=float(k), physical=physical, **bounds)
