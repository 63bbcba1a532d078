"""What a run ends with: the metrics of a probe, the wide history and the stored summary.

Shared by :class:`~l2dynamics.train.loop.Trainer` and the vectorized ensemble, so that both store
the same metric names and summaries.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

from l2dynamics.config import Config
from l2dynamics.data import Dataset
from l2dynamics.store.sqlite import pivot_metrics
from l2dynamics.train.clock import probe_lr


@dataclass
class RunResult:
    """What a run ended with. ``history`` is the wide metric table (one row per eval step)."""

    run_id: int | None
    status: str  # "finished" | "diverged" | "interrupted"
    steps_done: int
    summary: dict[str, Any]
    history: pd.DataFrame
    diverged_step: int | None = None
    diverged_cause: str | None = None
    config: Config | None = field(default=None, repr=False)


def probe_metrics(cfg: Config, *, step: int, classification: bool,
                  train: tuple[float, float], test: tuple[float, float], weight_norm: float,
                  per_tensor: Mapping[str, float], lam: float, decoupled_wd: float,
                  lam_time: float, wall_time: float, test_n: int,
                  val: tuple[float, float] | None = None) -> dict[str, float]:
    """The metric dict a probe stores at `step` (after `step` updates), by name.

    train/test: (mean data loss without the L2 term, accuracy); ``lr`` is the η of the update
    at `step` (of the last update once `step` = ``cfg.steps``); ``lam_time`` = Σ η_t·λ_t;
    ``wall_time`` in seconds since the run started; ``test_n`` the test examples the test
    metrics were taken on (a fixed subset at intermediate points under ``eval_budget``, the whole
    test set at the last: the n of their binomial noise). `val`: (loss, accuracy) on the whole
    validation set (``n_val`` examples held out of the test pool), stored as ``val_loss`` and
    ``val_acc`` when the run has one. Accuracies are dropped for regression and ``norm/<name>``
    entries added when ``cfg.norms_per_tensor``.
    """
    metrics = {
        "train_loss": train[0], "train_acc": train[1],
        "test_loss": test[0], "test_acc": test[1],
        **({"val_loss": val[0], "val_acc": val[1]} if val is not None else {}),
        "weight_norm": weight_norm, "lam": lam, "decoupled_wd": decoupled_wd,
        "lr": probe_lr(cfg, step),
        "lam_time": lam_time, "wall_time": wall_time, "test_n": test_n,
    }
    if not classification:
        del metrics["train_acc"], metrics["test_acc"]
        metrics.pop("val_acc", None)
    if cfg.norms_per_tensor:
        metrics.update({f"norm/{name}": value for name, value in per_tensor.items()})
    return metrics


def run_summary(rows: list[tuple[int, float, str, float]], classification: bool,
                steps_done: int, elapsed: float, data: Dataset | None = None
                ) -> tuple[pd.DataFrame, dict[str, Any]]:
    """(wide history, stored summary) of a run from its (step, phys_time, name, value) rows;
    ``steps_per_second`` is updates per wall-clock second over `elapsed` seconds; with `data`,
    ``n_train``/``n_test`` (the test size sets the accuracy's binomial noise) and, with a
    validation set, ``n_val``."""
    history = _wide(rows)
    summary = summarize(history, classification)
    summary["steps_per_second"] = (steps_done / elapsed) if elapsed else None
    if data is not None:
        summary["n_train"], summary["n_test"] = int(data.n_train), int(data.n_test)
        if data.n_val:
            summary["n_val"] = int(data.n_val)
    return history, summary


def summarize(history: pd.DataFrame, classification: bool) -> dict[str, Any]:
    """Final and best values of the main metrics (best = raw argmax of test accuracy, or argmin
    of test loss for regression), and ``best_test_n``: the test examples the best point used."""
    if history.empty:
        return {}
    last = history.iloc[-1]
    out: dict[str, Any] = {
        "final_step": int(last["step"]),
        "final_test_loss": _num(last.get("test_loss")),
        "final_train_loss": _num(last.get("train_loss")),
        "final_weight_norm": _num(last.get("weight_norm")),
    }
    if classification and "test_acc" in history:
        acc = history["test_acc"].to_numpy(dtype=float)
        best = int(np.nanargmax(acc)) if np.isfinite(acc).any() else len(acc) - 1
        out.update({
            "final_test_acc": _num(last["test_acc"]),
            "final_train_acc": _num(last["train_acc"]),
            "best_test_acc": _num(acc[best]),
            "best_step": int(history["step"].iloc[best]),
        })
    else:
        loss = history["test_loss"].to_numpy(dtype=float)
        best = int(np.nanargmin(loss)) if np.isfinite(loss).any() else len(loss) - 1
        out.update({"best_test_loss": _num(loss[best]),
                    "best_step": int(history["step"].iloc[best])})
    if "test_n" in history:  # the n of the best point's binomial noise (a subset under budget)
        out["best_test_n"] = _int(history["test_n"].iloc[best])
    return out


def _int(value: Any) -> int | None:
    value = float(value)
    return int(value) if math.isfinite(value) else None


def _num(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _wide(rows: list[tuple[int, float, str, float]]) -> pd.DataFrame:
    import pandas as pd

    if not rows:
        return pd.DataFrame(columns=["step", "phys_time"])
    long = pd.DataFrame(rows, columns=["step", "phys_time", "name", "value"])
    return pivot_metrics(long, ["step"])
