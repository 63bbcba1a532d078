"""What a run is made of before its first update, a pure function of its config.

A run's device, data, initial model, batch order, augmentation stream, evaluation subset and
training forward pass are defined once here, so that a member of a vectorized ensemble
(:mod:`l2dynamics.train.ensemble`) is the same run as a lone
:class:`~l2dynamics.train.loop.Trainer`, number for number.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from l2dynamics.config import Config
from l2dynamics.data import Dataset, load_dataset
from l2dynamics.errors import ConfigError
from l2dynamics.losses import make_loss
from l2dynamics.models.from_config import config_model


def resolve_device(name: str) -> torch.device:
    """"auto" picks CUDA when available, else CPU; an unavailable device is a ConfigError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device='cuda' but no CUDA device is available; use device=cpu or auto")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device='mps' but MPS is not available; use device=cpu or auto")
    return torch.device(name)


def _stream_seed(*keys: int) -> int:
    """A well-mixed 63-bit seed for a named random stream, e.g. (seed, epoch, purpose)."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1, np.uint64)[0]
               >> np.uint64(1))


_BATCH_STREAM, _AUGMENT_STREAM, _EVAL_STREAM, _TEST_STREAM, _VAL_STREAM = 1, 2, 3, 4, 5

EVAL_BATCH_AUTO = {"cpu": 256}
"""``eval_batch_size`` = 0 per device type; others get :data:`EVAL_BATCH_DEFAULT`. On the CPU,
batches of 256 evaluated conv nets 2–3 times faster than batches of 2,048 (their activations stay
in the cache) and fc nets as fast (``benchmarks/engine_speed.py``, the benchmarks page)."""
EVAL_BATCH_DEFAULT = 2048

CHANNELS_LAST_AUTO = {"cpu": ("cnn", "wrn")}
"""``channels_last="auto"``: the models that train in NHWC layout on each device type: those
where ``benchmarks/engine_speed.py`` measured the bare step faster in it (cnn with and without
BN, WRN-16-4; see the benchmarks page). Models not measured (convnet4) and other devices keep
NCHW unless asked; on CUDA the studies' GPU path sets it explicitly."""


def eval_batch(cfg: Config, device: torch.device) -> int:
    """The evaluation batch: ``eval_batch_size``, or the device's :data:`EVAL_BATCH_AUTO`."""
    return cfg.eval_batch_size or EVAL_BATCH_AUTO.get(device.type, EVAL_BATCH_DEFAULT)


def use_channels_last(cfg: Config, device: torch.device) -> bool:
    """Whether the run keeps its model and image batches in NHWC layout (``channels_last``
    true/false, or "auto": :data:`CHANNELS_LAST_AUTO`). The layout changes results only by
    float32 rounding."""
    if cfg.channels_last == "auto":
        return cfg.model in CHANNELS_LAST_AUTO.get(device.type, ())
    return bool(cfg.channels_last)


def batch_layout(cfg: Config, data: Dataset, device: torch.device
                 ) -> tuple[int, bool, int, torch.Tensor, torch.Tensor]:
    """(batch size, full batch?, steps per epoch, eval x, eval y) of a run: the batch is capped
    at the training set, and the training metrics use the fixed ``eval_train_size`` subset."""
    n = data.x_train.shape[0]
    batch_size = min(cfg.batch_size, n)
    idx = eval_subset(n, cfg.eval_train_size, cfg.data_seed)
    if idx is not None:
        idx = idx.to(device)
        eval_x, eval_y = data.x_train[idx], data.y_train[idx]
    else:
        eval_x, eval_y = data.x_train, data.y_train
    return batch_size, batch_size == n, n // batch_size, eval_x, eval_y


def run_setup(cfg: Config, dataset: Dataset | None = None
              ) -> tuple[torch.device, torch.dtype, Dataset, Callable[..., torch.Tensor]]:
    """Device, dtype, data (`dataset` if given, else loaded) and training loss of a run —
    what every engine sets up first. A given `dataset` without a validation set is split as
    ``n_val`` asks (:func:`split_validation`)."""
    device = resolve_device(cfg.device)
    dtype = getattr(torch, cfg.dtype)
    if dataset is None:
        data = load_run_data(cfg, device, dtype)
    elif dataset.x_val is None:
        data = split_validation(dataset, cfg.n_val, cfg.data_seed)
    elif dataset.n_val != cfg.n_val:
        raise ConfigError(f"the dataset given holds a validation set of {dataset.n_val} "
                          f"examples but the config asks for n_val={cfg.n_val}")
    else:
        data = dataset
    return device, dtype, data, make_loss(cfg.loss, data.task, data.num_outputs)


def load_run_data(cfg: Config, device: torch.device, dtype: torch.dtype) -> Dataset:
    """The dataset `cfg` trains on, on `device` in `dtype` (shared by runs that differ only in
    seed, λ, η or steps: the data depend on ``data_seed``, never on ``seed``), with its
    ``n_val`` validation examples held out of the test pool (:func:`split_validation`)."""
    data = load_dataset(
        cfg.dataset, n_train=cfg.n_train, n_test=cfg.n_test, data_dir=cfg.data_dir,
        download=cfg.download, seed=cfg.data_seed, device=device, dtype=dtype,
        augment=cfg.augment, normalize=cfg.normalize, **cfg.data_options)
    return split_validation(data, cfg.n_val, cfg.data_seed)


def split_validation(data: Dataset, n_val: int, data_seed: int) -> Dataset:
    """`data` with `n_val` examples of its test pool moved to ``x_val``/``y_val`` (`data` itself
    when `n_val` is 0).

    The split is a permutation of the test pool drawn from ``data_seed`` only (its own stream):
    its first `n_val` entries are the validation set, the rest the test set (each kept in the
    pool's order). The training set is untouched, so a run trains exactly as with ``n_val=0``;
    λ can be chosen on the validation metrics and the test metrics reported apart."""
    if not n_val:
        return data
    pool = data.x_test.shape[0]
    if n_val >= pool:
        raise ConfigError(f"n_val={n_val} must be smaller than the test set of {data.name} "
                          f"({pool} examples): the validation set is taken out of the test pool")
    g = torch.Generator().manual_seed(_stream_seed(data_seed, _VAL_STREAM))
    perm = torch.randperm(pool, generator=g)
    val, test = (idx.sort().values.to(data.x_test.device) for idx in (perm[:n_val], perm[n_val:]))
    info = {**data.info, "n_test": pool - n_val, "n_val": n_val}
    return replace(data, x_test=data.x_test[test], y_test=data.y_test[test],
                   x_val=data.x_test[val], y_val=data.y_test[val], info=info)


def init_model(cfg: Config, data: Dataset, device: torch.device,
               dtype: torch.dtype) -> torch.nn.Module:
    """The model of `cfg` at initialization: built on the CPU under ``torch.manual_seed(seed)``
    in a forked RNG (the global stream is left untouched), then moved to `device` and `dtype`."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = config_model(cfg, data.input_shape, data.num_outputs)
    return model.to(device=device, dtype=dtype)


class TrainingForward:
    """The training forward pass of a run with its speed options (``autocast``, ``compile``).

    ``forward(x)`` calls the model, compiled with ``torch.compile(mode=cfg.compile)`` when asked
    (the eager model stays the one evaluated, checkpointed and probed; both share parameters);
    ``with forward.autocast():`` lowers float32 operations to bfloat16 when ``autocast='bf16'``.
    Parameters, gradients, optimizer state and the L2 term stay in ``cfg.dtype``. Under
    ``compile='reduce-overhead'`` (CUDA graphs) each call starts a new graph step, so a loss
    kept from an earlier update is never overwritten by a later replay.
    """

    def __init__(self, model: torch.nn.Module, cfg: Config, device: torch.device):
        self.model = model
        self.device_type = device.type
        self.dtype = torch.bfloat16 if cfg.autocast == "bf16" else None
        self.mode = cfg.compile
        self.compiled: Any = None
        if cfg.compile != "none":
            mode = None if cfg.compile == "default" else cfg.compile
            self.compiled = torch.compile(model, mode=mode)

    def autocast(self) -> Any:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.compiled is None:
            return self.model(x)
        if self.mode == "reduce-overhead":
            torch.compiler.cudagraph_mark_step_begin()
        return self.compiled(x)


def speed_options(model: torch.nn.Module, cfg: Config, device: torch.device) -> TrainingForward:
    """Apply ``channels_last`` (:func:`use_channels_last`) to `model` in place and return its
    :class:`TrainingForward`."""
    if use_channels_last(cfg, device):
        model.to(memory_format=torch.channels_last)  # 4-d weights only; others unchanged
    return TrainingForward(model, cfg, device)


def epoch_permutation(seed: int, epoch: int, n: int) -> torch.Tensor:
    """The order (CPU int64 indices into the training set) in which run `seed` visits the `n`
    training examples in `epoch`; update t uses slot t mod steps_per_epoch of epoch
    t // steps_per_epoch."""
    g = torch.Generator().manual_seed(_stream_seed(seed, epoch, _BATCH_STREAM))
    return torch.randperm(n, generator=g)


def augment_generator(seed: int, step: int) -> torch.Generator:
    """The CPU generator that draws the augmentation of run `seed`'s batch at update `step`."""
    return torch.Generator().manual_seed(_stream_seed(seed, step, _AUGMENT_STREAM))


def eval_subset(n: int, size: int, data_seed: int) -> torch.Tensor | None:
    """CPU indices of the fixed training subset the train metrics are taken on (a function of
    ``data_seed`` only), or None when `size` is 0 or covers the `n` examples."""
    if not size or size >= n:
        return None
    g = torch.Generator().manual_seed(_stream_seed(data_seed, _EVAL_STREAM))
    return torch.randperm(n, generator=g)[:size]


def eval_test_subset(data: Dataset, size: int,
                     data_seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) of the first `size` test examples in a fixed order drawn from ``data_seed`` only:
    the subset the intermediate evaluation points use (a point with ``test_n`` = m takes the
    first m rows, so smaller subsets are nested in larger ones)."""
    n = data.x_test.shape[0]
    g = torch.Generator().manual_seed(_stream_seed(data_seed, _TEST_STREAM))
    idx = torch.randperm(n, generator=g)[:size].to(data.x_test.device)
    return data.x_test[idx], data.y_test[idx]
