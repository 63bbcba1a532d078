"""Normalization choices for the models: batch norm, layer norm, weight norm, or none.

`norm` names used across `l2dynamics.models`:

- "bn": BatchNorm after the layer (per channel / per unit; batch statistics in train mode).
- "ln": layer norm after the layer: `GroupNorm(1, C)` (over C, H, W) for convolutions,
  `LayerNorm(features)` for dense layers.
- "wn": weight normalization inside the layer: `WNConv2d` / `WNLinear`, w = g·v/‖v‖ per output unit.
- None or "none": no normalization.

A weight tensor followed by "bn" is scale-invariant per output unit (filter), by "ln" as a whole
tensor, and the direction `v` of a "wn" layer per output unit: these are the weights for which
L2 sets the effective learning rate instead of regularizing (van Laarhoven 2017). BatchNorm's
ε = 1e-5 makes the invariance exact only when Var(Xw) ≫ ε.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from l2dynamics.models.layers import standard_init_

NORMS = ("none", "bn", "ln", "wn")


def _gain_times_direction(v: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
    """w = g·v/‖v‖ with one norm and one gain per output unit (first axis of v)."""
    norms = v.flatten(1).norm(dim=1)
    return v * (gain / norms).view(-1, *([1] * (v.dim() - 1)))


class _WeightNormed:
    """Shared by the WN layers: `weight` is the direction v, `gain` the per-unit norm g."""

    weight: nn.Parameter
    bias: nn.Parameter | None
    gain: nn.Parameter
    weight_var: float
    bias_var: float

    def reset_parameters(self) -> None:
        standard_init_(self.weight, self.bias, self.weight_var, self.bias_var)
        if "gain" in self._parameters:  # type: ignore[attr-defined]
            nn.init.constant_(self.gain, math.sqrt(self.weight_var))

    def effective_weight(self) -> torch.Tensor:
        """The weight actually applied, g·v/‖v‖ per output unit (same shape as `weight`)."""
        return _gain_times_direction(self.weight, self.gain)


class WNConv2d(_WeightNormed, nn.Conv2d):
    """Conv2d with weight normalization: effective filter w_o = gain_o · weight_o / ‖weight_o‖.

    Plain parameters (no torch parametrizations): `weight` is the direction v (same shape as a
    conv weight; its scale does not change the function, only the effective learning rate),
    `gain` (out_channels,) is g, `bias` is optional (WN does not center, so it is not redundant).
    Init: v ~ N(0, weight_var/fan_in), g = sqrt(weight_var) (the expected norm of a standard-init
    filter), b ~ N(0, bias_var).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, bias: bool = True, *, weight_var: float = 2.0,
                 bias_var: float = 0.0) -> None:
        self.weight_var, self.bias_var = weight_var, bias_var  # read by reset_parameters
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                         bias=bias)
        self.gain = nn.Parameter(torch.full((out_channels,), math.sqrt(weight_var)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.effective_weight(), self.bias)


class WNLinear(_WeightNormed, nn.Linear):
    """Linear layer with weight normalization: row w_o = gain_o · weight_o / ‖weight_o‖.

    Same conventions as `WNConv2d` (`weight` = direction v, `gain` = g per output unit).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 weight_var: float = 2.0, bias_var: float = 0.0) -> None:
        self.weight_var, self.bias_var = weight_var, bias_var  # read by reset_parameters
        super().__init__(in_features, out_features, bias=bias)
        self.gain = nn.Parameter(torch.full((out_features,), math.sqrt(weight_var)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.effective_weight(), self.bias)


def conv2d(in_channels: int, out_channels: int, kernel_size: int, *, stride: int = 1,
           norm: str | None, bias: bool, weight_var: float, bias_var: float) -> nn.Conv2d:
    """A standard-init conv with `padding=kernel_size // 2`; a `WNConv2d` when norm == "wn"."""
    padding = kernel_size // 2
    if norm == "wn":
        return WNConv2d(in_channels, out_channels, kernel_size, stride, padding, bias,
                        weight_var=weight_var, bias_var=bias_var)
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=bias)
    standard_init_(conv.weight, conv.bias, weight_var, bias_var)
    return conv


def norm_layer(norm: str | None, features: int, *, spatial: bool) -> nn.Module:
    """The module that follows a layer for `norm` ("wn" and "none" give the identity).

    spatial=True for (N, C, H, W) activations after a conv, False for (N, features) ones.
    Affine parameters start at weight 1, bias 0 (the torch defaults).
    """
    if norm == "bn":
        return nn.BatchNorm2d(features) if spatial else nn.BatchNorm1d(features)
    if norm == "ln":
        return nn.GroupNorm(1, features) if spatial else nn.LayerNorm(features)
    return nn.Identity()


def bias_before(norm: str | None, bias: bool) -> bool:
    """Whether a layer followed by `norm` gets a bias: not before "bn"/"ln" (their own shift
    makes it redundant for bn, and it would break the weight's scale invariance for ln)."""
    return bias and norm not in ("bn", "ln")
