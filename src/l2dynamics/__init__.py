"""l2dynamics: training dynamics of deep networks with L2 regularization.

λ (``lam``) is always the paper's: loss + (λ/2)·‖θ‖². See ``l2dynamics.l2.conventions`` for the
conversions to PyTorch, AdamW and van Laarhoven conventions.
"""

__version__ = "0.1.0"

from l2dynamics.config import CONFIG_KEYS, Config, make_config  # noqa: E402
from l2dynamics.data import Dataset, available_datasets, load_dataset  # noqa: E402
from l2dynamics.errors import ConfigError, DataError, L2DynamicsError, StoreError  # noqa: E402
from l2dynamics.l2 import (  # noqa: E402
    AutoL2,
    L2Penalty,
    StepSchedule,
    WeightDecaySchedule,
    decay_param_groups,
    split_decay,
)
from l2dynamics.models import build_model  # noqa: E402
from l2dynamics.store import RunStore, load_runs, load_series  # noqa: E402
from l2dynamics.studies.predict import (  # noqa: E402
    LambdaPrediction,
    ema_timescale_lambda,
    predict_lambda,
)
from l2dynamics.train import RunResult, Trainer, eval_steps, train  # noqa: E402

__all__ = [
    "AutoL2",
    "CONFIG_KEYS",
    "Config",
    "ConfigError",
    "DataError",
    "Dataset",
    "L2DynamicsError",
    "L2Penalty",
    "LambdaPrediction",
    "RunResult",
    "RunStore",
    "StepSchedule",
    "StoreError",
    "Trainer",
    "WeightDecaySchedule",
    "available_datasets",
    "build_model",
    "decay_param_groups",
    "ema_timescale_lambda",
    "eval_steps",
    "load_dataset",
    "load_runs",
    "load_series",
    "make_config",
    "predict_lambda",
    "split_decay",
    "train",
]
