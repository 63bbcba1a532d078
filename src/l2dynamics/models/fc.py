"""Fully connected network (Lewkowycz & Gur-Ari's FC/MNIST model; its exact spec is not known).

x (batch, *input_shape) → flatten → [Dense(width) → norm → φ] × depth → Dense(num_outputs).
`depth` counts hidden layers, so the network has depth + 1 weight layers.

Parameterizations (see `layers.Dense`), with n_l the fan-in of layer l:

- "ntk": W, b ~ N(0, 1); h = sqrt(weight_var/n_l)·W x + sqrt(bias_var)·b (readout included).
- "standard": W ~ N(0, weight_var/n_l), b ~ N(0, bias_var); h = W x + b.

Both define the same function at init (same seed → same draws); under "ntk" the empirical NTK
converges to `theory.kernels.fc_kernels` as width → ∞.

norm ("bn", "ln", "wn" or None) acts on every hidden layer, between the linear map and φ; the
readout is never normalized. Hidden layers followed by "bn"/"ln" have no bias (see
`norm.bias_before`). With activation relu or linear, bias=False and no norm the network is
positively homogeneous of degree depth + 1 in its parameters: f(x; αθ) = α^(depth+1) f(x; θ)
for α > 0 (`homogeneity_degree`, used by the theory: the NTK decays as exp(−2(k−1)λt)).
"""

import math

import torch
from torch import nn

from l2dynamics.models.layers import Dense, make_activation
from l2dynamics.models.norm import WNLinear, bias_before, norm_layer


class FullyConnected(nn.Module):
    """Fully connected network; see the module docstring for the conventions."""

    def __init__(self, input_shape: tuple[int, ...], num_outputs: int, *, width: int = 512,
                 depth: int = 2, activation: str = "relu", bias: bool = True,
                 parameterization: str = "standard", weight_var: float = 2.0,
                 bias_var: float = 0.0, norm: str | None = None) -> None:
        super().__init__()
        norm = None if norm == "none" else norm
        fan_in = math.prod(input_shape)
        layers: list[nn.Module] = [nn.Flatten()]
        for _ in range(depth):
            if norm == "wn":
                linear = WNLinear(fan_in, width, bias, weight_var=weight_var, bias_var=bias_var)
            else:
                linear = Dense(fan_in, width, bias_before(norm, bias),
                               parameterization=parameterization, weight_var=weight_var,
                               bias_var=bias_var)
            layers.append(linear)
            if norm in ("bn", "ln"):
                layers.append(norm_layer(norm, width, spatial=False))
            layers.append(make_activation(activation))
            fan_in = width
        self.features = nn.Sequential(*layers)
        self.readout = Dense(fan_in, num_outputs, bias, parameterization=parameterization,
                             weight_var=weight_var, bias_var=bias_var)
        homogeneous = activation in ("relu", "linear") and not bias and norm is None
        self.homogeneity_degree: int | None = depth + 1 if homogeneous else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.readout(self.features(x))
