"""Run a sweep's configs as Ray tasks, for sweeps larger than one machine.

Design: the cluster needs **no shared filesystem**. Each Ray task trains one config with the
ordinary :class:`~l2dynamics.train.Trainer` and no store, and *returns* everything the store
needs (status, steps, wall seconds, summary, every metric row, divergence step and cause, decay
rule, library versions, device, host). The driver — the process that called
:func:`~l2dynamics.sweep.run_sweep` — writes each returned run into its own SQLite store with
:meth:`~l2dynamics.store.RunStore.record_run`, one transaction per run, so a run is either
absent or complete. Planning (skip runs already finished/diverged, run duplicates once) and
accounting (counts, errors, ``progress(done, total)`` as results arrive) are shared with the
local executor through :class:`~l2dynamics.sweep.ledger.SweepLedger`.

What each node needs: the same ``l2dynamics`` (and torch) installed, and the data the configs
read (``digits``/``mnist1d``/``teacher`` are built offline; mnist/cifar10 files must be under
``data_dir`` on every node, or ``download: true``). Checkpoints (``checkpoint_every`` with an
explicit ``checkpoint_dir``) stay on the node that trained the run and are not indexed in the
store. Ray is imported lazily: without it installed everything else works, and asking for this
executor is a one-line :class:`~l2dynamics.errors.ConfigError`.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from l2dynamics.config import Config, make_config
from l2dynamics.errors import ConfigError
from l2dynamics.provenance import versions
from l2dynamics.sweep.ledger import SweepLedger, all_done, error_line

INSTALL_HINT = "pip install -e '.[ray]' (from the l2dynamics clone) or pip install 'ray>=2.9'"
# A task whose worker process or node died is re-run up to this many times (a lost node should
# not lose its runs); a task that *raises* is never retried: it is recorded as failed.
SYSTEM_RETRIES = 3
CONNECT_TIMEOUT_S = 10.0  # seconds to wait for the head's port before calling the address bad


def require_ray() -> Any:
    """The ``ray`` module, or a :class:`ConfigError` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError(f"executor 'ray' needs Ray, which is not installed: "
                          f"{INSTALL_HINT}") from None
    return ray


def train_config(config: dict[str, Any], threads: int) -> dict[str, Any]:
    """Train one config here, without a store, and return what the store needs.

    Runs inside a Ray task (a plain function so it can be tested without Ray). ``threads`` is
    the torch intra-op thread count, matched to the task's Ray CPUs. An exception while
    training is returned as status ``failed`` with the metrics measured so far (as the local
    executor stores it); one while building the run (bad data, unknown model) propagates."""
    import torch

    from l2dynamics.train import Trainer

    torch.set_num_threads(threads)
    cfg = make_config(config)
    trainer = Trainer(cfg, store=None)
    out: dict[str, Any] = {
        "steps_total": cfg.steps, "seed": cfg.seed, "device": str(trainer.device),
        "decay": trainer.decay.to_dict(), "versions": versions(),
        "host": socket.gethostname(), "pid": os.getpid(), "started_at": time.time(),
        "summary": None, "diverged_step": None, "diverged_cause": None, "error": None,
        "message": None,
    }
    t0 = time.perf_counter()
    try:
        res = trainer.run()
    except Exception as exc:
        out.update(status="failed", steps_done=trainer.step, error=repr(exc)[:2000],
                   message=error_line(cfg, exc))
    else:
        out.update(status=res.status, steps_done=res.steps_done, summary=res.summary,
                   diverged_step=res.diverged_step, diverged_cause=res.diverged_cause)
    out["wall_seconds"] = time.perf_counter() - t0
    out["finished_at"] = time.time()
    out["rows"] = list(trainer.rows)
    return out


def record_outcome(store: Any, cfg: Config, out: dict[str, Any]) -> int:
    """Write a :func:`train_config` result for `cfg` to `store` in one transaction."""
    return store.record_run(
        cfg.to_dict(), out["status"], steps_total=out["steps_total"],
        steps_done=out["steps_done"], seed=out["seed"], device=out["device"],
        wall_seconds=out["wall_seconds"], rows=out["rows"], summary=out["summary"],
        decay=out["decay"], versions=out["versions"], name=cfg.name,
        diverged_step=out["diverged_step"], diverged_cause=out["diverged_cause"],
        error=out["error"], host=out["host"], pid=out["pid"], started_at=out["started_at"],
        finished_at=out["finished_at"])


def run_ray(configs: Sequence[Config], store_path: str | Path | None, ledger: SweepLedger, *,
            address: str | None = None, workers: int | None = None,
            cpus_per_run: float = 1.0) -> None:
    """Train the `configs` the store lacks as Ray tasks (see :func:`run_tasks`), accounting in
    `ledger`; Ray is not started or joined when the store already holds them all."""
    from l2dynamics.store import RunStore

    if all_done(configs, store_path):  # nothing to run: no need to start or join Ray
        with RunStore(store_path) as store:
            ledger.plan(configs, store)
        return
    # Join Ray first: a bad address fails before the store is created or touched.
    with (ray_session(address, workers=workers, cpus_per_run=cpus_per_run) as ray,
          RunStore(store_path) as store):
        todo = ledger.plan(configs, store)
        run_tasks(ray, todo, store, ledger, workers=workers, cpus_per_run=cpus_per_run)
    ledger.result.run_ids.sort()


@contextmanager
def ray_session(address: str | None = None, *, workers: int | None = None,
                cpus_per_run: float = 1.0) -> Iterator[Any]:
    """Start or join Ray for the duration of the block; yields the ``ray`` module.

    ``address=None`` starts a local Ray instance (``workers × cpus_per_run`` CPUs if ``workers``
    is given, else all cores) and shuts it down at the end; an address (``HOST:PORT``, ``auto``,
    ``ray://…``) connects to a running cluster and only disconnects. A Ray session this process
    already opened is used as it is and left open. An address where no cluster answers is a
    :class:`ConfigError` (raised before anything is written)."""
    ray = require_ray()
    owned = _connect(ray, address, workers, cpus_per_run)
    try:
        yield ray
    finally:
        if owned:
            ray.shutdown()


def run_tasks(ray: Any, todo: Sequence[Config], store: Any, ledger: SweepLedger, *,
              workers: int | None = None, cpus_per_run: float = 1.0) -> None:
    """Run `todo` as Ray tasks of ``cpus_per_run`` CPUs (and torch threads) each, writing every
    result to `store` and accounting for it in `ledger` as it arrives (``ray.wait``).

    ``workers`` caps the tasks in flight (default: all at once; Ray queues what the cluster
    cannot fit). On an error or Ctrl-C the pending tasks are cancelled; finished runs stay
    stored, so re-running the sweep completes the rest."""
    pending: dict[Any, Config] = {}
    try:
        task = ray.remote(train_config).options(num_cpus=cpus_per_run,
                                                max_retries=SYSTEM_RETRIES)
        threads = max(1, int(cpus_per_run))
        cap = workers or len(todo)
        queue = deque(todo)
        while queue or pending:
            while queue and len(pending) < cap:
                cfg = queue.popleft()
                pending[task.remote(cfg.to_dict(), threads)] = cfg
            ready, rest = ray.wait(list(pending), num_returns=1)
            if rest:  # collect whatever else is already done, without waiting
                more, _ = ray.wait(rest, num_returns=len(rest), timeout=0)
                ready += more
            for ref in ready:
                cfg = pending.pop(ref)
                try:
                    out = ray.get(ref)
                except Exception as exc:  # the task raised, or its worker/node died for good
                    cause = getattr(exc, "cause", None) or exc
                    ledger.record(None, "failed", error_line(cfg, cause))
                    continue
                ledger.record(record_outcome(store, cfg, out), out["status"], out["message"])
    finally:
        for ref in pending:
            ray.cancel(ref)


def _connect(ray: Any, address: str | None, workers: int | None, cpus_per_run: float) -> bool:
    """Start or join Ray; True when this call did (so the caller shuts it down)."""
    if ray.is_initialized():
        return False
    quiet = {"include_dashboard": False, "log_to_driver": False,
             "logging_level": logging.ERROR}
    if address is None:
        # "local" forces a new instance even when $RAY_ADDRESS names a cluster. Never fewer
        # CPUs than one task needs, or it would wait forever.
        num_cpus = None
        if workers is not None:
            num_cpus = math.ceil(workers * cpus_per_run)
        elif cpus_per_run > (os.cpu_count() or 1):
            num_cpus = math.ceil(cpus_per_run)
        ray.init(address="local", num_cpus=num_cpus, **quiet)
        return True
    check_address(address)
    try:
        ray.init(address=address, **quiet)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"address {address!r}: cannot connect to a Ray cluster ({first}); "
                          f"if it uses token authentication, set RAY_AUTH_MODE=token and its "
                          f"token") from None
    return True


def check_address(address: str) -> None:
    """Fail fast (:class:`ConfigError`) on a malformed address or a ``HOST:PORT`` nobody
    listens on, where ``ray.init`` would retry for minutes."""
    if address == "auto" or "://" in address:
        return
    host, sep, port = address.strip().rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(f"address {address!r} must be HOST:PORT (the Ray head's GCS port, "
                          f"6379 by default), 'auto' or ray://HOST:PORT")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        raise ConfigError(f"address {address!r}: no Ray cluster answers there "
                          f"({exc.strerror or type(exc).__name__})") from None
