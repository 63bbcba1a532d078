"""The run store: transactions, crash semantics and pandas views."""

import math
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from l2dynamics import RunStore, StoreError, load_runs, load_series


def test_metrics_round_trip_with_nan(tmp_path):
    with RunStore(tmp_path / "s.sqlite") as store:
        rid = store.create_run({"lam": 0.1}, steps_total=10, seed=0, device="cpu")
        store.add_metrics(rid, [(0, 0.0, "test_acc", 0.1), (5, 0.5, "test_acc", math.nan),
                                (5, 0.5, "lam", 0.1)])
        store.finish_run(rid, "finished", steps_done=10, wall_seconds=1.0, summary={"x": 1},
                         final_rows=[(10, 1.0, "test_acc", 0.9)])
        wide = load_series(store)
    assert wide["step"].tolist() == [0, 5, 10]
    assert math.isnan(wide.loc[1, "test_acc"]) and wide.loc[2, "test_acc"] == 0.9
    assert wide["phys_time"].tolist() == [0.0, 0.5, 1.0]


def test_failed_transaction_leaves_nothing(tmp_path):
    with RunStore(tmp_path / "s.sqlite") as store:
        rid = store.create_run({}, steps_total=1, seed=0, device="cpu")
        with pytest.raises(RuntimeError), store.transaction() as cur:
            cur.execute("UPDATE runs SET status = 'finished' WHERE id = ?", (rid,))
            raise RuntimeError("crash inside a write")
        assert store.get_run(rid)["status"] == "running"


def test_missing_store_is_a_clear_error(tmp_path):
    with pytest.raises(StoreError, match="no run store"):
        load_runs(tmp_path / "nope.sqlite")
    with RunStore(tmp_path / "s.sqlite") as store, pytest.raises(StoreError, match="no run"):
        store.get_run(42)


def test_killed_run_is_stale_never_finished(tmp_path):
    """SIGKILL a training process mid-run: the run stays 'running' and shows as stale."""
    path = tmp_path / "s.sqlite"
    script = textwrap.dedent(f"""
        import l2dynamics as l
        l.train(dataset="digits", width=32, steps=10**7, eval_every=200, store={str(path)!r})
    """)
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            if path.exists():
                try:
                    frame = load_series(path)
                    if len(frame) > 3:
                        break
                except Exception:
                    pass
            time.sleep(0.2)
        else:
            pytest.fail("training process wrote no metrics")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    runs = load_runs(path)
    assert runs.loc[0, "status"] == "running" and bool(runs.loc[0, "stale"])
    with RunStore(path) as store:
        (ok,) = store._conn.execute("PRAGMA integrity_check").fetchone()
    assert ok == "ok"
