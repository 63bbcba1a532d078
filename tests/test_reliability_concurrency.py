"""Many processes writing metrics into one store at once: no row lost, none duplicated.

Each writer process opens the same (not yet existing) SQLite file at the same moment, then
commits its metric transactions interleaved with the others: half into a run of its own, half
into one run that every writer shares. Afterwards the store must hold exactly the expected
(run, metric, step) rows with their values, every run finished, and pass ``integrity_check``.
The same with Ray worker processes (tasks) as the writers.
"""

import multiprocessing
import sqlite3
import sys
import time

import pytest

from l2dynamics.store import RunStore

WRITERS = 4
WRITES = 300  # metric transactions per local writer: 1 200 in all
RAY_WRITES = 250  # per Ray task: 1 000 in all


def _writer(path, index, writes, barrier=None):
    """Open the store, wait for the others, then `writes` transactions of two rows each,
    alternating between this writer's run and the shared run 1; finish its own run."""
    with RunStore(path) as store:
        own = store.create_run({"writer": index}, steps_total=writes, seed=index, device="cpu")
        # taken before the barrier: every writer's end then follows every start (no writer
        # leaves the barrier before the last arrives), however the OS schedules 2 cores; a start
        # taken after it made "all at once" fail by 0.5 ms when one writer finished before
        # another was scheduled again
        start = time.time()
        if barrier is not None:
            barrier.wait()
        for i in range(writes):
            target, name = (own, "m") if i % 2 == 0 else (1, f"w{index}")
            store.add_metrics(target, [(i, 0.1 * i, f"{name}_a", index * 1e6 + i),
                                       (i, 0.1 * i, f"{name}_b", -(index * 1e6 + i))],
                              steps_done=i + 1)
        store.finish_run(own, "finished", steps_done=writes, wall_seconds=0.0,
                         summary={"writes": writes},
                         final_rows=[(writes, 0.1 * writes, "m_final", float(index))])
    return own, writes, start, time.time()


class FileBarrier:
    """A barrier for processes that share only a folder (Ray workers): each touches a file,
    then waits until all `parties` files exist."""

    def __init__(self, folder, parties, timeout=120.0):
        self.folder, self.parties, self.timeout = str(folder), parties, timeout

    def wait(self):
        import os
        import uuid

        open(os.path.join(self.folder, uuid.uuid4().hex), "w").close()
        deadline = time.time() + self.timeout
        while len(os.listdir(self.folder)) < self.parties:
            if time.time() > deadline:
                raise TimeoutError("not every writer started")
            time.sleep(0.01)


def _report(queue, path, index, writes, barrier):
    queue.put((index, *_writer(path, index, writes, barrier)))


def _expected(indices, writes):
    rows = set()
    for index in indices:
        for i in range(writes):
            name = "m" if i % 2 == 0 else f"w{index}"
            rows.add((name + "_a", i, index * 1e6 + i))
            rows.add((name + "_b", i, -(index * 1e6 + i)))
        rows.add(("m_final", writes, float(index)))
    return rows


def _check(path, own_runs, writes):
    """Every expected row present once with its value; nothing else; store intact."""
    conn = sqlite3.connect(path)
    try:
        (ok,) = conn.execute("PRAGMA integrity_check").fetchone()
        total, distinct = conn.execute(
            "SELECT COUNT(*), COUNT(DISTINCT run_id || '/' || name || '/' || step) FROM series"
        ).fetchone()
        runs = dict(conn.execute("SELECT id, status FROM runs").fetchall())
    finally:
        conn.close()
    assert ok == "ok"
    assert total == distinct, "duplicated rows"
    with RunStore(path) as store:
        series = store.series()
    got = {}
    for r in series.itertuples():
        index = r.run_id if r.run_id == 1 else own_runs[r.run_id]
        if r.name.startswith("w"):  # shared run: the writer is in the name
            assert r.run_id == 1
        got.setdefault(index, set()).add((r.name, int(r.step), float(r.value)))
    indices = sorted(set(own_runs.values()))
    everything = set().union(*got.values())
    expected = _expected(indices, writes)
    assert everything == expected, (f"{len(expected - everything)} rows lost, "
                                    f"{len(everything - expected)} unexpected")
    assert total == len(expected) == WRITERS * (2 * writes + 1)
    assert all(runs[rid] == "finished" for rid in own_runs)
    return total


def _shared_run(path):
    with RunStore(path) as store:
        assert store.create_run({"shared": True}, steps_total=0, seed=0, device="cpu") == 1


def test_concurrent_writer_processes_lose_and_duplicate_nothing(tmp_path):
    path = tmp_path / "s.sqlite"
    ctx = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
    barrier, queue = ctx.Barrier(WRITERS), ctx.Queue()
    _shared_run(path)
    procs = [ctx.Process(target=_report, args=(queue, str(path), k + 1, WRITES, barrier))
             for k in range(WRITERS)]
    for proc in procs:
        proc.start()
    try:
        results = sorted(queue.get(timeout=120) for _ in procs)
    finally:
        for proc in procs:
            proc.join(timeout=30)
    assert [proc.exitcode for proc in procs] == [0] * WRITERS
    own_runs = {run_id: index for index, run_id, *_ in results}
    assert sum(r[2] for r in results) == WRITERS * WRITES >= 1000
    # the writers really ran at the same time: every one started before any had finished
    assert max(r[3] for r in results) < min(r[4] for r in results)
    rows = _check(path, own_runs, WRITES)
    print(f"local: {WRITERS} processes, {WRITERS * WRITES} concurrent metric transactions, "
          f"{rows} rows, 0 lost, 0 duplicated")


def test_concurrent_opening_of_a_new_store(tmp_path):
    """Processes creating the same store file at once all succeed (schema made once)."""
    path = tmp_path / "new.sqlite"
    ctx = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
    with ctx.Pool(WRITERS) as pool:
        pool.starmap(_open_and_create, [(str(path), k) for k in range(WRITERS * 2)])
    with RunStore(path) as store:
        assert len(store.list_runs()) == WRITERS * 2


def _open_and_create(path, k):
    with RunStore(path) as store:
        store.create_run({"k": k}, steps_total=1, seed=k, device="cpu")


@pytest.mark.slow  # a local Ray instance: ~10 s to start on 2 cores
def test_concurrent_ray_workers_lose_and_duplicate_nothing(tmp_path, monkeypatch):
    ray = pytest.importorskip("ray")
    from ray import cloudpickle

    from l2dynamics.sweep.ray_executor import ray_session

    # a test-only local instance: no token file written to ~/.ray, no usage report
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    path = tmp_path / "s.sqlite"
    _shared_run(path)
    # Ray workers cannot import this test module: ship _writer by value
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        with ray_session(None, workers=WRITERS, cpus_per_run=0.5):
            task = ray.remote(_writer).options(num_cpus=0.5, max_retries=0)
            (tmp_path / "barrier").mkdir()
            barrier = FileBarrier(tmp_path / "barrier", WRITERS)
            results = ray.get([task.remote(str(path), k + 1, RAY_WRITES, barrier)
                               for k in range(WRITERS)])
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    assert not ray.is_initialized()
    own_runs = {r[0]: k + 1 for k, r in enumerate(results)}
    assert sum(r[1] for r in results) == WRITERS * RAY_WRITES >= 1000
    assert max(r[2] for r in results) < min(r[3] for r in results)  # all at once
    rows = _check(path, own_runs, RAY_WRITES)
    print(f"ray: {WRITERS} tasks, {WRITERS * RAY_WRITES} concurrent metric transactions, "
          f"{rows} rows, 0 lost, 0 duplicated")
