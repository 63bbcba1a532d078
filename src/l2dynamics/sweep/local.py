"""Run a sweep: plan it against the store, then execute the remaining configs.

Executors: ``local`` runs in-process (workers=1) or in spawned worker processes that write to
the store themselves; ``ray`` (:mod:`l2dynamics.sweep.ray_executor`) runs each config as a Ray
task and the driver writes the returned run to the store. Both share the planning and the
accounting here (:class:`SweepLedger`), so they skip, count and report progress identically:

- runs already in the store with status "finished" or "diverged" and an identical config
  (canonical JSON of ``Config.to_dict()``) are skipped, so re-running a sweep after a crash
  completes only what is missing; a config listed twice runs once;
- a run that raises is counted as failed (stored as "failed" when it got as far as a run
  record) and the sweep continues;
- a run of the sweep that was killed (left "running" with its process gone) or interrupted is
  continued under its own run id — from its last checkpoint when it has one (set
  ``checkpoint_every``), else from step 0 — rather than started again beside it
  (sequential engine; see ``_trainer_for``).
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from l2dynamics.config import Config, make_config
from l2dynamics.errors import ConfigError, ResourceError
from l2dynamics.sweep.spec import Sweep, load_sweep

DONE_STATUSES = ("finished", "diverged")
MAX_POOL_RESTARTS = 3  # fresh worker pools after a worker died, per sweep
EXECUTORS = ("local", "ray")
ENGINES = ("auto", "sequential", "vectorized")
MAX_ENSEMBLE = 32  # members per vectorized ensemble in a sweep
SweepProgressFn = Callable[[int, int], None]


@dataclass
class SweepResult:
    """Counts over the sweep's configs, and the stored run ids of the runs started here."""

    total: int = 0
    skipped: int = 0
    finished: int = 0
    diverged: int = 0
    failed: int = 0
    run_ids: list[int] = field(default_factory=list)
    skipped_ids: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"{self.total} runs: {self.finished} finished, {self.diverged} diverged, "
                f"{self.failed} failed, {self.skipped} skipped")


def canonical(config: Config | Mapping[str, Any]) -> str:
    """The JSON text configs are compared by."""
    data = config.to_dict() if isinstance(config, Config) else dict(config)
    return json.dumps(data, sort_keys=True)


def completed_runs(store: Any) -> dict[str, int]:
    """Canonical config → id of a stored finished/diverged run."""
    done: dict[str, int] = {}
    for status in DONE_STATUSES:
        for rec in store.list_runs(status=status):
            if rec.get("config") is not None:
                done.setdefault(canonical(rec["config"]), rec["id"])
    return done


class SweepLedger:
    """The one place a sweep's configs are planned (skip / dedupe) and accounted for.

    ``plan`` returns the configs still to run and ticks ``progress`` once per skipped one;
    every executor then calls ``record(run_id, status, error)`` once per config it ran, as the
    outcomes arrive, which updates the :class:`SweepResult` and calls ``progress(done, total)``.
    """

    def __init__(self, total: int, progress: SweepProgressFn | None = None):
        self.result = SweepResult(total=total)
        self.progress = progress
        self.done = 0

    def _tick(self) -> None:
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, self.result.total)

    def plan(self, configs: Sequence[Config], store: Any) -> list[Config]:
        """The configs not yet finished/diverged in `store`, each once, in the given order."""
        done = completed_runs(store)
        todo: list[Config] = []
        seen: set[str] = set()
        for cfg in configs:
            key = canonical(cfg)
            if key in done or key in seen:
                self.result.skipped += 1
                if key in done:
                    self.result.skipped_ids.append(done[key])
                self._tick()
                continue
            seen.add(key)
            todo.append(cfg)
        if self.progress is not None:
            self.progress(self.done, self.result.total)
        return todo

    def record(self, run_id: int | None, status: str, error: str | None = None) -> None:
        """Account for one executed config (status as stored; anything but finished/diverged
        counts as failed, with `error` or the status as the message)."""
        result = self.result
        if run_id is not None:
            result.run_ids.append(run_id)
        if status in DONE_STATUSES:
            setattr(result, status, getattr(result, status) + 1)
        else:
            result.failed += 1
            result.errors.append(error or f"run ended with status {status}")
        self._tick()


def error_line(cfg: Config, exc: BaseException) -> str:
    """One line naming the run and the exception (at most 2000 characters)."""
    return f"{cfg.name}: {' '.join(repr(exc).split())}"[:2000]


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
    once, on the CPU; the estimate is :func:`~l2dynamics.train.memory.check_run_memory`'s, for
    the run's own device. Members of vectorized ensembles are checked again when grouped."""
    from l2dynamics.train.loop import load_run_data, resolve_device
    from l2dynamics.train.memory import check_run_memory

    data_keys = ("dataset", "data_dir", "n_train", "n_test", "data_seed", "augment",
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
    from l2dynamics.store import RunStore

    check_executor(executor, workers=workers, cpus_per_run=cpus_per_run, address=address)
    if engine not in ENGINES:
        raise ConfigError(f"engine {engine!r} is not allowed; use one of {', '.join(ENGINES)}")
    if executor == "ray" and engine == "vectorized":
        raise ConfigError("engine 'vectorized' needs executor 'local' (Ray tasks train one "
                          "config each)")
    if isinstance(max_ensemble, bool) or not isinstance(max_ensemble, int) or max_ensemble < 2:
        raise ConfigError(f"max_ensemble must be an integer ≥ 2, got {max_ensemble!r}")
    if configs is None:
        configs = load_sweep(sweep).configs()
    if executor == "local" and engine == "vectorized":
        engine_units(configs, engine, max_ensemble)  # refuse before the store is touched
    ledger = SweepLedger(len(configs), progress)
    result = ledger.result

    if executor == "ray":
        from l2dynamics.sweep.ray_executor import ray_session, run_tasks

        if _all_done(configs, store_path):  # nothing to run: no need to start or join Ray
            with RunStore(store_path) as store:
                ledger.plan(configs, store)
            return result
        # Join Ray first: a bad address fails before the store is created or touched.
        with (ray_session(address, workers=workers, cpus_per_run=cpus_per_run) as ray,
              RunStore(store_path) as store):
            todo = ledger.plan(configs, store)
            run_tasks(ray, todo, store, ledger, workers=workers, cpus_per_run=cpus_per_run)
        result.run_ids.sort()
        return result

    workers = 1 if workers is None else workers
    with RunStore(store_path) as store:
        path = store.path
        todo = ledger.plan(configs, store)
        units = engine_units(todo, engine, max_ensemble)
        if workers == 1 or len(units) <= 1:
            for unit in units:
                for outcome in _run_unit(unit, store):
                    ledger.record(*outcome)
            return result

    threads = max(1, (os.cpu_count() or 1) // workers)
    ctx = multiprocessing.get_context("spawn")
    pending, restarts = units, 0
    while pending:
        # A worker that dies (killed, out of memory) breaks the whole pool; the units it did
        # not finish go to a fresh pool, up to MAX_POOL_RESTARTS times.
        with ProcessPoolExecutor(max_workers=min(workers, len(pending)), mp_context=ctx,
                                 initializer=_init_worker,
                                 initargs=(str(path), threads)) as pool:
            futures = {pool.submit(_worker_run, [c.to_dict() for c in unit]): unit
                       for unit in pending}
            pending, broken = [], None
            for future in as_completed(futures):
                try:
                    outcomes = future.result()
                except BrokenProcessPool as exc:
                    pending.append(futures[future])
                    broken = exc
                    continue
                except Exception as exc:
                    outcomes = [(None, "failed", repr(exc))] * len(futures[future])
                for outcome in outcomes:
                    ledger.record(*outcome)
        if pending:
            restarts += 1
            if restarts > MAX_POOL_RESTARTS:
                for cfg in (c for unit in pending for c in unit):
                    ledger.record(None, "failed", f"{cfg.name}: worker processes died "
                                  f"{restarts} times ({broken!r})")
                break
    result.run_ids.sort()
    return result


def engine_units(configs: Sequence[Config], engine: str = "auto",
                 max_ensemble: int = MAX_ENSEMBLE) -> list[list[Config]]:
    """Split `configs` into units of work: a one-config unit trains with a Trainer, a larger
    one as an ensemble. Groups share :func:`~l2dynamics.train.ensemble_key` (first-seen
    order) and are cut into chunks of at most `max_ensemble`."""
    if engine == "sequential":
        return [[cfg] for cfg in configs]
    from l2dynamics.train import choose_engine, ensemble_key, vectorizable

    groups: dict[str, list[Config]] = {}
    for cfg in configs:
        groups.setdefault(ensemble_key(cfg), []).append(cfg)
    units: list[list[Config]] = []
    for group in groups.values():
        chunks = [group[i:i + max_ensemble] for i in range(0, len(group), max_ensemble)]
        for chunk in chunks:
            if len(chunk) < 2:
                units.append(chunk)
                continue
            if engine == "vectorized":
                reason = vectorizable(chunk)
                if reason is not None:
                    raise ConfigError(f"engine 'vectorized': {chunk[0].name} and "
                                      f"{len(chunk) - 1} more cannot train as one ensemble: "
                                      f"{reason}; use engine 'auto' or 'sequential'")
                units.append(chunk)
            elif choose_engine(chunk, chunk[0].device) == "vectorized":
                units.append(chunk)
            else:
                units.extend([cfg] for cfg in chunk)
    return units


def _run_unit(unit: Sequence[Config], store: Any) -> list[tuple[int | None, str, str | None]]:
    """Train one unit (a config, or an ensemble of them) into `store`: one outcome per config."""
    if len(unit) == 1:
        return [_run_one(unit[0], store)]
    from l2dynamics.train import EnsembleTrainer

    trainer = None
    try:
        trainer = EnsembleTrainer(list(unit), store=store)
        return [(r.run_id, r.status, None) for r in trainer.run()]
    except Exception as exc:
        ids = trainer.run_ids if trainer is not None else [None] * len(unit)
        return [(rid, "failed", error_line(cfg, exc)) for rid, cfg in zip(ids, unit,
                                                                         strict=True)]


def _all_done(configs: Sequence[Config], store_path: str | Path | None) -> bool:
    """Whether an existing store already holds every config as finished/diverged."""
    from l2dynamics.store import RunStore, default_store_path

    path = Path(store_path) if store_path is not None else default_store_path()
    if not path.is_file():
        return False
    with RunStore(path, create=False) as store:
        done = completed_runs(store)
    return all(canonical(cfg) in done for cfg in configs)


def _run_one(cfg: Config, store: Any) -> tuple[int | None, str, str | None]:
    trainer = None
    try:
        trainer = _trainer_for(cfg, store)
        res = trainer.run()
        return res.run_id, res.status, None
    except Exception as exc:
        run_id = trainer.run_id if trainer is not None else None
        return run_id, "failed", error_line(cfg, exc)


def _trainer_for(cfg: Config, store: Any) -> Any:
    """The Trainer of `cfg`: the continuation of a stored run of the same config that was
    killed (status "running", its process gone) or interrupted, resumed from its last
    checkpoint (the one before it, with a warning, if that is corrupt) or, without a usable
    checkpoint, trained again from step 0 under the same run id; else a new run. A run is
    taken over with :meth:`~l2dynamics.store.RunStore.claim_run`, so of two sweeps resuming
    the same store only one continues it."""
    from l2dynamics.errors import StoreError
    from l2dynamics.train import Trainer

    key = canonical(cfg)
    candidates = [rec for status in ("running", "interrupted")
                  for rec in store.list_runs(status=status)
                  if (status == "interrupted" or rec["stale"])
                  and rec.get("config") is not None and canonical(rec["config"]) == key]
    for rec in sorted(candidates, key=lambda r: r["id"], reverse=True):  # the newest first
        if not store.claim_run(rec["id"], status=rec["status"], pid=rec["pid"],
                               host=rec["host"]):
            continue  # another process took it over meanwhile
        if rec.get("checkpoint_path"):
            try:
                return Trainer.resume(store, rec["id"])
            except StoreError as err:
                warnings.warn(f"run {rec['id']} ({cfg.name}): {err}; training it again from "
                              f"step 0", stacklevel=2)
        trainer = Trainer(cfg, store=store)
        trainer.run_id = rec["id"]
        store.mark_resumed(rec["id"], 0)
        return trainer
    return Trainer(cfg, store=store)


_WORKER_STORE: Any = None


def _init_worker(store_path: str, threads: int) -> None:
    global _WORKER_STORE
    import torch

    from l2dynamics.store import RunStore

    torch.set_num_threads(threads)
    _WORKER_STORE = RunStore(store_path)
    _exit_with_parent(os.getppid())


def _exit_with_parent(parent: int, interval: float = 1.0) -> None:
    """Stop this worker when the sweep process that spawned it is gone (killed, say), instead
    of training on as an orphan: a daemon thread polls the parent pid every `interval` s."""
    import threading
    import time

    def watch() -> None:
        while True:
            time.sleep(interval)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="l2dynamics-parent-watch", daemon=True).start()


def _worker_run(unit: list[dict[str, Any]]) -> list[tuple[int | None, str, str | None]]:
    return _run_unit([make_config(c) for c in unit], _WORKER_STORE)
