"""K runs of one architecture trained at once: the vectorized ensemble engine.

Members are configs that share everything except :data:`~l2dynamics.train.grouping.MEMBER_KEYS`
(``lam``, ``lr``, ``seed``, ``decoupled_wd``, ``steps``, ``name``). Their weights are stacked
along a leading member axis, shape (K, *tensor shape), and one update of all K members is one
call of ``vmap(grad_and_value(loss))`` over ``functional_call`` of a weightless (meta) copy of
the model, followed by the update below on the stacked tensors
(:class:`~l2dynamics.train.stacked.StackedUpdate`). Each member is the run a lone
:class:`~l2dynamics.train.loop.Trainer` makes from its config (what a run is made of is defined
once, in :mod:`l2dynamics.train.setup`):

- its own init (``torch.manual_seed(seed)`` in a forked RNG, then ``build_model``: the same
  :func:`~l2dynamics.train.setup.init_model`), its own batch order (its seed's per-epoch
  permutations, :func:`~l2dynamics.train.setup.epoch_permutation`) and, when the dataset has one,
  its own augmentation stream;
- Trainer's update at step t, with η_k = lr_k · lr_factor(t, cfg_k)::

      g  = ∇ L_batch_k(θ_k)                       (data loss only)
      g += λ_k·θ_k            on decayed tensors  (coupled L2, the paper's λ)
      θ_k ← (1 − η_k·λd_k)·θ_k on decayed tensors (decoupled decay)
      θ_k ← optimizer step with η_k               (torch's SGD / momentum / Nesterov with
                                                   dampening 0 and first buffer = g; Adam and
                                                   AdamW with weight_decay 0, torch's bias
                                                   corrections from the shared step count)

- its own evaluation plan (``eval_plan(cfg, …)``: clock and test-subset size, the same fixed
  test subset, the whole validation set when ``n_val`` > 0), the same metrics under the same names
  (:func:`~l2dynamics.train.results.probe_metrics`), physical time Σ η_t and λ-time, and
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

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad_and_value, vmap

from l2dynamics.config import Config
from l2dynamics.data import Dataset
from l2dynamics.errors import ConfigError
from l2dynamics.l2 import split_decay
from l2dynamics.losses import correct_count, make_loss
from l2dynamics.provenance import versions
from l2dynamics.store import RunStore
from l2dynamics.train.clock import EvalPlan, eval_plan
from l2dynamics.train.footprint import check_run_memory
from l2dynamics.train.grouping import as_config, model_problem, vectorizable
from l2dynamics.train.loop import LOSS_SYNC_EVERY, NONFINITE_LOSS, NONFINITE_PARAMS
from l2dynamics.train.results import RunResult, probe_metrics, run_summary
from l2dynamics.train.setup import (
    augment_generator,
    batch_layout,
    epoch_permutation,
    eval_batch,
    eval_test_subset,
    init_model,
    run_setup,
)
from l2dynamics.train.stacked import StackedUpdate

EnsembleProgressFn = Callable[[int, int, int, Mapping[str, float] | None], None]
"""``progress(member, step, total, metrics)``: Trainer's progress callback with the member's
position in the input list first; metrics at probes, None after each update and at the end."""


@dataclass
class _Member:
    """One run of the ensemble: its config, clock, stored run and bookkeeping."""

    index: int  # position in the input list
    cfg: Config
    plan: EvalPlan
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
        self.configs = [as_config(c) for c in configs]
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
        problem = model_problem(models[0])
        if problem is not None:
            raise ConfigError(f"these configs cannot train as one ensemble: {problem}")
        self.decay = split_decay(models[0], cfg.decay_params)
        self.names = [n for n, p in models[0].named_parameters() if p.requires_grad]
        by_name = [dict(m.named_parameters()) for m in models]
        # (K, *shape) per tensor; plain tensors: torch.func differentiates through them.
        self.params = {n: torch.stack([p[n].detach() for p in by_name]) for n in self.names}
        self.skeleton = models[0].to("meta")  # structure only; weights come from self.params
        del models, by_name

        self._prepare_data()
        n_test, n_eval = self.data.x_test.shape[0], self.eval_x.shape[0]
        plans = [eval_plan(c, n_test, n_eval, self.batch_size, self.data.n_val)
                 for c in self.configs]
        self.members = [_Member(i, c, p, frozenset(int(s) for s in p.clock))
                        for i, (c, p) in enumerate(zip(self.configs, plans, strict=True))]
        subset = max((p.test_n for p in plans if p.test_n < n_test), default=0)
        self._test_subset = (eval_test_subset(self.data, subset, cfg.data_seed) if subset
                             else None)  # member with test_n = m: its first m rows
        self.active = list(self.members)  # members still in the stack, in stack order
        self.steps_done = 0
        self.update = StackedUpdate(self.configs, self.device, self.dtype)
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
        self.eval_batch_size = eval_batch(self.cfg, self.device)
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
        self.update.apply(self.params, grads, self.decay.decayed, step)
        self._pending.append(losses.detach())
        self._pending_steps.append(step)

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
        bs = self.eval_batch_size
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
        test_n = [self.active[pos].plan.test_size(step) for pos in positions]
        # per member: (loss total, correct count) on test, train and (whole) validation sets
        sets = [self._test_totals(params, test_n),
                self._evaluate(params, self.eval_x, self.eval_y)]
        sizes: list[Any] = [test_n, [self.eval_x.shape[0]] * len(positions)]
        if self.data.x_val is not None:
            sets.append(self._evaluate(params, self.data.x_val, self.data.y_val))
            sizes.append([self.data.n_val] * len(positions))
        with torch.no_grad():  # per member and tensor, the kernel weight_norms uses
            norms = torch._foreach_norm([params[n][j] for j in range(len(positions))
                                         for n in self.names])
        host = torch.cat([v.double() for pair in sets for v in pair]
                         + [torch.stack([v.double() for v in norms])])
        values = host.cpu().tolist()
        k, t = len(positions), len(self.names)
        # (loss, accuracy) of member j on set i: loss total at block 2i, correct count at 2i + 1
        pairs = [[(values[2 * i * k + j] / n[j], int(values[(2 * i + 1) * k + j]) / n[j]
                   if self.classification else math.nan) for j in range(k)]
                 for i, n in enumerate(sizes)]
        head = 2 * len(sets) * k
        wall = self._elapsed()
        out = []
        for j, pos in enumerate(positions):
            member = self.active[pos]
            tensor_norms = values[head + j * t:head + (j + 1) * t]
            out.append(probe_metrics(
                member.cfg, step=step, classification=self.classification,
                train=pairs[1][j], test=pairs[0][j],
                weight_norm=math.sqrt(sum(v * v for v in tensor_norms)),
                per_tensor=dict(zip(self.names, tensor_norms, strict=True)),
                lam=member.cfg.lam, decoupled_wd=member.cfg.decoupled_wd,
                lam_time=float(self.update.lam_time[pos]), wall_time=wall, test_n=test_n[j],
                val=pairs[2][j] if len(pairs) > 2 else None))
        return out

    def _test_totals(self, params: dict[str, torch.Tensor],
                     test_n: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`_evaluate` on the test examples of each member (stacked in `params`): the
        first ``test_n[j]`` rows of the fixed test subset, or the whole test set; members
        that use the same examples are evaluated together."""
        full = self.data.x_test.shape[0]
        sizes = sorted(set(test_n))
        if len(sizes) == 1:
            return self._evaluate(params, *self._test_data(sizes[0], full))
        k = len(test_n)
        total = torch.zeros(k, dtype=torch.float64, device=self.device)
        correct = torch.zeros(k, dtype=torch.int64, device=self.device)
        for size in sizes:
            group = torch.tensor([j for j in range(k) if test_n[j] == size], device=self.device)
            sub = {n: p.index_select(0, group) for n, p in params.items()}
            total[group], correct[group] = self._evaluate(sub, *self._test_data(size, full))
        return total, correct

    def _test_data(self, size: int, full: int) -> tuple[torch.Tensor, torch.Tensor]:
        if size >= full or self._test_subset is None:
            return self.data.x_test, self.data.y_test
        x, y = self._test_subset
        return x[:size], y[:size]

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
                self._end(member, "diverged", step, member.first_bad, NONFINITE_LOSS)
                ended.add(member.index)
        probing = [j for j, m in enumerate(self.active)
                   if m.index not in ended and step in m.clock]
        if probing:
            for pos, metrics in zip(probing, self._measure(probing, step), strict=True):
                member = self.active[pos]
                rows = [(step, float(self.update.phys_time[pos]), name, float(v))
                        for name, v in metrics.items()]
                member.rows.extend(rows)
                finite = math.isfinite(metrics["weight_norm"])
                if step == member.cfg.steps:  # the final measure of Trainer._finish
                    if finite:
                        self._end(member, "finished", step, final_rows=rows)
                    else:
                        self._end(member, "diverged", step, step, NONFINITE_PARAMS,
                                  final_rows=rows)
                    ended.add(member.index)
                    continue
                if self.store is not None and member.run_id is not None:
                    self.store.add_metrics(member.run_id, rows, steps_done=step)
                if not finite:
                    self._end(member, "diverged", step, step, NONFINITE_PARAMS)
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
            self.params, self._perms = {}, None
            self.update.keep(positions, None)
            return
        index = torch.tensor(positions, device=self.device)
        self.params = {n: p.index_select(0, index) for n, p in self.params.items()}
        if self._perms is not None:
            self._perms = self._perms.index_select(0, index)
        self.update.keep(positions, index)

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
                        versions=versions(), name=m.cfg.name)
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
