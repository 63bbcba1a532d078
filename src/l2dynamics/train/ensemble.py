"""K runs of one architecture trained at once: the vectorized ensemble engine.

Members are configs that share everything except :data:`MEMBER_KEYS` (``lam``, ``lr``,
``seed``, ``decoupled_wd``, ``steps``, ``name``). Their weights are stacked along a leading
member axis, shape (K, *tensor shape), and one update of all K members is one call of
``vmap(grad_and_value(loss))`` over ``functional_call`` of a weightless (meta) copy of the
model, followed by the update below on the stacked tensors. Each member is the run a lone
:class:`~l2dynamics.train.loop.Trainer` makes from its config:

- its own init (``torch.manual_seed(seed)`` in a forked RNG, then ``build_model``: the same
  :func:`~l2dynamics.train.loop.init_model`), its own batch order (its seed's per-epoch
  permutations, :func:`~l2dynamics.train.loop.epoch_permutation`) and, when the dataset has one,
  its own augmentation stream;
- Trainer's update at step t, with η_k = lr_k · lr_factor(t, cfg_k)::

      g  = ∇ L_batch_k(θ_k)                       (data loss only)
      g += λ_k·θ_k            on decayed tensors  (coupled L2, the paper's λ)
      θ_k ← (1 − η_k·λd_k)·θ_k on decayed tensors (decoupled decay)
      θ_k ← optimizer step with η_k               (torch's SGD / momentum / Nesterov with
                                                   dampening 0 and first buffer = g; Adam and
                                                   AdamW with weight_decay 0, torch's bias
                                                   corrections from the shared step count)

- its own evaluation clock (``eval_steps(cfg.steps, …)``), the same metrics under the same
  names (:func:`~l2dynamics.train.loop.probe_metrics`), physical time Σ η_t and λ-time, and
  its own stored run (``create_run`` … ``add_metrics`` … ``finish_run`` with Trainer's summary).
  ``wall_time`` and ``wall_seconds`` are the ensemble's clock (the members share it).

Equality with K lone runs: the same operations in the same order on the same numbers. What
differs is only inside kernels: a batched matmul may sum in another order than a single one,
and a fused multiply-add rounds once where two operations round twice. That is ~1e-16 relative
per operation in float64 (series agree to ~1e-12 after hundreds of steps) and ~1e-7 in float32,
where training dynamics amplify it (see tests/test_ensemble.py for the tolerances).

Divergence is Trainer's, per member: losses stay on the device and are read in one host sync
at the points where a lone run would read them (every ``LOSS_SYNC_EVERY`` updates since its last
check, at its probes, at its end), so the diverged step, the cause ("non-finite loss", or
"non-finite parameters" at a probe) and ``steps_done`` are those of the lone run. A diverged or
finished member is removed from the stack (parameters, optimizer state, per-member schedules),
so the others do not pay for it; the rest continue.

No checkpoints: ensembles are for short sweeps. A Python exception (Ctrl-C included) marks the
members still training "failed" ("interrupted" for Ctrl-C), as Trainer does; a hard crash
(killed process, out of memory) leaves them "running" (read as "stale" once the process is
gone), and re-running the sweep trains them again, since sweeps skip only finished and diverged
runs. Configs with ``checkpoint_every`` > 0, models with buffers (BatchNorm running statistics)
or dropout are refused by :func:`vectorizable`; run those with Trainer.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad_and_value, vmap

from l2dynamics.config import Config, make_config
from l2dynamics.data import Dataset
from l2dynamics.errors import ConfigError
from l2dynamics.l2 import split_decay
from l2dynamics.models import build_model
from l2dynamics.store import RunStore
from l2dynamics.train.clock import eval_steps
from l2dynamics.train.loop import (
    LOSS_SYNC_EVERY,
    RunResult,
    _versions,
    augment_generator,
    batch_layout,
    epoch_permutation,
    init_model,
    probe_metrics,
    resolve_device,
    run_setup,
    run_summary,
)
from l2dynamics.train.loss import correct_count, make_loss
from l2dynamics.train.memory import check_run_memory
from l2dynamics.train.optim import lr_factor

MEMBER_KEYS = ("lam", "lr", "seed", "decoupled_wd", "steps", "name")
"""Config keys that may differ between the members of one ensemble."""

_ARCHITECTURE_KEYS = ("model", "width", "depth", "activation", "bias", "parameterization",
                      "weight_var", "bias_var", "norm")

# Input shape and output count per dataset, to build a weightless model for the checks below
# without loading data (the first layer's size is all that depends on them).
_SHAPES: dict[str, tuple[tuple[int, ...], int]] = {
    "digits": ((64,), 10), "mnist1d": ((40,), 10), "mnist": ((1, 28, 28), 10),
    "cifar10": ((3, 32, 32), 10),
}

CPU_MAX_WORK = 4_000_000
"""CPU rule of :func:`choose_engine`: vectorize an fc model while parameters × batch size (the
multiply-adds of one member's forward pass) is at most this. See choose_engine's docstring."""

EnsembleProgressFn = Callable[[int, int, int, Mapping[str, float] | None], None]
"""``progress(member, step, total, metrics)``: Trainer's progress callback with the member's
position in the input list first; metrics at probes, None after each update and at the end."""


def _as_config(config: Config | Mapping[str, Any]) -> Config:
    return config if isinstance(config, Config) else make_config(config)


def ensemble_key(config: Config | Mapping[str, Any]) -> str:
    """The grouping key: canonical JSON of the config without :data:`MEMBER_KEYS`. Configs with
    equal keys may train as one ensemble (if :func:`vectorizable` agrees)."""
    data = {k: v for k, v in _as_config(config).to_dict().items() if k not in MEMBER_KEYS}
    return json.dumps(data, sort_keys=True)


def vectorizable(configs: Sequence[Config | Mapping[str, Any]], *,
                 dataset: Dataset | None = None) -> str | None:
    """None when `configs` can train as one :class:`EnsembleTrainer`, else a one-line reason.

    They must be non-empty, agree on every key but :data:`MEMBER_KEYS`, ask for no checkpoints,
    and their model must keep all its state in trainable parameters with no train/eval
    difference: no buffers (BatchNorm running statistics), no dropout, no frozen parameters.
    ``dataset`` (optional) gives the real input shape for the model check.
    """
    cfgs = [_as_config(c) for c in configs]
    if not cfgs:
        return "no configs"
    first = cfgs[0].to_dict()
    differ = sorted({k for c in cfgs[1:] for k, v in c.to_dict().items()
                     if k not in MEMBER_KEYS and v != first[k]})
    if differ:
        what = ("different architecture" if set(differ) & set(_ARCHITECTURE_KEYS)
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
    if cfg.autocast != "none" or cfg.channels_last or cfg.compile != "none":
        return ("autocast/channels_last/compile: the GPU speed options run in the sequential "
                "engine only")
    if cfg.project_norm != "none" or cfg.norm_probes:
        return ("project_norm/norm_probes: the ‖w‖ projection and the per-tensor norm probes "
                "run in the sequential engine only")
    try:
        model = _meta_model(cfg, dataset)
    except ConfigError as err:
        return f"model cannot be built: {err}"
    return _model_problem(model)


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
      many multiply-adds per parameter: sequential on CPU.
    - Other devices (mps): sequential (not measured).
    """
    cfgs = [_as_config(c) for c in configs]
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
        return build_model(cfg.model, input_shape=shape, num_outputs=outputs, width=cfg.width,
                           depth=cfg.depth, activation=cfg.activation, bias=cfg.bias,
                           parameterization=cfg.parameterization, weight_var=cfg.weight_var,
                           bias_var=cfg.bias_var, norm=cfg.norm)


def _model_problem(model: nn.Module) -> str | None:
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


@dataclass
class _Member:
    """One run of the ensemble: its config, clock, stored run and bookkeeping."""

    index: int  # position in the input list
    cfg: Config
    clock: frozenset[int]
    run_id: int | None = None
    rows: list[tuple[int, float, str, float]] = field(default_factory=list)
    unchecked: int = 0  # updates since this member's last loss check (Trainer's len(_losses))
    first_bad: int | None = None  # first update with a non-finite loss, once the host saw it
    result: RunResult | None = None


class EnsembleTrainer:
    """Trains K configs that :func:`vectorizable` accepts as one stacked, vmapped model.

    ``run()`` returns one :class:`RunResult` per config, in input order; with a ``store`` each
    member is its own stored run, exactly as a Trainer run would be (same metric names, same
    summary). ``progress`` is :data:`EnsembleProgressFn`. ``dataset`` (optional) is the
    already-loaded data of the shared config (on its device and dtype).
    """

    def __init__(self, configs: Sequence[Config | Mapping[str, Any]], *,
                 store: RunStore | None = None, progress: EnsembleProgressFn | None = None,
                 dataset: Dataset | None = None):
        self.configs = [_as_config(c) for c in configs]
        reason = vectorizable(self.configs, dataset=dataset)
        if reason is not None:
            raise ConfigError(f"these {len(self.configs)} configs cannot train as one "
                              f"ensemble: {reason}")
        cfg = self.cfg = self.configs[0]  # the shared settings
        self.device, self.dtype, self.data, self.loss_fn = run_setup(cfg, dataset)
        check_run_memory(max(self.configs, key=lambda c: c.steps), self.data, self.device,
                         members=len(self.configs), stacked=True)  # before K models exist
        self.classification = self.data.task == "classification"
        # The training loss under vmap. MSE to one-hot targets calls F.one_hot, which checks
        # its labels on the host and so cannot see a batched label tensor: build the one-hot
        # targets once, outside vmap, and use the same ½·Σ(f − target)² on them.
        self._train_y = self.data.y_train
        self._train_loss = self.loss_fn
        if cfg.loss == "mse" and self.classification:
            self._train_y = F.one_hot(self.data.y_train, self.data.num_outputs).to(self.dtype)
            self._train_loss = make_loss("mse", "regression", self.data.num_outputs)
        self.store = store
        self.progress = progress

        models = [init_model(c, self.data, self.device, self.dtype) for c in self.configs]
        problem = _model_problem(models[0])
        if problem is not None:
            raise ConfigError(f"these configs cannot train as one ensemble: {problem}")
        self.decay = split_decay(models[0], cfg.decay_params)
        self.names = [n for n, p in models[0].named_parameters() if p.requires_grad]
        by_name = [dict(m.named_parameters()) for m in models]
        # (K, *shape) per tensor; plain tensors: torch.func differentiates through them.
        self.params = {n: torch.stack([p[n].detach() for p in by_name]) for n in self.names}
        self.skeleton = models[0].to("meta")  # structure only; weights come from self.params
        del models, by_name

        self.members = [
            _Member(i, c, frozenset(int(s) for s in eval_steps(c.steps, c.eval_per_decade,
                                                                c.eval_every)))
            for i, c in enumerate(self.configs)]
        self.active = list(self.members)  # members still in the stack, in stack order
        self.steps_done = 0
        self._prepare_data()
        self._prepare_schedules()
        self._opt_state: dict[str, Any] = {}
        self._pending: list[torch.Tensor] = []  # (K,) batch losses not yet read by the host
        self._pending_steps: list[int] = []
        self._grad_fns: dict[tuple[int | None, int | None], Callable[..., Any]] = {}
        fwd = lambda params, x: functional_call(self.skeleton, params, (x,))  # noqa: E731
        self._forward = vmap(fwd, in_dims=(0, None))
        self._batch_loss = vmap(self.loss_fn, in_dims=(0, None))
        self._correct = vmap(correct_count, in_dims=(0, None))
        self.eval_one_by_one = self.device.type == "cpu"  # see _evaluate

    # --- data ---------------------------------------------------------------------------------

    def _prepare_data(self) -> None:
        layout = batch_layout(self.cfg, self.data, self.device)
        self.batch_size, self.full_batch, self.steps_per_epoch, self.eval_x, self.eval_y = layout
        self._perm_epoch = -1
        self._perms: torch.Tensor | None = None  # (K, n) this epoch's permutations

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor, tuple[int | None, ...]]:
        """(x, y, vmap in_dims) of update `step` for the members in the stack: x (K, B, …) and
        y (K, B), member k's rows being exactly ``Trainer(cfg_k).batch(step)`` (y one-hot for
        MSE classification); a full batch without augmentation is shared (in_dims None)."""
        data, augment = self.data, self.data.augment
        if self.full_batch:
            xb, yb, dims = data.x_train, self._train_y, (None, None)
        else:
            epoch, pos = divmod(step, self.steps_per_epoch)
            if epoch != self._perm_epoch:
                n = data.x_train.shape[0]
                self._perms = torch.stack([epoch_permutation(m.cfg.seed, epoch, n)
                                           for m in self.active]).to(self.device)
                self._perm_epoch = epoch
            assert self._perms is not None
            idx = self._perms[:, pos * self.batch_size:(pos + 1) * self.batch_size]
            xb, yb, dims = data.x_train[idx], self._train_y[idx], (0, 0)
        if augment is not None:
            xb = torch.stack([augment(xb if dims[0] is None else xb[j],
                                      augment_generator(m.cfg.seed, step))
                              for j, m in enumerate(self.active)])
            dims = (0, dims[1])
        return xb, yb, dims

    # --- per-member schedules ------------------------------------------------------------------

    def _prepare_schedules(self) -> None:
        """Per-step, per-member scalars, computed once on the host in float64 exactly as Trainer
        computes them (Python float arithmetic) and uploaded once, so that an update needs no
        host-to-device copy: η (S, K), the decoupled factor 1 − η·λd, Adam's −η/(1 − β1^t)."""
        cfgs = self.configs
        total = max(c.steps for c in cfgs)
        lr = np.zeros((total, len(cfgs)))
        factors: dict[int, np.ndarray] = {}
        for j, c in enumerate(cfgs):
            if c.steps not in factors:  # lr_factor depends on the member only through steps
                if c.lr_schedule == "constant" and c.warmup_steps == 0:
                    factors[c.steps] = np.ones(c.steps)
                else:
                    factors[c.steps] = np.array([lr_factor(t, c) for t in range(c.steps)])
            lr[:c.steps, j] = c.lr * factors[c.steps]
        self._lr_host = lr
        self._lam_host = np.array([c.lam for c in cfgs])
        self._phys_time = np.zeros(len(cfgs))
        self._lam_time = np.zeros(len(cfgs))

        def dev(a: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(a).to(device=self.device, dtype=self.dtype)

        self._lam = dev(self._lam_host) if any(c.lam for c in cfgs) else None
        wd = np.array([c.decoupled_wd for c in cfgs])
        self._decoupled = dev(1.0 - lr * wd) if wd.any() else None
        if self.cfg.optimizer == "sgd":
            self._neg_lr = dev(-lr)
        else:
            beta1, beta2 = self.cfg.betas
            # torch: bias_correction = 1 - beta ** step with step the float count of updates
            bc1 = np.array([1 - beta1 ** float(t + 1) for t in range(total)])
            self._bc2_sqrt = [(1 - beta2 ** float(t + 1)) ** 0.5 for t in range(total)]
            self._neg_step = dev(-(lr / bc1[:, None]))

    def _per_member(self, values: torch.Tensor, name: str) -> torch.Tensor:
        """(K,) member scalars shaped to broadcast against the stacked tensor `name`."""
        return values.view((-1,) + (1,) * (self.params[name].dim() - 1))

    # --- the update -----------------------------------------------------------------------------

    def _grad_fn(self, dims: tuple[int | None, ...]) -> Callable[..., Any]:
        fn = self._grad_fns.get(dims)  # type: ignore[arg-type]
        if fn is None:
            def loss(params: dict[str, torch.Tensor], x: torch.Tensor,
                     y: torch.Tensor) -> torch.Tensor:
                return self._train_loss(functional_call(self.skeleton, params, (x,)), y)

            fn = vmap(grad_and_value(loss), in_dims=(0, *dims))
            self._grad_fns[dims] = fn  # type: ignore[index]
        return fn

    def _update(self, step: int) -> None:
        """Update `step` (0-based) of every member in the stack; Trainer._update's order."""
        xb, yb, dims = self.batch(step)
        grads, losses = self._grad_fn(dims)(self.params, xb, yb)
        decayed = self.decay.decayed
        if self._lam is not None:  # g += λ_k·θ_k (a member with λ = 0 adds exactly 0)
            for n in decayed:
                grads[n].addcmul_(self.params[n], self._per_member(self._lam, n))
        if self._decoupled is not None:  # θ ← (1 − η·λd)·θ before the optimizer step
            factor = self._decoupled[step]
            for n in decayed:
                self.params[n].mul_(self._per_member(factor, n))
        cfg = self.cfg
        if cfg.optimizer == "sgd":
            neg_lr = self._neg_lr[step]
            for n in self.names:
                g = grads[n]
                if cfg.momentum:  # torch.optim.SGD: first buffer = g, then μ·buf + g
                    buf = self._opt_state.get(n)
                    if buf is None:
                        buf = self._opt_state[n] = g.clone()
                    else:
                        buf.mul_(cfg.momentum).add_(g)
                    g = g.add(buf, alpha=cfg.momentum) if cfg.nesterov else buf
                self.params[n].addcmul_(g, self._per_member(neg_lr, n))
        else:  # torch.optim.Adam / AdamW with weight_decay=0 (single-tensor formulas)
            beta1, beta2 = cfg.betas
            bc2_sqrt, neg_step = self._bc2_sqrt[step], self._neg_step[step]
            for n in self.names:
                g = grads[n]
                if n not in self._opt_state:
                    p = self.params[n]
                    self._opt_state[n] = (torch.zeros_like(p), torch.zeros_like(p))
                exp_avg, exp_avg_sq = self._opt_state[n]
                exp_avg.lerp_(g, 1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(g, g, value=1 - beta2)
                denom = (exp_avg_sq.sqrt() / bc2_sqrt).add_(cfg.eps)
                self.params[n].addcmul_(exp_avg / denom, self._per_member(neg_step, n))
        self._pending.append(losses.detach())
        self._pending_steps.append(step)
        lr = self._lr_host[step]
        self._phys_time += lr
        self._lam_time += lr * self._lam_host

    # --- divergence, probes, finishing ----------------------------------------------------------

    def _read_losses(self) -> None:
        """One host sync for all pending losses; note each member's first non-finite one."""
        if not self._pending:
            return
        finite = torch.isfinite(torch.stack(self._pending)).cpu().numpy()  # (T, K)
        for j in np.flatnonzero(~finite.all(axis=0)):
            member = self.active[j]
            if member.first_bad is None:
                member.first_bad = self._pending_steps[int(np.argmin(finite[:, j]))]
        self._pending, self._pending_steps = [], []

    @torch.no_grad()
    def _evaluate(self, params: dict[str, torch.Tensor], x: torch.Tensor,
                  y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(Σ batch-mean loss × batch size in float64, correct count) per member, over (x, y) in
        chunks of eval_batch_size, accumulated as ``probes.metrics.evaluate`` does.

        On a GPU one vmapped forward serves all members. On the CPU the members are evaluated
        one by one (Trainer's own kernels): measured faster there, since the stacked
        activations of a 2048-example chunk leave the cache and vmapped losses are slow."""
        k = next(iter(params.values())).shape[0]
        total = torch.zeros(k, dtype=torch.float64, device=x.device)
        correct = torch.zeros(k, dtype=torch.int64, device=x.device)
        bs = self.cfg.eval_batch_size
        for start in range(0, x.shape[0], bs):
            xb, yb = x[start:start + bs], y[start:start + bs]
            if self.eval_one_by_one:
                for j in range(k):
                    out = functional_call(self.skeleton, {n: p[j] for n, p in params.items()},
                                          (xb,))
                    total[j] += self.loss_fn(out, yb).double() * yb.shape[0]
                    if self.classification:
                        correct[j] += correct_count(out, yb)
            else:
                out = self._forward(params, xb)
                total += self._batch_loss(out, yb).double() * yb.shape[0]
                if self.classification:
                    correct += self._correct(out, yb)
        return total, correct

    def _measure(self, positions: list[int], step: int) -> list[dict[str, float]]:
        """Trainer.measure for the members at stack `positions` (one host sync for all)."""
        if positions == list(range(len(self.active))):
            params = self.params
        else:
            index = torch.tensor(positions, device=self.device)
            params = {n: p.index_select(0, index) for n, p in self.params.items()}
        test_total, test_correct = self._evaluate(params, self.data.x_test, self.data.y_test)
        train_total, train_correct = self._evaluate(params, self.eval_x, self.eval_y)
        with torch.no_grad():  # per member and tensor, the kernel weight_norms uses
            norms = torch._foreach_norm([params[n][j] for j in range(len(positions))
                                         for n in self.names])
        host = torch.cat([test_total, train_total, test_correct.double(),
                          train_correct.double(), torch.stack([v.double() for v in norms])])
        values = host.cpu().tolist()
        k, t = len(positions), len(self.names)
        n_test, n_train = self.data.x_test.shape[0], self.eval_x.shape[0]
        wall = self._elapsed()
        out = []
        for j, pos in enumerate(positions):
            member = self.active[pos]
            tensor_norms = values[4 * k + j * t:4 * k + (j + 1) * t]
            accuracy = self.classification
            out.append(probe_metrics(
                member.cfg, step=step, classification=self.classification,
                train=(values[k + j] / n_train,
                       int(values[3 * k + j]) / n_train if accuracy else math.nan),
                test=(values[j] / n_test,
                      int(values[2 * k + j]) / n_test if accuracy else math.nan),
                weight_norm=math.sqrt(sum(v * v for v in tensor_norms)),
                per_tensor=dict(zip(self.names, tensor_norms, strict=True)),
                lam=member.cfg.lam, decoupled_wd=member.cfg.decoupled_wd,
                lam_time=float(self._lam_time[pos]), wall_time=wall))
        return out

    def _end(self, member: _Member, status: str, steps_done: int, bad_step: int | None = None,
             cause: str | None = None,
             final_rows: Sequence[tuple[int, float, str, float]] = ()) -> None:
        """Trainer._finish for one member (its final metrics, if any, already in its rows)."""
        elapsed = self._elapsed()
        history, summary = run_summary(member.rows, self.classification, steps_done, elapsed,
                                       self.data)
        if self.store is not None and member.run_id is not None:
            self.store.finish_run(member.run_id, status, steps_done=steps_done,
                                  wall_seconds=elapsed, summary=summary, diverged_step=bad_step,
                                  diverged_cause=cause, final_rows=final_rows)
        member.result = RunResult(member.run_id, status, steps_done, summary, history, bad_step,
                                  cause, member.cfg)
        if self.progress and status == "finished":
            self.progress(member.index, steps_done, member.cfg.steps, None)

    def _checks_and_probes(self, step: int) -> None:
        """Before update `step`: each member's loss check, probe or end, where its lone run
        would have them; then drop the members that ended from the stack."""
        checking = [m for m in self.active if m.unchecked == LOSS_SYNC_EVERY
                    or step in m.clock or step == m.cfg.steps]
        if not checking:
            return
        self._read_losses()
        ended: set[int] = set()
        for member in checking:
            member.unchecked = 0
            if member.first_bad is not None:
                self._end(member, "diverged", step, member.first_bad, "non-finite loss")
                ended.add(member.index)
        probing = [j for j, m in enumerate(self.active)
                   if m.index not in ended and step in m.clock]
        if probing:
            for pos, metrics in zip(probing, self._measure(probing, step), strict=True):
                member = self.active[pos]
                rows = [(step, float(self._phys_time[pos]), name, float(v))
                        for name, v in metrics.items()]
                member.rows.extend(rows)
                finite = math.isfinite(metrics["weight_norm"])
                if step == member.cfg.steps:  # the final measure of Trainer._finish
                    if finite:
                        self._end(member, "finished", step, final_rows=rows)
                    else:
                        self._end(member, "diverged", step, step, "non-finite parameters",
                                  final_rows=rows)
                    ended.add(member.index)
                    continue
                if self.store is not None and member.run_id is not None:
                    self.store.add_metrics(member.run_id, rows, steps_done=step)
                if not finite:
                    self._end(member, "diverged", step, step, "non-finite parameters")
                    ended.add(member.index)
                elif self.progress:
                    self.progress(member.index, step, member.cfg.steps, metrics)
        if ended:
            self._keep([j for j, m in enumerate(self.active) if m.index not in ended])

    def _keep(self, positions: list[int]) -> None:
        """Shrink the stack to the members at `positions` (parameters, optimizer state,
        schedules, batch permutations); losses were all read just before."""
        self.active = [self.active[j] for j in positions]
        if not positions:
            self.params, self._opt_state, self._perms = {}, {}, None
            return
        index = torch.tensor(positions, device=self.device)

        def take(t: torch.Tensor) -> torch.Tensor:
            return t.index_select(0, index)

        self.params = {n: take(p) for n, p in self.params.items()}
        self._opt_state = {n: tuple(take(s) for s in v) if isinstance(v, tuple) else take(v)
                           for n, v in self._opt_state.items()}
        if self._perms is not None:
            self._perms = take(self._perms)
        cols = np.asarray(positions)
        self._lr_host = self._lr_host[:, cols]
        self._lam_host = self._lam_host[cols]
        self._phys_time, self._lam_time = self._phys_time[cols], self._lam_time[cols]
        if self._lam is not None:
            self._lam = take(self._lam)
        if self._decoupled is not None:
            self._decoupled = self._decoupled.index_select(1, index)
        if self.cfg.optimizer == "sgd":
            self._neg_lr = self._neg_lr.index_select(1, index)
        else:
            self._neg_step = self._neg_step.index_select(1, index)

    # --- the loop -------------------------------------------------------------------------------

    @property
    def run_ids(self) -> list[int | None]:
        """Stored run id of each member, in input order (None before ``run()`` or without a
        store): what a sweep needs to account for members when ``run()`` raised."""
        return [m.run_id for m in self.members]

    def _elapsed(self) -> float:
        return time.perf_counter() - self._t0 if hasattr(self, "_t0") else 0.0

    def run(self) -> list[RunResult]:
        """Train every member to its ``steps`` (or its divergence); results in input order."""
        if self.store is not None:
            for m in self.members:
                if m.run_id is None:
                    m.run_id = self.store.create_run(
                        m.cfg.to_dict(), steps_total=m.cfg.steps, seed=m.cfg.seed,
                        device=str(self.device), decay=self.decay.to_dict(),
                        versions=_versions(), name=m.cfg.name)
        self._t0 = time.perf_counter()
        last = max(c.steps for c in self.configs)
        try:
            for step in range(last + 1):
                self._checks_and_probes(step)
                if not self.active:
                    break
                self._update(step)
                self.steps_done = step + 1
                for m in self.active:
                    m.unchecked += 1
                if self.progress:
                    for m in self.active:
                        self.progress(m.index, step + 1, m.cfg.steps, None)
        except BaseException as err:
            if self.store is not None:
                aborted = isinstance(err, KeyboardInterrupt)
                for m in self.active:
                    if m.run_id is not None and m.result is None:
                        self.store.finish_run(m.run_id, "interrupted" if aborted else "failed",
                                              steps_done=self.steps_done,
                                              wall_seconds=self._elapsed(),
                                              error=repr(err)[:2000])
            raise
        results = [m.result for m in self.members]
        assert all(r is not None for r in results)
        return results  # type: ignore[return-value]
