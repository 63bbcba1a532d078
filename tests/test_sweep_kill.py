"""A sweep SIGKILLed mid-way and re-run: no finished run is repeated or lost."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from l2dynamics import RunStore
from l2dynamics.sweep import canonical, load_sweep

SPEC = {
    "name": "kill",
    "base": {"dataset": "digits", "model": "fc", "width": 32, "lr": 0.1, "steps": 600,
             "eval_per_decade": 5, "norms_per_tensor": False},
    "grid": {"lam": [0.0, 1e-3, 1e-2], "seed": [0, 1, 2]},
}


def _finished(path):
    try:
        with RunStore(path, create=False) as store:
            return store.list_runs(status="finished")
    except Exception:  # not created yet, or busy
        return []


def _sweep_cmd(spec, store, workers, engine="sequential"):
    return [sys.executable, "-m", "l2dynamics.cli", "sweep", str(spec), "--store", str(store),
            "--workers", str(workers), "--engine", engine]


@pytest.mark.parametrize("workers, engine", [(1, "sequential"), (2, "sequential"),
                                             (1, "vectorized")])
def test_killed_sweep_reruns_only_what_is_missing(tmp_path, workers, engine):
    spec, store = tmp_path / "spec.yaml", tmp_path / "s.sqlite"
    # vectorized: three architectures (widths) of three seeds each, i.e. three ensembles
    grid = SPEC["grid"] if engine == "sequential" else {"width": [16, 24, 32],
                                                          "seed": [0, 1, 2]}
    base = {k: v for k, v in SPEC["base"].items() if k not in grid}
    spec.write_text(yaml.safe_dump({**SPEC, "base": base, "grid": grid}))
    total = len(load_sweep(spec))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(_sweep_cmd(spec, store, workers, engine), env=env,
                            start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 180
        while len(_finished(store)) < 3 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the sweep and its worker processes
        proc.wait()
    before = {r["id"]: r for r in _finished(store)}
    assert 3 <= len(before) < total, "the kill must land mid-sweep"
    with RunStore(store) as st:
        series_before = {rid: st.series([rid]).to_dict("list") for rid in before}

    rerun = subprocess.run(_sweep_cmd(spec, store, workers, engine), env=env, capture_output=True,
                           text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{len(before)} skipped" in " ".join(rerun.stdout.split())

    with RunStore(store) as st:
        (ok,) = st._conn.execute("PRAGMA integrity_check").fetchone()
        finished = st.list_runs(status="finished")
        others = [r for r in st.list_runs() if r["status"] != "finished"]
        # Finished runs from before the kill are intact: same rows, same metrics, not re-run.
        for rid, rec in before.items():
            assert st.get_run(rid)["finished_at"] == rec["finished_at"]
            assert st.series([rid]).to_dict("list") == series_before[rid]
    assert ok == "ok"
    # Every config is finished exactly once: none lost, none repeated.
    keys = [canonical(r["config"]) for r in finished]
    expected = {canonical(c) for c in load_sweep(spec).configs()}
    assert len(keys) == len(set(keys)) == total and set(keys) == expected
    # What the kill interrupted never looks finished: it stays 'running' (stale), with the
    # re-run's copy finished beside it.
    assert all(r["status"] == "running" for r in others)
    assert len(others) <= workers * (3 if engine == "vectorized" else 1)
    summary = json.dumps([r["summary"] for r in finished])
    assert "best_test_acc" in summary


def test_workers_exit_when_the_sweep_process_is_killed(tmp_path):
    """Only the sweep's own process is killed (as `kill PID` does): its worker processes must
    not train on as orphans."""
    spec, store = tmp_path / "spec.yaml", tmp_path / "s.sqlite"
    slow = {**SPEC, "base": {**SPEC["base"], "steps": 10**6, "eval_every": 200}}
    spec.write_text(yaml.safe_dump(slow))
    proc = subprocess.Popen(_sweep_cmd(spec, store, 2), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: set[int] = set()
    try:
        deadline = time.time() + 120
        while len(workers) < 2 and time.time() < deadline:
            try:
                with RunStore(store, create=False) as st:
                    workers = {r["pid"] for r in st.list_runs(status="running")}
            except Exception:
                pass
            time.sleep(0.1)
        assert len(workers) == 2 and proc.pid not in workers
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.time() + 15
        while time.time() < deadline and any(_alive(pid) for pid in workers):
            time.sleep(0.2)
        assert not any(_alive(pid) for pid in workers)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by init) counts as gone
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_killed_worker_does_not_fail_the_rest_of_the_sweep(tmp_path):
    """SIGKILL one worker process (as the out-of-memory killer would): the pool breaks, and
    the runs it had not finished go to a fresh pool; the sweep still finishes every config."""
    spec, store = tmp_path / "spec.yaml", tmp_path / "s.sqlite"
    spec.write_text(yaml.safe_dump(SPEC))
    proc = subprocess.Popen(_sweep_cmd(spec, store, 2), start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        victim, deadline = None, time.time() + 120
        while victim is None and time.time() < deadline:
            try:
                with RunStore(store, create=False) as st:
                    running = st.list_runs(status="running")
                    victim = running[0]["pid"] if running else None
            except Exception:
                pass
            time.sleep(0.05)
        assert victim is not None
        os.kill(victim, signal.SIGKILL)
        out, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0
    total = len(load_sweep(spec))
    assert f"{total} runs: {total} finished" in " ".join(out.split())
    with RunStore(store) as st:
        keys = [canonical(r["config"]) for r in st.list_runs(status="finished")]
    assert len(keys) == len(set(keys)) == total
