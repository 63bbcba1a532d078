"""The Ray sweep executor: same stored results as the local executor, no shared filesystem.

The cluster tests start a real Ray head on loopback as a subprocess (its own session and temp
dir), once per module, and tear it down by its process group even when a test fails. Tests that
need no cluster (store writes, option errors, Ray missing) run without Ray installed.
"""

import contextlib
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest
import torch
import yaml
from typer.testing import CliRunner

from l2dynamics.cli import app
from l2dynamics.errors import ConfigError
from l2dynamics.store import RunStore
from l2dynamics.sweep import load_sweep, run_sweep
from l2dynamics.sweep.ray_executor import record_outcome, train_config

BASE = {"dataset": "digits", "model": "fc", "width": 16, "steps": 40, "lr": 0.1,
        "eval_per_decade": 3, "norms_per_tensor": False}
SPEC = {"name": "r", "base": BASE, "grid": {"lam": [0.0, 1e-2], "seed": [0, 1]}}
WALL_CLOCK = {"wall_time"}  # metrics that measure time, not training
WALL_SUMMARY = {"steps_per_second"}


def stored(path):
    """Canonical config → everything stored about the run that does not measure wall time."""
    with RunStore(path, create=False) as st:
        records = st.list_runs()
        series = st.series()
    out = {}
    for rec in records:
        rows = series[(series.run_id == rec["id"]) & ~series.name.isin(WALL_CLOCK)]
        out[json.dumps(rec["config"], sort_keys=True)] = {
            "name": rec["name"], "status": rec["status"], "steps_total": rec["steps_total"],
            "steps_done": rec["steps_done"], "seed": rec["seed"], "device": rec["device"],
            "diverged_step": rec["diverged_step"], "diverged_cause": rec["diverged_cause"],
            "decay": rec["decay"],
            "summary": {k: v for k, v in (rec["summary"] or {}).items()
                        if k not in WALL_SUMMARY},
            # NaN (stored as NULL) compares unequal to itself: compare its text instead
            "series": sorted((r.name, int(r.step), repr(float(r.phys_time)), repr(float(r.value)))
                             for r in rows.itertuples()),
        }
    return out


def one_thread_local_sweep(spec, path, **kwargs):
    """The local executor with one torch thread, as each Ray task (cpus_per_run=1) uses:
    float32 reductions are bit-identical only at the same thread count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return run_sweep(spec, path, **kwargs)
    finally:
        torch.set_num_threads(previous)


# --- without a cluster ----------------------------------------------------------------------


def test_record_run_is_one_transaction(tmp_path):
    path = tmp_path / "s.sqlite"
    rows = [(0, 0.0, "test_acc", 0.1), (5, 0.5, "test_acc", 0.4), (5, 0.5, "train_loss", math.nan)]
    with RunStore(path) as st:
        rid = st.record_run({"lam": 0.0}, "finished", steps_total=5, steps_done=5, seed=3,
                            device="cpu", wall_seconds=1.5, rows=rows, summary={"a": 1},
                            name="x", host="node-7", pid=42, started_at=100.0,
                            finished_at=101.5)
        rec = st.get_run(rid)
        assert (rec["status"], rec["steps_done"], rec["host"], rec["pid"]) == ("finished", 5,
                                                                              "node-7", 42)
        assert (rec["started_at"], rec["finished_at"], rec["wall_seconds"]) == (100.0, 101.5, 1.5)
        assert rec["summary"] == {"a": 1} and not rec["stale"]
        series = st.series([rid])
        assert len(series) == 3 and math.isnan(series.value.iloc[-1])
        # a bad row aborts the whole run: no record, no metrics
        with pytest.raises(ValueError):
            st.record_run({"lam": 1.0}, "finished", steps_total=5, steps_done=5, seed=0,
                          device="cpu", wall_seconds=0.0, rows=[*rows, (9, 0.9, "x", "bad")])
        with pytest.raises(ValueError, match="final status"):
            st.record_run({"lam": 1.0}, "running", steps_total=5, steps_done=0, seed=0,
                          device="cpu", wall_seconds=0.0)
        assert [r["id"] for r in st.list_runs()] == [rid]
        assert len(st.series()) == 3


def test_task_function_stores_what_the_local_executor_stores(tmp_path, monkeypatch):
    """train_config + record_outcome (the Ray path, minus Ray) equals a local run, and a run
    that raises while training is returned as failed with its metrics so far."""
    spec = {"name": "f", "base": BASE, "grid": {"lam": [1e-2]}}
    cfg = load_sweep(spec).configs()[0]
    local, remote = tmp_path / "local.sqlite", tmp_path / "remote.sqlite"
    one_thread_local_sweep(spec, local)
    previous = torch.get_num_threads()
    try:
        out = train_config(cfg.to_dict(), 1)
    finally:
        torch.set_num_threads(previous)
    with RunStore(remote) as st:
        record_outcome(st, cfg, out)
    assert stored(local) == stored(remote)

    from l2dynamics.train.loop import Trainer

    def boom(self):
        self._record(self.measure())  # one evaluation, then the failure
        raise RuntimeError("boom")

    monkeypatch.setattr(Trainer, "run", boom)
    out = train_config(cfg.to_dict(), 1)
    torch.set_num_threads(previous)
    assert out["status"] == "failed" and "boom" in out["error"] and "boom" in out["message"]
    assert out["rows"] and out["summary"] is None


def test_bad_executor_options_are_one_line_errors(tmp_path):
    store = tmp_path / "none.sqlite"
    with pytest.raises(ConfigError, match="executor 'bogus'"):
        run_sweep(SPEC, store, executor="bogus")
    with pytest.raises(ConfigError, match="address needs executor 'ray'"):
        run_sweep(SPEC, store, address="127.0.0.1:6379")
    with pytest.raises(ConfigError, match="workers"):
        run_sweep(SPEC, store, workers=0)
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    runner = CliRunner()
    for args, words in ((["--executor", "bogus"], "--executor 'bogus'"),
                        (["--address", "127.0.0.1:6379"], "--address needs --executor ray"),
                        (["--cpus-per-run", "2"], "--cpus-per-run needs --executor ray")):
        res = runner.invoke(app, ["sweep", str(spec), "--store", str(store), *args])
        assert res.exit_code == 2, res.output
        assert words in res.output and len(res.output.strip().splitlines()) == 1
    assert not store.exists()


def test_ray_missing_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    store = tmp_path / "none.sqlite"
    with pytest.raises(ConfigError, match=r"pip install -e '\.\[ray\]'") as info:
        run_sweep(SPEC, store, executor="ray")
    assert "\n" not in str(info.value)
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    res = CliRunner().invoke(app, ["sweep", str(spec), "--store", str(store),
                                   "--executor", "ray"])
    assert res.exit_code == 2 and "pip install -e '.[ray]'" in res.output
    assert len(res.output.strip().splitlines()) == 1
    assert not store.exists()


# --- on a local Ray cluster -------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stop_group(proc: subprocess.Popen, grace: float = 20.0) -> None:
    """SIGTERM the head's process group (it drains and stops its raylet, GCS and workers),
    then SIGKILL whatever of that group is left. Only processes started here are touched."""
    pgid = proc.pid
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        proc.poll()
        if not _group_alive(pgid):
            break
        time.sleep(0.2)
    if _group_alive(pgid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def ray_address():
    """A Ray head on 127.0.0.1 with 2 CPUs, started with `ray start --block` in its own
    session (so its process group holds every process it starts), and its address."""
    ray = pytest.importorskip("ray")
    port = _free_port()
    temp = tempfile.mkdtemp(prefix="l2ray")  # short: Ray's socket paths must fit 107 bytes
    log_path = os.path.join(temp, "head.log")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    # A loopback-only test cluster: no token auth (Ray ≥ 2.5x turns it on when
    # ~/.ray/auth_token exists, and a driver given an explicit address does not), and no
    # 30 s drain on SIGTERM.
    env["RAY_AUTH_MODE"] = "disabled"
    env["RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S"] = "0"
    cmd = [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block",
           "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2",
           "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}",
           "--object-store-memory=100000000"]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            with open(log_path) as log:
                text = log.read()
            if "Ray runtime started" in text:
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"ray start failed (exit {proc.returncode}):\n{text[-3000:]}")
            time.sleep(0.25)
        yield f"127.0.0.1:{port}"
    finally:
        if ray.is_initialized():
            ray.shutdown()
        _stop_group(proc)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.slow  # one shared cluster: 33-39 s for the three (start-up included), 2 cores
def test_ray_matches_local_exactly_and_rerun_skips(ray_address, tmp_path):
    on_ray, local = tmp_path / "ray.sqlite", tmp_path / "local.sqlite"
    calls = []
    res = run_sweep(SPEC, on_ray, executor="ray", address=ray_address,
                    progress=lambda done, total: calls.append((done, total)))
    assert (res.total, res.finished, res.failed, res.skipped) == (4, 4, 0, 0), res.errors
    assert calls[0] == (0, 4) and calls[-1] == (4, 4)
    assert [c[0] for c in calls] == sorted(c[0] for c in calls)
    assert res.run_ids == [1, 2, 3, 4]
    one_thread_local_sweep(SPEC, local)

    a, b = stored(on_ray), stored(local)
    assert len(a) == 4 and a.keys() == b.keys()
    for key in a:
        assert a[key] == b[key], key  # exact: same statuses, summaries and metric values
    with RunStore(on_ray) as st:
        rec = st.list_runs()[0]
    assert rec["wall_seconds"] > 0 and rec["versions"]["l2dynamics"]

    again = run_sweep(SPEC, on_ray, executor="ray", address=ray_address)
    assert (again.skipped, again.finished, again.run_ids) == (4, 0, [])
    assert sorted(again.skipped_ids) == [1, 2, 3, 4]
    assert len(stored(on_ray)) == 4


@pytest.mark.slow  # one shared cluster: 33-39 s for the three (start-up included), 2 cores
def test_ray_diverged_and_failing_runs_do_not_stop_the_sweep(ray_address, tmp_path):
    store = tmp_path / "d.sqlite"
    base = {k: v for k, v in BASE.items() if k != "lr"}
    spec = {"name": "div", "base": {**base, "loss": "mse", "lam": 0.0},
            "grid": {"lr": [1e4, 0.1]}}
    configs = load_sweep(spec).configs()
    # a config whose data is missing on the worker: the task itself raises
    missing = configs[1].replace(dataset="mnist", data_dir=str(tmp_path / "no-data"),
                                 name="div missing data")
    res = run_sweep(spec, store, executor="ray", address=ray_address,
                    configs=[*configs, configs[0], missing])
    assert (res.total, res.diverged, res.finished, res.failed, res.skipped) == (4, 1, 1, 1, 1)
    assert "div missing data" in res.errors[0] and "DataError" in res.errors[0]
    assert "\n" not in res.errors[0]
    with RunStore(store) as st:
        runs = {r["config"]["lr"]: r for r in st.list_runs()}
    assert {lr: r["status"] for lr, r in runs.items()} == {1e4: "diverged", 0.1: "finished"}
    assert runs[1e4]["diverged_cause"] and runs[1e4]["diverged_step"] is not None


@pytest.mark.slow  # one shared cluster: 33-39 s for the three (start-up included), 2 cores
def test_cli_ray_executor(ray_address, tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({**SPEC, "grid": {"lam": [0.0, 1e-2]}}))
    store = tmp_path / "c.sqlite"
    runner = CliRunner()
    res = runner.invoke(app, ["sweep", str(spec), "--store", str(store), "--executor", "ray",
                              "--address", ray_address])
    assert res.exit_code == 0, res.output
    assert "2 finished" in res.output and "0 skipped" in res.output
    # nobody listens on a free port: one line, exit 2, nothing written
    fresh = tmp_path / "none.sqlite"
    res = runner.invoke(app, ["sweep", str(spec), "--store", str(fresh), "--executor", "ray",
                              "--address", f"127.0.0.1:{_free_port()}"])
    assert res.exit_code == 2 and "no Ray cluster answers" in res.output
    assert len(res.output.strip().splitlines()) == 1 and not fresh.exists()


@pytest.mark.slow  # two tiny regime studies on the shared cluster and here: ~15 s
def test_a_study_trains_its_runs_as_ray_tasks(ray_address, tmp_path):
    sets = []
    for item in ("base.dataset=digits", "base.n_test=50", "base.eval_train_size=32",
                 "n_trains=[64]", "widths=[8]", "losses=[mse]", "lams=[0.1, 0.4]",
                 "fixed_steps=30", "seeds=[0]", "cnn_widths=[]", "hessian_iters=0"):
        sets += ["--set", item]
    runner = CliRunner()
    res = runner.invoke(app, ["study", "regime", "--out", str(tmp_path / "ray"), "--executor",
                              "ray", "--address", ray_address, *sets])
    assert res.exit_code == 0, res.output
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as a Ray task with one CPU
    try:
        res = runner.invoke(app, ["study", "regime", "--out", str(tmp_path / "local"), *sets])
    finally:
        torch.set_num_threads(threads)
    assert res.exit_code == 0, res.output
    a, b = stored(tmp_path / "ray" / "runs.sqlite"), stored(tmp_path / "local" / "runs.sqlite")
    # two η × (λ = 0 + 2 λ) + the inverse arm's two runs (4/(ηλ) = 40 and 10 steps)
    assert len(a) == 8 and a.keys() == b.keys()
    for key in a:
        assert a[key] == b[key], key
    # a study whose runs are not Ray tasks is refused, before anything is written
    res = runner.invoke(app, ["study", "norm_traces", "--out", str(tmp_path / "n"),
                              "--executor", "ray", "--address", ray_address])
    assert res.exit_code == 2 and "norm_traces trains on this machine only" in res.output
    assert "regime" in res.output and not (tmp_path / "n").exists()


def test_a_suite_on_ray_names_the_studies_that_train_here():
    pytest.importorskip("ray")
    from l2dynamics.studies.registry import get_study
    from l2dynamics.studies.reproduce import check_study_executor

    pairs = [(key, get_study(key)) for key in ("regime", "norm_traces", "fmnist_cnn_bn",
                                               "fmnist_tstar", "theory")]
    assert check_study_executor("ray", None, 2, pairs, refuse=False) == ["norm_traces",
                                                                          "theory"]
    assert check_study_executor("local", None, 2, pairs) == []
    with pytest.raises(ConfigError, match="address needs executor 'ray'"):
        check_study_executor("local", "127.0.0.1:1", 2, pairs)
