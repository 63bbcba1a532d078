"""A study is one unit: its parameters, how it runs, how it judges the papers' claims, and what
it draws and tabulates.

A :class:`Study` has a ``key``, a ``title``, the ``paper`` it comes from and a ``Params``
dataclass whose fields declare their type, default, constraints and help with :func:`param`.
``run(params, context)`` trains through the engine or the sweep (runs are kept in the run store,
so a second call reuses every finished run) and returns a result; ``claims(result)`` returns the
verdicts; ``figures(result, context)`` draws; ``tables(result)`` tabulates and ``data(result)``
gives the raw frames a user may want as CSV. Nothing else runs a study: the CLI
(``l2dynamics study KEY``, and the older spellings ``theory``, ``norms …``, ``analyze tstar``,
``tune``, ``predict``) and ``l2dynamics reproduce`` both call :func:`execute`.

A result is any object with a ``description`` (what was run, at what scale) and a ``design``
(the JSON-able settings the report shows); the verdict logic reads nothing else from the world,
so each study's claims are unit-tested on synthetic results without training.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

from l2dynamics.analysis.verdicts import Claim
from l2dynamics.config.constraints import Constraint, Str
from l2dynamics.errors import ConfigError

LG = "Lewkowycz & Gur-Ari 2020"
VL = "van Laarhoven 2017"
PAPERS = (LG, VL)
TEXT = Str(optional=False)  # a free string parameter (names, descriptions)

# --- parameters -----------------------------------------------------------------------------


def param(default: Any, constraint: Constraint, help: str, *, unit: str = "") -> Any:
    """A study parameter: its default, constraint (:mod:`l2dynamics.config.constraints`, the
    same declarations as the config keys), help text and unit, declared in one place.

    Mutable defaults (lists, dicts) are copied for each instance."""
    meta = {"constraint": constraint, "help": help, "unit": unit}
    if isinstance(default, list | dict | set):
        return field(default_factory=lambda: json.loads(json.dumps(default)), metadata=meta)
    return field(default=default, metadata=meta)


def _declared(params_cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in fields(params_cls) if f.init}


def describe_params(params_cls: type) -> list[dict[str, Any]]:
    """Every parameter of a study: key, type, default, allowed values, unit and help."""
    defaults = params_cls()
    return [{"key": name, "type": f.metadata["constraint"].type_name(),
             "default": getattr(defaults, name), "allowed": f.metadata["constraint"].allowed(),
             "unit": f.metadata.get("unit", ""), "help": f.metadata.get("help", "")}
            for name, f in _declared(params_cls).items()]


def invalid_params(params_cls: type) -> list[tuple[str, Any, str]]:
    """(parameter, value, message fragment) that :func:`make_params` must refuse, drawn from
    the declarations (the bad-input tests use these)."""
    return [(name, value, says) for name, f in _declared(params_cls).items()
            for value, says in f.metadata["constraint"].invalid()]


def _set_dotted(target: dict[str, Any], dotted: list[str], value: Any) -> None:
    for part in dotted[:-1]:
        nxt = target.get(part)
        if not isinstance(nxt, dict):
            nxt = target[part] = {}
        target = nxt
    target[dotted[-1]] = value


def make_params(params_cls: type, overrides: Mapping[str, Any] | None = None) -> Any:
    """A validated `params_cls` from its defaults and `overrides`.

    A key ``a.b.c`` sets an entry inside the mapping parameter ``a`` (e.g.
    ``sweep.base.lr=0.2``). Unknown keys, wrong types and values outside a parameter's
    constraint raise :class:`ConfigError` with what is allowed (and "did you mean")."""
    declared = _declared(params_cls)
    defaults = params_cls()
    values = {name: getattr(defaults, name) for name in declared}
    for key, value in (overrides or {}).items():
        top, *rest = str(key).split(".")
        if top not in declared:
            close = difflib.get_close_matches(top, list(declared), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"unknown parameter {top!r}{hint} (parameters: "
                              f"{', '.join(declared)})")
        if rest:
            if not isinstance(values[top], dict):
                raise ConfigError(f"{key}: {top} is not a mapping, so it has no entry "
                                  f"{'.'.join(rest)!r}")
            values[top] = json.loads(json.dumps(values[top]))
            _set_dotted(values[top], rest, value)
        else:
            values[top] = value
    for name, f in declared.items():
        values[name] = f.metadata["constraint"].check(name, values[name])
    params = params_cls(**values)
    check = getattr(params, "check", None)
    if callable(check):
        check()
    return params


def parse_sets(pairs: list[str]) -> dict[str, Any]:
    """``["k=v", …]`` as a mapping, each value read as YAML (numbers, lists, mappings)."""
    import yaml

    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set takes KEY=VALUE, got {pair!r}")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        out[key.strip()] = value
    return out


# --- running --------------------------------------------------------------------------------


@dataclass
class Context:
    """Where a study writes and stores its runs, and how it is scaled.

    ``steps_scale``, ``subset``, ``data_dir`` and ``fast`` apply to studies that read a paper
    config (``configs`` of the paper suite): budgets × steps_scale, ``subset`` training
    examples, the user's data folder, and the GPU path (bf16 autocast, channels_last) on CUDA."""

    out_dir: Path
    store: Path
    key: str = "study"  # figures go to out_dir/figures/<key>/
    suite: str | None = None
    workers: int = 2
    executor: str = "local"  # "ray": the runs of studies with `distributed` go to Ray tasks
    address: str | None = None  # the Ray cluster (HOST:PORT, auto); None: a local Ray
    data_dir: Path | None = None
    steps_scale: float = 1.0
    subset: int | None = None
    fast: bool = True
    log: Callable[[str], None] = print

    def for_key(self, key: str) -> Context:
        return dataclasses.replace(self, key=key)

    def figure(self, name: str) -> Path:
        path = self.out_dir / "figures" / self.key / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def rel(self, path: Path) -> str:
        return str(Path(path).resolve().relative_to(self.out_dir.resolve()))

    def steps(self, n: int) -> int:
        return max(1, int(round(n * self.steps_scale)))

    def gpu_options(self, *, image: bool) -> dict[str, Any]:
        """The GPU path's speed options for a run read from a paper config (none on a CPU or
        with ``fast=False``): bf16 autocast, and channels_last for convolutional models."""
        import torch

        if not self.fast or not torch.cuda.is_available():
            return {}
        return {"autocast": "bf16", "channels_last": image}


@dataclass
class Figure:
    """A study's figure. `series`: the series its caption names, as the starts of their legend
    labels ("λ=" for one series per λ); the report checks that the saved PNG draws each of
    them, and that no panel is empty without saying why
    (:func:`l2dynamics.report.inventory.inventory_problems`)."""

    path: Path
    caption: str  # says only what was measured on the figure
    series: tuple[str, ...] = ()

    def to_dict(self, path: str | None = None) -> dict[str, Any]:
        return {"path": str(self.path) if path is None else path, "caption": self.caption,
                "series": list(self.series)}


def table(title: str, frame: Any, digits: int = 4) -> dict[str, Any]:
    """A DataFrame as a report table: title, columns, rows (floats to `digits` significant
    digits, NaN → None)."""
    import numpy as np

    def cell(v: Any) -> Any:
        if isinstance(v, float | np.floating):
            return None if not math.isfinite(v) else float(f"{v:.{digits}g}")
        if isinstance(v, np.integer | np.bool_):
            return v.item()
        return v if isinstance(v, int | str | bool) or v is None else str(v)
    return {"title": title, "columns": [str(c) for c in frame.columns],
            "rows": [[cell(v) for v in row] for row in frame.itertuples(index=False)]}


class Study:
    """Base of every study (see the module docstring). Subclasses set ``key``, ``title``,
    ``paper`` and ``Params`` and implement ``run`` and ``claims``."""

    key: ClassVar[str]
    title: ClassVar[str]
    paper: ClassVar[str]
    Params: ClassVar[type]
    # whether its runs go where ctx.executor says (Ray tasks with executor "ray"); the others
    # train on this machine
    distributed: ClassVar[bool] = False

    def run(self, params: Any, ctx: Context) -> Any:
        raise NotImplementedError

    def claims(self, result: Any) -> list[Claim]:
        raise NotImplementedError

    def figures(self, result: Any, ctx: Context) -> list[Figure]:
        return []

    def tables(self, result: Any) -> list[dict[str, Any]]:
        return []

    def data(self, result: Any) -> dict[str, Any]:
        """Raw frames (written as CSV) and mappings (as JSON) behind the figures."""
        return {}


@dataclass
class Outcome:
    """What a driver shows of one executed study."""

    key: str
    description: str
    claims: list[Claim]
    figures: list[Figure]
    tables: list[dict[str, Any]]
    data: dict[str, Any]
    design: dict[str, Any]
    wall_seconds: float


def execute(study: Study, params: Any, ctx: Context) -> Outcome:
    """Run `study` with `params` in `ctx`, judge its claims and draw its figures."""
    start = time.perf_counter()
    result = study.run(params, ctx)
    claims = study.claims(result)
    figures = study.figures(result, ctx)
    return Outcome(ctx.key, result.description, claims, figures, study.tables(result),
                   study.data(result), json.loads(json.dumps(result.design, default=str)),
                   time.perf_counter() - start)


def write_outcome(outcome: Outcome, out_dir: Path) -> list[Path]:
    """Write an outcome's raw data (CSV / JSON) and ``result.json`` (claims, tables, figures,
    design) under `out_dir`; the written paths."""
    import pandas as pd

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, value in outcome.data.items():
        if isinstance(value, pd.DataFrame):
            path = out_dir / f"{name}.csv"
            value.to_csv(path, index=False)
        else:
            path = out_dir / f"{name}.json"
            path.write_text(json.dumps(value, indent=1, default=_json_default))
        written.append(path)
    record = {"key": outcome.key, "description": outcome.description,
              "claims": [c.to_dict() for c in outcome.claims],
              "figures": [f.to_dict() for f in outcome.figures],
              "tables": outcome.tables, "design": outcome.design,
              "wall_seconds": outcome.wall_seconds}
    path = out_dir / "result.json"
    path.write_text(json.dumps(record, indent=1, default=_json_default))
    return [*written, path]


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)
