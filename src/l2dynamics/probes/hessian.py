"""Extreme eigenvalues of the Hessian of the L2-regularized training loss, by Lanczos.

The probed function is the one training minimizes, in the paper's convention (λ/2)‖θ‖²:

    L_λ(θ) = L(θ) + (λ/2)·Σ_{p ∈ decayed} ‖θ_p‖²,   ∇²L_λ = ∇²L + λ·diag(mask),

with L the batch-mean data loss ``loss_fn(model(x), y)`` on the full batch (x, y) (as returned
by `losses.make_loss`, so λ here is the same λ as ``L2Penalty.lam``) and θ every parameter
with requires_grad, flattened in ``model.named_parameters()`` order. Eigenvalues are curvatures
in units of loss per (parameter unit)²; gradient descent with step η relaxes a direction of
curvature h in ~1/(η·h) steps. Lewkowycz & Gur-Ari's finite-width argument (§5.4 of the notes)
is that an over-parameterized net near a minimum has many flat directions of ∇²L, so the smallest
eigenvalue of ∇²L_λ is ≈ λ and the slowest relaxation takes ~1/(η·λ) steps:
`HessianSpectrum.bottom_over_lam` is that comparison.

Conventions:

- Hessian-vector products by double backward (autograd of gᵀv, g = ∇L built with
  create_graph), never forming the Hessian. Without `chunk_size` the gradient graph is built once
  and reused by every product (memory ≈ one training step with create_graph). With `chunk_size`
  the batch is cut into ceil(n/chunk_size) chunks of near-equal size, the graph is rebuilt per
  chunk and product (≈ 2× the compute), and each chunk's mean loss is weighted by its share of
  the batch: the full-batch Hessian for any model without batch-coupled layers.
- The model runs in its current mode (train or eval, never switched). In train mode BatchNorm
  normalizes with the statistics of the batch it sees — (x, y) as a whole, or each chunk when
  `chunk_size` is set (then the probed loss is the mean of per-chunk losses, the one minibatch
  training with batch size `chunk_size` sees). Buffers are copied before the forward passes, so
  running statistics and ``num_batches_tracked`` are never updated; parameters' ``.grad`` are
  untouched. Active dropout makes the loss random and is rejected.
- Lanczos with full reorthogonalization (classical Gram–Schmidt, applied twice against the whole
  basis). The basis (iters × num_params numbers) is stored in the parameter dtype and device; the
  tridiagonal recurrence and its eigenproblem are in float64. Ritz values are accurate to
  ≈ eps(dtype)·‖H‖ at best (products carry that error): for float32 models whose λ is below
  ~1e-6·top, probe a float64 copy. An exhausted Krylov space (β ≈ 0, e.g. repeated eigenvalues)
  restarts from a fresh seeded random vector orthogonal to the basis, so multiplicities are found.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from l2dynamics.errors import ConfigError
from l2dynamics.losses import LossFn
from l2dynamics.probes.batch import probe_batch


@dataclass(frozen=True)
class HessianSpectrum:
    """Extreme Ritz values of ∇²L_λ (see the module docstring), in loss/(parameter unit)².

    `top` is descending and `bottom` ascending, min(k, iters) values each (they overlap only
    when num_params < 2k). `*_residuals` are the Lanczos estimates |β_m·s_m| = ‖H·u − θ·u‖ of each
    Ritz pair (θ, u), floored at eps(dtype)·max|θ|: a true eigenvalue lies within that distance of
    θ (up to rounding). `iters` is the number of Hessian-vector products done (≤ num_params).
    """

    top: np.ndarray
    bottom: np.ndarray
    top_residuals: np.ndarray
    bottom_residuals: np.ndarray
    iters: int
    lam: float
    num_params: int

    @property
    def bottom_over_lam(self) -> np.ndarray:
        """bottom / λ: ≈ 1 when the smallest curvatures are the L2 term's (NaN where λ = 0)."""
        if self.lam == 0.0:
            return np.full_like(self.bottom, np.nan)
        return self.bottom / self.lam

    def to_dict(self) -> dict:
        return {"top": self.top.tolist(), "bottom": self.bottom.tolist(),
                "top_residuals": self.top_residuals.tolist(),
                "bottom_residuals": self.bottom_residuals.tolist(),
                "iters": self.iters, "lam": self.lam, "num_params": self.num_params}


def _check_int(field: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ConfigError(f"{field} must be an int ≥ {minimum} (got {value!r})")
    return int(value)


def _check_lam(lam: object) -> float:
    if isinstance(lam, bool) or not isinstance(lam, numbers.Real) or not math.isfinite(lam) \
            or lam < 0:
        raise ConfigError(f"lam must be a finite number ≥ 0 (got {lam!r})")
    return float(lam)


def _make_hvp(model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor, lam: float,
              decayed: Iterable[str] | None, chunk_size: int | None
              ) -> tuple[Callable[[torch.Tensor], torch.Tensor], int, torch.dtype, torch.device]:
    """(v ↦ ∇²L_λ·v on flat vectors, num_params, dtype, device) for `model` as it is now."""
    named = [(n, p.detach().requires_grad_()) for n, p in model.named_parameters()
             if p.requires_grad]
    if not named:
        raise ConfigError("model has no trainable parameters (requires_grad=True)")
    names = [n for n, _ in named]
    params = [p for _, p in named]
    ref = params[0]
    if isinstance(decayed, str):
        raise ConfigError(f"decayed must be an iterable of parameter names, not the string "
                          f"{decayed!r}")
    decayed_set = set(names) if decayed is None else set(decayed)
    unknown = sorted(decayed_set - set(names))
    if unknown:
        raise ConfigError(f"decayed names {unknown[:4]} are not trainable parameters; names look "
                          f"like {', '.join(names[:4])}")
    x, y = probe_batch(model, x, y, ref, training=model.training,
                       dropout_hint="call model.eval() or set p=0 before probing the Hessian")
    if chunk_size is not None:
        _check_int("chunk_size", chunk_size, 1)
    n = x.shape[0]
    chunks = 1 if chunk_size is None else -(-n // chunk_size)  # sizes as equal as possible
    sizes = [p.numel() for p in params]
    mask = torch.cat([torch.full((s,), float(name in decayed_set), dtype=ref.dtype,
                                 device=ref.device) for name, s in zip(names, sizes, strict=True)])

    def gradient(xb: torch.Tensor, yb: torch.Tensor) -> list[torch.Tensor]:
        # Copied buffers: BN in train mode updates the copies, never the model's running stats.
        buffers = {k: b.detach().clone() for k, b in model.named_buffers()}
        with torch.enable_grad():
            out = functional_call(model, (dict(named), buffers), (xb,))
            loss = loss_fn(out, yb)
            if loss.ndim != 0:
                raise ConfigError(f"loss_fn must return a scalar batch-mean loss "
                                  f"(got shape {tuple(loss.shape)})")
            loss = loss * (xb.shape[0] / n)
            grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
        return [g if g is not None else torch.zeros_like(p) for g, p in zip(grads, params,
                                                                             strict=True)]

    def product(grads: list[torch.Tensor], v: list[torch.Tensor], retain: bool) -> torch.Tensor:
        live = [i for i, g in enumerate(grads) if g.requires_grad]  # others: constant gradient
        out = [torch.zeros_like(p) for p in params]
        if live:
            with torch.enable_grad():
                hv = torch.autograd.grad([grads[i] for i in live], params,
                                         grad_outputs=[v[i] for i in live],
                                         retain_graph=retain, allow_unused=True,
                                         materialize_grads=True)
            out = list(hv)
        return torch.cat([h.reshape(-1) for h in out])

    whole = gradient(x, y) if chunks == 1 else None

    def hvp_flat(v: torch.Tensor) -> torch.Tensor:
        v = v.to(device=ref.device, dtype=ref.dtype)
        parts = [t.view_as(p) for t, p in zip(v.split(sizes), params, strict=True)]
        if whole is not None:
            hv = product(whole, parts, retain=True)
        else:
            hv = torch.zeros_like(v)
            for xb, yb in zip(x.tensor_split(chunks), y.tensor_split(chunks), strict=True):
                hv += product(gradient(xb, yb), parts, retain=False)
        return hv + lam * mask * v if lam else hv

    return hvp_flat, sum(sizes), ref.dtype, ref.device


def hvp(model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor, v: torch.Tensor,
        *, lam: float = 0.0, decayed: Iterable[str] | None = None,
        chunk_size: int | None = None) -> torch.Tensor:
    """∇²L_λ·v for a flat v of length num_params (``named_parameters()`` order, trainable only).

    Returns a flat tensor in the parameter dtype/device. `decayed`: names receiving the L2 term
    (None = all trainable parameters; e.g. ``l2.split_decay(model, rule).decayed``).
    """
    lam = _check_lam(lam)
    apply, dim, _, _ = _make_hvp(model, loss_fn, x, y, lam, decayed, chunk_size)
    if v.ndim != 1 or v.shape[0] != dim:
        raise ConfigError(f"v must be a flat vector of length {dim} (got shape {tuple(v.shape)})")
    return apply(v).detach()


def hessian_extremes(model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor, *,
                     lam: float = 0.0, decayed: Iterable[str] | None = None, k: int = 5,
                     iters: int = 60, seed: int = 0,
                     chunk_size: int | None = None) -> HessianSpectrum:
    """The k largest and k smallest eigenvalues of ∇²L_λ by `iters` Lanczos steps.

    Extreme eigenvalues converge first: the top few typically within a few tens of steps, the
    bottom of a dense cluster (the flat directions at ≈ λ) more slowly — read the residuals.
    `iters` is capped at num_params (then the Ritz values are the whole spectrum). The start
    vector is Gaussian from `seed` (same seed, same model → same numbers on CPU).
    """
    lam = _check_lam(lam)
    k = _check_int("k", k, 1)
    iters = _check_int("iters", iters, 2 * k)
    seed = _check_int("seed", seed, 0)
    apply, dim, dtype, device = _make_hvp(model, loss_fn, x, y, lam, decayed, chunk_size)
    m = min(iters, dim)
    gen = torch.Generator().manual_seed(seed)

    def random_unit(basis: torch.Tensor) -> torch.Tensor:
        q = torch.randn(dim, generator=gen, dtype=torch.float64).to(device=device, dtype=dtype)
        for _ in range(2):
            q -= basis.T @ (basis @ q)
        return q / q.norm()

    basis = torch.zeros(m, dim, dtype=dtype, device=device)
    basis[0] = random_unit(basis[:0])
    alpha = np.zeros(m)
    beta = np.zeros(m)  # beta[j] couples q_j and q_{j+1}; beta[m-1] is the residual norm β_m
    h_norm = 0.0  # running estimate of ‖H‖ (largest |α|, β seen), the scale of "β ≈ 0"
    tiny = 10 * torch.finfo(dtype).eps
    with torch.no_grad():
        for j in range(m):
            w = apply(basis[j]).detach()
            q = basis[:j + 1]
            for _ in range(2):  # CGS2: w ⊥ all previous q; the q_j coefficients sum to α_j
                c = q @ w
                w -= q.T @ c
                alpha[j] += float(c[j])
            beta[j] = float(w.norm())
            h_norm = max(h_norm, abs(alpha[j]), beta[j])
            if j + 1 == m:
                break
            if beta[j] <= tiny * h_norm:  # invariant subspace found: restart, decoupled block
                beta[j] = 0.0
                basis[j + 1] = random_unit(q)
            else:
                basis[j + 1] = w / beta[j]
    tri = np.diag(alpha) + np.diag(beta[:-1], 1) + np.diag(beta[:-1], -1)
    ritz, vecs = np.linalg.eigh(tri)  # ascending
    # |β_m·s_m| underflows to 0 for well-converged pairs; floor it at the products' rounding
    residuals = np.maximum(np.abs(beta[-1] * vecs[-1]), tiny / 10 * np.abs(ritz).max())
    kk = min(k, m)
    return HessianSpectrum(top=ritz[::-1][:kk].copy(), bottom=ritz[:kk].copy(),
                           top_residuals=residuals[::-1][:kk].copy(),
                           bottom_residuals=residuals[:kk].copy(), iters=m, lam=lam,
                           num_params=dim)
