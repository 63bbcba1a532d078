"""Wide ResNet WRN-d-k, pre-activation (Zagoruyko & Komodakis 2016), as used by Lewkowycz &
Gur-Ari (WRN-28-10 on CIFAR-10).

conv3×3(16) → 3 groups of n = (d − 4)/6 blocks with 16k, 32k, 64k channels (strides 1, 2, 2)
→ BN → φ → global average pool → linear. Block: BN → φ → conv3×3(stride) → BN → φ → conv3×3,
plus a shortcut: the identity, or, where the shape changes (first block of each group), a 1×1
conv with the stride applied to the block's BN-φ output (original WRN). `paper_shortcut=True`
selects the google/autol2 variant instead: a 3×3 conv with the stride applied to the raw block
input (their summary §4.2). WRN-28-10 has 36.48M parameters (38.5M with paper_shortcut).

Init: standard, W ~ N(0, weight_var/fan_in) for every conv and the readout (weight_var = 2 is
Kaiming-normal fan_in/ReLU, the default here; weight_var = 1 is the neural-tangents init of the
official code), biases N(0, bias_var) (zero by default), BN weight 1 and bias 0.
Convs have no bias with norm "bn" (every path into the residual stream ends in a per-channel BN,
which removes it); with norm None ("none", for studies) there is no normalization and convs have
biases if `bias`. The readout has a bias if `bias`. Not homogeneous (homogeneity_degree None).
"""

import torch
from torch import nn

from l2dynamics.errors import ConfigError
from l2dynamics.models.layers import Dense, make_activation
from l2dynamics.models.norm import conv2d, norm_layer


class PreActBlock(nn.Module):
    """BN → φ → conv3×3(stride) → BN → φ → conv3×3, plus shortcut (see the module docstring)."""

    def __init__(self, cin: int, cout: int, stride: int, *, norm: str | None, activation: str,
                 conv_bias: bool, weight_var: float, bias_var: float,
                 paper_shortcut: bool) -> None:
        super().__init__()
        kw = dict(norm=norm, bias=conv_bias, weight_var=weight_var, bias_var=bias_var)
        self.norm1 = norm_layer(norm, cin, spatial=True)
        self.act1 = make_activation(activation)
        self.conv1 = conv2d(cin, cout, 3, stride=stride, **kw)
        self.norm2 = norm_layer(norm, cout, spatial=True)
        self.act2 = make_activation(activation)
        self.conv2 = conv2d(cout, cout, 3, **kw)
        self.paper_shortcut = paper_shortcut
        self.shortcut: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.shortcut = conv2d(cin, cout, 3 if paper_shortcut else 1, stride=stride, **kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = self.act1(self.norm1(x))
        y = self.conv2(self.act2(self.norm2(self.conv1(o))))
        if self.shortcut is None:
            return x + y
        return self.shortcut(x if self.paper_shortcut else o) + y


class WideResNet(nn.Module):
    """WRN-depth-width (pre-activation); see the module docstring for the conventions."""

    def __init__(self, input_shape: tuple[int, int, int], num_outputs: int, *, depth: int = 16,
                 width: int = 4, activation: str = "relu", bias: bool = True,
                 weight_var: float = 2.0, bias_var: float = 0.0, norm: str | None = "bn",
                 paper_shortcut: bool = False) -> None:
        super().__init__()
        if depth < 10 or (depth - 4) % 6:
            raise ConfigError(f"depth must be 6n + 4 with n >= 1 for model 'wrn' (got {depth})")
        norm = None if norm == "none" else norm
        if norm not in (None, "bn"):
            raise ConfigError(f"norm must be one of 'bn', 'none' for model 'wrn' (got {norm!r})")
        kw = dict(norm=norm, activation=activation, conv_bias=bias and norm is None,
                  weight_var=weight_var, bias_var=bias_var, paper_shortcut=paper_shortcut)
        n = (depth - 4) // 6
        self.stem = conv2d(input_shape[0], 16, 3, norm=norm, bias=kw["conv_bias"],
                           weight_var=weight_var, bias_var=bias_var)
        blocks, cin = [], 16
        for cout, stride in ((16 * width, 1), (32 * width, 2), (64 * width, 2)):
            for i in range(n):
                blocks.append(PreActBlock(cin, cout, stride if i == 0 else 1, **kw))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.norm = norm_layer(norm, cin, spatial=True)
        self.act = make_activation(activation)
        self.readout = Dense(cin, num_outputs, bias, weight_var=weight_var, bias_var=bias_var)
        self.homogeneity_degree: int | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.norm(self.blocks(self.stem(x))))
        return self.readout(h.mean(dim=(2, 3)))
