"""The one training loop. Every study trains through :class:`Trainer`.

One update at step t (0-based) is::

    η_t   = lr · lr_factor(t)                          (schedule, a pure function of t)
    g     = ∇ L_batch(θ)                               (data loss only)
    g    += λ·θ            for decayed θ               (coupled L2, the paper's λ)
    θ    ← (1 − η_t·λ_d)·θ for decayed θ               (decoupled decay, if λ_d > 0)
    θ    ← optimizer_step(θ, g, η_t)                   (SGD / momentum / Adam / AdamW)

Metrics at step s are taken *after* s updates, on the log-spaced clock of
:func:`l2dynamics.train.clock.eval_steps` fitted by :func:`l2dynamics.train.clock.eval_plan` into
``eval_budget`` of the training compute (a fixed test subset at intermediate points, the whole
test set at the last; ``test_n`` records how many test examples each point used). Physical
time is Σ_{t<s} η_t (= η·s at constant η) and "λ-time" is Σ_{t<s} η_t·λ_t (both from
:mod:`l2dynamics.train.clock`). Batches are drawn by index from per-epoch permutations seeded
by (seed, epoch), so a resumed run sees exactly the batches the uninterrupted one would have.
What a run is made of (data, model, batches) is in :mod:`l2dynamics.train.setup`; what it ends
with (metrics, summary) in :mod:`l2dynamics.train.results`.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import torch

from l2dynamics.config import Config, make_config
from l2dynamics.data import Dataset
from l2dynamics.errors import ConfigError, StoreError
from l2dynamics.l2 import L2Penalty, split_decay
from l2dynamics.probes.metrics import evaluate, weight_norms
from l2dynamics.provenance import versions
from l2dynamics.store import RunStore
from l2dynamics.train.checkpoint import load_checkpoint, save_checkpoint
from l2dynamics.train.clock import advance, eval_plan, lr_at
from l2dynamics.train.footprint import check_run_memory
from l2dynamics.train.optim import build_optimizer
from l2dynamics.train.results import RunResult, probe_metrics, run_summary
from l2dynamics.train.setup import (
    augment_generator,
    batch_layout,
    epoch_permutation,
    eval_batch,
    eval_test_subset,
    init_model,
    run_setup,
    speed_options,
    use_channels_last,
)

LOSS_SYNC_EVERY = 32  # steps between host syncs for the non-finite-loss check
NONFINITE_LOSS, NONFINITE_PARAMS = "non-finite loss", "non-finite parameters"


class Callback(Protocol):
    """Hooks into the loop. All methods are optional; ``state_dict`` is checkpointed.
    ``on_train_start(trainer)`` runs once before update 0 (not on resume);
    ``on_step_end(trainer, step, loss)`` after each update, `step` = updates done."""

    def on_step_end(self, trainer: Trainer, step: int, loss: torch.Tensor) -> None: ...


ProgressFn = Callable[[int, int, Mapping[str, float] | None], None]
Ending = tuple[str, int | None, str | None]
"""(status, diverged step, divergence cause) a run's loop ended with."""


class Trainer:
    """Owns the data, model, optimizer and L2 penalty of one run, and trains it.

    ``trainer.penalty.lam`` may be changed between steps (schedules such as AutoL2 do this);
    the stored ``lam`` metric and λ-time follow it.
    """

    def __init__(self, config: Config | Mapping[str, Any], *, store: RunStore | None = None,
                 callbacks: Sequence[Any] = (), progress: ProgressFn | None = None,
                 dataset: Dataset | None = None):
        self.cfg = config if isinstance(config, Config) else make_config(config)
        cfg = self.cfg
        self.device, self.dtype, self.data, self.loss_fn = run_setup(cfg, dataset)
        self.classification = self.data.task == "classification"
        check_run_memory(cfg, self.data, self.device)  # refuse before allocating the model
        self.model = init_model(cfg, self.data, self.device, self.dtype)
        self.forward = speed_options(self.model, cfg, self.device)
        self.named_params = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        self.decay = split_decay(self.model, cfg.decay_params)
        by_name = dict(self.named_params)
        self.penalty = L2Penalty([by_name[n] for n in self.decay.decayed], cfg.lam,
                                 cfg.decoupled_wd)
        self.optimizer = build_optimizer([p for _, p in self.named_params], cfg)
        self.store = store
        self.callbacks = list(callbacks)
        self.progress = progress
        self.run_id: int | None = None
        self.step = 0
        self.phys_time = 0.0
        self.lam_time = 0.0
        self.rows: list[tuple[int, float, str, float]] = []
        self._prepare_batches()
        self.plan = eval_plan(cfg, self.data.x_test.shape[0], self.eval_x.shape[0],
                              self.batch_size, self.data.n_val)
        self.clock = self.plan.clock  # may be replaced before run(); test sizes follow the plan
        self._test_subset = (eval_test_subset(self.data, self.plan.test_n, cfg.data_seed)
                             if self.plan.test_n < self.plan.full_n else None)
        self.val_x = self.data.x_val  # the whole validation set, at every point
        if self.channels_last and self.eval_x.ndim == 4:  # evaluated at every point: NHWC once
            nhwc = torch.channels_last
            self.eval_x = self.eval_x.contiguous(memory_format=nhwc)
            if self.val_x is not None:
                self.val_x = self.val_x.contiguous(memory_format=nhwc)
            if self._test_subset is not None:
                x, y = self._test_subset
                self._test_subset = (x.contiguous(memory_format=nhwc), y)
        self.projection = self._build_projection()
        self.norm_probe = None
        if cfg.norm_probes:
            from l2dynamics.probes.norms import NormProbe

            self.norm_probe = NormProbe(self.named_params, cfg.optimizer,
                                        cfg.momentum if cfg.optimizer == "sgd" else 0.0,
                                        per_unit=cfg.norm_probes_per_unit,
                                        torch_optimizer=self.optimizer)
        self._clock_set: set[int] = set()
        self._stop_requested = False
        self._losses: list[torch.Tensor] = []  # detached batch losses since the last sync
        self.autol2 = None  # the config's λ schedule, checkpointed under its own key
        if cfg.lam_schedule == "autol2":
            from l2dynamics.train.autol2 import AutoL2Callback

            self.autol2 = AutoL2Callback.from_config(self)
            self.callbacks.append(self.autol2)

    def _build_projection(self) -> Any:
        """The ‖w‖ = const update of ``project_norm`` on ``project_params`` (or None)."""
        cfg = self.cfg
        if cfg.project_norm == "none":
            return None
        from l2dynamics.l2.projection import NormProjection

        if cfg.project_params == "auto":
            from l2dynamics.probes.scale import detect_scale_invariant

            xb, yb = self.batch(0)
            report = detect_scale_invariant(self.model, self.loss_fn, xb, yb, per_unit=False)
            # weight tensors only: at init (shift β = 0) a BN gain feeding ReLU → bias-free
            # layer → BN is invariant too, but only until β moves
            dims = {n: p.ndim for n, p in self.named_params}
            names = [n for n in report.invariant_names if dims[n] >= 2]
            if not names:
                raise ConfigError("project_norm needs scale-invariant weights (followed by a "
                                  "normalization layer) and this model has none; name tensors "
                                  "with project_params to project them anyway")
        else:
            try:
                names = list(split_decay(self.model, cfg.project_params).decayed)
            except ConfigError as err:
                raise ConfigError(str(err).replace("decay_params", "project_params")) from None
        by_name = dict(self.named_params)
        projection = NormProjection([(n, by_name[n]) for n in names], cfg.project_norm)
        if cfg.project_norm == "unit":
            projection.apply()
        return projection

    # --- data ---------------------------------------------------------------------------------

    def _prepare_batches(self) -> None:
        layout = batch_layout(self.cfg, self.data, self.device)
        self.batch_size, self.full_batch, self.steps_per_epoch, self.eval_x, self.eval_y = layout
        self._perm_epoch = -1
        self._perm: torch.Tensor | None = None
        self.channels_last = use_channels_last(self.cfg, self.device)
        self.eval_batch_size = eval_batch(self.cfg, self.device)

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The (augmented) training batch of update `step`, a pure function of (seed, step)."""
        if self.full_batch:
            xb, yb = self.data.x_train, self.data.y_train
        else:
            epoch, pos = divmod(step, self.steps_per_epoch)
            if epoch != self._perm_epoch:
                n = self.data.x_train.shape[0]
                self._perm = epoch_permutation(self.cfg.seed, epoch, n).to(self.device)
                self._perm_epoch = epoch
            idx = self._perm[pos * self.batch_size:(pos + 1) * self.batch_size]
            xb, yb = self.data.x_train[idx], self.data.y_train[idx]
        if self.data.augment is not None:
            xb = self.data.augment(xb, augment_generator(self.cfg.seed, step))
        if self.channels_last and xb.ndim == 4:
            xb = xb.contiguous(memory_format=torch.channels_last)
        return xb, yb

    # --- probes -------------------------------------------------------------------------------

    def measure(self) -> dict[str, float]:
        """All metrics at the current step (does not record them); the test metrics on
        ``plan.test_size(step)`` examples (the whole test set at the last step), the validation
        metrics on the whole validation set."""
        bs, layout = self.eval_batch_size, self.channels_last
        test_n = self.plan.test_size(self.step)
        x_test, y_test = self.data.x_test, self.data.y_test
        if test_n < x_test.shape[0] and self._test_subset is not None:
            x_test, y_test = (t[:test_n] for t in self._test_subset)
        test_loss, test_acc = evaluate(self.model, x_test, y_test, self.loss_fn,
                                       classification=self.classification, batch_size=bs,
                                       channels_last=layout)
        train_loss, train_acc = evaluate(self.model, self.eval_x, self.eval_y, self.loss_fn,
                                         classification=self.classification, batch_size=bs,
                                         channels_last=layout)
        val = None if self.val_x is None else evaluate(
            self.model, self.val_x, self.data.y_val, self.loss_fn,
            classification=self.classification, batch_size=bs, channels_last=layout)
        total, per_tensor = weight_norms(self.named_params)
        metrics = probe_metrics(
            self.cfg, step=self.step, classification=self.classification,
            train=(train_loss, train_acc), test=(test_loss, test_acc), weight_norm=total,
            per_tensor=per_tensor, lam=self.penalty.lam, decoupled_wd=self.penalty.decoupled_wd,
            lam_time=self.lam_time, wall_time=self._elapsed(), test_n=x_test.shape[0], val=val)
        if self.norm_probe is not None:
            metrics.update(self.norm_probe.window_metrics(metrics["lr"]))
        return metrics

    def _record(self, metrics: Mapping[str, float], *, write: bool = True) -> None:
        rows = [(self.step, self.phys_time, name, float(v)) for name, v in metrics.items()]
        self.rows.extend(rows)
        if write and self.store is not None and self.run_id is not None:
            self.store.add_metrics(self.run_id, rows, steps_done=self.step)

    # --- checkpoints --------------------------------------------------------------------------

    @property
    def checkpoints_enabled(self) -> bool:
        """Checkpoints are written beside the store, or to an explicit ``checkpoint_dir``."""
        return self.store is not None or bool(self.cfg.checkpoint_dir)

    def checkpoint_path(self) -> Path:
        if self.cfg.checkpoint_dir:
            root = Path(self.cfg.checkpoint_dir)
        elif self.store is not None:
            root = self.store.path.parent / "checkpoints"
        else:
            raise StoreError("checkpoints need a run store or checkpoint_dir")
        tag = f"run-{self.run_id}" if self.run_id is not None else f"seed-{self.cfg.seed}"
        return root / f"{tag}.pt"

    def state_dict(self) -> dict[str, Any]:
        return {
            "format": 1,
            "config": self.cfg.to_dict(),
            "run_id": self.run_id,
            "step": self.step,
            "phys_time": self.phys_time,
            "lam_time": self.lam_time,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "penalty": self.penalty.state_dict(),
            "callbacks": [cb.state_dict() if hasattr(cb, "state_dict") else None
                          for cb in self._user_callbacks()],
            "autol2": self.autol2.state_dict() if self.autol2 is not None else None,
            "projection": (self.projection.state_dict() if self.projection is not None
                           else None),
        }

    def _user_callbacks(self) -> list[Any]:
        return [cb for cb in self.callbacks if cb is not self.autol2]

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.penalty.load_state_dict(state["penalty"])
        self.step = int(state["step"])
        self.phys_time = float(state["phys_time"])
        self.lam_time = float(state["lam_time"])
        for cb, cb_state in zip(self._user_callbacks(), state.get("callbacks", []),
                                strict=False):
            if cb_state is not None and hasattr(cb, "load_state_dict"):
                cb.load_state_dict(cb_state)
        if self.autol2 is not None and state.get("autol2") is not None:
            self.autol2.load_state_dict(state["autol2"])
        if self.projection is not None and state.get("projection") is not None:
            self.projection.load_state_dict(state["projection"])

    def save_checkpoint(self) -> Path:
        path = self.checkpoint_path()
        save_checkpoint(path, self.state_dict())
        if self.store is not None and self.run_id is not None:
            self.store.set_checkpoint(self.run_id, str(path.resolve()))
        return path

    @classmethod
    def resume(cls, store: RunStore, run_id: int, **kwargs: Any) -> Trainer:
        """A trainer that continues stored run `run_id` from its last checkpoint."""
        record = store.get_run(run_id)
        if record["status"] == "finished":
            raise StoreError(f"run {run_id} is already finished; nothing to resume")
        path = record.get("checkpoint_path")
        if not path or not Path(path).is_file():
            raise StoreError(f"run {run_id} has no checkpoint to resume from (status "
                             f"{record['status']}); set checkpoint_every to make them")
        trainer = cls(record["config"], store=store, **kwargs)
        trainer.run_id = run_id
        trainer.load_state_dict(load_checkpoint(path))
        trainer.rows = [
            (int(r.step), float(r.phys_time), r.name, float(r.value))
            for r in store.series([run_id]).itertuples() if r.step < trainer.step
        ]
        store.mark_resumed(run_id, trainer.step)
        return trainer

    # --- the loop -----------------------------------------------------------------------------

    def _elapsed(self) -> float:
        return time.perf_counter() - self._t0 if hasattr(self, "_t0") else 0.0

    def request_stop(self) -> None:
        """Ask the loop to checkpoint and stop before the next update (used by Ctrl-C)."""
        self._stop_requested = True

    def _first_bad_loss(self, upto: int) -> int | None:
        """Step of the first non-finite loss among the updates since the last check, which
        end at update `upto` (the losses are kept on the device until this one sync)."""
        losses, self._losses = self._losses, []
        if not losses:
            return None
        finite = torch.isfinite(torch.stack(losses))
        if bool(finite.all()):
            return None
        return upto - len(losses) + int((~finite).nonzero()[0])

    def run(self) -> RunResult:
        """Train to ``cfg.steps`` (or divergence / a stop request) and return the result."""
        cfg = self.cfg
        if self.store is not None and self.run_id is None:
            self.run_id = self.store.create_run(
                cfg.to_dict(), steps_total=cfg.steps, seed=cfg.seed, device=str(self.device),
                decay=self.decay.to_dict(), versions=versions(), name=cfg.name)
        self._t0 = time.perf_counter()
        self._losses = []
        self._clock_set = set(int(s) for s in self.clock)
        restore_handler = self._install_sigint()
        try:
            ending = self._loop()
        except BaseException as err:
            if self.store is not None and self.run_id is not None:
                aborted = isinstance(err, KeyboardInterrupt)
                self.store.finish_run(self.run_id, "interrupted" if aborted else "failed",
                                      steps_done=self.step, wall_seconds=self._elapsed(),
                                      error=repr(err)[:2000])
            raise
        finally:
            restore_handler()
        return self._finish(*ending)

    def _loop(self, end: int | None = None) -> Ending:
        """The updates from the current step to `end` (default ``cfg.steps``), with their
        checks and probes (``benchmarks/engine_speed.py`` times blocks of them)."""
        cfg = self.cfg
        end = cfg.steps if end is None else end
        self.model.train()
        start = self.step
        if start == 0:  # not on resume: the state already holds what happened at `start`
            for cb in self.callbacks:
                hook = getattr(cb, "on_train_start", None)
                if hook is not None:
                    hook(self)
        for step in range(start, end):
            if self._stop_requested:
                return "interrupted", None, None
            ending = self._before_update(step, start)
            if ending is not None:
                return ending
            self._update(step)
            self.step = step + 1
            if len(self._losses) == LOSS_SYNC_EVERY:
                bad = self._first_bad_loss(self.step)
                if bad is not None:
                    return "diverged", bad, NONFINITE_LOSS
            if self.progress:
                self.progress(self.step, cfg.steps, None)
        bad = self._first_bad_loss(self.step)
        return ("finished", None, None) if bad is None else ("diverged", bad, NONFINITE_LOSS)

    def _before_update(self, step: int, start: int) -> Ending | None:
        """The checkpoint and the probe due before update `step` (each preceded by the loss
        check); the ending if the run diverged."""
        cfg = self.cfg
        if (cfg.checkpoint_every and step > start and step % cfg.checkpoint_every == 0
                and self.checkpoints_enabled):
            bad = self._first_bad_loss(step)
            if bad is not None:
                return "diverged", bad, NONFINITE_LOSS
            self.save_checkpoint()
        if step in self._clock_set:
            bad = self._first_bad_loss(step)
            if bad is not None:
                return "diverged", bad, NONFINITE_LOSS
            metrics = self.measure()
            self._record(metrics)
            if not math.isfinite(metrics["weight_norm"]):
                return "diverged", step, NONFINITE_PARAMS
            if self.progress:
                self.progress(step, cfg.steps, metrics)
        return None

    def _update(self, step: int) -> None:
        lr = lr_at(self.cfg, step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        xb, yb = self.batch(step)
        with self.forward.autocast():
            loss = self.loss_fn(self.forward(xb), yb)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        probe = self.norm_probe
        if probe is not None:
            if step in self._clock_set:  # the data-loss gradient, before the L2 term
                self._record(probe.gradient_metrics())
            probe.before_step()
        self.penalty.add_to_grad()
        self.penalty.decay(lr)
        self.optimizer.step()
        if self.projection is not None:
            self.projection.apply()
        if probe is not None:
            probe.after_step()
        self.phys_time, self.lam_time = advance(self.phys_time, self.lam_time, lr,
                                                self.penalty.lam)
        self._losses.append(loss.detach())
        for cb in self.callbacks:
            hook = getattr(cb, "on_step_end", None)
            if hook is not None:
                hook(self, step + 1, loss)

    def _finish(self, status: str, bad_step: int | None, cause: str | None) -> RunResult:
        final_rows: list[tuple[int, float, str, float]] = []
        if status == "finished":
            metrics = self.measure()
            final_rows = [(self.step, self.phys_time, k, float(v)) for k, v in metrics.items()]
            self.rows.extend(final_rows)
            if not math.isfinite(metrics["weight_norm"]):
                status, bad_step, cause = "diverged", self.step, NONFINITE_PARAMS
        if status == "interrupted" and self.checkpoints_enabled:
            self.save_checkpoint()
        history, summary = run_summary(self.rows, self.classification, self.step,
                                       self._elapsed(), self.data)
        if self.autol2 is not None:
            summary["lam_decays"] = list(self.autol2.schedule.events)
        if self.store is not None and self.run_id is not None:
            self.store.finish_run(self.run_id, status, steps_done=self.step,
                                  wall_seconds=self._elapsed(), summary=summary,
                                  diverged_step=bad_step, diverged_cause=cause,
                                  final_rows=final_rows)
        if self.progress and status == "finished":
            self.progress(self.step, self.cfg.steps, None)
        return RunResult(self.run_id, status, self.step, summary, history, bad_step, cause,
                         self.cfg)

    def _install_sigint(self) -> Callable[[], None]:
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        previous = signal.getsignal(signal.SIGINT)

        def handler(signum: int, frame: Any) -> None:
            # First Ctrl-C: finish the current update, checkpoint, stop. Second: abort.
            if self._stop_requested:
                signal.signal(signal.SIGINT, previous)
                raise KeyboardInterrupt
            self.request_stop()

        signal.signal(signal.SIGINT, handler)
        return lambda: signal.signal(signal.SIGINT, previous)


def train(config: Config | Mapping[str, Any] | None = None, *, store: RunStore | str | None = None,
          callbacks: Sequence[Any] = (), progress: ProgressFn | None = None,
          **overrides: Any) -> RunResult:
    """Train one run. ``train(lam=1e-3, steps=2000)`` or ``train(cfg, store="runs/x.sqlite")``."""
    cfg = make_config(config, **overrides)
    owned = isinstance(store, (str, Path))
    st = RunStore(store) if owned else store
    try:
        return Trainer(cfg, store=st, callbacks=callbacks, progress=progress).run()
    finally:
        if owned:
            st.close()
