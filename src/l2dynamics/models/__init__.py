"""Model registry: `build_model(name, ...)` validates arguments and builds one of `MODEL_NAMES`.

| name     | class          | width (default)           | depth (default)          | norm |
|----------|----------------|---------------------------|--------------------------|------|
| fc       | FullyConnected | hidden units (512)        | hidden layers (2)        | none |
| cnn      | SimpleCNN      | channels (64)             | conv layers (4)          | none |
| convnet4 | ConvNet4       | first-layer channels (32) | fixed: 4 weight layers   | bn   |
| wrn      | WideResNet     | widening factor k (4)     | d of WRN-d-k, 6n+4 (16)  | bn   |

`width`, `depth` or `norm` = None means the default above; norm="none" means no normalization.
All models take (batch, *input_shape) and return (batch, num_outputs); conv models need
input_shape = (C, H, W), fc flattens any shape. Every model has `.readout` (the final linear
layer) and `.homogeneity_degree` (k with f(x; αθ) = α^k f(x; θ) for α > 0, or None).
"""

import math

from torch import nn

from l2dynamics.errors import ConfigError
from l2dynamics.models.cnn import ConvNet4, SimpleCNN
from l2dynamics.models.fc import FullyConnected
from l2dynamics.models.layers import ACTIVATIONS, PARAMETERIZATIONS, Dense
from l2dynamics.models.norm import NORMS, WNConv2d, WNLinear
from l2dynamics.models.wrn import WideResNet
from l2dynamics.names import MODEL_NAMES as _NAMES

__all__ = ["MODEL_NAMES", "build_model", "model_defaults", "FullyConnected", "SimpleCNN",
           "ConvNet4", "WideResNet", "Dense", "WNConv2d", "WNLinear", "ACTIVATIONS",
           "PARAMETERIZATIONS", "NORMS"]

MODEL_NAMES = _NAMES  # declared torch-free (l2dynamics.names) for the config schema

_DEFAULTS = {
    "fc": {"width": 512, "depth": 2, "norm": "none"},
    "cnn": {"width": 64, "depth": 4, "norm": "none"},
    "convnet4": {"width": 32, "depth": 4, "norm": "bn"},
    "wrn": {"width": 4, "depth": 16, "norm": "bn"},
}
_ALLOWED_NORMS = {"fc": NORMS, "cnn": NORMS, "convnet4": NORMS, "wrn": ("none", "bn")}


def model_defaults(name: str) -> dict:
    """The width, depth and norm `build_model` uses for `name` when they are None (a copy)."""
    _check_choice("name", name, MODEL_NAMES)
    return dict(_DEFAULTS[name])


def _check_choice(field: str, value: object, allowed: tuple[str, ...], suffix: str = "") -> None:
    if value not in allowed:
        choices = ", ".join(repr(a) for a in allowed)
        raise ConfigError(f"{field} must be one of {choices}{suffix} (got {value!r})")


def _check_positive_int(field: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{field} must be a positive int (got {value!r})")


def build_model(name: str, *, input_shape: tuple[int, ...], num_outputs: int,
                width: int | None = None, depth: int | None = None, activation: str = "relu",
                bias: bool = True, parameterization: str = "standard", weight_var: float = 2.0,
                bias_var: float = 0.0, norm: str | None = None) -> nn.Module:
    """Build model `name` (see the module table for width/depth meaning and defaults).

    weight_var, bias_var: init variances, W ~ N(0, weight_var/fan_in), b ~ N(0, bias_var)
    (weight_var = 2: Kaiming/He for ReLU). parameterization "ntk" (fc only) moves those scales
    into the forward pass (see `models.fc`). Raises ConfigError on any invalid argument.
    """
    _check_choice("name", name, MODEL_NAMES)
    defaults = _DEFAULTS[name]
    width = defaults["width"] if width is None else width
    depth = defaults["depth"] if depth is None else depth
    norm = defaults["norm"] if norm is None else norm
    _check_positive_int("width", width)
    _check_positive_int("depth", depth)
    _check_positive_int("num_outputs", num_outputs)
    if not isinstance(input_shape, tuple | list) or not input_shape:
        raise ConfigError(f"input_shape must be a non-empty tuple of ints (got {input_shape!r})")
    for d in input_shape:
        _check_positive_int("input_shape entries", d)
    input_shape = tuple(input_shape)
    _check_choice("activation", activation, ACTIVATIONS)
    _check_choice("parameterization", parameterization, PARAMETERIZATIONS)
    _check_choice("norm", norm, _ALLOWED_NORMS[name], f" for model {name!r}")
    if not isinstance(weight_var, int | float) or not math.isfinite(weight_var) or weight_var <= 0:
        raise ConfigError(f"weight_var must be a finite number > 0 (got {weight_var!r})")
    if not isinstance(bias_var, int | float) or not math.isfinite(bias_var) or bias_var < 0:
        raise ConfigError(f"bias_var must be a finite number >= 0 (got {bias_var!r})")
    if parameterization == "ntk" and name != "fc":
        raise ConfigError(f"parameterization='ntk' is only implemented for model 'fc' "
                          f"(got {name!r})")
    if parameterization == "ntk" and norm == "wn":
        raise ConfigError("norm='wn' requires parameterization='standard' (got 'ntk')")
    if name != "fc" and len(input_shape) != 3:
        raise ConfigError(f"input_shape must be (C, H, W) for model {name!r} "
                          f"(got {input_shape!r})")
    if name == "convnet4" and depth != 4:
        raise ConfigError(f"depth is fixed at 4 for model 'convnet4' (got {depth})")
    if name == "wrn" and (depth < 10 or (depth - 4) % 6):
        raise ConfigError(f"depth must satisfy (depth - 4) % 6 == 0 and depth >= 10 for model "
                          f"'wrn', e.g. 16, 28 (got {depth})")

    common = dict(activation=activation, bias=bool(bias), weight_var=float(weight_var),
                  bias_var=float(bias_var), norm=norm)
    if name == "fc":
        return FullyConnected(input_shape, num_outputs, width=width, depth=depth,
                              parameterization=parameterization, **common)
    if name == "cnn":
        return SimpleCNN(input_shape, num_outputs, width=width, depth=depth, **common)
    if name == "convnet4":
        return ConvNet4(input_shape, num_outputs, width=width, **common)
    return WideResNet(input_shape, num_outputs, depth=depth, width=width, **common)
