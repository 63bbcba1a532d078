"""Empirical neural tangent kernel Θ(x, x′) = Σ_θ ∂f(x)/∂θ · ∂f(x′)/∂θ of a model as it is now.

The sum runs over every parameter with requires_grad=True; buffers (BN running statistics) are
held fixed and the model is evaluated in eval mode (BN uses running statistics, so Θ(x, x′)
does not depend on which other samples are in the batch). Θ is in the units of the model's own
parameterization: for an NTK-parameterized fc at init it converges to
`theory.kernels.fc_kernels(...)[1]` as width → ∞; under gradient flow with step η, df/dt
= −Θ·∂𝓛/∂f per unit of physical time η·step.
"""

import torch
from torch import nn
from torch.func import functional_call, jacrev, vmap

from l2dynamics.errors import ConfigError


def _jacobian_fn(model: nn.Module):
    """x (n, *input) → {name: ∂f/∂θ of shape (n, outputs, numel(θ))} for trainable θ."""
    params = {k: p.detach() for k, p in model.named_parameters() if p.requires_grad}
    fixed = {k: p.detach() for k, p in model.named_parameters() if not p.requires_grad}
    fixed.update({k: b.detach() for k, b in model.named_buffers()})

    def f(p: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return functional_call(model, (p, fixed), (x.unsqueeze(0),)).reshape(-1)

    per_sample = vmap(jacrev(f), in_dims=(None, 0))

    def jacobian(x: torch.Tensor) -> dict[str, torch.Tensor]:
        jac = per_sample(params, x)
        return {k: j.reshape(j.shape[0], j.shape[1], -1) for k, j in jac.items()}

    return jacobian


def _contract(j1: dict[str, torch.Tensor], j2: dict[str, torch.Tensor], full: bool):
    """Σ_θ J1·J2ᵀ: (a, b, o, o) if full, else the mean over output units of Θ_oo, (a, b)."""
    if full:
        return sum(torch.einsum("aip,bjp->abij", j1[k], j2[k]) for k in j1)
    outputs = next(iter(j1.values())).shape[1]
    return sum(torch.einsum("aip,bip->ab", j1[k], j2[k]) for k in j1) / outputs


@torch.no_grad()
def empirical_ntk(model: nn.Module, x1: torch.Tensor, x2: torch.Tensor | None = None, *,
                  chunk_size: int = 64, full: bool = False) -> torch.Tensor:
    """Θ(x1, x2) summed over all trainable parameters, computed with torch.func.

    Returns (n1, n2) = mean over output units o of Θ_oo (the kernel itself for a scalar output;
    for an infinitely wide fc, Θ_oo′ = δ_oo′·Θ), or with full=True the whole (n1, n2, o, o).
    x2=None means x2 = x1 (the symmetric Gram matrix, half the work). Inputs are cast to the
    model's dtype/device; per-sample Jacobians are materialized for chunk_size samples at a
    time (memory ≈ 2·chunk_size·outputs·num_params numbers). The model's train/eval mode is
    restored afterwards.
    """
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ConfigError(f"chunk_size must be a positive int (got {chunk_size!r})")
    ref = next(model.parameters())
    x1 = x1.to(device=ref.device, dtype=ref.dtype)
    symmetric = x2 is None or x2 is x1
    x2 = x1 if symmetric else x2.to(device=ref.device, dtype=ref.dtype)
    was_training = model.training
    model.eval()
    try:
        jacobian = _jacobian_fn(model)
        blocks: dict[tuple[int, int], torch.Tensor] = {}
        for i in range(0, len(x1), chunk_size):
            j1 = jacobian(x1[i:i + chunk_size])
            for j in range(i if symmetric else 0, len(x2), chunk_size):
                j2 = j1 if symmetric and j == i else jacobian(x2[j:j + chunk_size])
                blocks[i, j] = _contract(j1, j2, full)
    finally:
        model.train(was_training)
    rows = []
    for i in range(0, len(x1), chunk_size):
        row = []
        for j in range(0, len(x2), chunk_size):
            if (i, j) in blocks:
                row.append(blocks[i, j])
            else:  # symmetric: Θ(x, x′)_{oo′} = Θ(x′, x)_{o′o}
                upper = blocks[j, i]
                row.append(upper.permute(1, 0, 3, 2) if full else upper.transpose(0, 1))
        rows.append(torch.cat(row, dim=1))
    return torch.cat(rows, dim=0)
