"""Probes taken during training: losses, accuracies, norms, kernels, Hessian extremes."""

from l2dynamics.probes.hessian import HessianSpectrum, hessian_extremes, hvp
from l2dynamics.probes.kernel import empirical_ntk, fc_empirical_ntk
from l2dynamics.probes.metrics import evaluate, weight_norms

__all__ = ["HessianSpectrum", "empirical_ntk", "evaluate", "fc_empirical_ntk",
           "hessian_extremes", "hvp", "weight_norms"]
