"""The local executor: a sweep's configs trained on this machine, into the store.

``workers=1`` trains in-process; more workers are spawned processes that write to the store
themselves. Configs that differ only in λ, η, seed, decoupled decay and steps may train as one
vectorized ensemble (:func:`engine_units`). A run of the sweep that was killed (left "running"
with its process gone) or interrupted is continued under its own run id — from its last
checkpoint when it has one (set ``checkpoint_every``), else from step 0 — rather than started
again beside it (sequential engine; see ``_trainer_for``). A run that raises is counted as
failed (stored as "failed" when it got as far as a run record) and the sweep continues.
"""

from __future__ import annotations

import multiprocessing
import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from l2dynamics.config import Config, make_config
from l2dynamics.errors import ConfigError
from l2dynamics.sweep.ledger import SweepLedger, canonical, error_line

MAX_POOL_RESTARTS = 3  # fresh worker pools after a worker died, per sweep
MAX_ENSEMBLE = 32  # members per vectorized ensemble in a sweep
Outcome = tuple[int | None, str, str | None]
"""(stored run id, status, error line) of one config a worker trained."""


def run_local(configs: Sequence[Config], store_path: str | Path | None, ledger: SweepLedger, *,
              workers: int = 1, engine: str = "auto",
              max_ensemble: int = MAX_ENSEMBLE) -> None:
    """Train the `configs` the store lacks with `workers` processes, accounting in `ledger`."""
    from l2dynamics.store import RunStore

    with RunStore(store_path) as store:
        path = store.path
        todo = ledger.plan(configs, store)
        units = engine_units(todo, engine, max_ensemble)
        if workers == 1 or len(units) <= 1:
            for unit in units:
                for outcome in _run_unit(unit, store):
                    ledger.record(*outcome)
            return
    _run_pool(units, path, workers, ledger)


def _run_pool(units: list[list[Config]], path: Path, workers: int, ledger: SweepLedger) -> None:
    """Train `units` in a pool of `workers` spawned processes writing to the store at `path`.
    A worker that dies (killed, out of memory) breaks the whole pool; the units it did not
    finish go to a fresh pool, up to MAX_POOL_RESTARTS times."""
    threads = max(1, (os.cpu_count() or 1) // workers)
    ctx = multiprocessing.get_context("spawn")
    pending, restarts = units, 0
    while pending:
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
    ledger.result.run_ids.sort()


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


def _run_unit(unit: Sequence[Config], store: Any) -> list[Outcome]:
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


def _run_one(cfg: Config, store: Any) -> Outcome:
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


def _worker_run(unit: list[dict[str, Any]]) -> list[Outcome]:
    return _run_unit([make_config(c) for c in unit], _WORKER_STORE)
