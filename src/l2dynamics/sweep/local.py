"""Run a sweep on this machine: in-process (workers=1) or in spawned worker processes.

Runs already in the store with status "finished" or "diverged" and an identical config
(canonical JSON of ``Config.to_dict()``) are skipped, so re-running a sweep after a crash
completes only what is missing. A run that raises is counted as failed (the Trainer marks it
"failed" in the store) and the sweep continues.
"""

from __future__ import annotations

import json
import multiprocessing
import os
from collections.abc import Callable, Mapping
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from l2dynamics.config import Config, make_config
from l2dynamics.sweep.spec import Sweep, load_sweep

DONE_STATUSES = ("finished", "diverged")
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


def run_sweep(sweep: Sweep | Mapping[str, Any] | str | Path, store_path: str | Path | None,
              *, workers: int = 1, progress: SweepProgressFn | None = None,
              configs: list[Config] | None = None) -> SweepResult:
    """Run every config of `sweep` that the store does not already hold as finished/diverged.

    ``configs`` (default: ``sweep.configs()``) lets a caller run a subset. ``progress(done,
    total)`` is called after each config is accounted for (skipped ones first)."""
    from l2dynamics.store import RunStore

    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        from l2dynamics.errors import ConfigError

        raise ConfigError(f"workers must be an integer ≥ 1, got {workers!r}")
    if configs is None:
        configs = load_sweep(sweep).configs()
    result = SweepResult(total=len(configs))
    done_count = 0

    def tick() -> None:
        nonlocal done_count
        done_count += 1
        if progress is not None:
            progress(done_count, result.total)

    def account(run_id: int | None, status: str, error: str | None) -> None:
        if run_id is not None:
            result.run_ids.append(run_id)
        if status in ("finished", "diverged"):
            setattr(result, status, getattr(result, status) + 1)
        else:
            result.failed += 1
            result.errors.append(error or f"run ended with status {status}")
        tick()

    with RunStore(store_path) as store:
        path = store.path
        done = completed_runs(store)
        todo: list[Config] = []
        seen: set[str] = set()
        for cfg in configs:
            key = canonical(cfg)
            if key in done or key in seen:
                result.skipped += 1
                if key in done:
                    result.skipped_ids.append(done[key])
                tick()
                continue
            seen.add(key)
            todo.append(cfg)
        if progress is not None:
            progress(done_count, result.total)
        if workers == 1 or len(todo) <= 1:
            for cfg in todo:
                account(*_run_one(cfg, store))
            return result

    threads = max(1, (os.cpu_count() or 1) // workers)
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=ctx,
                             initializer=_init_worker, initargs=(str(path), threads)) as pool:
        futures = [pool.submit(_worker_run, cfg.to_dict()) for cfg in todo]
        for future in as_completed(futures):
            try:
                outcome = future.result()
            except Exception as exc:  # a worker died (e.g. BrokenProcessPool)
                outcome = (None, "failed", repr(exc))
            account(*outcome)
    result.run_ids.sort()
    return result


def _run_one(cfg: Config, store: Any) -> tuple[int | None, str, str | None]:
    from l2dynamics.train import Trainer

    trainer = None
    try:
        trainer = Trainer(cfg, store=store)
        res = trainer.run()
        return res.run_id, res.status, None
    except Exception as exc:
        run_id = trainer.run_id if trainer is not None else None
        return run_id, "failed", f"{cfg.name}: {' '.join(repr(exc).split())}"[:2000]


_WORKER_STORE: Any = None


def _init_worker(store_path: str, threads: int) -> None:
    global _WORKER_STORE
    import torch

    from l2dynamics.store import RunStore

    torch.set_num_threads(threads)
    _WORKER_STORE = RunStore(store_path)


def _worker_run(config: dict[str, Any]) -> tuple[int | None, str, str | None]:
    return _run_one(make_config(config), _WORKER_STORE)
