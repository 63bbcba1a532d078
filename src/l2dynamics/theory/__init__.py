"""Infinite-width theory: analytic NNGP/NTK kernels of the fc network (`kernels`)."""

from l2dynamics.theory.kernels import KERNEL_ACTIVATIONS, activation_expectations, fc_kernels

__all__ = ["KERNEL_ACTIVATIONS", "activation_expectations", "fc_kernels"]
