"""Train a study's configs through the run store and read their histories back.

Every study that trains many configs goes through :func:`train_through_store`: a config the
store already holds as finished or diverged is not trained again (so an interrupted study
resumes, and re-running a study only recomputes its tables and figures), the others are trained
by the one sweep executor (``workers`` processes), and each run's metrics come back as a wide
history (one row per step, one column per metric, as ``Trainer.run().history``).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from l2dynamics.config import Config


@dataclass
class StoredRun:
    """One config's stored run: its id, status ("finished" | "diverged") and history."""

    config: Config
    run_id: int
    status: str
    history: pd.DataFrame


def refuse_unrunnable(configs: Sequence[Config], store_path: str | Path) -> None:
    """Refuse, before anything is written, the configs that the store lacks and that cannot
    run: missing data files (DataError) or a run that cannot fit in memory (ResourceError)."""
    from l2dynamics.store import RunStore
    from l2dynamics.sweep import canonical, check_sweep_memory, completed_runs

    done: dict[str, int] = {}
    if Path(store_path).is_file():
        with RunStore(store_path) as store:
            done = completed_runs(store)
    check_sweep_memory([c for c in configs if canonical(c) not in done])


def tstar_runs(configs: Sequence[Config], ctx: Any, *, train_threshold: float) -> pd.DataFrame:
    """Train `configs` through the study context's store, workers and executor
    (:func:`train_through_store`, with its progress in ``ctx.log``) and return their t* table
    (:func:`~l2dynamics.analysis.tstar.tstar_table`), one row per config in order."""
    from l2dynamics.analysis.tstar import tstar_table
    from l2dynamics.store import RunStore

    runs = train_through_store(configs, ctx.store, workers=ctx.workers, executor=ctx.executor,
                               address=ctx.address, names=["test_acc"], log=ctx.log)
    with RunStore(ctx.store) as store:
        return tstar_table(store, [r.run_id for r in runs], train_threshold=train_threshold)


class StoreProgress:
    """Progress of one batch of runs, logged every `every_seconds` while it trains: runs done
    out of the batch, optimizer steps done out of its total, elapsed time and an ETA from the
    step rate so far. Steps are read from the store (each run's ``steps_done``), so runs that
    train in worker processes or as one vectorized ensemble, which finish all at once, show
    progress too. Runs the store already held count as done and not in the rate.

    Use as a context manager (a daemon thread polls the store); :meth:`runs_done` is the
    sweep's ``progress(done, total)`` callback, :meth:`line` one progress line. `on_steps`
    (optional) gets ``(steps done, total steps)`` at every poll, e.g. for a progress bar."""

    def __init__(self, configs: Sequence[Config], store_path: str | Path | None,
                 log: Callable[[str], None] | None, every_seconds: float = 15.0,
                 on_steps: Callable[[int, int], None] | None = None):
        from l2dynamics.store import default_store_path
        from l2dynamics.sweep import canonical

        self.log, self.on_steps, self.every_seconds = log, on_steps, every_seconds
        self.store_path = default_store_path() if store_path is None else store_path
        self.steps = {canonical(c): c.steps for c in configs}
        self.total_steps = sum(self.steps.values())
        self.runs, self.total_runs = 0, len(configs)
        self.start = time.perf_counter()
        self.start_steps: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def runs_done(self, done: int, total: int) -> None:
        self.runs, self.total_runs = done, total

    def steps_done(self, store: Any) -> int:
        """Steps done by this batch's configs in `store`: all of a finished or diverged run,
        ``steps_done`` of one still running (the furthest run of each config)."""
        from l2dynamics.sweep import canonical

        done: dict[str, int] = {}
        for rec in store.list_runs():
            key = canonical(rec["config"]) if rec.get("config") is not None else None
            if key not in self.steps:
                continue
            steps = (self.steps[key] if rec["status"] in ("finished", "diverged")
                     else min(int(rec["steps_done"] or 0), self.steps[key]))
            done[key] = max(done.get(key, 0), steps)
        return sum(done.values())

    def line(self, steps: int, now: float) -> str:
        if self.start_steps is None:
            self.start_steps = steps
        elapsed = now - self.start
        rate = (steps - self.start_steps) / elapsed if elapsed > 0 else 0.0
        left = self.total_steps - steps
        eta = f", about {max(1.0, left / rate):.0f} s left" if rate > 0 and left > 0 else ""
        share = 100 * steps / self.total_steps if self.total_steps else 100.0
        return (f"runs {self.runs}/{self.total_runs} done, steps {steps:,}/"
                f"{self.total_steps:,} ({share:.0f} %), {elapsed:.0f} s{eta}")

    def _open(self) -> Any:
        """The store, read-only in spirit: None while it does not exist yet or is being
        created. Progress never creates the store: a second creator racing the batch's own
        would let the batch find a file without its tables."""
        from l2dynamics.errors import StoreError
        from l2dynamics.store import RunStore

        path = Path(self.store_path)
        if not path.exists():
            return None
        if not path.is_file():  # a folder, say: it will never be a store
            return RunStore(path, create=False)  # raises StoreError
        try:
            return RunStore(path, create=False)
        except StoreError:  # a file without its tables yet: being created
            return None

    def _poll(self) -> None:
        from l2dynamics.errors import StoreError

        try:
            opened = self._open()
            while opened is None:  # the batch creates the store; look again shortly
                if self._stop.wait(min(0.5, self.every_seconds)):
                    return
                opened = self._open()
            with opened as store:
                self.start_steps = self.steps_done(store)
                ticks = 0
                while not self._stop.wait(self.every_seconds):
                    self._report(store)
                    ticks += 1
                if ticks:  # a job long enough to show progress also shows its end
                    self._report(store)
        except (StoreError, sqlite3.Error) as exc:  # progress is a convenience: never fatal
            if self.log is not None:
                self.log(f"progress unavailable from here on ({exc})")

    def _report(self, store: Any) -> None:
        steps = self.steps_done(store)
        if self.on_steps is not None:
            self.on_steps(steps, self.total_steps)
        if self.log is not None:
            self.log(self.line(steps, time.perf_counter()))

    def __enter__(self) -> StoreProgress:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


def train_through_store(configs: Sequence[Config], store_path: str | Path, *,
                        workers: int = 1, names: Sequence[str] | None = None,
                        log: Callable[[str], None] | None = None, executor: str = "local",
                        address: str | None = None) -> list[StoredRun]:
    """Train the configs the store lacks, then return every config's run (in order).

    ``executor``/``address``/``workers`` as :func:`~l2dynamics.sweep.run_sweep` (``"ray"``: one
    Ray task per run, on the cluster at `address`). ``names`` limits the metrics read back
    (default: all). Raises RuntimeError if a run failed (an exception, not a divergence:
    diverged runs come back with their status)."""
    from l2dynamics.store import RunStore
    from l2dynamics.store.sqlite import pivot_metrics
    from l2dynamics.sweep import canonical, completed_runs, run_sweep

    start = time.perf_counter()
    refuse_unrunnable(configs, store_path)
    if log is None:
        result = run_sweep(None, store_path, configs=list(configs), workers=workers,
                           executor=executor, address=address)
    else:
        with StoreProgress(configs, store_path, log) as progress:
            result = run_sweep(None, store_path, configs=list(configs), workers=workers,
                               progress=progress.runs_done, executor=executor,
                               address=address)
    if result.failed:
        raise RuntimeError(f"{result.failed} of {len(configs)} runs failed: {result.errors[:2]}")
    with RunStore(store_path) as store:
        done = completed_runs(store)
        ids = [done[canonical(c)] for c in configs]
        status = {r["id"]: r["status"] for r in store.list_runs(ids=ids)}
        long = store.series(ids, names=list(names) if names is not None else None)
    if log is not None:
        log(f"{len(configs)} runs ready ({result.skipped} from the store, "
            f"{time.perf_counter() - start:.0f} s)")
    wide = pivot_metrics(long, ["run_id", "step"])
    out = []
    for cfg, run_id in zip(configs, ids, strict=True):
        hist = wide[wide["run_id"] == run_id].drop(columns="run_id").reset_index(drop=True)
        out.append(StoredRun(cfg, run_id, status[run_id], hist))
    return out
