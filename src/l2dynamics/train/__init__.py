"""Training engine: the one loop, its clock, losses, optimizers and checkpoints."""

from l2dynamics.train.clock import eval_steps
from l2dynamics.train.loop import RunResult, Trainer, resolve_device, summarize, train
from l2dynamics.train.optim import build_optimizer, lr_factor

__all__ = ["RunResult", "Trainer", "build_optimizer", "eval_steps", "lr_factor",
           "resolve_device", "summarize", "train"]
