"""``Monitor``: the normalization picture of *your own* PyTorch loop (van Laarhoven 2017).

    mon = l2dynamics.Monitor(model, optimizer, every=50, log_dir="runs/tb")
    for x, y in loader:
        optimizer.zero_grad(); loss_fn(model(x), y).backward(); optimizer.step()
        mon.step()                       # after optimizer.step(), before the next zero_grad
    mon.close()

Every `every` optimizer steps it records, per weight tensor (``params="weights"``: tensors with
≥ 2 dimensions; ``"all"``; or a list of names):

- ``norm``: ‖w‖;
- ``eff_lr``: the effective learning rate of the tensor, η/((1 − μ)·‖w‖²) for SGD with
  heavy-ball momentum μ, η/‖w‖ for Adam and AdamW (η per step, read from the tensor's
  parameter group). For a scale-invariant tensor (followed by a normalization layer) this,
  not η, sets how fast its direction moves;
- ``angle``: the angular update of that one step, arccos⟨w, w'⟩/(‖w‖‖w'‖) in radians
  (a snapshot is taken one step before each record);
- ``scale_invariant``: 1 or 0 when known — from ``example=(x, y)`` and ``loss_fn``
  (:func:`~l2dynamics.probes.scale.detect_scale_invariant`, once, at construction) or from
  ``scale_invariant=[names]`` — NaN otherwise;
- ``eq_ratio``: ‖w‖ over the predicted equilibrium ‖w*‖ for a scale-invariant tensor with
  weight decay > 0 (1 = at equilibrium; :mod:`l2dynamics.analysis.equilibrium`, the closed
  forms: SGD/SGDM with coupled decay, Adam with coupled decay, AdamW with decoupled decay).
  The gradient size G = E‖ḡ‖², ḡ = ‖w‖·∇L, is the mean over the last 10 records of the
  gradient present at ``step()`` (the data-loss gradient of the batch just trained, since
  torch adds weight decay inside ``optimizer.step``); one batch per record, so it is noisy.

λ is read from each group's ``weight_decay``: the paper's coupled λ for SGD and Adam, AdamW's
decoupled λ_d for AdamW. Records go to ``mon.history`` (a DataFrame, one row per step and
tensor), and to TensorBoard (``log_dir``; ``torch.utils.tensorboard``, needs the
``tensorboard`` package), a CSV file (``csv``), and any logger with
``log_metrics(dict, step)`` such as Lightning's (``logger``). Tags are ``<metric>/<tensor>``.

With ``store=`` (a path or a :class:`~l2dynamics.store.RunStore`) the loop becomes a run of
that store, as ``l2dynamics runs list | show | export`` read them: its config is what the
Monitor knows (optimizer, η, λ of the first decayed group, μ, the model's class, the tensors)
updated with ``config=``; every record is written as it is taken, under the same
``<metric>/<tensor>`` names as the engine's probes, at ``phys_time`` = Σ η over the steps;
``close()`` marks it finished (a ``with Monitor(...)`` block that raises marks it
interrupted on Ctrl-C, failed otherwise, with the error). Use a store of its own: the studies
read every run of a store they are given.
"""

from __future__ import annotations

import csv as csv_module
import math
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

from l2dynamics.analysis import equilibrium
from l2dynamics.errors import ConfigError
from l2dynamics.probes.norms import angle_between, effective_lr

METRICS = ("norm", "eff_lr", "angle", "scale_invariant", "eq_ratio")
G_WINDOW = 10  # records averaged for the equilibrium's gradient size


class Monitor:
    """Per-tensor ‖w‖, effective learning rate, angular update, scale invariance and distance
    to the predicted equilibrium, every `every` steps of any training loop (module docstring).
    """

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, *,
                 every: int = 50, params: str | Sequence[str] = "weights",
                 log_dir: str | Path | None = None, csv: str | Path | None = None,
                 logger: Any = None, example: tuple[torch.Tensor, torch.Tensor] | None = None,
                 loss_fn: Callable[..., torch.Tensor] | None = None,
                 scale_invariant: Iterable[str] | None = None, store: Any = None,
                 run_name: str | None = None, config: dict[str, Any] | None = None):
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ConfigError(f"every must be an integer ≥ 1, got {every!r}")
        self.model, self.optimizer, self.every = model, optimizer, every
        self.tensors = _select(model, params)
        self.kind = _optimizer_kind(optimizer)
        self.groups = _group_of(optimizer, self.tensors)
        self.invariant = _invariance(model, self.tensors, example, loss_fn, scale_invariant)
        self.steps = 0
        self.rows: list[dict[str, Any]] = []
        self.latest: dict[str, float] = {}
        self._snapshot: dict[str, torch.Tensor] = {}
        self._g: dict[str, list[float]] = {name: [] for name, _ in self.tensors}
        self._writer = _tensorboard(log_dir) if log_dir is not None else None
        self._csv_path = Path(csv) if csv is not None else None
        self.logger = logger
        self.run_id: int | None = None
        self._phys_time, self._started = 0.0, time.perf_counter()
        self._store, self._own_store = None, False
        if store is not None:
            self._open_store(store, run_name, config or {})
        if self._csv_path is not None:
            self._csv_path.parent.mkdir(parents=True, exist_ok=True)
            with self._csv_path.open("w", newline="") as f:
                csv_module.writer(f).writerow(["step", "tensor", *METRICS])

    def step(self) -> dict[str, float] | None:
        """Call once after every ``optimizer.step()``; returns the record on a record step."""
        self.steps += 1
        self._phys_time += float(self.optimizer.param_groups[0]["lr"])
        record = None
        if self.steps % self.every == 0:
            record = self._record()
        if (self.steps + 1) % self.every == 0:  # the next step is recorded: keep w before it
            self._snapshot = {n: p.detach().clone() for n, p in self.tensors}
        return record

    def _record(self) -> dict[str, float]:
        flat: dict[str, float] = {}
        for name, p in self.tensors:
            row = self._tensor_row(name, p)
            self.rows.append({"step": self.steps, "tensor": name, **row})
            flat.update({f"{metric}/{name}": value for metric, value in row.items()})
            if self._csv_path is not None:
                with self._csv_path.open("a", newline="") as f:
                    csv_module.writer(f).writerow([self.steps, name,
                                                   *[row[m] for m in METRICS]])
        if self._writer is not None:
            for tag, value in flat.items():
                if math.isfinite(value):
                    self._writer.add_scalar(tag, value, self.steps)
            self._writer.flush()
        if self.logger is not None:
            self.logger.log_metrics({k: v for k, v in flat.items() if math.isfinite(v)},
                                    step=self.steps)
        if self._store is not None:
            self._store.add_metrics(self.run_id, [(self.steps, self._phys_time, tag, value)
                                                  for tag, value in flat.items()],
                                    steps_done=self.steps)
        self.latest = flat
        return flat

    def _open_store(self, store: Any, run_name: str | None, config: dict[str, Any]) -> None:
        from l2dynamics.provenance import versions
        from l2dynamics.store import RunStore

        self._own_store = not isinstance(store, RunStore)
        self._store = RunStore(store) if self._own_store else store
        first = self.groups[self.tensors[0][0]]
        decayed = [g for g in self.optimizer.param_groups if g.get("weight_decay", 0)]
        known = {"source": "monitor", "model": type(self.model).__name__, "dataset": "",
                 "optimizer": self.kind, "lr": float(first["lr"]),
                 "lam": float(decayed[0]["weight_decay"]) if decayed else 0.0,
                 "momentum": float(first.get("momentum", 0.0) or 0.0), "every": self.every,
                 "tensors": [n for n, _ in self.tensors]}
        device = str(self.tensors[0][1].device)
        self.run_id = self._store.create_run(
            {**known, **config}, steps_total=int(config.get("steps", 0)),
            seed=config.get("seed"), device=device, versions=versions(), name=run_name)

    def _tensor_row(self, name: str, p: torch.Tensor) -> dict[str, float]:
        group = self.groups[name]
        lr, mu = float(group["lr"]), float(group.get("momentum", 0.0) or 0.0)
        w = p.detach()
        norm = float(w.double().norm())
        before = self._snapshot.get(name)  # w one step back (kept when every > 1)
        angle = angle_between(before, w) if before is not None else math.nan
        inv = self.invariant.get(name)
        if p.grad is not None:
            self._g[name] = [*self._g[name][-(G_WINDOW - 1):],
                             (norm * float(p.grad.detach().double().norm())) ** 2]
        return {"norm": norm,
                "eff_lr": effective_lr(lr, norm, "sgd" if self.kind == "sgd" else "adam", mu),
                "angle": angle, "scale_invariant": math.nan if inv is None else float(inv),
                "eq_ratio": self._eq_ratio(name, p, norm, group) if inv else math.nan}

    def _eq_ratio(self, name: str, p: torch.Tensor, norm: float, group: dict) -> float:
        lam, lr = float(group.get("weight_decay", 0.0) or 0.0), float(group["lr"])
        g = self._g[name]
        if lam <= 0 or not g or norm <= 0:
            return math.nan
        G = sum(g) / len(g)
        try:
            if self.kind == "sgd":
                mu = float(group.get("momentum", 0.0) or 0.0)
                eq = (equilibrium.sgdm_norm(lr, lam, G, mu) if mu > 0
                      else equilibrium.sgd_norm(lr, lam, G))
            elif self.kind == "adamw":
                eq = equilibrium.adamw_norm(lr, lam, p.numel(), float(group["betas"][0]))
            else:
                eq = equilibrium.adam_l2_norm(lr, lam, p.numel(), math.sqrt(G))
        except ConfigError:  # outside a closed form's range (e.g. η·λ ≥ 2)
            return math.nan
        return norm / eq

    @property
    def history(self) -> Any:
        """The records as a DataFrame: step, tensor and one column per metric."""
        import pandas as pd

        return pd.DataFrame(self.rows, columns=["step", "tensor", *METRICS])

    def close(self, status: str = "finished", error: str | None = None) -> None:
        """Flush and close the TensorBoard writer (the CSV is written as it goes) and mark the
        store's run `status` (finished, interrupted or failed). A second call does nothing."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._store is not None:
            self._store.finish_run(self.run_id, status, steps_done=self.steps,
                                   wall_seconds=time.perf_counter() - self._started,
                                   summary={"records": len(self.rows) // len(self.tensors)},
                                   error=error)
            if self._own_store:
                self._store.close()
            self._store = None

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, kind: Any, value: Any, traceback: Any) -> None:
        if kind is None:
            self.close()
        elif issubclass(kind, KeyboardInterrupt):
            self.close("interrupted")
        else:
            self.close("failed", error=f"{kind.__name__}: {value}")


def _select(model: torch.nn.Module, params: str | Sequence[str]) -> list[tuple[str, Any]]:
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if params == "weights":
        chosen = [(n, p) for n, p in named if p.ndim >= 2]
    elif params == "all":
        chosen = named
    elif isinstance(params, str):
        raise ConfigError(f"params must be 'weights', 'all' or a list of parameter names, got "
                          f"{params!r}")
    else:
        by_name = dict(named)
        missing = [n for n in params if n not in by_name]
        if missing:
            raise ConfigError(f"no trainable parameter named {', '.join(map(repr, missing))}; "
                              f"the model has: {', '.join(by_name)}")
        chosen = [(n, by_name[n]) for n in params]
    if not chosen:
        raise ConfigError("the Monitor found no tensor to watch (params='weights' takes tensors "
                          "with ≥ 2 dimensions; use params='all' or a list of names)")
    return chosen


def _optimizer_kind(optimizer: torch.optim.Optimizer) -> str:
    if isinstance(optimizer, torch.optim.AdamW) or any(
            g.get("decoupled_weight_decay", False) for g in optimizer.param_groups):
        return "adamw"
    if isinstance(optimizer, torch.optim.SGD):
        return "sgd"
    if isinstance(optimizer, torch.optim.Adam):
        return "adam"
    raise ConfigError(f"the Monitor knows SGD, Adam and AdamW; got {type(optimizer).__name__}")


def _group_of(optimizer: torch.optim.Optimizer,
              tensors: list[tuple[str, Any]]) -> dict[str, dict]:
    """The optimizer's parameter group of each watched tensor."""
    groups = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    missing = [n for n, p in tensors if id(p) not in groups]
    if missing:
        raise ConfigError(f"the optimizer does not train {', '.join(map(repr, missing))}; pass "
                          "the optimizer of this model (or params= the tensors it trains)")
    return {n: groups[id(p)] for n, p in tensors}


def _invariance(model: torch.nn.Module, tensors: list[tuple[str, Any]],
                example: tuple[torch.Tensor, torch.Tensor] | None,
                loss_fn: Callable[..., torch.Tensor] | None,
                names: Iterable[str] | None) -> dict[str, bool]:
    if names is not None:
        known = set(names)
        return {n: n in known for n, _ in tensors}
    if example is None:
        return {}
    if loss_fn is None:
        raise ConfigError("example=(x, y) needs loss_fn to test scale invariance")
    from l2dynamics.probes.scale import detect_scale_invariant

    x, y = example
    report = detect_scale_invariant(model, loss_fn, x, y, per_unit=False,
                                    names=[n for n, _ in tensors])
    invariant = set(report.invariant_names)
    return {n: n in invariant for n, _ in tensors}


def _tensorboard(log_dir: str | Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:
        raise ConfigError("log_dir needs the tensorboard package: pip install tensorboard"
                          ) from err
    return SummaryWriter(str(log_dir))


__all__ = ["METRICS", "Monitor"]
