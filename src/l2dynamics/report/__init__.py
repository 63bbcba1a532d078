"""Figures and reports."""

from l2dynamics.report.figures import plot_runs, save_figure

__all__ = ["plot_runs", "save_figure"]
