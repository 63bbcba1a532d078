"""Per-tensor probes of the normalization picture (van Laarhoven 2017), in float64.

At a probe step, from the *data-loss* gradient of that step's batch (before the L2 term):

- ``gradnorm/<t>`` = ‖∇L‖;  ``unit_gradnorm/<t>`` = ‖ḡ‖ = ‖w‖·‖∇L‖ (the gradient at unit norm
  for a scale-invariant tensor);  ``cos_wg/<t>`` = |cos(w, ∇L)| (0 for scale-invariant ones).

At every probe-clock point, over the updates since the previous one (the window):

- ``angle_mean/<t>`` and ``angle_rms/<t>``: the angular update θ = arccos(⟨w, w'⟩/(‖w‖‖w'‖))
  per optimizer step, in radians (the equilibrium formulas predict the RMS);
- ``eff_lr/<t>``: the effective learning rate of the tensor now — η/((1 − μ)·‖w‖²) for SGD
  with heavy-ball momentum μ, η/‖w‖ for Adam and AdamW;
- ``grad_ms/<t>``: the mean over the window's updates of ‖∇L‖² (data loss, each update's
  batch) and ``norm_ms/<t>`` the mean of ‖w‖² before each update — the two sides of the
  stationary identity E‖w‖² = η·E‖∇L‖²/(λ(2 − ηλ)) (plain SGD, scale-invariant w).

For the equilibrium predictions that use what the optimizer really sees
(:mod:`l2dynamics.analysis.equilibrium_measured`), also per window, when the probe is given the
``torch.optim`` optimizer:

- ``norm_drift/<t>``: (‖w‖² after the window's last update − ‖w‖² before its first) / n, the
  mean change of ‖w‖² per update (n = ``probe_updates``, the window's number of updates; the
  windows tile the run, so Σ n·drift telescopes to the change over any span of windows);
- SGD with heavy-ball momentum μ: ``mom_grad/<t>`` = K = mean ⟨b_{t−1}, ∇L_t⟩ (the momentum
  buffer before the update against the data-loss gradient) and ``mom_sq/<t>`` = mean ‖b_t‖²
  (the buffer after it);
- Adam and AdamW: ``update_sq/<t>`` = mean ‖u_t‖², u = m̂/(√v̂ + ε) the normalized step the
  optimizer applied (its own bias-corrected state; η·u is the step, L2 term included), and
  ``precond_cross/<t>`` = X = mean ⟨w_t, ∇L_t/(√v̂_t + ε)⟩: scale invariance makes ∇L ⟂ w,
  but Adam's per-element preconditioning need not keep it so;
- Adam with coupled L2: ``decay_weight/<t>`` = mean Σ_i w_i²/(√v̂_i + ε) (the per-element
  weight of the L2 step, w before the update) and ``aniso/<t>`` = κ = that sum divided by
  ‖w‖²/√(mean_i v̂_i) (ratio of window sums): how much more the per-element L2 step shrinks
  w than a per-tensor reading with one RMS gradient per tensor assumes (1 for isotropic v̂).

θ is computed per whole tensor. The angle uses atan2(‖w × w'‖, ⟨w, w'⟩) in float64, accurate
for the tiny angles (~1e-3 rad) of late training where arccos of a rounded cosine is not.

Per unit (``per_unit=True``, tensors with ≥ 2 dimensions): a weight followed by a
normalization is scale-invariant separately in each output unit u — the slice w_u = w[u] along
dim 0 (a row of a Linear weight, an output filter of a Conv weight) — so the equilibrium
formulas hold unit by unit. Over the same window, per unit: the mean of ‖w_u‖² (before each
update), the mean of ‖∇L_u‖² (data loss) and the RMS of the angular update θ_u per optimizer
step (radians, same atan2 form). Summaries across the U units, one scalar each per window
(the history is a flat metric table); CV = population standard deviation / mean (0 when the
mean is 0, i.e. all units 0):

- ``unit_norm_min/<t>``, ``unit_norm_max/<t>``, ``unit_norm_cv/<t>``: of √(mean ‖w_u‖²);
- ``unit_angle_rms_min/<t>``, ``unit_angle_rms_max/<t>``, ``unit_angle_rms_cv/<t>``: of the RMS
  θ_u (rad per step);
- ``unit_gbar_cv/<t>``: of √(mean ‖w_u‖² · mean ‖∇L_u‖²), the unit gradient ‖ḡ_u‖ =
  ‖w_u‖·‖∇L_u‖ from the window means;
- ``unit_dead_fraction/<t>``: the fraction of units that received no data-loss gradient in
  the window (mean ‖∇L_u‖² ≤ 1e-12 × the largest unit's; e.g. a BN unit whose ReLU output is
  zero on every example).

:meth:`NormProbe.unit_arrays` returns the last window's full per-unit arrays, so that each unit
can be compared with its own prediction, e.g. plain SGD (scale-invariant w_u):
E‖w_u‖² = η·E‖∇L_u‖²/(λ(2 − ηλ)) and RMS θ_u ≈ arccos(1 − ηλ). They are recorded for every
≥ 2-D tensor; the predictions apply to the scale-invariant ones only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch


def effective_lr(lr: float, norm: float, optimizer: str, momentum: float = 0.0) -> float:
    """η/((1 − μ)‖w‖²) for SGD, η/‖w‖ for Adam(W) (per-step learning rate `lr`)."""
    if norm <= 0:
        return math.inf
    if optimizer == "sgd":
        return lr / ((1.0 - momentum) * norm ** 2)
    return lr / norm


def angle_between(a: torch.Tensor, b: torch.Tensor) -> float:
    """The angle between two tensors (flattened) in radians, float64, stable for tiny angles."""
    a, b = a.reshape(-1).double(), b.reshape(-1).double()
    dot = float(a @ b)
    # ‖a‖²‖b‖² − ⟨a,b⟩² = ‖a‖²‖b − proj_a b‖²: use the residual, not the difference of squares
    na = float(a.norm())
    if na == 0 or float(b.norm()) == 0:
        return 0.0
    residual = b - (dot / na ** 2) * a
    return math.atan2(na * float(residual.norm()), dot)


def unit_angles(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The angle between a[u] and b[u] for every unit u (slice along dim 0), in radians, float64:
    :func:`angle_between` vectorized over units (0 where either slice is zero)."""
    a = a.reshape(a.shape[0], -1).double()
    b = b.reshape(b.shape[0], -1).double()
    dot = (a * b).sum(1)
    na_sq = (a * a).sum(1)
    nb_sq = (b * b).sum(1)
    ok = (na_sq > 0) & (nb_sq > 0)
    coef = torch.where(ok, dot / torch.where(ok, na_sq, torch.ones_like(na_sq)),
                       torch.zeros_like(dot))
    residual = b - coef[:, None] * a
    theta = torch.atan2(na_sq.sqrt() * residual.norm(dim=1), dot)
    return torch.where(ok, theta, torch.zeros_like(theta))


def _cv(x: np.ndarray) -> float:
    """Coefficient of variation std/mean (population std) of non-negative values; 0 if mean 0."""
    mean = float(x.mean())
    return float(x.std()) / mean if mean > 0 else 0.0


#: the window sums kept per tensor (see the module docstring for what each becomes)
_SUMS = ("sum", "sumsq", "grad_sq", "norm_sq", "mom_grad", "mom_sq", "update_sq",
         "precond_cross", "decay_weight", "aniso_ref")


class NormProbe:
    """Angular updates every step and gradient statistics at probe steps, for `named` tensors.

    `optimizer` ("sgd" | "adam" | "adamw") and `momentum` (heavy-ball μ, SGD only) set the
    effective-LR formula. ``per_unit=True`` adds the per-unit window statistics of the module
    docstring for every tensor with ≥ 2 dimensions (vectorized over units, float64).
    `torch_optimizer`, the ``torch.optim`` optimizer that updates the tensors, adds the
    optimizer-state statistics (momentum–gradient correlation, Adam's update power and
    per-element L2 weight); without it only the drift is added to the window statistics."""

    def __init__(self, named: Sequence[tuple[str, torch.nn.Parameter]], optimizer: str,
                 momentum: float = 0.0, *, per_unit: bool = False,
                 torch_optimizer: torch.optim.Optimizer | None = None):
        self.named = [(n, p) for n, p in named if p.ndim >= 1]
        self.optimizer, self.momentum = optimizer, momentum
        self.per_unit = per_unit
        self.torch_optimizer = torch_optimizer
        self._groups = ({id(p): g for g in torch_optimizer.param_groups for p in g["params"]}
                        if torch_optimizer is not None else {})
        self._before: list[torch.Tensor] = []
        self._acc = {k: {n: 0.0 for n, _ in self.named} for k in _SUMS}
        self._start_sq: dict[str, float] = {}
        self._grads: list[torch.Tensor | None] = []
        self._count = 0
        # per unit: float64 accumulators on the parameter's device (no host sync per step)
        self._units = [n for n, p in self.named if per_unit and p.ndim >= 2]
        self._u_norm_sq: dict[str, torch.Tensor] = {}
        self._u_grad_sq: dict[str, torch.Tensor] = {}
        self._u_angle_sq: dict[str, torch.Tensor] = {}
        self._last_units: dict[str, dict[str, np.ndarray]] = {}
        self._reset_units()

    def _reset_units(self) -> None:
        params = dict(self.named)
        for name in self._units:
            p = params[name]
            for acc in (self._u_norm_sq, self._u_grad_sq, self._u_angle_sq):
                acc[name] = torch.zeros(p.shape[0], dtype=torch.float64, device=p.device)

    def _state(self, p: torch.nn.Parameter) -> dict:
        if self.torch_optimizer is None:
            return {}
        return self.torch_optimizer.state.get(p, {})

    def before_step(self) -> None:
        """Call after the data-loss backward, before the L2 term and the optimizer step."""
        self._before = [p.detach().double().clone() for _, p in self.named]
        keep = self.torch_optimizer is not None and self.optimizer in ("adam", "adamw")
        self._grads = [p.grad.detach().double().clone() if keep and p.grad is not None
                       else None for _, p in self.named]
        acc = self._acc
        for (name, p), w in zip(self.named, self._before, strict=True):
            norm_sq = float(w.norm()) ** 2
            if self._count == 0:
                self._start_sq[name] = norm_sq
            if p.grad is not None:
                grad = p.grad.detach().double()
                acc["grad_sq"][name] += float(grad.norm()) ** 2
                buf = self._state(p).get("momentum_buffer")
                if buf is not None:
                    acc["mom_grad"][name] += float((buf.detach().double() * grad).sum())
            acc["norm_sq"][name] += norm_sq
            if name in self._u_norm_sq:
                self._u_norm_sq[name] += w.reshape(w.shape[0], -1).square().sum(1)
                if p.grad is not None:
                    g = p.grad.detach().double()
                    self._u_grad_sq[name] += g.reshape(g.shape[0], -1).square().sum(1)

    def _optimizer_stats(self, name: str, p: torch.nn.Parameter, before: torch.Tensor,
                         grad: torch.Tensor | None) -> None:
        """The optimizer-state sums of one tensor after its update (see the module docstring)."""
        state, acc = self._state(p), self._acc
        if not state:
            return
        buf = state.get("momentum_buffer")
        if buf is not None:
            acc["mom_sq"][name] += float(buf.detach().double().norm()) ** 2
        if "exp_avg_sq" not in state:
            return
        group = self._groups[id(p)]
        beta1, beta2 = group["betas"]
        t = float(state["step"])
        v_hat = state["exp_avg_sq"].detach().double() / (1.0 - beta2 ** t)
        denom = v_hat.sqrt() + group["eps"]
        avg = state["exp_avg"].detach().double() / (1.0 - beta1 ** t)
        acc["update_sq"][name] += float((avg / denom).square().sum())
        if grad is not None:
            acc["precond_cross"][name] += float((before * grad / denom).sum())
        if self.optimizer == "adam":
            acc["decay_weight"][name] += float((before.square() / denom).sum())
            acc["aniso_ref"][name] += float(before.square().sum()) / math.sqrt(
                max(float(v_hat.mean()), 1e-300))

    def after_step(self) -> None:
        acc = self._acc
        for (name, p), before, grad in zip(self.named, self._before, self._grads,
                                           strict=True):
            theta = angle_between(before, p.detach())
            acc["sum"][name] += theta
            acc["sumsq"][name] += theta * theta
            self._optimizer_stats(name, p, before, grad)
            if name in self._u_angle_sq:
                self._u_angle_sq[name] += unit_angles(before, p.detach()).square()
        self._count += 1
        self._before, self._grads = [], []

    def gradient_metrics(self) -> dict[str, float]:
        """From the parameters' ``.grad`` (call after the data-loss backward, before L2)."""
        out = {}
        for name, p in self.named:
            if p.grad is None:
                continue
            g, w = p.grad.detach().double().reshape(-1), p.detach().double().reshape(-1)
            gn, wn = float(g.norm()), float(w.norm())
            out[f"gradnorm/{name}"] = gn
            out[f"unit_gradnorm/{name}"] = gn * wn
            out[f"cos_wg/{name}"] = abs(float(g @ w)) / (gn * wn) if gn > 0 and wn > 0 else 0.0
        return out

    def window_metrics(self, lr: float) -> dict[str, float]:
        """Angular update mean/RMS over the window since the last call, and the effective LR
        now (and with ``per_unit`` the ``unit_*`` summaries); resets the window."""
        out = {}
        n, acc = self._count, self._acc
        if n:
            out["probe_updates"] = float(n)
        has_state = self.torch_optimizer is not None
        for name, p in self.named:
            norm = float(p.detach().double().norm())
            out[f"eff_lr/{name}"] = effective_lr(lr, norm, self.optimizer, self.momentum)
            if n:
                out[f"angle_mean/{name}"] = acc["sum"][name] / n
                out[f"angle_rms/{name}"] = math.sqrt(acc["sumsq"][name] / n)
                out[f"grad_ms/{name}"] = acc["grad_sq"][name] / n
                out[f"norm_ms/{name}"] = acc["norm_sq"][name] / n
                out[f"norm_drift/{name}"] = (norm * norm - self._start_sq[name]) / n
                if has_state and self.optimizer == "sgd" and self.momentum:
                    out[f"mom_grad/{name}"] = acc["mom_grad"][name] / n
                    out[f"mom_sq/{name}"] = acc["mom_sq"][name] / n
                if has_state and self.optimizer in ("adam", "adamw"):
                    out[f"update_sq/{name}"] = acc["update_sq"][name] / n
                    out[f"precond_cross/{name}"] = acc["precond_cross"][name] / n
                if has_state and self.optimizer == "adam" and acc["aniso_ref"][name] > 0:
                    out[f"decay_weight/{name}"] = acc["decay_weight"][name] / n
                    out[f"aniso/{name}"] = acc["decay_weight"][name] / acc["aniso_ref"][name]
            for sums in acc.values():
                sums[name] = 0.0
        out.update(self._unit_window_metrics())
        self._count = 0
        return out

    def _unit_window_metrics(self) -> dict[str, float]:
        """The per-unit summaries of the window (none when it is empty); keeps its arrays for
        :meth:`unit_arrays` and resets the per-unit accumulators."""
        out: dict[str, float] = {}
        if self._count and self._units:
            self._last_units = {}
            for name in self._units:
                arrays = {
                    "norm_ms": (self._u_norm_sq[name] / self._count).cpu().numpy(),
                    "grad_ms": (self._u_grad_sq[name] / self._count).cpu().numpy(),
                    "angle_rms": (self._u_angle_sq[name] / self._count).sqrt().cpu().numpy(),
                }
                self._last_units[name] = arrays
                norm = np.sqrt(arrays["norm_ms"])
                angle = arrays["angle_rms"]
                out[f"unit_norm_min/{name}"] = float(norm.min())
                out[f"unit_norm_max/{name}"] = float(norm.max())
                out[f"unit_norm_cv/{name}"] = _cv(norm)
                out[f"unit_angle_rms_min/{name}"] = float(angle.min())
                out[f"unit_angle_rms_max/{name}"] = float(angle.max())
                out[f"unit_angle_rms_cv/{name}"] = _cv(angle)
                out[f"unit_gbar_cv/{name}"] = _cv(np.sqrt(arrays["norm_ms"] * arrays["grad_ms"]))
                grad = arrays["grad_ms"]
                out[f"unit_dead_fraction/{name}"] = float(np.mean(grad <= 1e-12 * grad.max()))
        self._reset_units()
        return out

    def unit_arrays(self) -> dict[str, dict[str, np.ndarray]]:
        """The last completed window's per-unit arrays (float64, length U = size of dim 0), per
        tensor: ``norm_ms`` = mean ‖w_u‖² before each update, ``grad_ms`` = mean ‖∇L_u‖² of the
        data loss, ``angle_rms`` = RMS angular update of w_u in radians per optimizer step.
        Empty before the first window or without ``per_unit``; copies, safe to keep."""
        return {name: {k: v.copy() for k, v in arrays.items()}
                for name, arrays in self._last_units.items()}
