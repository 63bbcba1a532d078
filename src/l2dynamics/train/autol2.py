"""AutoL2 inside the engine: a Trainer callback that measures and drives ``trainer.penalty``.

Measurement protocol of the released code: every ``every`` optimizer steps, *before* the update
that uses it, the bare training loss (no L2 term) and the accuracy on the next training batch.
The model is measured in eval mode (so BatchNorm running statistics are not updated by the
measurement; google/autol2's BN always uses batch statistics, a known difference).
"""

from __future__ import annotations

from typing import Any

import torch

from l2dynamics.l2.schedule import AutoL2


class AutoL2Callback:
    """Hooks :class:`~l2dynamics.l2.AutoL2` into :class:`~l2dynamics.train.Trainer`; its state is
    checkpointed with the run. ``schedule.events`` lists the decays."""

    def __init__(self, schedule: AutoL2, every: int = 10):
        self.schedule, self.every = schedule, int(every)

    @classmethod
    def from_config(cls, trainer: Any) -> AutoL2Callback:
        cfg = trainer.cfg
        rest = dict(penalty=trainer.penalty, steps_per_epoch=trainer.steps_per_epoch,
                    min_lam=cfg.autol2_min_lam, plateau=cfg.autol2_plateau,
                    patience=cfg.autol2_patience)
        if cfg.autol2_preset != "none":  # the config rule has checked lam against it
            momentum = cfg.momentum if cfg.optimizer == "sgd" else 0.0
            schedule = AutoL2.from_preset(cfg.autol2_preset, lr=cfg.lr, momentum=momentum,
                                          **rest)
        else:
            schedule = AutoL2(lam0=cfg.lam, factor=cfg.autol2_factor,
                              refractory=cfg.autol2_refractory,
                              refractory_unit=cfg.autol2_refractory_unit, lr=cfg.lr, **rest)
        return cls(schedule, cfg.autol2_every)

    def measure(self, trainer: Any, step: int) -> None:
        """Measure on the batch of update `step` and let AutoL2 set λ for it."""
        xb, yb = trainer.batch(step)
        model = trainer.model
        was_training = model.training
        model.eval()
        with torch.no_grad():
            out = model(xb)
            loss = float(trainer.loss_fn(out, yb))
            acc = float((out.argmax(1) == yb).double().mean()) if trainer.classification else 0.0
        model.train(was_training)
        self.schedule.step(loss, acc, step)

    def on_train_start(self, trainer: Any) -> None:
        if trainer.step % self.every == 0:
            self.measure(trainer, trainer.step)

    def on_step_end(self, trainer: Any, step: int, loss: torch.Tensor) -> None:
        if step % self.every == 0 and step < trainer.cfg.steps:
            self.measure(trainer, step)

    def state_dict(self) -> dict[str, Any]:
        return {"schedule": self.schedule.state_dict(), "every": self.every}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.schedule.load_state_dict(state["schedule"])
        self.every = int(state["every"])
