"""Probes taken during training: losses, accuracies, norms, kernels."""

from l2dynamics.probes.kernel import empirical_ntk
from l2dynamics.probes.metrics import evaluate, weight_norms

__all__ = ["empirical_ntk", "evaluate", "weight_norms"]
