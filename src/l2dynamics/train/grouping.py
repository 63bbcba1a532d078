"""Which configs may train as one vectorized ensemble, and which engine is faster for them.

Members of an :class:`~l2dynamics.train.EnsembleTrainer` are configs that share everything
except :data:`MEMBER_KEYS`; :func:`vectorizable` says whether a group can, :func:`choose_engine`
whether it should (from what ``benchmarks/ensemble.py`` measured).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
from torch import nn

from l2dynamics.config import Config, make_config
from l2dynamics.data import Dataset
from l2dynamics.errors import ConfigError
from l2dynamics.models.from_config import ARCHITECTURE_KEYS, config_model
from l2dynamics.train.setup import resolve_device

MEMBER_KEYS = ("lam", "lr", "seed", "decoupled_wd", "steps", "name")
"""Config keys that may differ between the members of one ensemble."""

# Input shape and output count per dataset, to build a weightless model for the checks below
# without loading data (the first layer's size is all that depends on them).
_SHAPES: dict[str, tuple[tuple[int, ...], int]] = {
    "digits": ((64,), 10), "mnist1d": ((40,), 10), "mnist": ((1, 28, 28), 10),
    "fashion_mnist": ((1, 28, 28), 10),
    "cifar10": ((3, 32, 32), 10),
}

CPU_MAX_WORK = 4_000_000
"""CPU rule of :func:`choose_engine`: vectorize an fc model while parameters × batch size (the
multiply-adds of one member's forward pass) is at most this. See choose_engine's docstring."""

def as_config(config: Config | Mapping[str, Any]) -> Config:
    return config if isinstance(config, Config) else make_config(config)


def ensemble_key(config: Config | Mapping[str, Any]) -> str:
    """The grouping key: canonical JSON of the config without :data:`MEMBER_KEYS`. Configs with
    equal keys may train as one ensemble (if :func:`vectorizable` agrees)."""
    data = {k: v for k, v in as_config(config).to_dict().items() if k not in MEMBER_KEYS}
    return json.dumps(data, sort_keys=True)


def vectorizable(configs: Sequence[Config | Mapping[str, Any]], *,
                 dataset: Dataset | None = None) -> str | None:
    """None when `configs` can train as one :class:`EnsembleTrainer`, else a one-line reason.

    They must be non-empty, agree on every key but :data:`MEMBER_KEYS`, ask for no checkpoints,
    and their model must keep all its state in trainable parameters with no train/eval
    difference: no buffers (BatchNorm running statistics), no dropout, no frozen parameters.
    ``dataset`` (optional) gives the real input shape for the model check.
    """
    cfgs = [as_config(c) for c in configs]
    if not cfgs:
        return "no configs"
    first = cfgs[0].to_dict()
    differ = sorted({k for c in cfgs[1:] for k, v in c.to_dict().items()
                     if k not in MEMBER_KEYS and v != first[k]})
    if differ:
        what = ("different architecture" if set(differ) & set(ARCHITECTURE_KEYS)
                else "different settings")
        return (f"{what}: configs differ in {', '.join(differ)}; only "
                f"{', '.join(MEMBER_KEYS)} may differ within an ensemble")
    cfg = cfgs[0]
    if cfg.lam_schedule != "constant":
        return (f"lam_schedule={cfg.lam_schedule!r}: the ensemble engine keeps each member's λ "
                "constant")
    if cfg.checkpoint_every:
        return (f"checkpoint_every={cfg.checkpoint_every}: the ensemble engine writes no "
                "checkpoints")
    # channels_last="auto" is a layout the ensemble does not need (its stacked convolutions run
    # grouped, in their own layout; results agree to float32 rounding); true asks for NHWC
    if cfg.autocast != "none" or cfg.channels_last is True or cfg.compile != "none":
        return ("autocast/channels_last/compile: the GPU speed options run in the sequential "
                "engine only")
    if cfg.project_norm != "none" or cfg.norm_probes:
        return ("project_norm/norm_probes: the ‖w‖ projection and the per-tensor norm probes "
                "run in the sequential engine only")
    try:
        model = _meta_model(cfg, dataset)
    except ConfigError as err:
        return f"model cannot be built: {err}"
    return model_problem(model)


def choose_engine(configs: Sequence[Config | Mapping[str, Any]],
                  device: str | torch.device = "auto") -> Literal["vectorized", "sequential"]:
    """"vectorized" (one :class:`EnsembleTrainer`) or "sequential" (one Trainer per config) for
    a group of configs on `device`, from what ``benchmarks/ensemble.py`` measured.

    - Fewer than 2 configs, or :func:`vectorizable` refuses them: sequential.
    - CUDA: vectorized for K ≥ 2. One small model leaves the GPU idle between kernel launches
      (a step of fc 2×256 at batch 128 is ~1e7 multiply-adds, microseconds of H200 work behind
      ~30 launches); K stacked members cost about as many launches as one. Not measured here
      (no GPU was available to this work): ``python benchmarks/ensemble.py --device cuda``.
    - CPU: vectorized only for fc models with parameters × batch ≤ :data:`CPU_MAX_WORK` (4e6
      multiply-adds per member forward). A CPU step of a mid-sized model is compute-bound and
      the batched matmuls of the ensemble do the same arithmetic at the same speed as K separate
      ones. Vectorizing only shares the per-update Python/dispatch overhead (~0.5 ms per run
      and update for Trainer, ~1.2 ms for one vmapped update of all K members), which matters
      only for small models. Measured with ``benchmarks/ensemble.py --repeats 3 --crossover``
      (2 AMD EPYC cores, 1 torch thread, load average 0.2 → 1.1, min of 3 rotated repeats),
      member-steps/s vectorized / sequential, 300 steps with probes at 10/decade, MNIST-1D:

      ==========================  ===============  =====  ======
      model, batch                params × batch   K = 8  K = 32
      ==========================  ===============  =====  ======
      fc 2×32, 128                0.35e6           1.45
      fc 2×64, 128                0.95e6           1.43
      fc 2×128, 128               2.9e6            1.18
      fc 2×256, 128               10.1e6           0.97   1.04
      fc 3×1024, 256 (20 steps)   551e6            1.00   0.93
      ==========================  ===============  =====  ======

      Where the ratio is ~1 the sequential engine keeps what the ensemble lacks (checkpoints,
      resume, one process per run in a sweep's worker pool), so it is chosen. Convolutions do
      many multiply-adds per parameter: sequential on CPU. Measured for the CNN without BN
      (4×16, Fashion-MNIST, batch 128, 1 thread; ``benchmarks/engine_speed.py``, the
      ``ensemble_cnn`` entry): K = 4 members vectorized (grouped convolutions, NCHW) took about
      twice the time of 4 sequential Trainer updates (NHWC, the CPU fast path).
    - Other devices (mps): sequential (not measured).
    """
    cfgs = [as_config(c) for c in configs]
    if len(cfgs) < 2 or vectorizable(cfgs) is not None:
        return "sequential"
    dev = resolve_device(device) if isinstance(device, str) else torch.device(device)
    if dev.type == "cuda":
        return "vectorized"
    if dev.type != "cpu" or cfgs[0].model != "fc":
        return "sequential"
    cfg = cfgs[0]
    n_params = sum(p.numel() for p in _meta_model(cfg, None).parameters())
    batch = min(cfg.batch_size, cfg.n_train) if cfg.n_train else cfg.batch_size
    return "vectorized" if n_params * batch <= CPU_MAX_WORK else "sequential"


def _meta_model(cfg: Config, dataset: Dataset | None) -> nn.Module:
    """`cfg`'s model with weightless (meta) tensors: its structure and sizes, no memory."""
    if dataset is not None:
        shape, outputs = tuple(dataset.input_shape), dataset.num_outputs
    elif cfg.dataset == "teacher":
        opts = cfg.data_options
        regression = opts.get("task", "classification") == "regression"
        shape, outputs = (int(opts.get("input_dim", 32)),), 1 if regression else int(
            opts.get("num_classes", 10))
    else:
        shape, outputs = _SHAPES.get(cfg.dataset, ((3, 32, 32), 10))
    if cfg.model == "fc" and len(shape) != 1:
        shape = (math.prod(shape),)
    with torch.device("meta"):
        return config_model(cfg, shape, outputs)


def parameter_count(cfg: Config, dataset: Dataset | None = None) -> int:
    """Trainable parameters of `cfg`'s model (built weightless: no memory, no data loaded)."""
    return int(sum(p.numel() for p in _meta_model(cfg, dataset).parameters()
                   if p.requires_grad))


def model_problem(model: nn.Module) -> str | None:
    """Why `model`'s members cannot share one vmapped forward pass, or None."""
    buffers = [n for n, _ in model.named_buffers()]
    if buffers:
        shown = ", ".join(buffers[:2]) + (", …" if len(buffers) > 2 else "")
        return (f"model has buffers ({shown}), e.g. BatchNorm running statistics, which the "
                "ensemble does not keep per member; use norm='ln'/'wn'/'none' or Trainer")
    if any(isinstance(m, nn.modules.dropout._DropoutNd) for m in model.modules()):
        return "model has dropout, whose random masks the ensemble does not draw per member"
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    if frozen:
        return f"model has frozen parameters ({frozen[0]}, …)"
    if not any(True for _ in model.parameters()):
        return "model has no parameters"
    return None
