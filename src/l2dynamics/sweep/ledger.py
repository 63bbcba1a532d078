"""A sweep's plan and accounting, shared by every executor.

Runs already in the store with status "finished" or "diverged" and an identical config
(canonical JSON of ``Config.to_dict()``) are skipped, so re-running a sweep after a crash
completes only what is missing; a config listed twice runs once. Every executor (local
processes, :mod:`l2dynamics.sweep.local`; Ray tasks, :mod:`l2dynamics.sweep.ray_executor`)
accounts for what it ran through one :class:`SweepLedger`, so they skip, count and report
progress identically.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from l2dynamics.config import Config

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


def all_done(configs: Sequence[Config], store_path: str | Path | None) -> bool:
    """Whether an existing store already holds every config as finished/diverged."""
    from l2dynamics.store import RunStore, default_store_path

    path = Path(store_path) if store_path is not None else default_store_path()
    if not path.is_file():
        return False
    with RunStore(path, create=False) as store:
        done = completed_runs(store)
    return all(canonical(cfg) in done for cfg in configs)
