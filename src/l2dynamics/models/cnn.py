"""Plain convolutional networks: `SimpleCNN` ("cnn") and `ConvNet4` ("convnet4").

Neither paper's exact architecture is known (Lewkowycz & Gur-Ari §4.4 and van Laarhoven §4 are
NOT FOUND), so these are documented choices, not reproductions:

- cnn: `depth` × [conv3×3(width) → norm → φ], a 2×2 max-pool after every second conv (at most
  three pools, so 32×32 → 4×4 at depth ≥ 6; a pool is skipped if the map is already < 2 pixels),
  global average pool, linear readout. Defaults: width 64, depth 4, no norm.
- convnet4 (van Laarhoven's "simple 4-layer ConvNet", the summary's suggested protocol):
  conv3×3(w) → norm → φ → conv3×3(2w) → norm → φ → maxpool2 → conv3×3(4w) → norm → φ → maxpool2
  → global average pool → linear: 4 weight layers. Defaults: w = 32, norm "bn", φ = relu.

Convs use padding 1 and the standard init (`layers.standard_init_`); they have no bias before
"bn"/"ln" (`norm.bias_before`). The readout is a standard `Dense` and is never normalized.
With relu/linear φ, bias=False and no norm both are positively homogeneous of degree
(number of weight layers) in their parameters (max-pool and average pool are 1-homogeneous).
"""

import torch
from torch import nn

from l2dynamics.models.layers import Dense, make_activation
from l2dynamics.models.norm import bias_before, conv2d, norm_layer

MAX_POOLS = 3  # cnn: at most this many 2×2 max-pools


def _conv_block(cin: int, cout: int, *, norm: str | None, activation: str, bias: bool,
                weight_var: float, bias_var: float) -> list[nn.Module]:
    """conv3×3 (padding 1) → norm → φ, as a list of modules."""
    layers: list[nn.Module] = [conv2d(cin, cout, 3, norm=norm, bias=bias_before(norm, bias),
                                      weight_var=weight_var, bias_var=bias_var)]
    if norm in ("bn", "ln"):
        layers.append(norm_layer(norm, cout, spatial=True))
    layers.append(make_activation(activation))
    return layers


def _homogeneity(activation: str, bias: bool, norm: str | None, degree: int) -> int | None:
    return degree if activation in ("relu", "linear") and not bias and norm is None else None


class SimpleCNN(nn.Module):
    """`depth` conv3×3 layers of `width` channels with max-pools; see the module docstring."""

    def __init__(self, input_shape: tuple[int, int, int], num_outputs: int, *, width: int = 64,
                 depth: int = 4, activation: str = "relu", bias: bool = True,
                 weight_var: float = 2.0, bias_var: float = 0.0,
                 norm: str | None = None) -> None:
        super().__init__()
        norm = None if norm == "none" else norm
        cin, size, pools = input_shape[0], min(input_shape[1:]), 0
        layers: list[nn.Module] = []
        for i in range(depth):
            layers += _conv_block(cin, width, norm=norm, activation=activation, bias=bias,
                                  weight_var=weight_var, bias_var=bias_var)
            cin = width
            if i % 2 == 1 and pools < MAX_POOLS and size >= 2:
                layers.append(nn.MaxPool2d(2))
                pools, size = pools + 1, size // 2
        self.features = nn.Sequential(*layers)
        self.readout = Dense(width, num_outputs, bias, weight_var=weight_var, bias_var=bias_var)
        self.homogeneity_degree = _homogeneity(activation, bias, norm, depth + 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.readout(self.features(x).mean(dim=(2, 3)))


class ConvNet4(nn.Module):
    """3 convs (w, 2w, 4w channels) + linear readout; see the module docstring."""

    def __init__(self, input_shape: tuple[int, int, int], num_outputs: int, *, width: int = 32,
                 activation: str = "relu", bias: bool = True, weight_var: float = 2.0,
                 bias_var: float = 0.0, norm: str | None = "bn") -> None:
        super().__init__()
        norm = None if norm == "none" else norm
        kw = dict(norm=norm, activation=activation, bias=bias, weight_var=weight_var,
                  bias_var=bias_var)
        size = min(input_shape[1:])
        layers = _conv_block(input_shape[0], width, **kw) + _conv_block(width, 2 * width, **kw)
        if size >= 2:
            layers.append(nn.MaxPool2d(2))
            size //= 2
        layers += _conv_block(2 * width, 4 * width, **kw)
        if size >= 2:
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.readout = Dense(4 * width, num_outputs, bias, weight_var=weight_var,
                             bias_var=bias_var)
        self.homogeneity_degree = _homogeneity(activation, bias, norm, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.readout(self.features(x).mean(dim=(2, 3)))
