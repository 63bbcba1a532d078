"""L2 regularization: conventions, which parameters are decayed, and the penalty itself."""

from l2dynamics.l2.conventions import (
    decoupled_from_independent,
    decoupled_from_lam_sgd,
    independent_from_decoupled,
    lam_from_torch_weight_decay,
    lam_from_vanlaarhoven,
    lam_lr_from_autol2_code,
    torch_weight_decay_from_lam,
    vanlaarhoven_from_lam,
)
from l2dynamics.l2.params import DecaySplit, split_decay
from l2dynamics.l2.penalty import L2Penalty
from l2dynamics.l2.schedule import (
    AutoL2,
    StepSchedule,
    WeightDecaySchedule,
    decay_param_groups,
)

__all__ = [
    "AutoL2",
    "DecaySplit",
    "L2Penalty",
    "decoupled_from_independent",
    "decoupled_from_lam_sgd",
    "independent_from_decoupled",
    "lam_from_torch_weight_decay",
    "lam_from_vanlaarhoven",
    "lam_lr_from_autol2_code",
    "StepSchedule",
    "WeightDecaySchedule",
    "decay_param_groups",
    "split_decay",
    "torch_weight_decay_from_lam",
    "vanlaarhoven_from_lam",
]
