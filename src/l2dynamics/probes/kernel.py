"""Empirical neural tangent kernel Θ(x, x′) = Σ_θ ∂f(x)/∂θ · ∂f(x′)/∂θ of a model as it is now.

The sum runs over every parameter with requires_grad=True; buffers (BN running statistics) are
held fixed and the model is evaluated in eval mode (BN uses running statistics, so Θ(x, x′)
does not depend on which other samples are in the batch). Θ is in the units of the model's own
parameterization: for an NTK-parameterized fc at init it converges to
`theory.kernels.fc_kernels(...)[1]` as width → ∞; under gradient flow with step η, df/dt
= −Θ·∂𝓛/∂f per unit of physical time η·step.

Two ways to compute it, same numbers to rounding:

- `fc_empirical_ntk` (norm-free `FullyConnected`): the layerwise identity below, which never
  forms a per-sample Jacobian; costs about one forward and (outputs) backward passes plus Gram
  matrices of width-sized vectors, so width 8192 (67M parameters) takes seconds.
- the generic torch.func path (any model): per-sample Jacobians of all P parameters, contracted.

`empirical_ntk` picks the first when it applies (generic=True forces the second).
"""

import torch
from torch import nn
from torch.func import functional_call, jacrev, vjp, vmap

from l2dynamics.errors import ConfigError
from l2dynamics.models.fc import FullyConnected
from l2dynamics.models.layers import Dense, Erf
from l2dynamics.resources import check_memory, kernel_memory

# Elementwise activations `make_activation` builds; anything else (norms, WN) → generic path.
_ELEMENTWISE = (nn.ReLU, Erf, nn.Tanh, nn.GELU, nn.Identity)


def _check_chunk_size(chunk_size: object) -> None:
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ConfigError(f"chunk_size must be a positive int (got {chunk_size!r})")


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
                  chunk_size: int = 64, full: bool = False, generic: bool = False) -> torch.Tensor:
    """Θ(x1, x2) summed over all trainable parameters.

    Returns (n1, n2) = mean over output units o of Θ_oo (the kernel itself for a scalar output;
    for an infinitely wide fc, Θ_oo′ = δ_oo′·Θ), or with full=True the whole (n1, n2, o, o).
    x2=None means x2 = x1 (the symmetric Gram matrix, half the work). Inputs are cast to the
    model's dtype/device. A norm-free `FullyConnected` goes to `fc_empirical_ntk` (chunk_size
    samples per forward/backward pass) unless generic=True; otherwise per-sample Jacobians are
    materialized with torch.func for chunk_size samples at a time (memory ≈
    2·chunk_size·outputs·num_params numbers). The model's train/eval mode is restored afterwards.
    """
    _check_chunk_size(chunk_size)
    if not generic and _fc_layers(model) is not None:
        return fc_empirical_ntk(model, x1, x2, chunk_size=chunk_size, full=full)
    ref = next(model.parameters())
    outputs = _outputs(model)
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    n2 = len(x1) if x2 is None else len(x2)  # blocks, rows, result: 3 copies; 2 Jacobians
    _check_ntk_memory(model, len(x1), n2, full, copies=3,
                      extra=2 * min(chunk_size, len(x1)) * outputs * n_params,
                      knob=", a smaller chunk_size")
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


def _outputs(model: nn.Module) -> int:
    readout = getattr(model, "readout", None)
    return int(getattr(readout, "out_features", 1))


def _check_ntk_memory(model: nn.Module, n1: int, n2: int, full: bool, *, copies: int,
                      extra: int, knob: str = "") -> None:
    """Refuse (ResourceError) an NTK of n1 × n2 (× outputs² if full) that cannot fit:
    `copies` of it and `extra` numbers of working memory, in the model's dtype and device."""
    ref = next(model.parameters())
    size = ref.element_size()
    outputs = _outputs(model) ** 2 if full else 1
    estimate = kernel_memory(n1, n2 * outputs, itemsize=size, copies=copies, extra=extra * size)
    knob = f"fewer inputs (now {n1} × {n2})" + knob + (" or full=False" if full else "")
    check_memory(estimate, what="empirical NTK", knob=knob, device=ref.device)


# ---------------------------------------------------------------- fully connected fast path


def _fc_layers(model: nn.Module) -> list[tuple[nn.Module | None, Dense]] | None:
    """[(φ applied to the layer's input or None, Dense)] for a norm-free `FullyConnected` whose
    trainable parameters all sit in its Dense layers; None for any other model."""
    if not isinstance(model, FullyConnected):
        return None
    modules = [*model.features, model.readout]
    if not isinstance(modules[0], nn.Flatten):
        return None
    layers: list[tuple[nn.Module | None, Dense]] = []
    act = None
    for m in modules[1:]:
        if type(m) is Dense and (act is not None or not layers):
            layers.append((act, m))
            act = None
        elif isinstance(m, _ELEMENTWISE) and act is None and layers:
            act = m
        else:
            return None
    owned = {id(p) for _, dense in layers for p in dense.parameters()}
    if any(id(p) not in owned for p in model.parameters()):
        return None
    return layers


def _fc_features(layers: list[tuple[nn.Module | None, Dense]], x: torch.Tensor):
    """Per Dense layer l of a batch x (c, d): its input a_{l−1} (c, fan_in), and for the hidden
    layers δ_l = ∂f_o/∂h_l (c, outputs, fan_out) for every output o, h_l the layer's output.
    (The readout's δ is the identity and is not returned.)"""
    acts, backs = [], []
    h = x
    for act, dense in layers:
        if act is None:
            a = h
        else:
            a, back = vjp(act, h)
            backs.append(back)
        acts.append(a)
        h = dense(a)
    outputs = h.shape[1]
    # cotangent[o] = e_o for every sample: backpropagate all outputs at once (vmap over o)
    cot = torch.eye(outputs, dtype=h.dtype, device=h.device)[:, None].expand(-1, len(x), -1)
    deltas = []
    for (_, dense), back in zip(reversed(layers[1:]), reversed(backs), strict=True):
        # δ_l = φ′(h_l) ⊙ (s_w·W_{l+1}ᵀ δ_{l+1}): Dense's input gradient by hand (h = s_w·W a
        # + s_b·b, see `Dense.forward`), φ′ by autograd; cot is (outputs, c, fan_out)
        cot = vmap(back)((cot @ dense.weight).mul_(dense.weight_scale))[0]
        deltas.append(cot.transpose(0, 1))
    return acts, deltas[::-1]


def _all_features(layers, x: torch.Tensor, chunk_size: int):
    chunks = [_fc_features(layers, x[i:i + chunk_size]) for i in range(0, len(x), chunk_size)]
    return [[torch.cat(parts) for parts in zip(*group, strict=True)]
            for group in zip(*chunks, strict=True)]


@torch.no_grad()
def fc_empirical_ntk(model: nn.Module, x1: torch.Tensor, x2: torch.Tensor | None = None, *,
                     chunk_size: int = 256, full: bool = False) -> torch.Tensor:
    """Empirical NTK of a norm-free `FullyConnected` (biases allowed) by the layerwise identity.

    A Dense layer computes h_l = s_w·W_l a_{l−1} + s_b·b_l (s_w = sqrt(weight_var/fan_in),
    s_b = sqrt(bias_var) under "ntk"; s_w = s_b = 1 under "standard"), so ∂f_o/∂W_l =
    s_w·δ_l^o a_{l−1}ᵀ and ∂f_o/∂b_l = s_b·δ_l^o with δ_l^o = ∂f_o/∂h_l, and

        Θ_oo′(x, x′) = Σ_l (δ_l^o(x)·δ_l^o′(x′))·(s_w²·a_{l−1}(x)·a_{l−1}(x′) + s_b²),

    the weight (bias) term counted only if that tensor requires grad. Same return convention as
    `empirical_ntk`: (n1, n2) mean over o of Θ_oo, or (n1, n2, o, o) with full=True; x2=None
    means x1. Computed in the model's dtype (inputs are cast). a and δ of every sample are kept,
    ≈ (n1 + n2)·Σ_l (fan_in_l + outputs·fan_out_l) numbers (n2 = 0 if symmetric); chunk_size
    samples go through each forward/backward pass. Raises ConfigError for other models.
    """
    _check_chunk_size(chunk_size)
    layers = _fc_layers(model)
    if layers is None:
        raise ConfigError(f"fc_empirical_ntk needs a FullyConnected model without normalization "
                          f"(got {type(model).__name__}); use empirical_ntk for other models")
    ref = next(model.parameters())
    symmetric = x2 is None or x2 is x1
    n2 = len(x1) if x2 is None else len(x2)  # θ, g, a product, the symmetrized copy; a and δ
    per_sample = sum(d.in_features + model.readout.out_features * d.out_features
                     for _, d in layers)
    _check_ntk_memory(model, len(x1), n2, full, copies=4,
                      extra=(len(x1) + (0 if symmetric else n2)) * per_sample)
    x1 = model.features[0](x1.to(device=ref.device, dtype=ref.dtype))
    acts1, deltas1 = _all_features(layers, x1, chunk_size)
    if symmetric:
        acts2, deltas2 = acts1, deltas1
    else:
        x2 = model.features[0](x2.to(device=ref.device, dtype=ref.dtype))
        acts2, deltas2 = _all_features(layers, x2, chunk_size)
    outputs = model.readout.out_features
    n1, n2 = len(acts1[0]), len(acts2[0])
    theta = x1.new_zeros((n1, n2, outputs, outputs) if full else (n1, n2))
    for l, (_, dense) in enumerate(layers):
        g = x1.new_zeros(n1, n2)  # Σ over this layer's parameters of the a_{l−1} factor
        if dense.weight.requires_grad:
            g += dense.weight_scale ** 2 * (acts1[l] @ acts2[l].T)
        if dense.bias is not None and dense.bias.requires_grad:
            g += dense.bias_scale ** 2
        if l == len(layers) - 1:  # readout: δ^o·δ^o′ = [o = o′]
            if full:
                theta += g[:, :, None, None] * torch.eye(outputs, dtype=g.dtype, device=g.device)
            else:
                theta += g
        elif full:
            theta += g[:, :, None, None] * torch.einsum("aok,bpk->abop", deltas1[l], deltas2[l])
        else:  # Σ_o δ^o·δ^o′ / outputs as one matmul over (o, k)
            theta += g * (deltas1[l].flatten(1) @ deltas2[l].flatten(1).T) / outputs
    if symmetric:  # exact symmetry Θ(x, x′)_{oo′} = Θ(x′, x)_{o′o}, as on the generic path
        theta = (theta + (theta.permute(1, 0, 3, 2) if full else theta.T)) / 2
    return theta
