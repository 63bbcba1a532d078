"""The run store: one SQLite file (WAL mode) holding runs and their metric series.

Tables: ``runs`` (config, resolved decay rule, seed, status, timings, library versions, device,
checkpoint path, summary) and ``series`` (run_id, step, phys_time, name, value) with one row per
metric per evaluation. Every write is one transaction, and a run reads ``finished`` only after its
last metrics and summary are committed in the same transaction, so a crash leaves a run marked
``running`` (shown as ``stale`` once its process is gone), never a half-written one that looks
finished. A run trained elsewhere (a Ray task) is written whole by ``record_run``.

Concurrency: every connection waits up to 60 s for the write lock (``busy_timeout``) and each
write transaction starts with ``BEGIN IMMEDIATE``; a write that still meets "database is locked"
is retried (:data:`LOCK_RETRIES` times) before it fails. ``claim_run`` lets exactly one process
take over a run whose process is gone (a sweep resuming it).

:func:`fault_point` is a test hook of the crash-safety tests; it does nothing unless the
environment variable ``L2DYNAMICS_FAULT`` is set.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

from l2dynamics.errors import StoreError

SCHEMA_VERSION = 1
STATUSES = ("running", "finished", "diverged", "interrupted", "failed")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    wall_seconds REAL,
    steps_total INTEGER NOT NULL,
    steps_done INTEGER NOT NULL DEFAULT 0,
    diverged_step INTEGER,
    diverged_cause TEXT,
    seed INTEGER,
    device TEXT,
    host TEXT,
    pid INTEGER,
    config_json TEXT NOT NULL,
    decay_json TEXT,
    versions_json TEXT,
    checkpoint_path TEXT,
    summary_json TEXT,
    error TEXT
);
CREATE TABLE IF NOT EXISTS series (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    step INTEGER NOT NULL,
    phys_time REAL NOT NULL,
    value REAL,
    PRIMARY KEY (run_id, name, step)
) WITHOUT ROWID;
"""

_JSON_COLUMNS = ("config_json", "decay_json", "versions_json", "summary_json")
LOCK_RETRIES = 5  # more attempts of a write transaction that found the database locked
FAULT_ENV = "L2DYNAMICS_FAULT"
_fault_counts: dict[str, int] = {}


def fault_point(kind: str) -> None:
    """Crash-test hook: SIGKILL this process at the N-th time it reaches fault point `kind`.

    A no-op unless ``$L2DYNAMICS_FAULT`` names `kind`, as ``KIND:N`` (several: comma-separated),
    e.g. ``store_write:3`` kills the process in the middle of its 3rd metric transaction (rows
    inserted, not committed) and ``checkpoint_write:2`` half-way through writing the temporary
    file of its 2nd checkpoint. Counts are per process. Used by tests/test_reliability_crash.py.
    """
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    count = _fault_counts[kind] = _fault_counts.get(kind, 0) + 1
    for item in spec.split(","):
        name, _, n = item.strip().partition(":")
        if name == kind and n.strip().isdigit() and count == int(n):
            os.kill(os.getpid(), signal.SIGKILL)


def default_store_path() -> Path:
    """``$L2DYNAMICS_STORE`` or ``runs/l2dynamics.sqlite`` in the working directory."""
    return Path(os.environ.get("L2DYNAMICS_STORE", "runs/l2dynamics.sqlite"))


class RunStore:
    """Read and write runs in one SQLite file. Safe for several processes at once."""

    def __init__(self, path: str | os.PathLike | None = None, *, create: bool = True):
        self.path = Path(path) if path is not None else default_store_path()
        if not create and not self.path.is_file():
            raise StoreError(f"no run store at {self.path} (train something first, or --store)")
        try:
            if create:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
            self._conn.execute("PRAGMA busy_timeout = 60000")
            tables = {r[0] for r in self._conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
            if (tables or not create) and "meta" not in tables:
                self._conn.close()
                raise StoreError(f"{self.path} is not an l2dynamics run store (a SQLite file "
                                 "without its 'meta' table); give the path of a run store")
            _retry_locked(lambda: self._conn.execute("PRAGMA journal_mode = WAL"))
            self._conn.execute("PRAGMA synchronous = NORMAL")
            self._conn.execute("PRAGMA foreign_keys = ON")
            with self.transaction() as cur:
                for statement in _split(_SCHEMA):
                    cur.execute(statement)
                cur.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)",
                            (str(SCHEMA_VERSION),))
        except (sqlite3.DatabaseError, OSError) as err:
            raise StoreError(f"cannot open run store {self.path}: {err}") from None

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Cursor]:
        """BEGIN IMMEDIATE … COMMIT; rolled back on any exception."""
        cur = self._conn.cursor()
        _retry_locked(lambda: cur.execute("BEGIN IMMEDIATE"))
        try:
            yield cur
            _retry_locked(lambda: cur.execute("COMMIT"))
        except BaseException:
            if self._conn.in_transaction:
                cur.execute("ROLLBACK")
            raise

    # --- writes ---------------------------------------------------------------------------

    def create_run(self, config: dict[str, Any], *, steps_total: int, seed: int, device: str,
                   decay: dict | None = None, versions: dict | None = None,
                   name: str | None = None) -> int:
        now = time.time()
        with self.transaction() as cur:
            cur.execute(
                "INSERT INTO runs (name, status, created_at, started_at, steps_total, seed, device,"
                " host, pid, config_json, decay_json, versions_json)"
                " VALUES (?, 'running', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (name, now, now, steps_total, seed, device, socket.gethostname(), os.getpid(),
                 json.dumps(config, sort_keys=True), json.dumps(decay),
                 json.dumps(versions or {})),
            )
            return int(cur.lastrowid)

    def add_metrics(self, run_id: int, rows: Iterable[tuple[int, float, str, float]],
                    *, steps_done: int | None = None) -> None:
        """Insert (step, phys_time, name, value) rows in one transaction."""
        rows = [(run_id, name, int(step), float(t), _real(v)) for step, t, name, v in rows]
        with self.transaction() as cur:
            cur.executemany("INSERT OR REPLACE INTO series VALUES (?, ?, ?, ?, ?)", rows)
            if steps_done is not None:
                cur.execute("UPDATE runs SET steps_done = ? WHERE id = ?", (steps_done, run_id))
            fault_point("store_write")  # a no-op unless $L2DYNAMICS_FAULT says so

    def mark_resumed(self, run_id: int, from_step: int) -> None:
        """Drop metrics at or after `from_step` (they will be measured again) and mark running."""
        with self.transaction() as cur:
            cur.execute("DELETE FROM series WHERE run_id = ? AND step >= ?", (run_id, from_step))
            cur.execute(
                "UPDATE runs SET status = 'running', steps_done = ?, host = ?, pid = ?,"
                " finished_at = NULL, diverged_step = NULL, diverged_cause = NULL, error = NULL"
                " WHERE id = ?",
                (from_step, socket.gethostname(), os.getpid(), run_id),
            )

    def claim_run(self, run_id: int, *, status: str, pid: int | None,
                  host: str | None) -> bool:
        """Take over run `run_id` for this process if it still has `status`, `pid` and `host`
        (as read a moment ago): True for exactly one of several processes that try at once.
        Used to resume a run whose process is gone without two sweeps resuming it twice."""
        with self.transaction() as cur:
            cur.execute(
                "UPDATE runs SET pid = ?, host = ? WHERE id = ? AND status = ? AND pid IS ?"
                " AND host IS ?",
                (os.getpid(), socket.gethostname(), run_id, status, pid, host),
            )
            return cur.rowcount == 1

    def set_checkpoint(self, run_id: int, path: str) -> None:
        with self.transaction() as cur:
            cur.execute("UPDATE runs SET checkpoint_path = ? WHERE id = ?", (path, run_id))

    def finish_run(self, run_id: int, status: str, *, steps_done: int, wall_seconds: float,
                   summary: dict | None = None, diverged_step: int | None = None,
                   diverged_cause: str | None = None, error: str | None = None,
                   final_rows: Sequence[tuple[int, float, str, float]] = ()) -> None:
        """Write the last metrics and the final status in one transaction."""
        if status not in STATUSES:
            raise ValueError(f"status {status!r} not in {STATUSES}")
        rows = [(run_id, name, int(s), float(t), _real(v)) for s, t, name, v in final_rows]
        with self.transaction() as cur:
            cur.executemany("INSERT OR REPLACE INTO series VALUES (?, ?, ?, ?, ?)", rows)
            cur.execute(
                "UPDATE runs SET status = ?, steps_done = ?, finished_at = ?,"
                " wall_seconds = COALESCE(wall_seconds, 0) + ?, summary_json = ?,"
                " diverged_step = ?, diverged_cause = ?, error = ? WHERE id = ?",
                (status, steps_done, time.time(), wall_seconds, json.dumps(summary),
                 diverged_step, diverged_cause, error, run_id),
            )
            fault_point("store_write")

    def record_run(self, config: dict[str, Any], status: str, *, steps_total: int,
                   steps_done: int, seed: int, device: str, wall_seconds: float,
                   rows: Iterable[tuple[int, float, str, float]] = (),
                   summary: dict | None = None, decay: dict | None = None,
                   versions: dict | None = None, name: str | None = None,
                   diverged_step: int | None = None, diverged_cause: str | None = None,
                   error: str | None = None, host: str | None = None, pid: int | None = None,
                   started_at: float | None = None, finished_at: float | None = None) -> int:
        """Store a run that ran elsewhere (e.g. a Ray task), with all its (step, phys_time,
        name, value) metric rows, in ONE transaction; returns its id.

        Unlike ``create_run`` … ``finish_run``, there is no moment at which the run is visible
        with only part of its metrics, so a crash while recording leaves no trace at all.
        ``host``/``pid`` name the process that trained it (default: this one); times are Unix
        seconds (default: now), ``wall_seconds`` the training time measured there."""
        if status not in STATUSES or status == "running":
            raise ValueError(f"status {status!r} must be a final status, one of {STATUSES[1:]}")
        now = time.time()
        finished_at = now if finished_at is None else finished_at
        started_at = finished_at - wall_seconds if started_at is None else started_at
        with self.transaction() as cur:
            cur.execute(
                "INSERT INTO runs (name, status, created_at, started_at, finished_at,"
                " wall_seconds, steps_total, steps_done, diverged_step, diverged_cause, seed,"
                " device, host, pid, config_json, decay_json, versions_json, summary_json, error)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (name, status, started_at, started_at, finished_at, wall_seconds, steps_total,
                 steps_done, diverged_step, diverged_cause, seed, device,
                 socket.gethostname() if host is None else host,
                 os.getpid() if pid is None else pid, json.dumps(config, sort_keys=True),
                 json.dumps(decay), json.dumps(versions or {}), json.dumps(summary), error),
            )
            run_id = int(cur.lastrowid)
            cur.executemany("INSERT OR REPLACE INTO series VALUES (?, ?, ?, ?, ?)",
                            [(run_id, n, int(s), float(t), _real(v)) for s, t, n, v in rows])
            fault_point("store_write")
            return run_id

    # --- reads ----------------------------------------------------------------------------

    def get_run(self, run_id: int) -> dict[str, Any]:
        cur = self._conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,))
        row = cur.fetchone()
        if row is None:
            raise StoreError(f"no run with id {run_id} in {self.path}")
        return self._decode(cur.description, row)

    def list_runs(self, *, status: str | None = None,
                  ids: Sequence[int] | None = None) -> list[dict[str, Any]]:
        query, args = "SELECT * FROM runs", []
        clauses = []
        if status is not None:
            clauses.append("status = ?")
            args.append(status)
        if ids is not None:
            clauses.append(f"id IN ({','.join('?' * len(ids))})")
            args.extend(int(i) for i in ids)
        if clauses:
            query += " WHERE " + " AND ".join(clauses)
        cur = self._conn.execute(query + " ORDER BY id", args)
        return [self._decode(cur.description, row) for row in cur.fetchall()]

    def series(self, run_ids: Sequence[int] | None = None,
               names: Sequence[str] | None = None) -> pd.DataFrame:
        """Long-format metric rows: run_id, name, step, phys_time, value."""
        import pandas as pd

        query, args, clauses = "SELECT run_id, name, step, phys_time, value FROM series", [], []
        if run_ids is not None:
            clauses.append(f"run_id IN ({','.join('?' * len(run_ids))})")
            args.extend(int(i) for i in run_ids)
        if names is not None:
            clauses.append(f"name IN ({','.join('?' * len(names))})")
            args.extend(names)
        if clauses:
            query += " WHERE " + " AND ".join(clauses)
        frame = pd.read_sql_query(query + " ORDER BY run_id, step, name", self._conn, params=args)
        frame["value"] = frame["value"].astype(float)
        return frame

    @staticmethod
    def _decode(description: Any, row: Sequence[Any]) -> dict[str, Any]:
        record = {d[0]: v for d, v in zip(description, row, strict=True)}
        for column in _JSON_COLUMNS:
            text = record.pop(column)
            record[column.removesuffix("_json")] = json.loads(text) if text else None
        record["stale"] = record["status"] == "running" and _process_gone(record)
        return record


def _retry_locked(execute: Any) -> Any:
    """Run `execute()`, retrying with a short back-off when SQLite still reports the database
    locked or busy after its own busy timeout."""
    for attempt in range(LOCK_RETRIES + 1):
        try:
            return execute()
        except sqlite3.OperationalError as err:
            text = str(err).lower()
            if attempt == LOCK_RETRIES or ("locked" not in text and "busy" not in text):
                raise
            time.sleep(0.05 * 2**attempt)


def _split(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


def _real(value: float) -> float | None:
    """SQLite REAL; NaN is stored as NULL and read back as NaN."""
    value = float(value)
    return None if value != value else value


def _process_gone(record: dict[str, Any]) -> bool:
    if record.get("host") != socket.gethostname() or not record.get("pid"):
        return False
    if record["pid"] == os.getpid():
        return False
    try:
        os.kill(record["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:  # a zombie (killed, not yet reaped by its parent) is gone too (Linux)
        with open(f"/proc/{record['pid']}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] == "Z"
    except (OSError, IndexError):
        return False


# --- pandas views -------------------------------------------------------------------------------


def load_runs(store: str | os.PathLike | RunStore | None = None, *, status: str | None = None,
              ids: Sequence[int] | None = None) -> pd.DataFrame:
    """One row per run: store columns, summary metrics, and every config key as a column."""
    import pandas as pd

    with _open(store) as st:
        records = st.list_runs(status=status, ids=ids)
    rows = []
    for rec in records:
        row = {k: v for k, v in rec.items() if k not in ("config", "decay", "versions", "summary")}
        row.update({k: v for k, v in (rec["summary"] or {}).items()})
        for key, value in rec["config"].items():
            row.setdefault(key, json.dumps(value) if isinstance(value, (list, dict)) else value)
        rows.append(row)
    return pd.DataFrame(rows)


def load_series(store: str | os.PathLike | RunStore | None = None, *,
                run_ids: Sequence[int] | None = None, names: Sequence[str] | None = None,
                wide: bool = True) -> pd.DataFrame:
    """Metric series. ``wide``: one row per (run_id, step) with a column per metric;
    otherwise long rows (run_id, name, step, phys_time, value)."""
    with _open(store) as st:
        long = st.series(run_ids, names)
    if not wide:
        return long
    return pivot_metrics(long, ["run_id", "step"])


def pivot_metrics(long: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Long (keys…, phys_time, name, value) rows → one row per key with a column per metric."""
    import pandas as pd

    if long.empty:
        return pd.DataFrame(columns=[*keys, "phys_time"])
    wide = long.pivot_table(index=keys, columns="name", values="value", aggfunc="last",
                            dropna=False)
    wide.columns.name = None
    times = long.groupby(keys)["phys_time"].last()
    wide.insert(0, "phys_time", times)
    return wide.reset_index().sort_values(keys, ignore_index=True)


@contextmanager
def _open(store: str | os.PathLike | RunStore | None) -> Iterator[RunStore]:
    if isinstance(store, RunStore):
        yield store
        return
    opened = RunStore(store, create=False)
    try:
        yield opened
    finally:
        opened.close()
