"""Layer primitives shared by the models: activations, the standard init, and `Dense`.

Initialization convention used by every model in this package ("standard" init):
W ~ N(0, weight_var / fan_in) and b ~ N(0, bias_var), with fan_in = in_features for a linear
layer and in_channels·kh·kw for a convolution. weight_var = 2 is Kaiming-normal (fan_in, ReLU);
weight_var = 1 is the neural-tangents default used by the official AutoL2 code.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS = ("relu", "erf", "tanh", "gelu", "linear")
PARAMETERIZATIONS = ("standard", "ntk")


class Erf(nn.Module):
    """φ(x) = erf(x); its Gaussian kernels have closed forms (see `theory.kernels`)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.erf(x)


def make_activation(name: str) -> nn.Module:
    """A fresh activation module for one of `ACTIVATIONS` ("linear" is the identity)."""
    return {"relu": nn.ReLU, "erf": Erf, "tanh": nn.Tanh, "gelu": nn.GELU,
            "linear": nn.Identity}[name]()


@torch.no_grad()
def standard_init_(weight: torch.Tensor, bias: torch.Tensor | None,
                   weight_var: float, bias_var: float) -> None:
    """W ~ N(0, weight_var/fan_in), b ~ N(0, bias_var) in place (b = 0 exactly if bias_var = 0).

    Draws a unit normal and then scales it, weight first, then bias, so that the same seed gives
    the same underlying draws whatever the variances (and whatever the parameterization of `Dense`).
    """
    fan_in = weight[0].numel()
    weight.normal_().mul_(math.sqrt(weight_var / fan_in))
    if bias is not None:
        bias.normal_().mul_(math.sqrt(bias_var))


class Dense(nn.Linear):
    """A linear layer in standard or NTK parameterization (a drop-in `nn.Linear`).

    - "standard": W ~ N(0, weight_var/fan_in), b ~ N(0, bias_var); h = W x + b.
    - "ntk": W, b ~ N(0, 1); h = sqrt(weight_var/fan_in)·W x + sqrt(bias_var)·b.

    Both give the same function at init from the same seed (identical unit-normal draws); they
    differ in gradient scale: under "ntk" the gradient w.r.t. W is sqrt(weight_var/fan_in) times
    the "standard" one, which gives the NTK a width-independent infinite-width limit.
    With bias=False there is no bias parameter at all.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 parameterization: str = "standard", weight_var: float = 2.0,
                 bias_var: float = 0.0) -> None:
        # set before nn.Linear.__init__, which calls reset_parameters()
        self.parameterization = parameterization
        self.weight_var = weight_var
        self.bias_var = bias_var
        super().__init__(in_features, out_features, bias=bias)

    @property
    def weight_scale(self) -> float:
        """Multiplier applied to `weight` in the forward pass (1 in standard param.)."""
        if self.parameterization == "ntk":
            return math.sqrt(self.weight_var / self.in_features)
        return 1.0

    @property
    def bias_scale(self) -> float:
        """Multiplier applied to `bias` in the forward pass (1 in standard param.)."""
        return math.sqrt(self.bias_var) if self.parameterization == "ntk" else 1.0

    def reset_parameters(self) -> None:
        if self.parameterization == "ntk":  # unit normals; the scales live in forward()
            with torch.no_grad():
                self.weight.normal_()
                if self.bias is not None:
                    self.bias.normal_()
        else:
            standard_init_(self.weight, self.bias, self.weight_var, self.bias_var)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.parameterization == "standard":
            return F.linear(x, self.weight, self.bias)
        h = F.linear(x, self.weight) * self.weight_scale
        return h if self.bias is None else h + self.bias_scale * self.bias

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, parameterization={self.parameterization}, "
                f"weight_var={self.weight_var}, bias_var={self.bias_var}")
