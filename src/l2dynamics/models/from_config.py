"""A config's model: the one place where config keys become :func:`build_model` arguments.

The engine (a run, a vectorized ensemble, the memory estimate of either) builds every model of a
config through :func:`config_model`, so the same config always gives the same architecture.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from l2dynamics.models import build_model

ARCHITECTURE_KEYS = ("model", "width", "depth", "activation", "bias", "parameterization",
                     "weight_var", "bias_var", "norm")
"""Config keys that define the model (``model`` is its name; the others are keyword arguments
of :func:`build_model`)."""


def model_kwargs(cfg: Any) -> dict[str, Any]:
    """The :func:`build_model` keyword arguments of config `cfg` (everything but the name and the
    data-dependent ``input_shape`` / ``num_outputs``)."""
    return {key: getattr(cfg, key) for key in ARCHITECTURE_KEYS[1:]}


def config_model(cfg: Any, input_shape: tuple[int, ...], num_outputs: int) -> nn.Module:
    """Model ``cfg.model`` with `cfg`'s architecture for inputs of `input_shape` and
    `num_outputs` outputs, initialized from the current RNG state on the current device."""
    return build_model(cfg.model, input_shape=tuple(input_shape), num_outputs=num_outputs,
                       **model_kwargs(cfg))
