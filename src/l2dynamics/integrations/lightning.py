"""AutoL2 and the Monitor as Lightning callbacks (optional extra: ``pip install -e
".[lightning]"`` from the clone).

    trainer = lightning.Trainer(callbacks=[AutoL2Callback(lam0=0.1)], ...)

The callback owns an :class:`~l2dynamics.l2.AutoL2` on the module's first optimizer (its
parameter groups with ``decay`` not False; see :func:`~l2dynamics.l2.decay_param_groups`) and
follows the paper's protocol: every `every` optimizer steps, *before* the update, it measures
the bare loss (no L2 term) and the accuracy on the batch about to be trained, in eval mode and
without gradients, and lets AutoL2 set λ for that update. ``global_step`` of the Lightning
trainer counts optimizer steps, as AutoL2's refractory period expects. λ is logged as
``autol2_lambda``; the schedule's state is saved in Lightning checkpoints.

Gradient accumulation (``accumulate_grad_batches=k``): the batch of an optimizer step is its k
micro-batches, so a measured step is measured once, as the example-weighted mean of the bare
loss and accuracy over all of its micro-batches (each taken before its forward pass, at the
step's weights — nothing updates them within the step), and AutoL2 takes that one
measurement in ``on_before_optimizer_step``, after the last micro-batch's backward and before
the update, which therefore uses the new λ. Without accumulation this is the single batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from l2dynamics.l2.schedule import AutoL2

try:
    from lightning.pytorch.callbacks import Callback
except ImportError as err:  # pragma: no cover - exercised only without the extra
    raise ImportError("l2dynamics.integrations.lightning needs Lightning: pip install -e "
                      "'.[lightning]' from the l2dynamics clone, or pip install lightning"
                      ) from err


def _default_unpack(batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(batch, (tuple, list)) and len(batch) >= 2:
        return batch[0], batch[1]
    raise TypeError("AutoL2Callback: a batch must be (inputs, targets, ...); pass unpack= "
                    "to read another layout")


class AutoL2Callback(Callback):
    """AutoL2 for Lightning. Keyword arguments other than those below go to
    :class:`~l2dynamics.l2.AutoL2` (``factor``, ``refractory``, ``refractory_unit``,
    ``min_lam``, ``plateau``, ``convention``, …). ``loss_fn(outputs, targets)`` is the bare
    data loss as a batch mean (default: cross-entropy); ``unpack(batch)`` returns (inputs,
    targets). Under gradient accumulation a measured optimizer step is measured once, over
    all of its micro-batches (see the module docstring)."""

    def __init__(self, lam0: float = 0.1, *, every: int = 10,
                 loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
                 unpack: Callable[[Any], tuple[torch.Tensor, torch.Tensor]] = _default_unpack,
                 **autol2_options: Any):
        if not isinstance(every, int) or isinstance(every, bool) or every < 1:
            raise ValueError(f"every must be an integer ≥ 1, got {every!r}")
        self.lam0, self.every, self.options = lam0, every, autol2_options
        self.loss_fn = loss_fn or torch.nn.functional.cross_entropy
        self.unpack = unpack
        self.schedule: AutoL2 | None = None
        self._pending_state: dict[str, Any] | None = None
        # the measured step's micro-batches so far: [step, Σ n·loss, Σ n·acc, Σ n]
        self._sums: list[Any] | None = None

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        if not trainer.optimizers:
            raise RuntimeError("AutoL2Callback needs an optimizer from configure_optimizers")
        self.schedule = AutoL2(trainer.optimizers[0], lam0=self.lam0, **self.options)
        if self._pending_state is not None:
            self.schedule.load_state_dict(self._pending_state)
            self._pending_state = None

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any,
                             batch_idx: int) -> None:
        step = int(trainer.global_step)
        if self.schedule is None or step % self.every:
            return
        inputs, targets = self.unpack(batch)
        was_training = pl_module.training
        pl_module.eval()
        with torch.no_grad():
            outputs = pl_module(inputs)
            loss = float(self.loss_fn(outputs, targets))
            acc = (float((outputs.argmax(-1) == targets).double().mean())
                   if outputs.ndim > 1 and outputs.shape[-1] > 1 else 0.0)
        pl_module.train(was_training)
        n = len(targets)
        if self._sums is None or self._sums[0] != step:  # a new step (a stale one is dropped)
            self._sums = [step, 0.0, 0.0, 0]
        self._sums[1:] = [self._sums[1] + n * loss, self._sums[2] + n * acc, self._sums[3] + n]

    def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
        """One measurement per optimizer step: the mean over its micro-batches, given to
        AutoL2 before the update reads ``weight_decay``."""
        sums, self._sums = self._sums, None
        if self.schedule is None or sums is None or sums[0] != int(trainer.global_step):
            return
        step, loss, acc, n = sums
        self.schedule.step(loss / n, acc / n, step)

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self.schedule is not None:
            pl_module.log("autol2_lambda", self.schedule.get_last_lambda(), on_step=True,
                          on_epoch=False, prog_bar=False)

    @property
    def events(self) -> list[dict[str, float]]:
        """The decays so far (step, λ before and after, the measurement that triggered it)."""
        return [] if self.schedule is None else list(self.schedule.events)

    def state_dict(self) -> dict[str, Any]:
        return {} if self.schedule is None else {"schedule": self.schedule.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "schedule" not in state_dict:
            return
        if self.schedule is None:
            self._pending_state = state_dict["schedule"]
        else:
            self.schedule.load_state_dict(state_dict["schedule"])


class MonitorCallback(Callback):
    """:class:`~l2dynamics.probes.monitor.Monitor` in a Lightning run: every `every` optimizer
    steps, ‖w‖, the effective learning rate, the angular update, scale invariance and the
    distance to the predicted equilibrium of each weight tensor of the module, logged to the
    trainer's logger (TensorBoard, CSV, W&B, … — whatever ``Trainer(logger=...)`` is) under
    ``<metric>/<tensor>``. Keyword arguments go to ``Monitor`` (``params``, ``csv``, …).

        trainer = lightning.Trainer(callbacks=[MonitorCallback(every=50)], ...)
    """

    def __init__(self, every: int = 50, **monitor_options: Any):
        self.every, self.options = every, monitor_options
        self.monitor: Any = None

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        from l2dynamics.probes.monitor import Monitor

        optimizer = trainer.optimizers[0]
        self.monitor = Monitor(pl_module, optimizer, every=self.every, logger=trainer.logger,
                               **self.options)

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self.monitor is not None and trainer.global_step > self.monitor.steps:
            self.monitor.step()  # once per optimizer step (accumulation: on its last batch)

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        if self.monitor is not None:
            self.monitor.close()
