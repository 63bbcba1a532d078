"""Crash safety: a real sweep SIGKILLed over and over at seeded random points, then finished.

Each kill lands in one of three places, drawn by a seeded RNG:

- ``step``: the test SIGKILLs the sweep's process group a random delay after its run started
  training (so, almost always, in the middle of an update);
- ``store``: ``L2DYNAMICS_FAULT=store_write:N`` — the sweep kills itself in the middle of its
  N-th metric transaction (rows inserted, not committed);
- ``checkpoint``: ``L2DYNAMICS_FAULT=checkpoint_write:N`` — it kills itself half-way through
  writing the temporary file of its N-th checkpoint (the half-written file is checked for).

After every kill the sweep is started again (the next start is the next victim). When a start
finishes the sweep, everything is checked against an uninterrupted run of the same sweep
(same seeds, CPU, one thread): one stored run per config, all finished, metrics and summaries
identical; no run that had finished before a kill was touched (same ``finished_at``, same
rows, wall-clock included) or run again; every killed run was continued under its own id from
its last checkpoint (its rows before that checkpoint are the ones measured before the kill);
no fallback to an older checkpoint was needed; ``PRAGMA integrity_check`` is ``ok`` after
every kill; and after every kill, every run that reads "finished" has all its metrics. If the
sweep finishes before all planned kills were spent, a new round starts on a fresh store.
"""

import contextlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
import warnings

import pytest
import yaml

from l2dynamics.store import RunStore
from l2dynamics.sweep import canonical, load_sweep, run_sweep
from l2dynamics.train.checkpoint import load_checkpoint

SPEC = {
    "name": "crash",
    "base": {"dataset": "digits", "model": "fc", "width": 16, "lr": 0.1, "momentum": 0.9,
             "steps": 400, "eval_per_decade": 5, "norms_per_tensor": False,
             "checkpoint_every": 40},
    "grid": {"lam": [0.0, 1e-2], "seed": [0, 1]},
}
WALL_CLOCK = {"wall_time"}  # metrics that measure time, not training
WALL_SUMMARY = {"steps_per_second"}
KINDS = ("step", "store", "checkpoint")
KILLS_SEQUENTIAL = 18  # 6 of each kind, one worker (the sweep process trains)
KILLS_POOL = 3  # worker processes (killed with the sweep, as its process group)
FAULT = "L2DYNAMICS_FAULT"  # the test hook (l2dynamics.store.sqlite.fault_point)


def _stored(path):
    """Canonical config → (run id, status, finished_at, summary without wall time, rows
    without wall time, all rows) of every stored run."""
    with RunStore(path, create=False) as st:
        records, series = st.list_runs(), st.series()
    out = {}
    for rec in records:
        rows = series[series.run_id == rec["id"]]
        every = sorted((r.name, int(r.step), repr(float(r.phys_time)), repr(float(r.value)))
                       for r in rows.itertuples())
        out.setdefault(canonical(rec["config"]), []).append({
            "id": rec["id"], "status": rec["status"], "finished_at": rec["finished_at"],
            "pid": rec["pid"], "checkpoint": rec["checkpoint_path"],
            "summary": {k: v for k, v in (rec["summary"] or {}).items()
                        if k not in WALL_SUMMARY},
            "metrics": [r for r in every if r[0] not in WALL_CLOCK],
            "rows": every,
        })
    return out


def _integrity(path):
    conn = sqlite3.connect(path)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()


def _running_pids(path):
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            return {pid for (pid,) in conn.execute(
                "SELECT pid FROM runs WHERE status = 'running' AND steps_done > 0")}
        finally:
            conn.close()
    except sqlite3.Error:  # not created yet, or busy
        return set()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted sweep, in this process with one torch thread (as the sweeps below)."""
    import torch

    path = tmp_path_factory.mktemp("reference") / "ref.sqlite"
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        res = run_sweep(SPEC, path, engine="sequential")
    finally:
        torch.set_num_threads(previous)
    assert res.finished == 4 and not res.errors
    return {key: runs[0] for key, runs in _stored(path).items()}


class Chain:
    """Starts of one sweep, each killed as planned, until the sweep finishes."""

    def __init__(self, root, reference, workers, seed):
        self.root, self.reference, self.workers = root, reference, workers
        self.rng = random.Random(seed)
        self.round = 0
        self.kills: list[tuple[int, str, str, int]] = []  # (round, kind, detail, finished)
        self.env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "default"}
        self.env.pop(FAULT, None)
        self.rounds_checked = self.resumed = 0
        self._dead: set[int] = set()  # pids of killed processes (their runs stay "running")
        self._new_round()

    def _new_round(self):
        self.round += 1
        self.dir = self.root / f"round{self.round}"
        self.dir.mkdir()
        self.spec, self.store = self.dir / "spec.yaml", self.dir / "s.sqlite"
        self.spec.write_text(yaml.safe_dump(SPEC))
        self.finished_seen: dict[int, dict] = {}  # run id → snapshot when seen finished
        self.resumable: list[dict] = []  # killed runs with a checkpoint, at their kill
        self.stderr: list[str] = []

    def _cmd(self):
        return [sys.executable, "-m", "l2dynamics.cli", "sweep", str(self.spec), "--store",
                str(self.store), "--workers", str(self.workers), "--engine", "sequential"]

    def start(self, kind):
        """One start of the sweep, killed as `kind` says (None: left to finish). True when
        it was killed, False when it finished the sweep (a round is then checked)."""
        env, detail = dict(self.env), ""
        if kind == "store":
            detail = f"store_write:{self.rng.randint(2, 6)}"
        elif kind == "checkpoint":
            detail = f"checkpoint_write:{self.rng.randint(1, 4)}"
        if detail:
            env[FAULT] = detail
        delay = self.rng.uniform(0.05, 0.8)
        finished_before, started = len(self._finished()), time.time()
        err = self.dir / f"stderr-{len(self.stderr)}.txt"
        with open(err, "w") as errfile:
            proc = subprocess.Popen(self._cmd(), env=env, start_new_session=True,
                                    stdout=subprocess.PIPE, stderr=errfile, text=True)
            try:
                if kind == "step":
                    detail = f"{delay:.2f} s into training"
                    deadline = time.time() + 120
                    while proc.poll() is None and time.time() < deadline:
                        pids = _running_pids(self.store)
                        if proc.pid in pids or (self.workers > 1 and pids - self._dead):
                            time.sleep(delay)
                            break
                        time.sleep(0.02)
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                out, _ = proc.communicate(timeout=300)
            finally:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        self.stderr.append(err.read_text())
        if proc.returncode == 0:
            summary = " ".join(out.split())
            assert " 0 failed" in summary, self.stderr[-1][-3000:]
            assert f"{finished_before} skipped" in summary, out
            self.check_round()
            return False
        assert proc.returncode == -signal.SIGKILL, self.stderr[-1][-3000:]
        if kind == "checkpoint":  # it died half-way through a checkpoint's temporary file
            assert any(tmp.stat().st_mtime >= started - 1
                       for tmp in (self.dir / "checkpoints").glob("run-*.pt.*.tmp"))
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # pool workers, if any are left
        self._after_kill()
        self.kills.append((self.round, kind, detail, len(self._finished())))
        return True

    def _finished(self):
        return [run for runs in _stored(self.store).values() for run in runs
                if run["status"] == "finished"] if self.store.exists() else []

    def _after_kill(self):
        """Checks right after a kill; remembers what must survive the restarts."""
        assert _integrity(self.store) == "ok"
        stored = _stored(self.store)
        self._dead = {run["pid"] for runs in stored.values() for run in runs
                      if run["status"] == "running"}
        for key, runs in stored.items():
            for run in runs:
                if run["status"] == "finished":
                    # finished means complete: every metric of the uninterrupted run, and
                    # nothing else, with the same values
                    assert run["metrics"] == self.reference[key]["metrics"], key
                    assert run["summary"] == self.reference[key]["summary"], key
                    self.finished_seen.setdefault(run["id"], run)
                elif run["checkpoint"]:
                    with warnings.catch_warnings():
                        warnings.simplefilter("error")  # the latest checkpoint is intact
                        step = int(load_checkpoint(run["checkpoint"])["step"])
                    kept = [r for r in run["rows"] if r[1] < step]
                    self.resumable.append({"id": run["id"], "step": step, "rows": kept})

    def check_round(self):
        assert _integrity(self.store) == "ok"
        stored = _stored(self.store)
        expected = {canonical(c) for c in load_sweep(self.spec).configs()}
        # one run per config — killed runs were continued, not started again beside — and
        # every one finished with exactly the uninterrupted run's metrics and summary
        assert set(stored) == expected
        assert all(len(runs) == 1 for runs in stored.values())
        runs = {runs[0]["id"]: runs[0] for runs in stored.values()}
        for key, (run,) in stored.items():
            assert run["status"] == "finished"
            assert run["metrics"] == self.reference[key]["metrics"], key
            assert run["summary"] == self.reference[key]["summary"], key
        # finished before a kill: untouched, never run again
        for rid, seen in self.finished_seen.items():
            assert runs[rid]["finished_at"] == seen["finished_at"]
            assert runs[rid]["rows"] == seen["rows"]
        # killed with a checkpoint: continued under its id, from that checkpoint — the rows
        # measured before it (wall-clock times included) are the very ones of before the kill
        for killed in self.resumable:
            after = [r for r in runs[killed["id"]]["rows"] if r[1] < killed["step"]]
            assert after == killed["rows"], killed["id"]
        for text in self.stderr:  # no fallback to an older checkpoint, no restart from 0
            assert "CheckpointWarning" not in text and "Traceback" not in text, text
            assert "training it again from step 0" not in text, text
        self.rounds_checked += 1
        self.resumed += len(self.resumable)

    def run(self, kills, kinds=KINDS):
        plan = [kinds[i % len(kinds)] for i in range(kills)]
        self.rng.shuffle(plan)
        while plan:
            if self.start(plan[0]):
                plan.pop(0)
            else:  # the sweep finished before this kill: go on with a fresh store
                self._new_round()
        assert not self.start(None)  # the last start finishes the sweep
        return self


def _report(chain, label):
    by_kind = {kind: sum(1 for k in chain.kills if k[1] == kind) for kind in KINDS}
    print(f"\n{label}: {len(chain.kills)} SIGKILLs survived ({by_kind}) over "
          f"{chain.rounds_checked} round(s); a killed run resumed from its checkpoint "
          f"{chain.resumed} times; runs lost: 0")
    for k in chain.kills:
        print(f"  round {k[0]}: {k[1]:<10} {k[2]:<22} ({k[3]} runs finished at the kill)")


@pytest.mark.slow  # ~18 sweep starts: 60-100 s on 2 cores
def test_sweep_survives_repeated_sigkills(tmp_path, reference):
    chain = Chain(tmp_path, reference, workers=1, seed=20240601).run(KILLS_SEQUENTIAL)
    assert len(chain.kills) == KILLS_SEQUENTIAL
    assert {k[1] for k in chain.kills} == set(KINDS)
    assert chain.resumed >= 3  # several kills were resumed from a checkpoint
    assert any(k[3] > 0 for k in chain.kills)  # some kills found finished runs to keep
    _report(chain, "one worker")


@pytest.mark.slow  # 4 sweep starts with 2 spawned worker processes each: ~30-40 s
def test_sweep_with_worker_processes_survives_sigkills(tmp_path, reference):
    # the kills are of the whole process group (sweep and workers), mid-training
    chain = Chain(tmp_path, reference, workers=2, seed=7).run(KILLS_POOL, kinds=("step",))
    assert len(chain.kills) == KILLS_POOL
    _report(chain, "two workers")
