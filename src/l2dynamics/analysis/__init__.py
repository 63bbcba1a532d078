"""Analysis of stored runs: peak times, fits and their uncertainty."""

from l2dynamics.analysis.fits import fit_power_law
from l2dynamics.analysis.peak import (
    ESTIMATORS,
    PeakEstimate,
    bootstrap_ci,
    estimate_peak,
    reaches_train_accuracy,
    smooth_log_time,
)
from l2dynamics.analysis.tstar import tstar_fits, tstar_summary, tstar_table, tstar_verdict

__all__ = ["ESTIMATORS", "PeakEstimate", "bootstrap_ci", "estimate_peak", "fit_power_law",
           "reaches_train_accuracy", "smooth_log_time", "tstar_fits", "tstar_summary",
           "tstar_table", "tstar_verdict"]
