"""Run a sweep: validate it, plan it against the store, then hand the remaining configs to an
executor.

Executors: ``local`` (:mod:`l2dynamics.sweep.local`) runs in-process (workers=1) or in spawned
worker processes that write to the store themselves; ``ray``
(:mod:`l2dynamics.sweep.ray_executor`) runs each config as a Ray task and the driver writes the
returned run to the store. Both plan and account through one
:class:`~l2dynamics.sweep.ledger.SweepLedger`, so they skip, count and report progress
identically. The executors do not know each other: this module chooses between them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from l2dynamics.config import Config
from l2dynamics.errors import ConfigError, ResourceError
from l2dynamics.sweep.ledger import SweepLedger, SweepProgressFn, SweepResult
from l2dynamics.sweep.local import MAX_ENSEMBLE, engine_units, run_local
from l2dynamics.sweep.spec import Sweep, load_sweep

EXECUTORS = ("local", "ray")
ENGINES = ("auto", "sequential", "vectorized")


def check_executor(executor: str, *, workers: int | None = None, cpus_per_run: float = 1.0,
                   address: str | None = None) -> None:
    """Validate the executor options before anything is written; raises :class:`ConfigError`
    naming the field (for ``ray``: how to install Ray if it is missing, and whether anything
    listens at ``address``)."""
    if executor not in EXECUTORS:
        raise ConfigError(f"executor {executor!r} is not allowed; use one of "
                          f"{', '.join(EXECUTORS)}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)
                                or workers < 1):
        raise ConfigError(f"workers must be an integer ≥ 1, got {workers!r}")
    if executor == "local":
        if address is not None:
            raise ConfigError("address needs executor 'ray' (the local executor runs on this "
                              "machine)")
        if cpus_per_run != 1:
            raise ConfigError("cpus_per_run needs executor 'ray' (local workers share this "
                              "machine's cores evenly)")
        return
    if (isinstance(cpus_per_run, bool) or not isinstance(cpus_per_run, (int, float))
            or not math.isfinite(cpus_per_run) or cpus_per_run <= 0):
        raise ConfigError(f"cpus_per_run must be a positive number, got {cpus_per_run!r}")
    if address is not None and (not isinstance(address, str) or not address.strip()):
        raise ConfigError(f"address must be a Ray address like 'HOST:6379' or 'auto', "
                          f"got {address!r}")
    from l2dynamics.sweep.ray_executor import check_address, require_ray

    require_ray()
    if address is not None:
        check_address(address)


def check_sweep_memory(configs: Sequence[Config]) -> None:
    """Refuse (ResourceError, naming the first run that cannot fit) a sweep before anything is
    written, instead of recording its runs as failed one by one. Each distinct dataset is loaded
    once, on the CPU; the estimate is :func:`~l2dynamics.train.footprint.check_run_memory`'s, for
    the run's own device. Members of vectorized ensembles are checked again when grouped."""
    from l2dynamics.train.footprint import check_run_memory
    from l2dynamics.train.setup import load_run_data, resolve_device

    data_keys = ("dataset", "data_dir", "n_train", "n_test", "n_val", "data_seed", "augment",
                 "normalize", "data_options", "dtype")
    loaded: dict[str, Any] = {}
    for cfg in configs:
        raw = cfg.to_dict()
        key = json.dumps({k: raw[k] for k in data_keys}, sort_keys=True, default=str)
        if key not in loaded:
            loaded[key] = load_run_data(cfg, torch.device("cpu"), getattr(torch, cfg.dtype))
        try:
            check_run_memory(cfg, loaded[key], resolve_device(cfg.device))
        except ResourceError as err:
            label = cfg.name or f"λ={cfg.lam:g}, η={cfg.lr:g}, seed={cfg.seed}"
            raise ResourceError(f"sweep run {label}: {err}") from None


def run_sweep(sweep: Sweep | Mapping[str, Any] | str | Path, store_path: str | Path | None,
              *, workers: int | None = None, progress: SweepProgressFn | None = None,
              configs: list[Config] | None = None, executor: str = "local",
              address: str | None = None, cpus_per_run: float = 1.0,
              engine: str = "auto", max_ensemble: int = MAX_ENSEMBLE) -> SweepResult:
    """Run every config of `sweep` that the store does not already hold as finished/diverged.

    ``configs`` (default: ``sweep.configs()``) lets a caller run a subset. ``progress(done,
    total)`` is called after each config is accounted for (skipped ones first).

    ``executor="local"``: ``workers`` processes on this machine (default 1: in-process).
    ``executor="ray"``: one Ray task per config, ``cpus_per_run`` Ray CPUs (and torch threads)
    each; ``address`` connects to a running cluster (``"HOST:PORT"``, ``"auto"``), ``None``
    starts a local Ray instance with ``workers × cpus_per_run`` CPUs (default: all cores).
    With Ray, ``workers`` also caps the runs in flight at once. Ray tasks need no shared
    filesystem: they return their results and this process writes them to the store.

    ``engine`` (local executor): ``"sequential"`` trains each config with its own Trainer;
    ``"vectorized"`` trains configs that differ only in λ, η, seed, decoupled decay and steps
    as one :class:`~l2dynamics.train.EnsembleTrainer` (at most `max_ensemble` members each;
    a ConfigError before anything runs if a group cannot be vectorized); ``"auto"`` asks
    :func:`~l2dynamics.train.choose_engine` per group (vectorized only where it measured
    faster). Each member is still its own stored run; a worker trains a whole ensemble.
    """
    check_executor(executor, workers=workers, cpus_per_run=cpus_per_run, address=address)
    _check_engine(executor, engine, max_ensemble)
    if configs is None:
        configs = load_sweep(sweep).configs()
    if executor == "local" and engine == "vectorized":
        engine_units(configs, engine, max_ensemble)  # refuse before the store is touched
    ledger = SweepLedger(len(configs), progress)
    if executor == "ray":
        from l2dynamics.sweep.ray_executor import run_ray

        run_ray(configs, store_path, ledger, address=address, workers=workers,
                cpus_per_run=cpus_per_run)
    else:
        run_local(configs, store_path, ledger, workers=1 if workers is None else workers,
                  engine=engine, max_ensemble=max_ensemble)
    return ledger.result


def _check_engine(executor: str, engine: str, max_ensemble: Any) -> None:
    if engine not in ENGINES:
        raise ConfigError(f"engine {engine!r} is not allowed; use one of {', '.join(ENGINES)}")
    if executor == "ray" and engine == "vectorized":
        raise ConfigError("engine 'vectorized' needs executor 'local' (Ray tasks train one "
                          "config each)")
    if isinstance(max_ensemble, bool) or not isinstance(max_ensemble, int) or max_ensemble < 2:
        raise ConfigError(f"max_ensemble must be an integer ≥ 2, got {max_ensemble!r}")
