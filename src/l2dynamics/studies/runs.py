"""Train a study's configs through the run store and read their histories back.

Every study that trains many configs goes through :func:`train_through_store`: a config the
store already holds as finished or diverged is not trained again (so an interrupted study
resumes, and re-running a study only recomputes its tables and figures), the others are trained
by the one sweep executor (``workers`` processes), and each run's metrics come back as a wide
history (one row per step, one column per metric, as ``Trainer.run().history``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

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


def run_progress(log: Callable[[str], None], every_seconds: float = 15.0
                 ) -> Callable[[int, int], None]:
    """A sweep progress callback that logs "runs k/N, elapsed, ETA" at most every
    `every_seconds` (and at the end); the ETA extrapolates from the runs trained so far."""
    start = time.perf_counter()
    state = {"last": start, "read_back": 0}

    def progress(done: int, total: int) -> None:
        now = time.perf_counter()
        if now - start < 0.5 and state["read_back"] == done - 1:
            state["read_back"] = done  # the store's runs are ticked off first, at once
            return
        if now - state["last"] < every_seconds and done < total:
            return
        state["last"] = now
        trained = done - state["read_back"]
        eta = (now - start) / trained * (total - done) if trained > 0 else math.nan
        eta_text = f", about {eta:.0f} s left" if math.isfinite(eta) and done < total else ""
        log(f"runs {done}/{total} done, {now - start:.0f} s{eta_text}")

    return progress


def train_through_store(configs: Sequence[Config], store_path: str | Path, *,
                        workers: int = 1, names: Sequence[str] | None = None,
                        log: Callable[[str], None] | None = None) -> list[StoredRun]:
    """Train the configs the store lacks, then return every config's run (in order).

    ``names`` limits the metrics read back (default: all). Raises RuntimeError if a run
    failed (an exception, not a divergence: diverged runs come back with their status)."""
    from l2dynamics.store import RunStore
    from l2dynamics.store.sqlite import pivot_metrics
    from l2dynamics.sweep import canonical, completed_runs, run_sweep

    start = time.perf_counter()
    refuse_unrunnable(configs, store_path)
    progress = run_progress(log) if log is not None else None
    result = run_sweep(None, store_path, configs=list(configs), workers=workers,
                       progress=progress)
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
