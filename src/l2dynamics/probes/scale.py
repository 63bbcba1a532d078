"""Numerical detection of scale-invariant parameter tensors (van Laarhoven 2017, §1–2).

A weight whose output feeds a normalization (BatchNorm, LayerNorm/GroupNorm, or the direction
`v` of weight norm) leaves the loss unchanged when scaled: L(c·w) = L(w) for c > 0, hence
⟨∇L(w), w⟩ = dL(c·w)/d(log c) at c = 1 is 0, and under coupled L2 (loss + (λ/2)‖θ‖², gradient λθ)
one plain SGD step w' = w − η(∇L + λw) gives exactly ‖w'‖² = (1 − ηλ)²‖w‖² + η²‖∇L‖².
BatchNorm (per channel) and weight norm are invariant per output unit (each slice w[k] along
dim 0 on its own); LayerNorm/GroupNorm only for the tensor as a whole.

`detect_scale_invariant` tests this numerically at the current parameters, on one batch:

- Loss: L = loss_fn(model(x), y), the batch-mean data loss without the L2 term, in the loss's
  units. Relative changes are |L(c·w) − L(w)| / |L(w)|; `dlogc` is |⟨∇L, w⟩| / |L(w)|, the
  relative loss change per unit of log-scale (the c → 1 limit of the same test).
- Mode: by default the forward passes run in **train mode** (`mode="train"`), the loss SGD
  actually sees: BatchNorm normalizes with the statistics of this batch, which is where its
  invariance holds (up to ε). In eval mode BatchNorm uses its fixed running statistics, is an
  affine map, and the weights before it are *not* invariant (`mode="eval"` shows this;
  LayerNorm and weight norm do not depend on the mode).
- No side effects: every forward is a `torch.func.functional_call` with the (scaled) tensor
  substituted and with *copies* of the buffers, so BatchNorm's running statistics and
  `num_batches_tracked` are never updated and no parameter is written; `.grad` is untouched and
  every module's training flag is restored (also on error). Active dropout in train mode makes
  the loss random and is rejected.
- Candidates: every trainable tensor (or those in `names`): ≥ 2-D weights, and 1-D ones (biases,
  norm gains/shifts) to show they are generally not invariant. A tensor (unit) is invariant when
  its norm is > 0, every scale gives a relative change ≤ rtol and dlogc ≤ rtol. A zero tensor is
  reported as not invariant: scaling it is a no-op, which says nothing about the architecture.
  The verdict is a property of the current point: e.g. with β = 0 and ReLU, the gain γ of a BN
  layer whose output feeds another BN (through a bias-free layer) is invariant too.
- Per unit (`per_unit=True`): the same test for each w[k] alone (1-D tensors: each entry), with
  the same rtol. Resolution is lower there: one unit of a wide layer carries ~1/width of the
  tensor's effect on L, so a non-invariant unit that barely matters (say a BN gain whose
  output is nearly ignored) can fall below rtol. Trust the tensor verdict; read unit_fraction
  together with unit_max_rel_change, or pass a smaller rtol.

Tolerance. With ε inside the square root, BN/LN output for a scaled weight is
ŷ(c) = (h − μ)/sqrt(σ² + ε/c²), so relative to ŷ(1) it changes by ≈ ½(ε/σ²)(1 − 1/c²) (and by
(ε/σ²)·d(log c) in the limit c → 1), with σ² the variance the layer normalizes (per channel over
the batch for BN, per sample for LN/GN). The loss moves by that times Σ_k|⟨∂L/∂ŷ_k, ŷ_k⟩|, an O(1)
multiple of L. The automatic tolerance (rtol=None) therefore is

    rtol = clip(EPS_SAFETY · g · max_layers(ε/σ²_min), ROUNDING_FLOOR · eps(dtype), RTOL_CAP)

with g = max(1, max_c ½|1 − 1/c²|) over the scales (1.5 for the default (0.5, 2)), σ²_min the
smallest normalized variance on this batch (forward pre-hooks on the normalization layers that
use batch or sample statistics), EPS_SAFETY = 10 for the O(1) loss sensitivity (measured
≈ 0.1–0.3 on small BN/LN nets, so ~30× margin), a floor of 100 machine epsilons for rounding
(powers of 2 scale exactly; other scales round; float32 rounding seen ≲ 2e-7), and a cap above
which nothing would be separated. With ε = 1e-5 and σ² ≈ 1 that gives rtol ≈ 2e-4…7e-4, against
ε effects of ~1e-5 and changes of 1e-2…10 for non-invariant tensors at c = 0.5 or 2. Weights
whose normalized variance is ≲ ε are genuinely not invariant and exceed even the cap.
Cost: 1 forward+backward, then len(scales) forwards per tensor and per probed unit.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.func import functional_call

if TYPE_CHECKING:
    import pandas as pd

from l2dynamics.errors import ConfigError
from l2dynamics.losses import LossFn
from l2dynamics.probes.batch import probe_batch

EPS_SAFETY = 10.0  # allowance for the O(1) factor Σ|⟨∂L/∂ŷ, ŷ⟩| / L in the ε estimate
ROUNDING_FLOOR = 100.0  # lowest auto rtol, in units of the parameter dtype's machine epsilon
RTOL_CAP = 1e-3  # highest auto rtol: above it the probe would not separate anything
MODES = ("train", "eval")

_NORM_TYPES = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm,
               nn.modules.instancenorm._InstanceNorm)


@dataclass(frozen=True)
class TensorScale:
    """Scale test of one parameter tensor. Relative changes are fractions of |L(w)|.

    norm: ‖w‖₂ (parameter units). invariant: the tensor-level verdict (module docstring).
    max_rel_change: max over scales of |L(c·w) − L(w)| / |L(w)| (whole tensor scaled).
    dlogc: |⟨∇L, w⟩| / |L(w)|. cos: |⟨∇L, w⟩| / (‖∇L‖‖w‖) (NaN if either norm is 0).
    unit_*: the same per output unit w[k] (max over the probed units; NaN without per_unit);
    unit_fraction: share of probed units that are invariant; units: how many were probed.
    For 1-D tensors each unit is one number, so unit_max_cos is 1 (or NaN) by construction.
    """

    name: str
    shape: tuple[int, ...]
    norm: float
    invariant: bool
    max_rel_change: float
    dlogc: float
    cos: float
    units: int = 0
    unit_fraction: float = math.nan
    unit_max_rel_change: float = math.nan
    unit_max_dlogc: float = math.nan
    unit_max_cos: float = math.nan


@dataclass(frozen=True)
class ScaleReport:
    """Result of `detect_scale_invariant`: one `TensorScale` per probed tensor, in
    ``named_parameters()`` order, and the settings used (rtol is the one applied)."""

    tensors: dict[str, TensorScale]
    loss: float  # L(w) on the batch, in the mode probed (data loss, no L2 term)
    scales: tuple[float, ...]
    rtol: float
    eps_ratio: float  # max over normalization layers of ε / (smallest normalized variance)
    mode: str
    per_unit: bool
    notes: list[str] = field(default_factory=list)

    def __getitem__(self, name: str) -> TensorScale:
        return self.tensors[name]

    @property
    def invariant_names(self) -> list[str]:
        """Names of the tensors invariant as a whole."""
        return [n for n, t in self.tensors.items() if t.invariant]

    @property
    def unit_invariant_names(self) -> list[str]:
        """Names of the tensors whose every probed unit is invariant on its own (per_unit)."""
        return [n for n, t in self.tensors.items() if t.units and t.unit_fraction == 1.0]

    def to_frame(self) -> pd.DataFrame:
        """One row per tensor (index: name), the `TensorScale` fields as columns."""
        import pandas as pd

        rows = [dict(vars(t)) for t in self.tensors.values()]
        cols = list(TensorScale.__dataclass_fields__)
        return pd.DataFrame(rows, columns=cols).set_index("name")


def unit_norms(weight: torch.Tensor) -> torch.Tensor:
    """‖w[k]‖₂ for each output unit k (all dims but 0 flattened; a 1-D tensor gives |w[k]|).

    Same dtype and device as `weight`, detached; units of the weight.
    """
    if not isinstance(weight, torch.Tensor) or weight.dim() < 1:
        raise ConfigError(f"weight must be a tensor with ≥ 1 dimension (got {weight!r})")
    return weight.detach().reshape(weight.shape[0], -1).norm(dim=1)


# --- argument checks ---------------------------------------------------------------------------


def _check_scales(scales: object) -> tuple[float, ...]:
    if isinstance(scales, str | bytes) or not isinstance(scales, Iterable):
        raise ConfigError(f"scales must be a non-empty sequence of numbers > 0 (got {scales!r})")
    out = tuple(scales)
    if not out:
        raise ConfigError("scales must be a non-empty sequence of numbers > 0 (got none)")
    for c in out:
        if isinstance(c, bool) or not isinstance(c, numbers.Real) or not math.isfinite(c) \
                or c <= 0 or c == 1:
            raise ConfigError(f"scales must be finite numbers > 0 and ≠ 1 (got {c!r})")
    return tuple(float(c) for c in out)


def _check_rtol(rtol: object) -> float | None:
    if rtol is None:
        return None
    if isinstance(rtol, bool) or not isinstance(rtol, numbers.Real) or not math.isfinite(rtol) \
            or rtol <= 0:
        raise ConfigError(f"rtol must be None (automatic) or a finite number > 0 (got {rtol!r})")
    return float(rtol)


def auto_rtol(eps_ratio: float, scales: Sequence[float], dtype: torch.dtype) -> float:
    """The automatic tolerance of the module docstring for max ε/σ² = `eps_ratio`."""
    geometric = max(1.0, max(0.5 * abs(1.0 - 1.0 / c**2) for c in scales))
    floor = ROUNDING_FLOOR * torch.finfo(dtype).eps
    return min(max(EPS_SAFETY * geometric * eps_ratio, floor), RTOL_CAP)


# --- ε / σ² of the normalization layers --------------------------------------------------------


def _normalized_min_var(module: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
    """Smallest variance `module` divides by (before ε) for input x, or None if it uses fixed
    (running) statistics."""
    x = x.detach()
    if isinstance(module, nn.modules.batchnorm._BatchNorm | nn.modules.instancenorm._InstanceNorm):
        uses_batch = module.training or module.running_var is None
        if not uses_batch:
            return None
        if isinstance(module, nn.modules.instancenorm._InstanceNorm):
            flat = x.reshape(x.shape[0] * x.shape[1], -1) if x.dim() > 2 else x.reshape(1, -1)
        else:
            flat = x.transpose(0, 1).reshape(x.shape[1], -1)
        return flat.var(dim=1, unbiased=False).min()
    if isinstance(module, nn.LayerNorm):
        k = len(module.normalized_shape)
        return x.reshape(*x.shape[:x.dim() - k], -1).var(dim=-1, unbiased=False).min()
    if isinstance(module, nn.GroupNorm):
        return x.reshape(x.shape[0], module.num_groups, -1).var(dim=-1, unbiased=False).min()
    return None


class _EpsRatio:
    """Forward pre-hooks recording max ε/σ²_min over the normalization layers of a model."""

    def __init__(self, model: nn.Module) -> None:
        self.value = 0.0
        self.handles = [m.register_forward_pre_hook(self._hook) for m in model.modules()
                        if isinstance(m, _NORM_TYPES)]

    def _hook(self, module: nn.Module, args: tuple) -> None:
        var = _normalized_min_var(module, args[0])
        if var is not None:
            ratio = module.eps / var.item() if var.item() > 0 else math.inf
            self.value = max(self.value, ratio)

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


# --- the probe ---------------------------------------------------------------------------------


def detect_scale_invariant(model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor,
                           *, scales: Iterable[float] = (0.5, 2.0), rtol: float | None = None,
                           per_unit: bool = True, mode: str = "train",
                           names: Iterable[str] | None = None,
                           max_units: int | None = None) -> ScaleReport:
    """Which parameter tensors (and output units) of `model` leave the loss on (x, y) unchanged
    when scaled by each c in `scales`; see the module docstring for the test and tolerances.

    rtol: None for the automatic ε-based tolerance, else a fixed relative tolerance.
    mode: "train" (batch statistics; default) or "eval" (running statistics) for every forward.
    names: tensors to probe (default: all trainable). max_units: probe at most this many units
    per tensor, evenly spaced (default: all). Raises ConfigError on invalid arguments.
    """
    scales_t = _check_scales(scales)
    rtol_fixed = _check_rtol(rtol)
    if mode not in MODES:
        raise ConfigError(f"mode must be one of {', '.join(map(repr, MODES))} (got {mode!r})")
    if not isinstance(per_unit, bool):
        raise ConfigError(f"per_unit must be true or false (got {per_unit!r})")
    if max_units is not None and (isinstance(max_units, bool)
                                  or not isinstance(max_units, numbers.Integral)
                                  or max_units < 1):
        raise ConfigError(f"max_units must be None or an int ≥ 1 (got {max_units!r})")
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise ConfigError("model has no trainable parameters (requires_grad=True)")
    if isinstance(names, str):
        raise ConfigError(f"names must be an iterable of parameter names, not the string "
                          f"{names!r}")
    wanted = {n for n, _ in named} if names is None else set(names)
    unknown = sorted(wanted - {n for n, _ in named})
    probe = [n for n, _ in named if n in wanted]  # named_parameters() order
    if unknown or not probe:
        raise ConfigError(f"names must be trainable parameters of the model (unknown: "
                          f"{unknown[:4]}); names look like {', '.join(n for n, _ in named[:4])}")
    ref = named[0][1]
    x, y = probe_batch(model, x, y, ref, training=mode == "train",
                       dropout_hint="set p=0 or use mode='eval'")

    flags = {m: m.training for m in model.modules()}
    model.train(mode == "train")
    eps_hooks = _EpsRatio(model)
    try:
        params = {n: p.detach() for n, p in named}
        buffers = {k: b.detach().clone() for k, b in model.named_buffers()}

        def loss_at(name: str, value: torch.Tensor) -> float:
            with torch.no_grad():
                out = functional_call(model, ({**params, name: value}, buffers), (x,))
                return float(loss_fn(out, y))

        leaves = {n: params[n].clone().requires_grad_() for n in probe}
        with torch.enable_grad():
            out = functional_call(model, ({**params, **leaves}, buffers), (x,))
            loss = loss_fn(out, y)
            if loss.ndim != 0:
                raise ConfigError(f"loss_fn must return a scalar batch-mean loss "
                                  f"(got shape {tuple(loss.shape)})")
            grads = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True,
                                        materialize_grads=True)
        eps_hooks.remove()
        base = float(loss.detach())
        eps_ratio = eps_hooks.value
        tol = rtol_fixed if rtol_fixed is not None else auto_rtol(eps_ratio, scales_t, ref.dtype)
        denom = abs(base) if base != 0 else torch.finfo(ref.dtype).tiny
        results = {}
        for (name, leaf), grad in zip(leaves.items(), grads, strict=True):
            w = leaf.detach()
            results[name] = _probe_tensor(name, w, grad.detach(), loss_at, base, denom, scales_t,
                                          tol, per_unit, max_units)
    finally:
        eps_hooks.remove()
        for m, flag in flags.items():
            m.training = flag
    notes = []
    if rtol_fixed is None and tol == RTOL_CAP:
        notes.append(f"auto rtol capped at {RTOL_CAP:g} (ε/σ²_min = {eps_ratio:.3g}): ε effects "
                     f"this large cannot be told from non-invariance; use scales nearer 1")
    return ScaleReport(results, base, scales_t, tol, eps_ratio, mode, per_unit, notes)


def _probe_tensor(name: str, w: torch.Tensor, grad: torch.Tensor, loss_at, base: float,
                  denom: float, scales: tuple[float, ...], tol: float, per_unit: bool,
                  max_units: int | None) -> TensorScale:
    """The whole-tensor and per-unit scale tests of one tensor w with gradient `grad`."""
    norm = float(w.norm())
    inner = float((w * grad).sum())
    gnorm = float(grad.norm())
    cos = abs(inner) / (norm * gnorm) if norm > 0 and gnorm > 0 else math.nan
    dlogc = abs(inner) / denom
    rel = max(abs(loss_at(name, w * c) - base) / denom for c in scales)
    invariant = norm > 0 and rel <= tol and dlogc <= tol
    if not per_unit or w.dim() == 0:
        return TensorScale(name, tuple(w.shape), norm, invariant, rel, dlogc, cos)
    n_units = w.shape[0]
    if max_units is not None and max_units < n_units:
        units = torch.linspace(0, n_units - 1, max_units).round().long().unique().tolist()
    else:
        units = list(range(n_units))
    wf, gf = w.reshape(n_units, -1), grad.reshape(n_units, -1)
    u_norm, u_gnorm = wf.norm(dim=1), gf.norm(dim=1)
    u_inner = (wf * gf).sum(dim=1).abs()
    ok, max_rel, max_dlogc, max_cos = 0, 0.0, 0.0, math.nan
    for k in units:
        rel_k = 0.0
        for c in scales:
            scaled = w.clone()
            scaled[k] *= c
            rel_k = max(rel_k, abs(loss_at(name, scaled) - base) / denom)
        dlogc_k = float(u_inner[k]) / denom
        nk, gk = float(u_norm[k]), float(u_gnorm[k])
        if nk > 0 and gk > 0:
            cos_k = float(u_inner[k]) / (nk * gk)
            max_cos = cos_k if math.isnan(max_cos) else max(max_cos, cos_k)
        ok += nk > 0 and rel_k <= tol and dlogc_k <= tol
        max_rel, max_dlogc = max(max_rel, rel_k), max(max_dlogc, dlogc_k)
    return TensorScale(name, tuple(w.shape), norm, invariant, rel, dlogc, cos, len(units),
                       ok / len(units), max_rel, max_dlogc, max_cos)
