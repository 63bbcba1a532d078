"""Analysis of stored runs: peak times, fits, seed intervals and verdict rules."""

from l2dynamics.analysis.fits import fit_power_law
from l2dynamics.analysis.intervals import SeedInterval, seed_interval, welch_interval
from l2dynamics.analysis.peak import (
    ESTIMATORS,
    PeakEstimate,
    estimate_peak,
    reaches_train_accuracy,
    smooth_log_time,
)
from l2dynamics.analysis.tstar import (
    c_eta_of,
    tstar_claims,
    tstar_fits,
    tstar_summary,
    tstar_table,
    tstar_verdict,
)

__all__ = ["ESTIMATORS", "PeakEstimate", "SeedInterval", "c_eta_of", "estimate_peak",
           "fit_power_law", "reaches_train_accuracy", "seed_interval", "smooth_log_time",
           "tstar_claims", "tstar_fits", "tstar_summary", "tstar_table", "tstar_verdict",
           "welch_interval"]
