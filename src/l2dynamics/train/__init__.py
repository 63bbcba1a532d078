"""Training engine: the one loop, its clock, losses, optimizers and checkpoints, and the
vectorized ensemble engine (K configs of one architecture trained at once)."""

from l2dynamics.train.clock import eval_steps
from l2dynamics.train.ensemble import (
    EnsembleTrainer,
    choose_engine,
    ensemble_key,
    vectorizable,
)
from l2dynamics.train.loop import RunResult, Trainer, resolve_device, summarize, train
from l2dynamics.train.optim import build_optimizer, lr_factor

__all__ = ["EnsembleTrainer", "RunResult", "Trainer", "build_optimizer", "choose_engine",
           "ensemble_key", "eval_steps", "lr_factor", "resolve_device", "summarize", "train",
           "vectorizable"]
