"""Training engine: the one loop, its clock, optimizers and checkpoints, and the vectorized
ensemble engine (K configs of one architecture trained at once)."""

from l2dynamics.train.clock import effective_time, eval_steps, lr_at, lr_factor
from l2dynamics.train.ensemble import EnsembleTrainer
from l2dynamics.train.grouping import choose_engine, ensemble_key, vectorizable
from l2dynamics.train.loop import Trainer, train
from l2dynamics.train.optim import build_optimizer
from l2dynamics.train.results import RunResult, summarize
from l2dynamics.train.setup import load_run_data, resolve_device, split_validation

__all__ = ["EnsembleTrainer", "RunResult", "Trainer", "build_optimizer", "choose_engine",
           "effective_time", "ensemble_key", "eval_steps", "load_run_data", "lr_at",
           "lr_factor", "resolve_device", "split_validation", "summarize", "train",
           "vectorizable"]
