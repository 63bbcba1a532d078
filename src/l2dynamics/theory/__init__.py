"""Infinite-width theory: analytic NNGP/NTK kernels of the fc network (`kernels`) and the
gradient flow with L2 they drive (`flow`)."""

from l2dynamics.theory.flow import (
    effective_time,
    flow_metrics,
    from_flow_units,
    kernel_flow,
    kernel_scale,
    peak_time,
    ridge_limit,
    to_flow_units,
)
from l2dynamics.theory.kernels import KERNEL_ACTIVATIONS, activation_expectations, fc_kernels

__all__ = [
    "KERNEL_ACTIVATIONS",
    "activation_expectations",
    "effective_time",
    "fc_kernels",
    "flow_metrics",
    "from_flow_units",
    "kernel_flow",
    "kernel_scale",
    "peak_time",
    "ridge_limit",
    "to_flow_units",
]
