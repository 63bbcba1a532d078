"""Analytic infinite-width NNGP and NTK kernels of the fully connected network (`models.fc`).

Convention (NTK parameterization, `depth` = L hidden layers, input dimension d, φ the activation,
σ_w² = weight_var, σ_b² = bias_var):

    K¹(x, x′) = σ_w²·⟨x, x′⟩/d + σ_b²,                          Θ¹ = K¹
    K^{l+1}   = σ_w²·E[φ(u)φ(v)] + σ_b²,                          l = 1 … L
    Θ^{l+1}   = K^{l+1} + σ_w²·E[φ′(u)φ′(v)]·Θ^l
    (u, v) ~ N(0, [[K^l(x, x), K^l(x, x′)], [K^l(x′, x), K^l(x′, x′)]])

`fc_kernels` returns (K^{L+1}, Θ^{L+1}): the covariance at init and the NTK of one scalar output
unit (the kernel is δ_ij times this across output units). Θ is the NTK of gradient flow on the
parameters θ of the NTK-parameterized network: df/dt = −Θ(x, X)·∂𝓛/∂f(X). With bias=False the
network matches bias_var = 0. The "standard" parameterization has the same K but not the same Θ.
"""

import math

import numpy as np
import torch

from l2dynamics.errors import ConfigError
from l2dynamics.resources import check_memory, kernel_memory

KERNEL_ACTIVATIONS = ("relu", "erf", "linear")
_CHUNK_ELEMENTS = 1 << 20  # entries per row block (8 MB per float64 temporary)


def activation_expectations(activation: str, k11: torch.Tensor, k12: torch.Tensor,
                            k22: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(E[φ(u)φ(v)], E[φ′(u)φ′(v)]) for (u, v) ~ N(0, [[k11, k12], [k12, k22]]), elementwise.

    Closed forms: relu, the arc-cosine kernels of degree 1 and 0 (Cho & Saul 2009), with
    cos θ = k12/√(k11·k22) clipped to [−1, 1]; erf, Williams (1997):
    E[erf erf] = (2/π)·arcsin(2k12/√((1+2k11)(1+2k22))),
    E[erf′ erf′] = (4/π)/√((1+2k11)(1+2k22) − 4k12²); linear, (k12, 1).
    """
    # In-place chains on fresh tensors: allocations dominate the cost of 10^8-entry kernels.
    if activation == "relu":
        norms = torch.sqrt(k11 * k22)
        cos = torch.div(k12, norms.clamp_min(1e-300)).clamp_(-1.0, 1.0)
        sin = torch.mul(cos, cos).neg_().add_(1.0).clamp_min_(0.0).sqrt_()
        pi_minus_theta = torch.arccos(cos).neg_().add_(math.pi)
        e_phi = cos.mul_(pi_minus_theta).add_(sin).mul_(norms).div_(2 * math.pi)
        return e_phi, pi_minus_theta.div_(2 * math.pi)
    if activation == "erf":
        ab = (1.0 + 2.0 * k11) * (1.0 + 2.0 * k22)
        e_phi = torch.div(k12, ab.sqrt()).mul_(2.0).clamp_(-1.0, 1.0).arcsin_().mul_(2 / math.pi)
        e_dphi = torch.mul(k12, k12).mul_(-4.0).add_(ab).sqrt_().reciprocal_().mul_(4 / math.pi)
        return e_phi, e_dphi
    if activation == "linear":
        return k12.clone(), torch.ones_like(k12)
    raise ConfigError(f"activation must be one of {', '.join(map(repr, KERNEL_ACTIVATIONS))} "
                      f"for analytic kernels (got {activation!r})")


def _diagonal(x: torch.Tensor, depth: int, weight_var: float, bias_var: float,
              activation: str) -> list[torch.Tensor]:
    """K^l(x, x) for l = 1 … depth (the variances feeding each hidden layer)."""
    k = weight_var * (x * x).sum(1) / x.shape[1] + bias_var
    out = []
    for _ in range(depth):
        out.append(k)
        k = weight_var * activation_expectations(activation, k, k, k)[0] + bias_var
    return out


def _block(x1: torch.Tensor, x2: torch.Tensor, d1: list[torch.Tensor], d2: list[torch.Tensor],
           weight_var: float, bias_var: float,
           activation: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(K, Θ) of the readout for rows x1 × rows x2, given their diagonals per layer."""
    k = (x1 @ x2.T).mul_(weight_var / x1.shape[1]).add_(bias_var)
    ntk = k.clone()
    for k11, k22 in zip(d1, d2, strict=True):
        e_phi, e_dphi = activation_expectations(activation, k11[:, None], k, k22[None, :])
        k = e_phi.mul_(weight_var).add_(bias_var)
        ntk = e_dphi.mul_(ntk).mul_(weight_var).add_(k)
    return k, ntk


def fc_kernels(x1, x2=None, *, depth: int, weight_var: float = 2.0, bias_var: float = 0.0,
               activation: str = "relu"):
    """Infinite-width (NNGP, NTK) of the fc network, each of shape (n1, n2); see module doc.

    x1: (n1, ...) and x2: (n2, ...) inputs (flattened per row); x2 None or x2 is x1 computes
    the symmetric Gram matrix (half the work). numpy in → numpy out; torch in → torch out on
    x1's device. Always float64, computed in row blocks (10 000 × 10 000 takes seconds and
    2 × 800 MB for the outputs). depth = number of hidden layers (0: a linear model).
    """
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 0:
        raise ConfigError(f"depth must be an int >= 0 (got {depth!r})")
    if activation not in KERNEL_ACTIVATIONS:
        raise ConfigError(f"activation must be one of "
                          f"{', '.join(map(repr, KERNEL_ACTIVATIONS))} for analytic kernels "
                          f"(got {activation!r})")
    if not weight_var > 0:
        raise ConfigError(f"weight_var must be > 0 (got {weight_var!r})")
    if not bias_var >= 0:
        raise ConfigError(f"bias_var must be >= 0 (got {bias_var!r})")
    symmetric = x2 is None or x2 is x1
    as_numpy = not isinstance(x1, torch.Tensor)
    device = None if as_numpy else x1.device
    a = torch.as_tensor(np.asarray(x1) if as_numpy else x1.detach().cpu(), dtype=torch.float64)
    a = a.reshape(a.shape[0], -1)
    if symmetric:
        b = a
    else:
        b = torch.as_tensor(x2 if isinstance(x2, torch.Tensor) else np.asarray(x2))
        b = b.detach().cpu().to(torch.float64).reshape(b.shape[0], -1)
        if b.shape[1] != a.shape[1]:
            raise ConfigError(f"x2 must have the same features per row as x1 "
                              f"({a.shape[1]}; got {b.shape[1]})")
    kw = dict(weight_var=float(weight_var), bias_var=float(bias_var), activation=activation)
    d1 = _diagonal(a, depth, **kw)
    d2 = d1 if symmetric else _diagonal(b, depth, **kw)
    n1, n2 = a.shape[0], b.shape[0]
    check_memory(kernel_memory(n1, n2, matrices=2, extra=8 * 8 * min(_CHUNK_ELEMENTS, n1 * n2)),
                 what="fc_kernels (NNGP and NTK in float64)")
    nngp = torch.empty(n1, n2, dtype=torch.float64)
    ntk = torch.empty(n1, n2, dtype=torch.float64)
    rows = max(1, _CHUNK_ELEMENTS // max(n2, 1))
    for i in range(0, n1, rows):
        j = i if symmetric else 0  # symmetric: compute the upper block row, mirror it below
        r = slice(i, i + rows)
        k, t = _block(a[r], b[j:], [d[r] for d in d1], [d[j:] for d in d2], **kw)
        nngp[r, j:], ntk[r, j:] = k, t
        if symmetric:
            nngp[j:, r], ntk[j:, r] = k.T, t.T
    if as_numpy:
        return nngp.numpy(), ntk.numpy()
    return nngp.to(device), ntk.to(device)
