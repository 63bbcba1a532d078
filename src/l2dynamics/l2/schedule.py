"""Weight-decay schedules for any torch optimizer (PyTorch has none), with AutoL2 among them.

A schedule computes λ_t in *one* convention — the paper's coupled L2, loss + (λ/2)‖θ‖² — and
writes it to its target, converted once, here (``convention``):

- ``"coupled"``: ``param_group["weight_decay"] = λ`` — torch SGD/Adam's coupled decay, which is
  exactly the paper's λ (grad += λ·θ, through momentum and Adam moments).
- ``"decoupled"``: ``param_group["weight_decay"] = λ`` read as AdamW's decoupled coefficient
  λ_d, so θ ← (1 − η_t·λ_d)·θ: the decay is multiplied by the learning rate. For plain SGD
  this equals coupled λ; for Adam and momentum SGD it is a different algorithm.
- ``"independent"``: θ ← (1 − λ_i)·θ per step whatever η_t: written as
  ``weight_decay = λ_i/η_t`` of an AdamW group (re-written at every ``step``).

A convention that the optimizer's own ``weight_decay`` does not implement is refused (a
:class:`ConfigError` saying what to pass), never written silently: ``"coupled"`` on AdamW (or
any group with torch's ``decoupled_weight_decay=True``), ``"decoupled"``/``"independent"`` on
a coupled optimizer other than plain SGD (Adam, momentum SGD, RMSprop, …). No conversion is
offered: coupled and decoupled decay are different algorithms for Adam and momentum SGD
(:mod:`l2dynamics.l2.conventions`). An optimizer from outside ``torch.optim`` is taken at the
convention's word.

The target may instead be the engine's own :class:`~l2dynamics.l2.L2Penalty` (``penalty=``),
whose ``lam`` (coupled) or ``decoupled_wd`` (decoupled) is set. Only parameter groups whose
``"decay"`` entry is not False are touched; :func:`decay_param_groups` builds such groups from
a model with the usual masks (decay everything, as google/autol2 does, or weights only).

Schedules are driven like torch LR schedulers: call ``step(...)`` once per optimizer step
(function-of-step schedules) or once per measurement (:class:`AutoL2`); ``get_last_lambda()``,
``state_dict()`` and ``load_state_dict()`` behave as there.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import torch

from l2dynamics.config import DEFAULT_DECAY_PARAMS
from l2dynamics.config.autol2 import autol2_preset
from l2dynamics.errors import ConfigError
from l2dynamics.l2.params import split_decay
from l2dynamics.l2.penalty import L2Penalty

CONVENTIONS = ("coupled", "decoupled", "independent")
REFRACTORY_UNITS = ("steps", "lr_lam_epochs", "relaxation")

PLATEAU_TESTS = ("paper", "ema")


def decay_param_groups(model: torch.nn.Module, rule: str | Sequence[str] = DEFAULT_DECAY_PARAMS,
                       **group_options: Any) -> list[dict[str, Any]]:
    """Optimizer parameter groups: the decayed parameters (``decay: True``) and the rest
    (``decay: False``, ``weight_decay: 0``); empty groups are left out. `rule` as the
    ``decay_params`` config key, with the same default: ``"all"`` (the paper's λ/2·‖θ‖², as
    the engine), ``"weights"`` (the common AdamW practice: no biases or normalization gains),
    ``"none"`` or glob patterns. Extra options (``lr=…``) go into every group."""
    split = split_decay(model, rule)
    named = dict(model.named_parameters())
    groups = [{"params": [named[n] for n in split.decayed], "decay": True, **group_options},
              {"params": [named[n] for n in split.not_decayed], "decay": False,
               **group_options, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def _user_stacklevel() -> int:
    """The ``stacklevel`` that points a warning at the first frame outside this module."""
    import sys

    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename == __file__:
        frame, level = frame.f_back, level + 1
    return level


def _positive(name: str, value: Any, *, allow_zero: bool = False) -> float:
    ok = (not isinstance(value, bool) and isinstance(value, (int, float))
          and math.isfinite(value) and (value >= 0 if allow_zero else value > 0))
    if not ok:
        bound = "≥ 0" if allow_zero else "> 0"
        raise ConfigError(f"{name} must be a finite number {bound}, got {value!r}")
    return float(value)


def _decay_groups(optimizer: torch.optim.Optimizer) -> list[dict[str, Any]]:
    return [g for g in optimizer.param_groups if g.get("decay", True) is not False]


def _is_decoupled(optimizer: torch.optim.Optimizer) -> bool:
    """Whether the optimizer's ``weight_decay`` is AdamW-style decoupled decay."""
    return isinstance(optimizer, torch.optim.AdamW) or any(
        g.get("decoupled_weight_decay", False) for g in _decay_groups(optimizer))


def _check_convention(optimizer: torch.optim.Optimizer, convention: str) -> None:
    """Refuse a `convention` that `optimizer`'s own ``weight_decay`` does not implement."""
    name = type(optimizer).__name__
    if _is_decoupled(optimizer):
        if convention == "coupled":
            raise ConfigError(
                f"convention 'coupled' (the paper's λ: gradient + λ·θ) cannot be written to "
                f"{name}, whose weight_decay is decoupled (θ ← (1 − η·λ_d)·θ, a different "
                f"algorithm); pass convention='decoupled' to schedule its λ_d, or use "
                f"torch.optim.Adam (coupled weight_decay) or penalty=L2Penalty(...) for the "
                f"paper's λ")
        return
    if convention == "coupled" or type(optimizer).__module__.split(".")[0] != "torch":
        return  # coupled is what torch's weight_decay means; outside torch: as stated
    if isinstance(optimizer, torch.optim.SGD):
        moving = [g.get("momentum", 0) for g in _decay_groups(optimizer) if g.get("momentum")]
        if not moving:
            return  # plain SGD: coupled, decoupled and independent decay coincide
        raise ConfigError(
            f"convention {convention!r} cannot be written to SGD with momentum "
            f"{moving[0]:g}: its weight_decay is coupled (it enters the momentum buffer); "
            f"pass convention='coupled', or use torch.optim.AdamW or "
            f"penalty=L2Penalty(...) for decoupled decay")
    raise ConfigError(
        f"convention {convention!r} cannot be written to {name}, whose weight_decay is coupled "
        f"(gradient + wd·θ, through its moments); pass convention='coupled', or use "
        f"torch.optim.AdamW for decoupled decay")


class WeightDecaySchedule:
    """Base: holds λ, writes it to an optimizer's decayed groups or to an L2Penalty.

    Which optimizer takes which ``convention`` (anything else is refused with a ConfigError,
    since the number would silently mean another algorithm):

    - ``torch.optim.AdamW`` (or Adam/NAdam/RAdam with ``decoupled_weight_decay=True``): its
      ``weight_decay`` is decoupled, so pass ``convention='decoupled'`` (λ_d) or
      ``'independent'``; for the paper's coupled λ use ``torch.optim.Adam`` (coupled
      ``weight_decay``) or ``penalty=L2Penalty(...)`` instead.
    - ``torch.optim.Adam``, momentum SGD and the other coupled torch optimizers:
      ``convention='coupled'`` only; for decoupled decay use AdamW or an L2Penalty.
    - plain SGD (momentum 0): any convention (θ ← θ − η·(g + wd·θ) is both).
    - an :class:`L2Penalty` target: ``'coupled'`` (sets ``lam``) or ``'decoupled'``
      (sets ``decoupled_wd``).
    """

    def __init__(self, optimizer: torch.optim.Optimizer | None = None, lam0: float = 0.1, *,
                 convention: str = "coupled", penalty: L2Penalty | None = None):
        if (optimizer is None) == (penalty is None):
            raise ConfigError("give exactly one target: a torch optimizer or penalty=L2Penalty")
        if convention not in CONVENTIONS:
            raise ConfigError(f"convention {convention!r} is not allowed; use one of "
                              f"{', '.join(CONVENTIONS)}")
        if penalty is not None and convention == "independent":
            raise ConfigError("convention 'independent' needs an optimizer (an L2Penalty has "
                              "coupled lam and decoupled_wd only)")
        if optimizer is not None:
            _check_convention(optimizer, convention)
        self.optimizer, self.penalty, self.convention = optimizer, penalty, convention
        self.lam0 = _positive("lam0", lam0, allow_zero=True)
        self.lam = self.lam0
        self._warn_overwrite()
        self._apply()

    def _warn_overwrite(self) -> None:
        """Say so when the first write replaces a ``weight_decay`` the user had set."""
        for i, group in enumerate(self.groups()):
            old = float(group.get("weight_decay", 0.0) or 0.0)
            new = (self.lam / float(group["lr"]) if self.convention == "independent"
                   and float(group["lr"]) > 0 else self.lam)
            if old != 0.0 and not math.isclose(old, new, rel_tol=1e-12):
                warnings.warn(f"{type(self).__name__} overwrites weight_decay={old:g} of the "
                              f"optimizer's parameter group {i} with {new:g} (convention "
                              f"{self.convention!r}); the schedule sets weight_decay from now "
                              "on. Build the optimizer with weight_decay=0, or give the group "
                              "'decay': False to keep yours.", UserWarning,
                              stacklevel=_user_stacklevel())

    def groups(self) -> list[dict[str, Any]]:
        """The optimizer's parameter groups this schedule drives (``decay`` not False)."""
        return [] if self.optimizer is None else _decay_groups(self.optimizer)

    def _apply(self) -> None:
        if self.penalty is not None:
            if self.convention == "coupled":
                self.penalty.lam = self.lam
            else:
                self.penalty.decoupled_wd = self.lam
            return
        for group in self.groups():
            if self.convention == "independent":
                lr = float(group["lr"])
                group["weight_decay"] = self.lam / lr if lr > 0 else 0.0
            else:
                group["weight_decay"] = self.lam

    def get_last_lambda(self) -> float:
        """λ now, in the schedule's convention (one number: every driven group has it)."""
        return self.lam

    def get_last_weight_decay(self) -> list[float]:
        """What each driven parameter group's ``weight_decay`` holds now, one value per group
        (torch's ``get_last_lr()`` style): λ, or λ/η_t of that group under ``independent``."""
        return [float(g["weight_decay"]) for g in self.groups()]

    def state_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "penalty")}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.__dict__.update({k: v for k, v in state.items()
                              if k not in ("optimizer", "penalty")})
        self._apply()


class StepSchedule(WeightDecaySchedule):
    """Function-of-step schedules: ``step()`` once per optimizer step (it counts the steps;
    ``step(global_step)`` sets the step instead). Not torch's ``StepLR``: it schedules
    ``weight_decay``, and ``kind="step"`` is one of its shapes.

    ``kind``: ``"constant"``; ``"step"`` (× `gamma` at each step in `milestones`);
    ``"cosine"`` (from λ₀ to `lam_end` over `total_steps`); ``"linear"`` (same, linearly);
    ``"follow_lr"`` (λ_t = λ₀·η_t/η₀, η read from the first driven group: decay that keeps
    η·λ fixed relative to the start, e.g. under a learning-rate schedule).

    Conventions (``convention=``, as for every schedule; :class:`WeightDecaySchedule`):
    ``"coupled"`` (default) is the paper's λ, torch SGD/Adam's ``weight_decay``;
    ``"decoupled"`` is AdamW's λ_d (θ ← (1 − η·λ_d)·θ); ``"independent"`` is θ ← (1 − λ)·θ per
    step on AdamW. A convention the optimizer does not implement is refused in one line
    (coupled on AdamW: pass ``convention="decoupled"``, or use Adam or ``penalty=L2Penalty``),
    and overwriting a ``weight_decay`` the optimizer already had warns.
    """

    KINDS = ("constant", "step", "cosine", "linear", "follow_lr")

    def __init__(self, optimizer: torch.optim.Optimizer | None = None, lam0: float = 0.1, *,
                 kind: str = "constant", total_steps: int | None = None, lam_end: float = 0.0,
                 milestones: Iterable[int] = (), gamma: float = 0.1,
                 convention: str = "coupled", penalty: L2Penalty | None = None):
        if kind not in self.KINDS:
            raise ConfigError(f"kind {kind!r} is not allowed; use one of {', '.join(self.KINDS)}")
        if kind in ("cosine", "linear") and (not isinstance(total_steps, int)
                                              or total_steps < 1):
            raise ConfigError(f"kind {kind!r} needs total_steps, an integer ≥ 1")
        if kind == "follow_lr" and optimizer is None:
            raise ConfigError("kind 'follow_lr' needs an optimizer to read η from")
        self.kind, self.total_steps = kind, total_steps
        self.lam_end = _positive("lam_end", lam_end, allow_zero=True)
        self.milestones = sorted(int(m) for m in milestones)
        self.gamma = _positive("gamma", gamma)
        self.lr0 = None
        self.global_step = 0  # optimizer steps taken, when step() counts them itself
        super().__init__(optimizer, lam0, convention=convention, penalty=penalty)
        if kind == "follow_lr":
            self.lr0 = float(self.groups()[0]["lr"])

    def lambda_at(self, global_step: int) -> float:
        """λ after `global_step` optimizer steps."""
        t = max(0, int(global_step))
        if self.kind == "constant":
            return self.lam0
        if self.kind == "step":
            return self.lam0 * self.gamma ** sum(t >= m for m in self.milestones)
        if self.kind in ("cosine", "linear"):
            u = min(1.0, t / self.total_steps)
            w = 0.5 * (1 + math.cos(math.pi * u)) if self.kind == "cosine" else 1.0 - u
            return self.lam_end + (self.lam0 - self.lam_end) * w
        lr = float(self.groups()[0]["lr"])
        return self.lam0 * lr / self.lr0 if self.lr0 else self.lam0

    def step(self, global_step: int | None = None) -> float:
        """Set λ for the coming optimizer step and return it. Call once per optimizer step;
        without `global_step` the schedule counts its own calls (as torch's schedulers do),
        with it the schedule jumps to that step."""
        self.global_step = self.global_step + 1 if global_step is None else int(global_step)
        self.lam = self.lambda_at(self.global_step)
        self._apply()
        return self.lam


class AutoL2(WeightDecaySchedule):
    """AutoL2 (Lewkowycz & Gur-Ari 2020) as google/autol2 implements it.

    Call ``step(train_loss, train_accuracy, global_step)`` once per measurement (the paper
    measures every 10 steps, on the next training batch, *before* that batch's update, with
    the bare loss — no L2 term). λ starts at `lam0` and is divided by `factor` when, in the
    last two measurements, either the loss made no new minimum or the accuracy no new maximum
    (compared with the best of all earlier measurements, which are never reset) — but only
    after a refractory period since the last decay, and once three measurements exist. No floor
    unless `min_lam` is given. Returns the current λ; every decay is logged in ``events``.

    The refractory period (the code and its help string disagree; both are offered):

    - ``refractory_unit="steps"`` (the released code): ``refractory/λ`` optimizer steps;
    - ``"lr_lam_epochs"`` (the flag's help text, "units of epochs·η·λ"): ``refractory/(η·λ)``
      epochs, i.e. ``refractory·steps_per_epoch/(η·λ)`` steps (needs `steps_per_epoch`; η is
      read from the first driven group, or `lr`);
    - ``"relaxation"`` (transfers across learning rates): ``refractory/(η·λ)`` steps, i.e.
      `refractory` relaxation times of the L2 dynamics, whatever η is.

    Presets (:func:`~l2dynamics.config.autol2.autol2_preset`, :meth:`from_preset`):
    ``"released-code"`` reproduces google/autol2 after the unit conversion, ``"transfer"``
    states the same constants as a per-step shrink η·λ₀ and a refractory period in relaxation
    times.

    The plateau test (``plateau``):

    - ``"paper"`` (default): the released code's rule above, on the raw batch measurements;
    - ``"ema"`` (our variant, not in the paper): exponential moving averages of the loss and the
      accuracy (coefficient `ema`, ≈ 1/(1 − ema) measurements of memory) and a decay when
      *neither* average made a new best in the last `patience` measurements. A new best must
      beat the old one by `min_delta` (relative for the loss, absolute for the accuracy):
      an average that creeps towards a plateau would otherwise improve forever. The paper's rule
      reads one noisy batch and decays when either series stalls, which fires early on small
      batches; this one waits for both smoothed series to stall.

    ``min_lam`` is a floor (e.g. the budget's λ_pred = c·η/(η·T) from
    :func:`~l2dynamics.studies.predict_lambda`): λ never decays below it.

    λ is in the schedule's `convention` (the paper's coupled λ by default; on AdamW, whose
    weight_decay is decoupled, that is refused: pass ``convention='decoupled'``, or use
    torch.optim.Adam — see :class:`WeightDecaySchedule`). The released code's
    flag ``-L2=0.1`` is λ_c of CE/10 + λ_c‖θ‖², i.e. 2.0 in our units
    (:func:`~l2dynamics.l2.lam_lr_from_autol2_code`); the default ``lam0=0.1`` here is 0.1 in
    *our* units, and the refractory rule is applied to our λ.

    Conventions (``convention=``, as for every schedule; :class:`WeightDecaySchedule`):
    ``"coupled"`` (default) is the paper's λ, torch SGD/Adam's ``weight_decay``;
    ``"decoupled"`` is AdamW's λ_d (θ ← (1 − η·λ_d)·θ); ``"independent"`` is θ ← (1 − λ)·θ per
    step on AdamW. A convention the optimizer does not implement is refused in one line
    (coupled on AdamW: pass ``convention="decoupled"``, or use Adam or ``penalty=L2Penalty``),
    and overwriting a ``weight_decay`` the optimizer already had warns.
    """

    def __init__(self, optimizer: torch.optim.Optimizer | None = None, lam0: float = 0.1,
                 factor: float = 10.0, refractory: float = 0.1, *,
                 refractory_unit: str = "steps", steps_per_epoch: int | None = None,
                 lr: float | None = None, min_lam: float = 0.0, plateau: str = "paper",
                 ema: float = 0.9, patience: int = 5, min_delta: float = 1e-3,
                 convention: str = "coupled", penalty: L2Penalty | None = None,
                 every: int | None = None):
        if every is not None and (isinstance(every, bool) or not isinstance(every, int)
                                  or every < 1):
            raise ConfigError(f"every must be None or an integer ≥ 1, got {every!r}")
        self.every = every  # optimizer steps between measurements, when step() counts them
        self.factor = _positive("factor", factor)
        if self.factor <= 1:
            raise ConfigError(f"factor must be > 1 (λ is divided by it), got {factor!r}")
        self.refractory = _positive("refractory", refractory, allow_zero=True)
        if refractory_unit not in REFRACTORY_UNITS:
            raise ConfigError(f"refractory_unit {refractory_unit!r} is not allowed; use one of "
                              f"{', '.join(REFRACTORY_UNITS)}")
        if refractory_unit == "lr_lam_epochs" and (not isinstance(steps_per_epoch, int)
                                                   or steps_per_epoch < 1):
            raise ConfigError("refractory_unit 'lr_lam_epochs' needs steps_per_epoch, an "
                              "integer ≥ 1")
        self.refractory_unit, self.steps_per_epoch = refractory_unit, steps_per_epoch
        self.fixed_lr = None if lr is None else _positive("lr", lr)
        self.min_lam = _positive("min_lam", min_lam, allow_zero=True)
        if plateau not in PLATEAU_TESTS:
            raise ConfigError(f"plateau {plateau!r} is not allowed; use one of "
                              f"{', '.join(PLATEAU_TESTS)}")
        if not (isinstance(ema, (int, float)) and not isinstance(ema, bool) and 0 <= ema < 1):
            raise ConfigError(f"ema must be a number in [0, 1), got {ema!r}")
        if not (isinstance(patience, int) and not isinstance(patience, bool) and patience >= 1):
            raise ConfigError(f"patience must be an integer ≥ 1, got {patience!r}")
        self.plateau, self.ema, self.patience = plateau, float(ema), patience
        self.min_delta = _positive("min_delta", min_delta, allow_zero=True)
        self.ema_loss: float | None = None
        self.ema_acc: float | None = None
        self.since_best = 0  # ema test: measurements since either average made a new best
        self.measurements = 0
        self.losses: list[float] = []  # the last two measurements
        self.accuracies: list[float] = []
        self.best_loss: float | None = None
        self.best_acc: float | None = None
        self.last_decay_step: int | None = None
        self.events: list[dict[str, float]] = []
        super().__init__(optimizer, lam0, convention=convention, penalty=penalty)

    def refractory_steps(self) -> float:
        """Optimizer steps to wait after a decay at the current λ."""
        if self.lam == 0:
            return math.inf
        if self.refractory_unit == "steps":
            return self.refractory / self.lam
        lr = self.fixed_lr if self.fixed_lr is not None else float(self.groups()[0]["lr"])
        if self.refractory_unit == "relaxation":
            return self.refractory / (lr * self.lam)
        return self.refractory * self.steps_per_epoch / (lr * self.lam)

    @classmethod
    def from_preset(cls, name: str, optimizer: torch.optim.Optimizer | None = None, *,
                    lr: float, momentum: float = 0.0, **overrides: Any) -> AutoL2:
        """An AutoL2 with the constants of preset `name`
        (:func:`~l2dynamics.config.autol2.autol2_preset`) for a run at learning rate `lr`
        with SGD momentum `momentum` (0 for Adam/AdamW); `overrides` are further keyword
        arguments (``min_lam``, ``plateau``, ``penalty``, …; not the preset's own constants).
        A relaxation-time refractory period is counted at the effective η/(1 − μ)."""
        constants = autol2_preset(name, lr, momentum)
        clash = sorted(set(constants) & set(overrides))
        if clash:
            raise ConfigError(f"the preset {name!r} sets {', '.join(clash)}; drop them or "
                              "construct AutoL2 directly")
        if constants["refractory_unit"] == "relaxation":
            lr = lr / (1.0 - momentum)
        return cls(optimizer, lr=lr, **constants, **overrides)

    def step(self, train_loss: float, train_accuracy: float,
             global_step: int | None = None) -> float:
        """Take one measurement (bare training loss and accuracy at `global_step` optimizer
        steps) and return λ for the coming steps. Without `global_step`, the schedule counts:
        construct it with ``every=k`` and measure every k optimizer steps, from step 0."""
        loss, acc = float(train_loss), float(train_accuracy)
        if not (math.isfinite(loss) and math.isfinite(acc)):
            raise ConfigError(f"AutoL2 measurements must be finite, got loss={train_loss!r}, "
                              f"accuracy={train_accuracy!r}")
        if global_step is None:
            if self.every is None:
                raise ConfigError("AutoL2.step() without global_step needs the measurement "
                                  "interval: AutoL2(..., every=10), or pass global_step")
            global_step = self.measurements * self.every
        step = int(global_step)
        if self.last_decay_step is None:
            self.last_decay_step = step  # the code's idel0 = the start step
        self.measurements += 1
        if self.plateau == "ema":
            return self._step_ema(loss, acc, step)
        self.losses = [*self.losses[-1:], loss]
        self.accuracies = [*self.accuracies[-1:], acc]
        if (step > self.last_decay_step + self.refractory_steps() and self.measurements > 2
                and self.lam > self.min_lam and self._plateau()):
            self._decay(step, loss, acc)
        elif self.measurements >= 2:
            # the records take the second-to-last measurement, as in the released code
            prev_loss, prev_acc = self.losses[-2], self.accuracies[-2]
            self.best_loss = prev_loss if self.best_loss is None else min(prev_loss,
                                                                          self.best_loss)
            self.best_acc = prev_acc if self.best_acc is None else max(prev_acc, self.best_acc)
        if self.convention == "independent":
            self._apply()  # λ/η_t follows the learning rate
        return self.lam

    def _decay(self, step: int, loss: float, acc: float) -> None:
        old = self.lam
        self.lam = max(self.lam / self.factor, self.min_lam)
        self.last_decay_step = step
        self.events.append({"step": step, "lam_before": old, "lam_after": self.lam,
                            "train_loss": loss, "train_accuracy": acc})
        self._apply()

    def _step_ema(self, loss: float, acc: float, step: int) -> float:
        """The ``"ema"`` plateau test: smoothed series, both stalled for `patience` steps."""
        a = self.ema
        self.ema_loss = loss if self.ema_loss is None else a * self.ema_loss + (1 - a) * loss
        self.ema_acc = acc if self.ema_acc is None else a * self.ema_acc + (1 - a) * acc
        tol = self.min_delta
        improved = (self.best_loss is None or self.ema_loss < self.best_loss * (1 - tol)
                    or self.ema_acc > self.best_acc + tol)
        if improved:
            self.since_best = 0
            self.best_loss = self.ema_loss if self.best_loss is None else min(self.best_loss,
                                                                              self.ema_loss)
            self.best_acc = self.ema_acc if self.best_acc is None else max(self.best_acc,
                                                                           self.ema_acc)
        else:
            self.since_best += 1
        if (self.since_best >= self.patience and self.lam > self.min_lam
                and step > self.last_decay_step + self.refractory_steps()):
            self._decay(step, loss, acc)
            self.since_best = 0
            # a new λ starts a new phase: the bests of the old one are not its targets
            self.best_loss, self.best_acc = self.ema_loss, self.ema_acc
        if self.convention == "independent":
            self._apply()
        return self.lam

    def _plateau(self) -> bool:
        """No new loss minimum, or no new accuracy maximum, in the last two measurements."""
        loss_stalled = (self.best_loss <= self.losses[-1] and self.best_loss <= self.losses[-2])
        acc_stalled = (self.best_acc >= self.accuracies[-1]
                       and self.best_acc >= self.accuracies[-2])
        return loss_stalled or acc_stalled
